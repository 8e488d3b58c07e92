//! Put the lm3s6965evb memory layout (shared with the QEMU firmware) on the search path
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("../memory/lm3s6965evb.x", out.join("memory.x")).expect("copy memory layout");
    println!("cargo:rustc-link-search={}", out.display());
    // defmt.x places the interned log strings; defmt-rtt is the global logger
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    println!("cargo:rerun-if-changed=../memory/lm3s6965evb.x");
    println!("cargo:rerun-if-changed=build.rs");
}
