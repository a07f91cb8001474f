//! The preload library, carried inside the `mallocator` binary (see
//! `build.rs`) and written out for each run into a directory only this
//! user can read, removed when the run ends.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use mallocator::backtracing::PRELOAD_LIBRARY;

use crate::Error;

/// `libmallocator_preload.so`, as built for this binary.
static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmallocator_preload.so"));

/// The library written out, and the private directory holding it (and
/// the log of a run without `--output`); both go when this is dropped.
pub(crate) struct Unpacked {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) library: PathBuf,
}

/// Writes the library into a fresh directory of mode 0700 (never an
/// existing one: the file is created new, no link followed).
pub(crate) fn unpack() -> Result<Unpacked, Error> {
    let dir = tempfile::Builder::new()
        .prefix("mallocator-trace-")
        .tempdir()
        .map_err(|e| {
            Error::Failed(format!(
                "cannot make a directory for the preload library: {e}"
            ))
        })?;
    let library = dir.path().join(PRELOAD_LIBRARY);
    let write = || -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&library)?
            .write_all(LIBRARY)
    };
    write().map_err(|e| Error::Failed(format!("cannot write {}: {e}", library.display())))?;
    Ok(Unpacked { dir, library })
}
