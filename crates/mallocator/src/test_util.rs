//! Helpers shared by the unit tests of several modules.

use std::cell::RefCell;

std::thread_local! {
    /// Where this thread last panicked.
    static SEEN: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
}

/// Where `f` panicked: file and line of the panic's location.
pub(crate) fn panic_location(f: impl FnOnce()) -> (String, u32) {
    // One hook for the whole test binary, installed once and never
    // removed (tests run in parallel; swapping hooks back and forth
    // would lose another test's): it records each panic's location in
    // the panicking thread, then does what the previous hook did.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(l) = info.location() {
                let _ = SEEN.try_with(|s| *s.borrow_mut() = Some((l.file().to_owned(), l.line())));
            }
            previous(info);
        }));
    });
    SEEN.with(|s| s.borrow_mut().take());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert!(result.is_err(), "no panic");
    SEEN.with(|s| s.borrow_mut().take())
        .expect("the hook saw the panic")
}
