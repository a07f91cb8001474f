//! The test binary run again as a child process, by the integration tests
//! and (included by path) the library's unit tests.

/// A command that runs this test binary again: directly, or through the
/// command `MALLOCATOR_TEST_RUNNER` names (split at spaces), the emulator
/// that runs a cross-compiled test binary (`qemu-aarch64 -L
/// /usr/aarch64-linux-gnu`), whose children are binaries of that target
/// too.
pub fn this_test_binary() -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("MALLOCATOR_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    }
}
