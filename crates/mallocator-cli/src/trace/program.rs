//! The program to trace: where it is, and whether the dynamic loader
//! will preload a library into it at all.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Where `program` is: the path as given when it contains a slash, else
/// the first executable file of that name in `PATH`, as `execvp` looks.
pub(crate) fn resolve(program: &OsStr) -> Result<PathBuf, Error> {
    let given = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return Ok(given.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(given))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| Error::Failed(format!("{}: no such program in PATH", given.display())))
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why a library preloaded into `path` would see none of its
/// allocations, or `None` when it will. A script (not ELF) is run by its
/// interpreter, which is what gets traced.
pub(crate) fn why_untraceable(path: &Path) -> Result<Option<String>, Error> {
    let failed = |e: std::io::Error| Error::Failed(format!("{}: {e}", path.display()));
    let meta = path.metadata().map_err(failed)?;
    let secure = || {
        secure_mode(path, &meta).map(|why| {
            format!(
                "{} {why}: the dynamic loader ignores LD_PRELOAD for it (secure-execution \
                 mode), so nothing would be traced",
                path.display()
            )
        })
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // Execute-only: it runs (and is traced, unless secure) though it
        // cannot be read here; a static one is then only found out by its
        // empty log.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(secure()),
        Err(e) => return Err(failed(e)),
    };
    // SAFETY: the file is only read; a program being rebuilt while this
    // runs gives a wrong answer here, not a fault (object parses checked).
    let data = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(data) => data,
        Err(_) => return Ok(secure()),
    };
    Ok(match has_interpreter(&data) {
        // A script: Linux ignores set-id bits on it, and runs its
        // interpreter, which is what gets traced.
        None => None,
        Some(false) => Some(format!(
            "{} is statically linked: it has its own malloc, which no preloaded library can \
             replace, so nothing would be traced",
            path.display()
        )),
        Some(true) => secure(),
    })
}

/// Why running `path` would put the dynamic loader in secure-execution
/// mode (`AT_SECURE`, in which it preloads nothing from `LD_PRELOAD`
/// paths with a slash), or `None`. The kernel asks for it when the
/// program runs with other credentials than its caller's real ones: a
/// setuid bit naming another user, a setgid bit (with group execute)
/// naming another group, an effective user or group of the caller's own
/// that is not its real one, or file capabilities for a caller other
/// than root. On a file system mounted `nosuid` only the caller's own
/// credentials count.
fn secure_mode(path: &Path, meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed struct for the answer.
    let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fs` is written only.
    let nosuid =
        unsafe { libc::statvfs(c_path.as_ptr(), &mut fs) } == 0 && fs.f_flag & libc::ST_NOSUID != 0;
    // The kernel compares the credentials the program would run with to
    // the caller's real ones.
    // SAFETY: no preconditions.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    let mode = meta.mode();
    // A `nosuid` mount ignores the bits (and the file capabilities).
    let setuid = !nosuid && mode & 0o4000 != 0;
    let setgid = !nosuid && mode & 0o2010 == 0o2010;
    let uid = if setuid { meta.uid() } else { euid };
    let gid = if setgid { meta.gid() } else { egid };
    if uid != ruid {
        return Some(if setuid {
            "is setuid"
        } else {
            "would run as this command's effective user, not its real one"
        });
    }
    if gid != rgid {
        return Some(if setgid {
            "is setgid"
        } else {
            "would run in this command's effective group, not its real one"
        });
    }
    // SAFETY: a valid path and attribute name; a null buffer of size 0
    // asks only for the value's size.
    let caps = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if !nosuid && caps > 0 && uid != 0 {
        return Some("has file capabilities");
    }
    None
}

/// Whether an ELF file names a program interpreter (the dynamic loader,
/// which does the preloading); `None` when `data` is not ELF.
fn has_interpreter(data: &[u8]) -> Option<bool> {
    use object::read::elf::{FileHeader, ProgramHeader};
    fn check<H: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> Option<bool> {
        let header = H::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let headers = header.program_headers(endian, data).ok()?;
        Some(
            headers
                .iter()
                .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP),
        )
    }
    match object::FileKind::parse(data).ok()? {
        object::FileKind::Elf64 => check::<object::elf::FileHeader64<object::Endianness>>(data),
        object::FileKind::Elf32 => check::<object::elf::FileHeader32<object::Endianness>>(data),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_looked_up_in_path_and_a_path_is_kept() {
        assert!(resolve(OsStr::new("sh")).unwrap().is_absolute());
        assert_eq!(resolve(OsStr::new("./x")).unwrap(), Path::new("./x"));
        assert!(resolve(OsStr::new("no-such-program-anywhere")).is_err());
    }

    #[test]
    fn a_dynamic_program_is_traceable_and_a_script_is_its_interpreter() {
        let sh = resolve(OsStr::new("sh")).unwrap();
        assert_eq!(why_untraceable(&sh).unwrap(), None);
        let data = std::fs::read(&sh).unwrap();
        assert_eq!(has_interpreter(&data), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\necho hi\n"), None);
    }

    #[test]
    fn an_elf_file_without_an_interpreter_is_static() {
        // This test binary's own headers, with PT_INTERP renamed PT_NULL.
        let exe = std::env::current_exe().unwrap();
        let mut data = std::fs::read(exe).unwrap();
        assert_eq!(has_interpreter(&data), Some(true));
        let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
        let phentsize = u16::from_le_bytes(data[54..56].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(data[56..58].try_into().unwrap()) as usize;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            if data[at..at + 4] == object::elf::PT_INTERP.0.to_le_bytes() {
                data[at..at + 4].copy_from_slice(&object::elf::PT_NULL.0.to_le_bytes());
            }
        }
        assert_eq!(has_interpreter(&data), Some(false));
    }
}
