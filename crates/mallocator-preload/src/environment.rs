//! The process's environment, read and edited through the C library's
//! `environ` array itself, never through `getenv`, `setenv` or
//! `unsetenv`.
//!
//! Why: a program may define those functions, and the program's own
//! definitions come before the C library's for every caller, this
//! library included. bash does: its `unsetenv` removes a shell variable
//! from its own table, which does not exist before its `main` runs, so
//! an `unsetenv` made while the library starts changed nothing. bash then
//! imported `LD_PRELOAD` and the log's variables and passed them to
//! every program it ran, each of which truncated the traced shell's log
//! and wrote its own over it.
//!
//! Everything here runs while the process starts (the library's
//! initializer), before the program's `main` and its threads: nothing
//! else reads or writes the environment meanwhile.

use core::ffi::c_char;

/// The value of the variable `name` in the process's environment: a
/// pointer into the entry's own string (`NAME=value`), NUL-terminated
/// and writable in place up to its current length.
pub(crate) fn value(name: &[u8]) -> Option<*mut c_char> {
    // SAFETY: `environ` is null or the C library's NULL-terminated array
    // of NUL-terminated `NAME=value` strings, which nothing else changes
    // while the process starts (module docs).
    unsafe { value_in(libc::environ, name) }
}

/// Removes every entry of the variable `name` from the process's
/// environment, as the C library's `unsetenv` does: the later entries
/// move down, in the same array.
pub(crate) fn remove(name: &[u8]) {
    // SAFETY: as in `value`; the array is the C library's own, writable.
    unsafe { remove_in(libc::environ, name) }
}

/// Whether `entry` (a NUL-terminated `NAME=value` string) is one of the
/// variable `name`.
///
/// # Safety
/// `entry` points to a NUL-terminated string.
unsafe fn is_of(entry: *const c_char, name: &[u8]) -> bool {
    let entry = entry.cast::<u8>();
    // SAFETY: the caller's promise; `name.len() + 1` bytes are read only
    // while none of them was the terminating NUL (`&&` stops first).
    unsafe {
        name.iter().enumerate().all(|(i, &b)| *entry.add(i) == b) && *entry.add(name.len()) == b'='
    }
}

/// [`value`] in the array `env`.
///
/// # Safety
/// `env` is null or a NULL-terminated array of pointers to
/// NUL-terminated strings.
unsafe fn value_in(env: *mut *mut c_char, name: &[u8]) -> Option<*mut c_char> {
    if env.is_null() {
        return None;
    }
    let mut at = env;
    // Invariant: `at` points into the array, at or before its NULL.
    loop {
        // SAFETY: by the invariant.
        let entry = unsafe { *at };
        if entry.is_null() {
            return None;
        }
        // SAFETY: `entry` is one of the array's strings, `name.len() + 1`
        // bytes of which `is_of` found to be `NAME=`.
        if unsafe { is_of(entry, name) } {
            return Some(unsafe { entry.add(name.len() + 1) });
        }
        // SAFETY: `entry` was not the NULL, so the array goes on.
        at = unsafe { at.add(1) };
    }
}

/// [`remove`] in the array `env`.
///
/// # Safety
/// As for [`value_in`], and the array is writable.
unsafe fn remove_in(env: *mut *mut c_char, name: &[u8]) {
    if env.is_null() {
        return;
    }
    // Invariant: `kept <= read`, both in the array, at or before its
    // NULL; the entries before `kept` are the ones kept so far.
    let (mut read, mut kept) = (env, env);
    loop {
        // SAFETY: by the invariant.
        let entry = unsafe { *read };
        if entry.is_null() {
            // SAFETY: `kept` is at or before the NULL, in the array.
            unsafe { *kept = entry };
            return;
        }
        // SAFETY: `entry` is one of the array's strings.
        if !unsafe { is_of(entry, name) } {
            // SAFETY: `kept <= read`, both in the array.
            unsafe {
                *kept = entry;
                kept = kept.add(1);
            }
        }
        // SAFETY: `entry` was not the NULL, so the array goes on.
        read = unsafe { read.add(1) };
    }
}

/// Takes `ours` out of the `LD_PRELOAD` list in `list` (entries
/// separated by colons or spaces, as the dynamic loader splits them), in
/// place: the other entries, joined by colons, move to the front, and
/// their length is returned. Nothing is allocated.
pub(crate) fn remove_library(list: &mut [u8], ours: &[u8]) -> usize {
    let mut written = 0;
    let mut start = 0;
    // Invariant: `written <= start`: each entry kept takes at most its
    // own length plus the separator read after it, so an entry is never
    // overwritten before it is read.
    while start <= list.len() {
        let end = list[start..]
            .iter()
            .position(|&b| b == b':' || b == b' ')
            .map_or(list.len(), |i| start + i);
        if end > start && list[start..end] != *ours {
            if written > 0 {
                list[written] = b':';
                written += 1;
            }
            list.copy_within(start..end, written);
            written += end - start;
        }
        start = end + 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CStr, CString};

    /// A NULL-terminated array of `entries`, as `environ` is, and the
    /// strings it points to.
    fn environment(entries: &[&str]) -> (Vec<*mut c_char>, Vec<CString>) {
        let strings: Vec<CString> = entries.iter().map(|e| CString::new(*e).unwrap()).collect();
        let mut array: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        array.push(core::ptr::null_mut());
        (array, strings)
    }

    /// The strings of a NULL-terminated array.
    fn entries(array: &[*mut c_char]) -> Vec<String> {
        array
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: the array's strings, alive in the test.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_variable_is_found_by_its_whole_name() {
        let (mut env, _strings) =
            environment(&["MALLOCATOR_LOG_FORMAT=v2", "MALLOCATOR_LOG=/tmp/a", "X="]);
        let find = |env: &mut Vec<*mut c_char>, name: &[u8]| {
            // SAFETY: a NULL-terminated array of the test's strings.
            unsafe { value_in(env.as_mut_ptr(), name) }
                // SAFETY: a pointer into one of those strings.
                .map(|v| unsafe { CStr::from_ptr(v) }.to_str().unwrap().to_owned())
        };
        assert_eq!(find(&mut env, b"MALLOCATOR_LOG").as_deref(), Some("/tmp/a"));
        assert_eq!(find(&mut env, b"X").as_deref(), Some(""));
        assert_eq!(find(&mut env, b"MALLOCATOR"), None);
        assert_eq!(find(&mut env, b"Y"), None);
        // SAFETY: null is allowed.
        assert_eq!(unsafe { value_in(core::ptr::null_mut(), b"X") }, None);
    }

    #[test]
    fn removal_keeps_the_other_entries_in_order() {
        let (mut env, _strings) = environment(&[
            "A=1",
            "MALLOCATOR_LOG=/tmp/a",
            "MALLOCATOR_LOG_FORMAT=v2",
            "MALLOCATOR_LOG=again",
            "B=2",
        ]);
        // SAFETY: a NULL-terminated, writable array of the test's strings.
        unsafe { remove_in(env.as_mut_ptr(), b"MALLOCATOR_LOG") };
        assert_eq!(entries(&env), ["A=1", "MALLOCATOR_LOG_FORMAT=v2", "B=2"]);
        // SAFETY: as above.
        unsafe { remove_in(env.as_mut_ptr(), b"A") };
        unsafe { remove_in(env.as_mut_ptr(), b"B") };
        unsafe { remove_in(env.as_mut_ptr(), b"MALLOCATOR_LOG_FORMAT") };
        assert_eq!(entries(&env), Vec::<String>::new());
        // SAFETY: null is allowed.
        unsafe { remove_in(core::ptr::null_mut(), b"A") };
    }

    #[test]
    fn only_this_library_leaves_the_preload_list() {
        let ours = b"/opt/lib/libmallocator_preload.so";
        let cut = |list: &[u8]| {
            let mut list = list.to_vec();
            let n = remove_library(&mut list, ours);
            list.truncate(n);
            String::from_utf8(list).unwrap()
        };
        assert_eq!(
            cut(b"/a.so:/opt/lib/libmallocator_preload.so /b.so"),
            "/a.so:/b.so"
        );
        assert_eq!(cut(ours), "");
        assert_eq!(cut(b"::/a.so"), "/a.so");
        assert_eq!(
            cut(b"/opt/lib/libmallocator_preload.so:/a.so  /b.so:"),
            "/a.so:/b.so"
        );
        assert_eq!(
            cut(b"/a.so /opt/lib/libmallocator_preload.so.1"),
            "/a.so:/opt/lib/libmallocator_preload.so.1"
        );
        assert_eq!(cut(b""), "");
    }
}
