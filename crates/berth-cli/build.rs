//! Link-time code layout for release builds of the `berth` binary.
//!
//! `symbol-order.txt` (written by `scripts/symbol-order.sh`) lists the functions
//! `berth serve` runs; lld places them side by side, so the server's resident code is
//! about their size rather than most of the 14 MB text segment (the kernel maps code
//! in 64 KiB windows around each page touched). Only release builds for
//! x86_64-unknown-linux-gnu use it: that target links with rust-lld by default since
//! Rust 1.90 (the toolchain is pinned), and GNU ld has no such option.
//! `BERTH_NO_SYMBOL_ORDER=1` turns it off, e.g. when linking with another linker.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=BERTH_NO_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let disabled = std::env::var_os("BERTH_NO_SYMBOL_ORDER").is_some_and(|v| v != "0");
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = PathBuf::from(dir).join("symbol-order.txt");
    if release && lld_target && !disabled && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions inlined away or renamed since the file was made.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
