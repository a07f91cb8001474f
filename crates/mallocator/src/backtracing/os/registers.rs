//! Registers read where a capture starts: the frame and stack pointers,
//! the unwinder's starting registers, and the callee-saved registers a
//! leak scan takes as roots.

/// The frame-pointer register of the function this is inlined into, or 0
/// where there is none (other architectures, Miri).
#[inline(always)]
pub(crate) fn frame_pointer() -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let fp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let fp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        0
    }
}

/// The instruction, stack and frame pointers at this point of the
/// function this is inlined into: where an unwind by call-frame
/// information starts (the instruction pointer is that of the next
/// instruction, still inside the same function, at the same stack
/// depth).
#[cfg(dwarf_unwinder)]
#[inline(always)]
pub(crate) fn registers() -> (usize, usize, usize) {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads three registers and the instruction pointer; no
    // memory access.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        )
    };
    (pc, sp, bp)
}

/// The stack pointer of the function this is inlined into: a lower bound
/// for every live frame above it. Read from the register, not taken as
/// the address of a local: with AddressSanitizer's use-after-return
/// detection, locals live on a separate "fake stack" on the heap.
#[inline(always)]
pub(crate) fn stack_pointer_estimate() -> usize {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let sp: usize;
        // SAFETY: reads a register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        let marker = 0u8;
        core::hint::black_box(&marker) as *const u8 as usize
    }
}

/// The registers a function must preserve for its caller (x86-64: rbx,
/// rbp, r12-r15; AArch64: x19-x29), as they are where this is inlined:
/// a leak scan's roots, since a caller may keep a pointer there across a
/// call. A value the callers in between saved on their own stack frames
/// to use the register themselves is not among them. Zero where not
/// known.
pub(crate) type Registers = [usize; 11];

/// See [`Registers`].
#[inline(always)]
pub(crate) fn callee_saved_registers() -> Registers {
    #[allow(unused_mut)] // written only where the architecture is known
    let mut r: Registers = [0; 11];
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: moves between registers and locals; no memory or flags touched.
    unsafe {
        core::arch::asm!(
            "mov {0}, rbx", "mov {1}, rbp", "mov {2}, r12", "mov {3}, r13", "mov {4}, r14", "mov {5}, r15",
            out(reg) r[0], out(reg) r[1], out(reg) r[2], out(reg) r[3], out(reg) r[4], out(reg) r[5],
            options(nomem, nostack, preserves_flags)
        );
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "mov {0}, x19", "mov {1}, x20", "mov {2}, x21", "mov {3}, x22", "mov {4}, x23", "mov {5}, x24",
            "mov {6}, x25", "mov {7}, x26", "mov {8}, x27", "mov {9}, x28", "mov {10}, x29",
            out(reg) r[0], out(reg) r[1], out(reg) r[2], out(reg) r[3], out(reg) r[4], out(reg) r[5],
            out(reg) r[6], out(reg) r[7], out(reg) r[8], out(reg) r[9], out(reg) r[10],
            options(nomem, nostack, preserves_flags)
        );
    }
    r
}
