//! Modules see no host files, environment or network: with a secret in the host's environment
//! (`HF_TOKEN`, which the host itself reads), a real guest sees an empty environment, and reading
//! host files or connecting to a listening port is denied.
//!
//! Own binary: it sets HF_TOKEN in the process environment, which other tests' threads would race.

use modelhost_tests::{probe, real_runtime};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn modules_see_no_host_files_environment_or_network() {
    // SAFETY: the only test of this binary, set before the runtime starts any module: no other
    // thread reads the environment meanwhile.
    unsafe { std::env::set_var("HF_TOKEN", "hf_secret_token") };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (replies, _) = probe(
        &real_runtime(),
        "isolated",
        "",
        &[
            json!({"op": "env"}),
            json!({"op": "read_file", "path": "/etc/passwd"}),
            json!({"op": "read_file", "path": "Cargo.toml"}),
            json!({"op": "connect", "address": address}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(replies[0]["ok"], json!({}), "{replies:?}");
    for reply in &replies[1..] {
        assert!(reply["ok"]["denied"].is_string(), "{reply}");
    }
}
