//! What the dynamic loader knows: the object and symbol at an address,
//! every loaded object with its build-id and unwind sections, and its
//! lock.

/// What the dynamic loader knows about the code at an address: the path
/// of the object it is in, the nearest dynamic symbol at or below it, and
/// the address offsets into it count from ([`CodeSite::base`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeSite<'a> {
    /// The object's path as the loader has it (may be relative).
    pub object: &'a [u8],
    /// The symbol's name, if the address has one.
    pub symbol: Option<&'a [u8]>,
    /// The symbol's address, or the object's load address without one.
    pub base: usize,
}

/// Calls `f` with what the loader knows about `ip` (`dladdr`), or `None`
/// when it is in no known object (or on platforms without `dladdr`).
#[cfg(all(unix, not(miri)))]
pub(crate) fn with_code_site<R>(ip: usize, f: impl FnOnce(Option<CodeSite<'_>>) -> R) -> R {
    // SAFETY: `Dl_info` is plain data; all-zero is a valid output buffer.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables; `info` is writable.
    let found = unsafe { libc::dladdr(ip as *const libc::c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return f(None);
    }
    // SAFETY: `dli_fname` and `dli_sname` (when not null) are
    // NUL-terminated strings owned by the loader, which keeps them while
    // the object stays loaded; they are only used during `f`.
    let (object, symbol) = unsafe {
        (
            core::ffi::CStr::from_ptr(info.dli_fname).to_bytes(),
            (!info.dli_sname.is_null())
                .then(|| core::ffi::CStr::from_ptr(info.dli_sname).to_bytes()),
        )
    };
    let base = if symbol.is_some() {
        info.dli_saddr as usize
    } else {
        info.dli_fbase as usize
    };
    f(Some(CodeSite {
        object,
        symbol,
        base,
    }))
}

/// No `dladdr` here: every address is in no known object.
#[cfg(any(not(unix), miri))]
pub(crate) fn with_code_site<R>(_ip: usize, f: impl FnOnce(Option<CodeSite<'_>>) -> R) -> R {
    f(None)
}

/// A loaded object, as [`for_each_module`] reports it.
#[derive(Debug)]
pub(crate) struct Module<'a> {
    /// Load bias: an address minus this is the object file's own address.
    pub bias: usize,
    /// Lowest and one past the highest address of its loaded segments.
    pub start: usize,
    pub end: usize,
    /// The `NT_GNU_BUILD_ID` note (empty when it has none).
    pub build_id: &'a [u8],
    /// The loader's path (empty for the executable: see [`executable`](super::executable)).
    pub path: &'a [u8],
    /// Its DWARF call-frame information, when it has an index of it the
    /// unwinder can read (see [`UnwindSections`]).
    #[cfg_attr(not(dwarf_unwinder), allow(dead_code))]
    pub unwind: Option<UnwindSections<'a>>,
}

/// A loaded object's DWARF call-frame information, in its mapped
/// segments: what the DWARF unwinder (`dwarf/`) needs of it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(dwarf_unwinder), allow(dead_code))]
pub(crate) struct UnwindSections<'a> {
    /// `.eh_frame_hdr` (the `PT_GNU_EH_FRAME` segment), at its address.
    pub eh_frame_hdr: &'a [u8],
    /// `.eh_frame`, at its address, through the end of the loaded segment
    /// that holds it: its own length is recorded nowhere the loader maps
    /// (readers go by the index and the entries' own lengths).
    pub eh_frame: &'a [u8],
    /// The addresses of its executable segments (lowest start, highest
    /// end).
    pub text: (usize, usize),
}

/// The address of `.eh_frame` that the `.eh_frame_hdr` at `hdr_addr`
/// (whose bytes are `hdr`) points to: its version byte must be 1 and its
/// pointer encoded absolute, PC-relative or relative to the header, as 4
/// or 8 bytes (what linkers write); `None` for anything else.
// Used by the loader walk where there is one; tested everywhere.
#[cfg_attr(
    not(all(
        any(target_os = "linux", target_os = "android", target_os = "freebsd"),
        not(miri)
    )),
    allow(dead_code)
)]
fn eh_frame_address(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
    const DW_EH_PE_OMIT: u8 = 0xff;
    if hdr.first() != Some(&1) {
        return None;
    }
    let encoding = *hdr.get(1)?;
    if encoding == DW_EH_PE_OMIT {
        return None;
    }
    let bytes = |n: usize| hdr.get(4..4 + n);
    let value: u64 = match encoding & 0x0f {
        // absptr (8 bytes on the 64-bit targets this serves), udata8, sdata8
        0x00 | 0x04 | 0x0c => u64::from_le_bytes(bytes(8)?.try_into().ok()?),
        // udata4
        0x03 => u32::from_le_bytes(bytes(4)?.try_into().ok()?) as u64,
        // sdata4
        0x0b => i32::from_le_bytes(bytes(4)?.try_into().ok()?) as i64 as u64,
        _ => return None,
    };
    let value = value as usize;
    match encoding & 0x70 {
        // absolute
        0x00 => Some(value),
        // PC-relative: from the field itself, 4 bytes into the header
        0x10 => Some(hdr_addr.wrapping_add(4).wrapping_add(value)),
        // data-relative: from the header
        0x30 => Some(hdr_addr.wrapping_add(value)),
        _ => None,
    }
}

/// Calls `f` on the loader's description of every loaded object
/// (`dl_iterate_phdr`), the executable first. The loader's own lock is
/// held during the walk, so `f` must not load or unload objects; it may
/// allocate (the loader's lock for `dl_iterate_phdr` is not the one
/// `dlopen` holds while it allocates).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(super) fn for_each_object(f: &mut dyn FnMut(&libc::dl_phdr_info)) {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut &mut dyn FnMut` passed below, alive
        // for the whole walk; `info` is the loader's description of one
        // object, valid during this call.
        let (f, info) = unsafe {
            (
                &mut *data.cast::<&mut dyn FnMut(&libc::dl_phdr_info)>(),
                &*info,
            )
        };
        f(info);
        0
    }
    let mut f = f;
    // SAFETY: `each` matches the callback type and only uses `data` as
    // the pointer to `f` given here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            (&mut f as *mut &mut dyn FnMut(&libc::dl_phdr_info)).cast(),
        )
    };
}

/// A program header, as the loader describes an object.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    target_pointer_width = "64",
    not(miri)
))]
type ProgramHeader = libc::Elf64_Phdr;
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    target_pointer_width = "32",
    not(miri)
))]
type ProgramHeader = libc::Elf32_Phdr;

/// ELF's values (the `libc` crate does not define them on every target
/// with a loader walk).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
mod elf {
    /// The segment holding `.eh_frame_hdr`.
    pub(super) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
    /// Segment flags: executable, readable.
    pub(super) const PF_X: u32 = 1;
    pub(super) const PF_R: u32 = 4;
}

/// An object's program headers.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(super) fn program_headers(info: &libc::dl_phdr_info) -> &[ProgramHeader] {
    // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers, mapped
    // while the object is loaded (during the walk that gave `info`).
    unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
}

/// An object's path as the loader has it (empty for the executable).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(super) fn object_path(info: &libc::dl_phdr_info) -> &[u8] {
    if info.dlpi_name.is_null() {
        return &[];
    }
    // SAFETY: a NUL-terminated string owned by the loader.
    unsafe { core::ffi::CStr::from_ptr(info.dlpi_name).to_bytes() }
}

/// Calls `f` on every loaded object (see [`for_each_object`]).
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(crate) fn for_each_module(f: &mut dyn FnMut(&Module<'_>)) {
    for_each_object(&mut |info| {
        let bias = info.dlpi_addr as usize;
        let (mut start, mut end, mut build_id): (usize, usize, &[u8]) = (usize::MAX, 0, &[]);
        let (mut text, mut eh_frame_hdr): ((usize, usize), &[u8]) = ((usize::MAX, 0), &[]);
        for ph in program_headers(info) {
            let at = bias.wrapping_add(ph.p_vaddr as usize);
            let seg_end = at.wrapping_add(ph.p_memsz as usize);
            if ph.p_type == libc::PT_LOAD {
                start = start.min(at);
                end = end.max(seg_end);
                if ph.p_flags & elf::PF_X != 0 {
                    text = (text.0.min(at), text.1.max(seg_end));
                }
            } else if ph.p_type == elf::PT_GNU_EH_FRAME {
                // SAFETY: as the note segment below: inside a loaded,
                // readable segment while the object stays loaded.
                eh_frame_hdr =
                    unsafe { core::slice::from_raw_parts(at as *const u8, ph.p_memsz as usize) };
            } else if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                // SAFETY: a PT_NOTE segment of a loaded object lies inside
                // one of its loaded (readable) segments, `p_memsz` bytes
                // at `at`, mapped while the object stays loaded.
                let notes =
                    unsafe { core::slice::from_raw_parts(at as *const u8, ph.p_memsz as usize) };
                build_id = gnu_build_id(notes).unwrap_or(&[]);
            }
        }
        if start < end {
            f(&Module {
                bias,
                start,
                end,
                build_id,
                path: object_path(info),
                unwind: unwind_sections(info, eh_frame_hdr, text),
            });
        }
    });
}

/// The unwind sections of the object `info` describes, given its
/// `.eh_frame_hdr` and executable range: `None` without them, or when the
/// header's pointer leads outside every readable loaded segment.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
fn unwind_sections<'a>(
    info: &'a libc::dl_phdr_info,
    eh_frame_hdr: &'a [u8],
    text: (usize, usize),
) -> Option<UnwindSections<'a>> {
    if eh_frame_hdr.is_empty() || text.0 >= text.1 {
        return None;
    }
    let eh_frame = eh_frame_address(eh_frame_hdr, eh_frame_hdr.as_ptr() as usize)?;
    let bias = info.dlpi_addr as usize;
    let segment_end = program_headers(info).iter().find_map(|ph| {
        let at = bias.wrapping_add(ph.p_vaddr as usize);
        let end = at.wrapping_add(ph.p_memsz as usize);
        (ph.p_type == libc::PT_LOAD
            && ph.p_flags & elf::PF_R != 0
            && at <= eh_frame
            && eh_frame < end)
            .then_some(end)
    })?;
    // SAFETY: `eh_frame..segment_end` lies inside a loaded, readable
    // segment of the object, mapped while it stays loaded.
    let eh_frame =
        unsafe { core::slice::from_raw_parts(eh_frame as *const u8, segment_end - eh_frame) };
    Some(UnwindSections {
        eh_frame_hdr,
        eh_frame,
        text,
    })
}

/// No loader walk here: the log has no module map (frames stay raw
/// unless the reader is told where the objects are).
#[cfg(not(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
)))]
pub(crate) fn for_each_module(_f: &mut dyn FnMut(&Module<'_>)) {}

/// The descriptor of the `NT_GNU_BUILD_ID` note in `notes` (a note
/// segment: `namesz, descsz, type` as 32-bit words, then the name and the
/// descriptor, each padded to 4 bytes); `None` when absent or malformed.
// Used by the loader walk where there is one; tested everywhere.
#[cfg_attr(
    not(all(
        any(target_os = "linux", target_os = "android", target_os = "freebsd"),
        not(miri)
    )),
    allow(dead_code)
)]
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12usize.checked_add(pad(namesz as usize)?)?;
        let desc_end = name_end.checked_add(pad(descsz as usize)?)?;
        let name = notes.get(12..12 + namesz as usize)?;
        let desc = notes.get(name_end..name_end.checked_add(descsz as usize)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// Runs `f` holding the loader's lock (the one `dl_iterate_phdr` takes,
/// recursive in glibc, so `f` may walk the objects again). A thread that
/// allocates inside its own `dl_iterate_phdr` callback (the unwinder's
/// library list does) holds that lock and then wants the tracker's: the
/// tracker takes the loader's lock first wherever it needs both.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
))]
pub(crate) fn with_loader_locked<R>(f: impl FnOnce() -> R) -> R {
    unsafe extern "C" fn once(
        _info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut dyn FnMut()` passed below, alive for
        // the walk.
        let run = unsafe { &mut *data.cast::<&mut dyn FnMut()>() };
        run();
        1 // the first object is enough: the lock is what is wanted
    }
    let mut f = Some(f);
    let mut result = None;
    let mut run = || {
        if let Some(f) = f.take() {
            result = Some(f());
        }
    };
    let mut run: &mut dyn FnMut() = &mut run;
    // SAFETY: `once` matches the callback type and uses `data` only as the
    // pointer to `run`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(once), (&mut run as *mut &mut dyn FnMut()).cast()) };
    // No object at all (impossible in a running program): run unlocked.
    let mut run_anyway = f;
    result.unwrap_or_else(|| (run_anyway.take().expect("runs once"))())
}

/// No loader lock to order with here.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(miri)
)))]
pub(crate) fn with_loader_locked<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::{eh_frame_address, gnu_build_id};

    #[test]
    fn eh_frame_pointer_encodings() {
        // version 1, PC-relative sdata4 (what GNU ld writes): from the
        // field, 4 bytes into the header.
        let hdr = [1, 0x1b, 0x03, 0x3b, 0x10, 0, 0, 0];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1014));
        let back = [&[1u8, 0x1b, 0x03, 0x3b][..], &(-0x20i32).to_le_bytes()].concat();
        assert_eq!(eh_frame_address(&back, 0x1000), Some(0x1000 + 4 - 0x20));
        // data-relative udata4; absolute udata8
        assert_eq!(
            eh_frame_address(&[1, 0x33, 0, 0, 8, 0, 0, 0], 0x1000),
            Some(0x1008)
        );
        let abs = [&[1u8, 0x04, 0, 0][..], &0x7777_0000u64.to_le_bytes()].concat();
        assert_eq!(eh_frame_address(&abs, 0x1000), Some(0x7777_0000));
        // Refused: another version, an omitted pointer, an encoding not
        // handled (uleb128, text-relative), a header cut short.
        assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x01, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x2b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0x1b, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[], 0), None);
    }

    /// A note: namesz, descsz, type (native-endian words), then the name
    /// and the descriptor, each padded to 4 bytes.
    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        for w in [name.len() as u32, desc.len() as u32, kind] {
            n.extend_from_slice(&w.to_ne_bytes());
        }
        for part in [name, desc] {
            n.extend_from_slice(part);
            n.resize(n.len().next_multiple_of(4), 0);
        }
        n
    }

    #[test]
    fn build_ids_are_found_among_other_notes_and_bad_notes_are_refused() {
        let id = [0xab, 0xcd, 0xef, 0x01, 0x23];
        let mut notes = note(b"GNU\0", 1, &[9; 16]); // an ABI tag first
        notes.extend(note(b"GNU\0", 3, &id));
        assert_eq!(gnu_build_id(&notes), Some(&id[..]));
        // Another vendor's type 3 is not a build-id.
        assert_eq!(gnu_build_id(&note(b"Go\0\0", 3, &id)), None);
        // Cut short, or sizes that run past the end: no answer, no panic.
        assert_eq!(gnu_build_id(&notes[..notes.len() - 6]), None);
        let mut huge = note(b"GNU\0", 3, &id);
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(gnu_build_id(&huge), None);
        assert_eq!(gnu_build_id(&[]), None);
    }
}
