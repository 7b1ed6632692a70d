//! A local stand-in for the Hugging Face Hub on 127.0.0.1, serving model folders through the
//! endpoints hf-hub uses (`/api/models/{repo}/revision/{rev}` and `/{repo}/resolve/{rev}/{file}`
//! with ranges), with switches for the failures a real hub produces.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// What the emulator serves and how it misbehaves.
#[derive(Default)]
pub struct HubConfig {
    /// Repository id → folder whose files it serves.
    pub models: HashMap<String, PathBuf>,
    /// When set, requests without `Authorization: Bearer <token>` get 401.
    pub token: Option<String>,
    /// Repositories that answer 403 (gated).
    pub gated: HashSet<String>,
    /// Files whose body stops halfway (the connection closes early).
    pub cut_short: HashSet<String>,
    /// Files served with one byte changed (their announced hash is the original's).
    pub corrupt: HashSet<String>,
}

/// A running emulator; it stops with the process.
pub struct HubEmulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    config: Arc<Mutex<HubConfig>>,
    downloads: Arc<Mutex<Vec<String>>>,
    tokens_seen: Arc<Mutex<Vec<String>>>,
}

/// The commit every emulated repository reports.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl HubEmulator {
    /// Starts serving `config` on a free port.
    pub fn start(config: HubConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let emulator = Self {
            endpoint,
            config: Arc::new(Mutex::new(config)),
            downloads: Arc::default(),
            tokens_seen: Arc::default(),
        };
        let (config, downloads, tokens) = (
            emulator.config.clone(),
            emulator.downloads.clone(),
            emulator.tokens_seen.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, downloads, tokens) =
                    (config.clone(), downloads.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &config, &downloads, &tokens);
                });
            }
        });
        emulator
    }

    /// Changes what the emulator does from now on.
    pub fn configure(&self, change: impl FnOnce(&mut HubConfig)) {
        change(&mut self.config.lock().unwrap());
    }

    /// `repo/file` of every body download started so far (range requests other than the
    /// one-byte metadata probe).
    pub fn downloads(&self) -> Vec<String> {
        self.downloads.lock().unwrap().clone()
    }

    /// The bearer tokens requests carried.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.tokens_seen.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    config: &Mutex<HubConfig>,
    downloads: &Mutex<Vec<String>>,
    tokens: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let mut out = stream;
    let bearer = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(token) = &bearer {
        tokens.lock().unwrap().push(token.clone());
    }
    let config = config.lock().unwrap();
    if config.token.is_some() && bearer != config.token {
        return respond(&mut out, 401, &[], b"unauthorized");
    }
    let (repo, rest) = match path.strip_prefix("/api/models/") {
        Some(api) => match api.split_once("/revision/") {
            Some((repo, _)) => (repo.to_string(), None),
            None => return respond(&mut out, 404, &[], b"not found"),
        },
        None => match path.trim_start_matches('/').split_once("/resolve/") {
            Some((repo, rest)) => (
                repo.to_string(),
                Some(rest.split_once('/').map_or("", |(_, f)| f).to_string()),
            ),
            None => return respond(&mut out, 404, &[], b"not found"),
        },
    };
    if config.gated.contains(&repo) {
        return respond(&mut out, 403, &[], b"gated");
    }
    let Some(dir) = config.models.get(&repo) else {
        return respond(&mut out, 404, &[], b"repository not found");
    };
    let Some(file) = rest else {
        let siblings: Vec<serde_json::Value> = files_under(dir)
            .iter()
            .map(|f| serde_json::json!({"rfilename": f}))
            .collect();
        let body = serde_json::json!({"sha": COMMIT, "siblings": siblings}).to_string();
        return respond(
            &mut out,
            200,
            &[("content-type", "application/json".into())],
            body.as_bytes(),
        );
    };
    let Ok(content) = std::fs::read(dir.join(&file)) else {
        return respond(&mut out, 404, &[], b"entry not found");
    };
    let etag = format!("\"{}\"", hex(&sha2::Sha256::digest(&content)));
    let mut body = content.clone();
    if config.corrupt.contains(&file) {
        body[0] ^= 0xff;
    }
    let start: usize = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let probe = headers.get("range").is_some_and(|r| r == "bytes=0-0");
    let end = if probe { 1 } else { body.len() };
    let slice = &body[start.min(end)..end];
    let info = [
        ("x-repo-commit", COMMIT.to_string()),
        ("x-linked-etag", etag),
        (
            "content-range",
            format!("bytes {start}-{}/{}", end.max(1) - 1, body.len()),
        ),
    ];
    if probe {
        return respond(&mut out, 206, &info, slice);
    }
    downloads.lock().unwrap().push(format!("{repo}/{file}"));
    if config.cut_short.contains(&file) {
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            slice.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(&slice[..slice.len() / 2])?;
        return out.flush();
    }
    respond(&mut out, 206, &info, slice)
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// Every file under `dir`, as paths relative to it with `/`.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    files.sort();
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
