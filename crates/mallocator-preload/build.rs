//! Compiles `src/exec_variadic.c` (`execl`, `execle`, `execlp`, which
//! Rust cannot define: see `src/exec.rs`) where the library has content:
//! Linux with glibc.
fn main() {
    println!("cargo::rerun-if-changed=src/exec_variadic.c");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Never unloaded: the tracker's exit hooks are registered for
        // the process, and must still be there at exit.
        println!("cargo::rustc-cdylib-link-arg=-Wl,-z,nodelete");
        cc::Build::new()
            .file("src/exec_variadic.c")
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .compile("exec_variadic");
    }
}
