//! A local stand-in for the Hugging Face Hub on 127.0.0.1, serving model folders through the
//! endpoints the Hub has (`/api/models/{repo}/revision/{rev}` — with `?blobs=true`, sizes, git blob
//! ids and LFS sha256s like the real Hub — and `/{repo}/resolve/{rev}/{file}` with ranges), with
//! switches for the failures a real hub produces and for a hostile hub: a listing with a bad
//! commit or unsafe file names, lying sizes, path-like `ETag`/`X-Linked-Etag`/`X-Repo-Commit`
//! headers, bodies longer than announced or stalling, and redirects elsewhere.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Files every repository lists and serves besides its folder's: (path, content). The path
    /// is used as given, such as `../../evil`.
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// The commit the listing reports instead of [`COMMIT`].
    pub listing_commit: Option<String>,
    /// Sizes the listing announces instead of the real ones.
    pub announced_sizes: HashMap<String, u64>,
    /// The listing leaves out sizes and hashes (as the Hub does without `?blobs=true`).
    pub bare_listing: bool,
    /// Headers every file response carries, replacing the emulator's own of the same name (such
    /// as an `ETag` that is an absolute path).
    pub file_headers: Vec<(String, String)>,
    /// Files served with extra bytes after their content (and a `Content-Length` that counts
    /// them).
    pub oversize: HashSet<String>,
    /// Files whose body stops after half and then stalls for [`HubConfig::stall_for`].
    pub stall: HashSet<String>,
    /// How long a stalled body stays silent.
    pub stall_for: Duration,
    /// When set, every file request is answered with a 302 to this base URL plus the same path.
    pub redirect_to: Option<String>,
}

/// A running emulator; it stops with the process.
pub struct HubEmulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    config: Arc<Mutex<HubConfig>>,
    log: Arc<Mutex<Log>>,
}

#[derive(Default)]
struct Log {
    downloads: Vec<String>,
    tokens: Vec<String>,
    requests: Vec<String>,
    ranges: Vec<(String, String)>,
}

/// The commit every emulated repository reports.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Bytes a file of [`HubConfig::oversize`] gets after its content.
pub const OVERSIZE_BYTES: usize = 4096;

impl HubEmulator {
    /// Starts serving `config` on a free port.
    pub fn start(config: HubConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let emulator = Self {
            endpoint,
            config: Arc::new(Mutex::new(config)),
            log: Arc::default(),
        };
        let (config, log) = (emulator.config.clone(), emulator.log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, log) = (config.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &config, &log);
                });
            }
        });
        emulator
    }

    /// Changes what the emulator does from now on.
    pub fn configure(&self, change: impl FnOnce(&mut HubConfig)) {
        change(&mut self.config.lock().unwrap());
    }

    /// `repo/file` of every body download started so far (range requests other than a
    /// one-byte metadata probe; redirects not counted).
    pub fn downloads(&self) -> Vec<String> {
        self.log.lock().unwrap().downloads.clone()
    }

    /// The bearer tokens requests carried.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.log.lock().unwrap().tokens.clone()
    }

    /// The path (and query) of every request received.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().requests.clone()
    }

    /// (path, `Range` header) of every request that carried one.
    pub fn ranges(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().ranges.clone()
    }
}

/// What to send back, decided under the configuration's lock and sent without it.
enum Answer {
    Plain {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Announces `length` bytes, sends `body`, then stays silent for the duration (or closes).
    Partial {
        length: usize,
        body: Vec<u8>,
        stall: Option<Duration>,
    },
}

fn plain(status: u16, body: &[u8]) -> Answer {
    Answer::Plain {
        status,
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

fn serve(stream: TcpStream, config: &Mutex<HubConfig>, log: &Mutex<Log>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
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
    let answer = {
        let config = config.lock().unwrap();
        answer(&config, &target, &headers, log)
    };
    let mut out = stream;
    match answer {
        Answer::Plain {
            status,
            headers,
            body,
        } => respond(&mut out, status, &headers, &body),
        Answer::Partial {
            length,
            body,
            stall,
        } => {
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n");
            out.write_all(head.as_bytes())?;
            out.write_all(&body)?;
            out.flush()?;
            if let Some(stall) = stall {
                std::thread::sleep(stall);
            }
            Ok(())
        }
    }
}

fn answer(
    config: &HubConfig,
    target: &str,
    headers: &HashMap<String, String>,
    log: &Mutex<Log>,
) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let bearer = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    {
        let mut log = log.lock().unwrap();
        log.requests.push(target.to_string());
        if let Some(range) = headers.get("range") {
            log.ranges.push((path.to_string(), range.clone()));
        }
        if let Some(token) = &bearer {
            log.tokens.push(token.clone());
        }
    }
    if config.token.is_some() && bearer != config.token {
        return plain(401, b"unauthorized");
    }
    let (repo, file) = match path.strip_prefix("/api/models/") {
        Some(api) => match api.split_once("/revision/") {
            Some((repo, _)) => (repo.to_string(), None),
            None => return plain(404, b"not found"),
        },
        None => match path.trim_start_matches('/').split_once("/resolve/") {
            Some((repo, rest)) => (
                repo.to_string(),
                Some(decode(rest.split_once('/').map_or("", |(_, f)| f))),
            ),
            None => return plain(404, b"not found"),
        },
    };
    if config.gated.contains(&repo) {
        return plain(403, b"gated");
    }
    let Some(dir) = config.models.get(&repo) else {
        return plain(404, b"repository not found");
    };
    let Some(file) = file else {
        let blobs = query.split('&').any(|q| q == "blobs=true") && !config.bare_listing;
        return listing(config, dir, blobs);
    };
    if let Some(base) = &config.redirect_to {
        return Answer::Plain {
            status: 302,
            headers: vec![("location".into(), format!("{base}{target}"))],
            body: Vec::new(),
        };
    }
    let content = match config.extra_files.iter().find(|(name, _)| *name == file) {
        Some((_, content)) => content.clone(),
        None => match std::fs::read(dir.join(&file)) {
            Ok(content) => content,
            Err(_) => return plain(404, b"entry not found"),
        },
    };
    let mut body = content.clone();
    if config.corrupt.contains(&file) {
        body[0] ^= 0xff;
    }
    if config.oversize.contains(&file) {
        body.extend(std::iter::repeat_n(b'x', OVERSIZE_BYTES));
    }
    let probe = headers.get("range").is_some_and(|r| r == "bytes=0-0");
    if !probe {
        log.lock().unwrap().downloads.push(format!("{repo}/{file}"));
    }
    if config.cut_short.contains(&file) || config.stall.contains(&file) {
        let stall = config.stall.contains(&file).then_some(config.stall_for);
        return Answer::Partial {
            length: body.len(),
            body: body[..body.len() / 2].to_vec(),
            stall,
        };
    }
    let start: usize = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = if probe { 1 } else { body.len() };
    let slice = body[start.min(end)..end].to_vec();
    let mut file_headers = vec![
        ("x-repo-commit".to_string(), COMMIT.to_string()),
        (
            "x-linked-etag".to_string(),
            format!("\"{}\"", hex(&sha2::Sha256::digest(&content))),
        ),
        ("etag".to_string(), format!("\"{}\"", git_blob_id(&content))),
    ];
    file_headers.retain(|(k, _)| {
        !config
            .file_headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(k))
    });
    file_headers.extend(config.file_headers.iter().cloned());
    let status = if headers.contains_key("range") {
        file_headers.push((
            "content-range".into(),
            format!("bytes {start}-{}/{}", end.max(1) - 1, body.len()),
        ));
        206
    } else {
        200
    };
    Answer::Plain {
        status,
        headers: file_headers,
        body: slice,
    }
}

/// The listing of the repository in `dir` (plus the extra files), with sizes and hashes when
/// `blobs` (weights as LFS files, the rest as git blobs, like the Hub).
fn listing(config: &HubConfig, dir: &Path, blobs: bool) -> Answer {
    let mut files: Vec<(String, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|f| {
            let content = std::fs::read(dir.join(&f)).unwrap();
            (f, content)
        })
        .collect();
    files.extend(config.extra_files.iter().cloned());
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, content)| {
            if !blobs {
                return serde_json::json!({ "rfilename": name });
            }
            let size = config
                .announced_sizes
                .get(name)
                .copied()
                .unwrap_or(content.len() as u64);
            let lfs = [".safetensors", ".gguf", ".bin"]
                .iter()
                .any(|ext| name.ends_with(ext));
            if lfs {
                let sha256 = hex(&sha2::Sha256::digest(content));
                let pointer = format!(
                    "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
                );
                serde_json::json!({
                    "rfilename": name,
                    "size": size,
                    "blobId": git_blob_id(pointer.as_bytes()),
                    "lfs": {"sha256": sha256, "size": size, "pointerSize": pointer.len()},
                })
            } else {
                serde_json::json!({"rfilename": name, "size": size, "blobId": git_blob_id(content)})
            }
        })
        .collect();
    let commit = config.listing_commit.as_deref().unwrap_or(COMMIT);
    let body = serde_json::json!({"sha": commit, "siblings": siblings}).to_string();
    Answer::Plain {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
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

/// Decodes `%XX` escapes.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The git blob id of `content`: the sha1 of `blob <len>\0` and the content.
pub fn git_blob_id(content: &[u8]) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content);
    hex(&sha1(&data))
}

/// SHA-1 (FIPS 180-4), enough for git blob ids.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`, and the empty blob.
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert_eq!(decode("a%2Fb%20c%zz%4"), "a/b c%zz%4");
    }
}
