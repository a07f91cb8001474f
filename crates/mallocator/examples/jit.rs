//! A tiny JIT: machine code is written into a read-write arena, the arena
//! is switched to read-execute with `protect`, and the code is called.
//! Writing to it afterwards is refused by the processor: the example shows
//! the pages' protection as the OS reports it, and lets a child process
//! (this same program, re-run with a flag) try the write and die of it.
//!
//! x86_64 Linux and Windows only; elsewhere it says so and exits 0.
//!
//! ```text
//! cargo run --example jit
//! ```

#[cfg(all(target_arch = "x86_64", any(target_os = "linux", windows)))]
mod x86_64_jit {
    use std::process::Command;

    use mallocator::{Arena, Protection};

    /// `fn(a: u64, b: u64) -> u64 { a * 3 + b }` in the System V calling
    /// convention (arguments in rdi, rsi), which Rust can call on Windows
    /// too through `extern "sysv64"`:
    /// `lea rax, [rdi + rdi*2]; add rax, rsi; ret`.
    const CODE: [u8; 8] = [0x48, 0x8D, 0x04, 0x7F, 0x48, 0x01, 0xF0, 0xC3];

    /// The flag that makes this program the child that tries the write.
    const CHILD_FLAG: &str = "--try-write-to-code";

    /// An arena holding `CODE`, switched to read-execute; and the code's
    /// address.
    fn build() -> (Arena, *mut u8) {
        let mut arena = Arena::new();
        let code = arena.alloc_slice_copy(&CODE).as_mut_ptr();
        arena
            .protect(Protection::ReadExecute)
            .expect("switch the arena to read-execute");
        (arena, code)
    }

    /// The protection of the page holding `addr`, as the OS reports it.
    #[cfg(target_os = "linux")]
    fn protection_of(addr: *const u8) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        let addr = addr as usize;
        maps.lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                let (lo, hi) = fields.next()?.split_once('-')?;
                let lo = usize::from_str_radix(lo, 16).ok()?;
                let hi = usize::from_str_radix(hi, 16).ok()?;
                let perms = fields.next()?;
                (lo..hi)
                    .contains(&addr)
                    .then(|| format!("{perms} (/proc/self/maps)"))
            })
            .unwrap_or_else(|| "not mapped".to_owned())
    }

    /// The protection of the page holding `addr`, as the OS reports it.
    #[cfg(windows)]
    fn protection_of(addr: *const u8) -> String {
        use windows_sys::Win32::System::Memory::{
            VirtualQuery, MEMORY_BASIC_INFORMATION, PAGE_EXECUTE_READ, PAGE_READWRITE,
        };
        // SAFETY: all-zero is a valid MEMORY_BASIC_INFORMATION (integers and
        // pointers).
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { core::mem::zeroed() };
        let size = core::mem::size_of::<MEMORY_BASIC_INFORMATION>();
        // SAFETY: `info` is writable for `size` bytes; any address may be
        // queried.
        let got = unsafe { VirtualQuery(addr.cast(), &mut info, size) };
        assert_eq!(got, size, "VirtualQuery failed");
        let name = match info.Protect {
            PAGE_EXECUTE_READ => "PAGE_EXECUTE_READ",
            PAGE_READWRITE => "PAGE_READWRITE",
            _ => "other",
        };
        format!("{name} (0x{:x}, VirtualQuery)", info.Protect)
    }

    /// Child mode: write into the read-execute code. The OS must kill us.
    fn child() -> ! {
        #[cfg(unix)]
        {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid rlimit; failing to disable core dumps is harmless.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
        }
        #[cfg(windows)]
        exit_on_access_violation();
        let (_arena, code) = build();
        // SAFETY: deliberately not safe: `code` is mapped but read-execute;
        // this write must fault and kill this child process, which is what
        // the parent checks. It is volatile so that it is really performed.
        unsafe { code.write_volatile(0x90) };
        println!("child: the write to read-execute memory was NOT refused");
        std::process::exit(0);
    }

    /// Makes an access violation end this process at once with exit code
    /// `0xC0000005`, instead of starting the debugger or the crash dialog.
    #[cfg(windows)]
    fn exit_on_access_violation() {
        use core::ffi::c_void;
        use windows_sys::Win32::Foundation::EXCEPTION_ACCESS_VIOLATION;
        use windows_sys::Win32::System::Threading::ExitProcess;

        /// The leading fields of `EXCEPTION_POINTERS` / `EXCEPTION_RECORD`
        /// (declared here: windows-sys gates them behind a feature this
        /// crate does not otherwise need).
        #[repr(C)]
        struct ExceptionPointers {
            record: *const i32, // first field of EXCEPTION_RECORD: the NTSTATUS code
            context: *mut c_void,
        }
        type Handler = unsafe extern "system" fn(*mut ExceptionPointers) -> i32;
        #[link(name = "kernel32")]
        extern "system" {
            fn AddVectoredExceptionHandler(first: u32, handler: Handler) -> *mut c_void;
        }
        const EXCEPTION_CONTINUE_SEARCH: i32 = 0;

        unsafe extern "system" fn on_exception(info: *mut ExceptionPointers) -> i32 {
            // SAFETY: the OS passes valid exception pointers, and the record
            // starts with its NTSTATUS code.
            let code = unsafe { *(*info).record };
            if code == EXCEPTION_ACCESS_VIOLATION {
                // SAFETY: ending the process is always allowed.
                unsafe { ExitProcess(code as u32) }
            }
            EXCEPTION_CONTINUE_SEARCH
        }
        // SAFETY: `on_exception` has the handler's signature and stays
        // valid for the life of the process.
        let handle = unsafe { AddVectoredExceptionHandler(1, on_exception) };
        assert!(!handle.is_null(), "AddVectoredExceptionHandler failed");
    }

    /// How the child ended, in words.
    fn describe(status: std::process::ExitStatus) -> String {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                let name = if signal == libc::SIGSEGV {
                    " (SIGSEGV)"
                } else {
                    ""
                };
                return format!("killed by signal {signal}{name}");
            }
        }
        #[cfg(windows)]
        if status.code() == Some(0xC000_0005_u32 as i32) {
            return "ended with 0xC0000005 (STATUS_ACCESS_VIOLATION)".to_owned();
        }
        format!("ended with {status}")
    }

    pub fn main() {
        if std::env::args().any(|a| a == CHILD_FLAG) {
            child();
        }
        let (mut arena, code) = build();
        println!(
            "code: {} bytes at {code:p} in an arena [{:p}, +{} bytes), {} committed",
            CODE.len(),
            arena.base(),
            arena.capacity(),
            arena.committed()
        );
        println!("protection now: {}", protection_of(code));

        // SAFETY: `code` holds a complete function with this signature and
        // calling convention (see `CODE`), in read-execute memory that
        // lives as long as `arena`.
        let f: extern "sysv64" fn(u64, u64) -> u64 = unsafe { core::mem::transmute(code) };
        let result = f(14, 0);
        println!("called the generated code: f(14, 0) = {result}");
        assert_eq!(result, 42);
        assert_eq!(f(100, 7), 307);

        let exe = std::env::current_exe().expect("path of this program");
        let status = Command::new(exe)
            .arg(CHILD_FLAG)
            .status()
            .expect("start the child process");
        println!("child process writing to the code: {}", describe(status));
        assert!(
            !status.success(),
            "the write to read-execute memory was not refused"
        );

        // Back to read-write: the arena's memory is writable again.
        arena
            .protect(Protection::ReadWrite)
            .expect("back to read-write");
        // SAFETY: the arena is read-write again and `code` is inside its
        // committed range.
        unsafe { code.write(0xC3) };
        println!(
            "after protect(ReadWrite): {}; write ok",
            protection_of(code)
        );
    }
}

fn main() {
    #[cfg(all(target_arch = "x86_64", any(target_os = "linux", windows)))]
    x86_64_jit::main();
    #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", windows))))]
    println!("jit example: runs on x86_64 Linux and Windows only; nothing to do on this target");
}
