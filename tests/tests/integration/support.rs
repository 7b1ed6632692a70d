//! What several test areas share: `modelhost` as a user runs it from the command line.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use modelhost_tests::model_store;

/// `modelhost ARGS` over the test model store, `stdin` as its input. Offline: a model missing
/// from the store is `model-not-found`, not a download attempt.
pub fn modelhost(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
        .args(["--models-dir", model_store().root().to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("modelhost-cli");
    // A module that fails at `initialize` may be gone before it reads its input.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The stdout of `modelhost run --settings SETTINGS MODULE` on `stdin`, which must succeed.
pub fn run_ok(module: &str, settings: &str, stdin: &str) -> String {
    let output = modelhost(&["run", "--settings", settings, module], stdin);
    assert!(
        output.status.success(),
        "{module}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
