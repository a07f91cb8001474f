//! Links the shared library so that it is never unloaded (Linux), and
//! compiles the C half of the interop tests (`tests/interop/`): an
//! allocator whose vtable is written in C, and C code that uses handles
//! made in Rust. Linked into this package's test binaries only, as an
//! object file (an archive's members would be dropped: the linker sees it
//! before the test code that needs them). Skipped for targets with no C
//! toolchain here (macOS and FreeBSD, which CI only type-checks).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(mlc_interop)");
    println!("cargo:rerun-if-changed=tests/interop/counting.c");
    println!("cargo:rerun-if-changed=include/mallocator.h");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        // Never unloaded by `dlclose`: the trackers' exit hooks are
        // registered for the process, and must still be there at exit.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    if os != "linux" && os != "windows" {
        return;
    }
    let objects = cc::Build::new()
        .file("tests/interop/counting.c")
        .include("include")
        .warnings_into_errors(true)
        .cargo_metadata(false)
        .compile_intermediates();
    for object in objects {
        println!("cargo:rustc-link-arg-tests={}", object.display());
    }
    println!("cargo:rustc-cfg=mlc_interop");
}
