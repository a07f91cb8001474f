//! Builds the preload library of `mallocator trace`
//! (`crates/mallocator-preload`) and puts it into the `mallocator`
//! binary, which writes it out when it traces a program: `cargo install`
//! installs binaries only, and a user must not have to find a `.so`.
//!
//! Linux with glibc only (the cfg `mlc_preload` says it is there);
//! elsewhere `mallocator trace` says it is not supported.
//!
//! The library is built by a second cargo run, in release mode with
//! frame pointers (the tracker's frame-pointer walk starts inside it),
//! without debug info or a symbol table (its frames are cut from every
//! report), into `<target dir>/preload`, which every profile of this
//! build shares. None of this build's compiler settings reach it: a
//! sanitizer or a lint run of the command must not end up inside every
//! traced program.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mlc_preload)");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let crates = manifest_dir.parent().expect("crates/").to_path_buf();
    for watched in [
        "mallocator-preload/src",
        "mallocator-preload/Cargo.toml",
        "mallocator-preload/build.rs",
        "mallocator/src",
        "mallocator/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", crates.join(watched).display());
    }
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || target_env != "gnu" {
        return;
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target dir>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let shared = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("preload");
    let target = env::var("TARGET").expect("set by cargo");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "-p",
            "mallocator-preload",
            "--target",
            &target,
        ])
        .arg("--manifest-path")
        .arg(crates.join("mallocator-preload/Cargo.toml"))
        .arg("--target-dir")
        .arg(&shared);
    for inherited in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        build.env_remove(inherited);
    }
    build
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cforce-frame-pointers=yes")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols");
    let status = build.status().expect("cargo runs");
    assert!(
        status.success(),
        "building mallocator-preload failed: {status}"
    );
    let built = shared
        .join(&target)
        .join("release/libmallocator_preload.so");
    std::fs::copy(&built, out_dir.join("libmallocator_preload.so"))
        .unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    println!("cargo:rustc-cfg=mlc_preload");
}
