//! `modelhost serve` as a child process on free 127.0.0.1 ports (the public listener and the
//! admin API), for tests that talk to it over real HTTP.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{model_store, repo_root};

/// The variable `serve.admin_token_env` names when [`ServeOptions::admin_token`] is set.
pub const ADMIN_TOKEN_ENV: &str = "MODELHOST_TEST_ADMIN_TOKEN";

/// Settings beyond the defaults of [`Served::start`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions<'a> {
    /// Lines added to `[serve]` (`admin_address = ""` disables the admin API).
    pub serve: &'a str,
    /// Lines added to `[runtime]`.
    pub runtime: &'a str,
    /// A token the admin API then requires (set in [`ADMIN_TOKEN_ENV`] for the process).
    pub admin_token: Option<&'a str>,
}

/// A `modelhost serve` process; killed if a test fails before it stops.
pub struct Served {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT` of the public listener (module routes, /healthz, /readyz).
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin API, unless it is disabled.
    pub admin: Option<String>,
    /// The configuration file.
    pub config: PathBuf,
    admin_token: Option<String>,
    stderr: Arc<Mutex<String>>,
    /// The thread copying the process's stderr; it ends at the process's end.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts `modelhost serve` (the command-line `binary`) on free ports with `modules` (TOML
    /// `[[modules]]` entries, and any other sections after them) and the compile cache in
    /// `cache`.
    pub fn start(binary: &str, dir: &Path, cache: &Path, modules: &str) -> Self {
        Self::start_with(binary, dir, cache, modules, ServeOptions::default())
    }

    /// [`Served::start`] with `options`.
    pub fn start_with(
        binary: &str,
        dir: &Path,
        cache: &Path,
        modules: &str,
        options: ServeOptions,
    ) -> Self {
        let config = dir.join("modelhost.toml");
        let admin_address = if options.serve.contains("admin_address") {
            ""
        } else {
            "admin_address = \"127.0.0.1:0\"\n"
        };
        let token_env = match options.admin_token {
            Some(_) => format!("admin_token_env = {ADMIN_TOKEN_ENV:?}\n"),
            None => String::new(),
        };
        let text = format!(
            "[models]\ndownload = false\n[serve]\naddress = \"127.0.0.1:0\"\n{admin_address}\
             {token_env}shutdown_grace_seconds = 60\n{}\n\
             [runtime]\ncompile_cache_dir = {cache:?}\n{}\n{modules}",
            options.serve, options.runtime
        );
        std::fs::write(&config, text).unwrap();
        let mut command = Command::new(binary);
        command
            .args(["--models-dir", model_store().root().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("RUST_LOG", "modelhost=info")
            .env("NO_COLOR", "1")
            .env_remove(ADMIN_TOKEN_ENV);
        if let Some(token) = options.admin_token {
            command.env(ADMIN_TOKEN_ENV, token);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("modelhost-cli");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
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
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}: {}", stderr.lock().unwrap()))
            .to_string();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let admin = line
            .trim()
            .strip_prefix("admin API on ")
            .map(str::to_string);
        Self {
            child,
            base,
            admin,
            config,
            admin_token: options.admin_token.map(str::to_string),
            stderr,
            reader: Some(reader),
        }
    }

    /// The URL of `path` on the admin API.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.as_ref().expect("the admin API is enabled");
        format!("{admin}{path}")
    }

    /// GET `path` from the admin API (with the token, when one is configured): status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let mut request = ureq::get(&self.admin_url(path));
        if let Some(token) = &self.admin_token {
            request = request.set("authorization", &format!("Bearer {token}"));
        }
        reply(request.call())
    }

    /// `/metrics` from the admin API.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
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
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// `/status` (from the admin API) as JSON.
    pub fn status(&self) -> Value {
        let (status, body) = self.admin_get("/status");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// What the process logged so far; once it has exited, all of it (the copy of its last
    /// lines may still be on its way when the exit is seen).
    pub fn stderr(&mut self) -> String {
        if matches!(self.child.try_wait(), Ok(Some(_)))
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
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
