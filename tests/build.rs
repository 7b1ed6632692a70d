//! Compiles the guest modules the tests run (real crates, built for `wasm32-wasip2`) and exposes
//! their paths as constants in `$OUT_DIR/guests.rs`.
//!
//! Guests are built by a nested cargo into `target/guests`, a target folder of their own, so the
//! nested build never waits on the lock the outer build holds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package name) of every guest the tests use.
const GUESTS: &[(&str, &str)] = &[
    ("DOCUMENT_PROCESSOR", "document-processor"),
    ("SENTIMENT", "sentiment"),
    ("CHAT", "chat"),
    ("SUMMARIZER", "summarizer"),
    ("OPENAI", "openai"),
    ("PROBE", "probe"),
    ("LOAD_GENERATOR", "load-generator"),
    ("HTTP_FAULTS", "http-faults"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("guests");
    for watched in [
        "wit",
        "guest-sdk",
        "example-modules",
        "tests/guests",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (_, package) in GUESTS {
        command.args(["-p", package]);
    }
    // Flags meant for the native build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build the guest modules");
    assert!(
        status.success(),
        "building the guest modules failed; is the wasm32-wasip2 target installed \
         (`rustup target add wasm32-wasip2`)?"
    );

    let mut constants = String::new();
    for (constant, package) in GUESTS {
        let path = wasm_path(&target_dir, package);
        assert!(
            path.is_file(),
            "guest {package} was not built at {}",
            path.display()
        );
        constants.push_str(&format!(
            "/// The compiled `{package}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(out, constants).unwrap();
}

/// Where cargo puts a package's component: named after the package for a binary, with
/// underscores for a library (`cdylib`).
fn wasm_path(target_dir: &Path, package: &str) -> PathBuf {
    let release = target_dir.join("wasm32-wasip2").join("release");
    let binary = release.join(format!("{package}.wasm"));
    if binary.is_file() {
        binary
    } else {
        release.join(format!("{}.wasm", package.replace('-', "_")))
    }
}
