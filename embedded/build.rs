//! Put the board's memory layout on the linker search path as `memory.x`
//!
//! The layouts live in `memory/` and not as `memory.x` in the crate root on purpose: the linker
//! resolves cortex-m-rt's `INCLUDE memory.x` in its working directory (the crate root) before
//! the search path, so a root `memory.x` would win for every target.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").unwrap_or_default();
    // thumbv6m runs on QEMU's micro:bit (Cortex-M0, 16 KiB RAM); everything else on the lm3s6965evb
    let layout = if target.starts_with("thumbv6m") {
        "memory/microbit.x"
    } else {
        "memory/lm3s6965evb.x"
    };
    fs::copy(layout, out.join("memory.x")).expect("copy memory layout");
    println!("cargo:rustc-env=FW_TARGET={target}");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rerun-if-changed=build.rs");
}
