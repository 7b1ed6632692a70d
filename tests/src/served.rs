//! `modelhost serve` as a child process on a free 127.0.0.1 port, for tests that talk to it
//! over real HTTP.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{model_store, repo_root};

/// A `modelhost serve` process; killed if a test fails before it stops.
pub struct Served {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `modelhost serve` (the command-line `binary`) on a free port with `modules` (TOML
    /// `[[modules]]` entries, and any other sections after them) and the compile cache in
    /// `cache`.
    pub fn start(binary: &str, dir: &Path, cache: &Path, modules: &str) -> Self {
        let config = dir.join("modelhost.toml");
        let text = format!(
            "[models]\ndownload = false\n[serve]\naddress = \"127.0.0.1:0\"\n\
             shutdown_grace_seconds = 60\n[runtime]\ncompile_cache_dir = {cache:?}\n{modules}"
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(binary)
            .args(["--models-dir", model_store().root().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("RUST_LOG", "modelhost=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("modelhost-cli");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}: {}", stderr.lock().unwrap()))
            .to_string();
        Self {
            child,
            base,
            stderr,
        }
    }

    /// The URL of `path` on the host.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        reply(ureq::get(&self.url(path)).call())
    }

    /// POST `body` as JSON to `path`: status and JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = reply(
            ureq::post(&self.url(path))
                .set("content-type", "application/json")
                .send_string(&body.to_string()),
        );
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        (status, value)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) -> Duration {
        let started = Instant::now();
        while self.get("/readyz").0 != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "not ready: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// `/status` as JSON.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.get("/status").1).unwrap()
    }

    /// What the process logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The status and body of a ureq call, whatever the status.
pub fn reply(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(response) => (response.status(), response.into_string().unwrap()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_string().unwrap()),
        Err(error) => panic!("request failed: {error}"),
    }
}

/// A built component of `scripts/build-modules`.
pub fn built_module(file: &str) -> PathBuf {
    let path = repo_root().join("target/modules").join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-modules (scripts/test does)",
        path.display()
    );
    path
}

/// A `[[modules]]` entry.
pub fn module_entry(id: &str, path: &Path, route: &str, settings: &str) -> String {
    format!("[[modules]]\nid = {id:?}\npath = {path:?}\nroute = {route:?}\nsettings = {settings}\n")
}

/// The value of the first sample of `name` whose labels include every one of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
