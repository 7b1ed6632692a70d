//! HTTP GETs to the hub over `ureq`, made safe by hand: https only (plain http only to a loopback
//! address: `127.0.0.0/8`, `::1`, `localhost`), connect and read timeouts, redirects followed one
//! at a time (at most [`MAX_REDIRECTS`], each target https-or-loopback too), the token sent only
//! to the endpoint's own origin (scheme, host and port; the Hub sends LFS files from a CDN), and a
//! body streamed to disk, hashed while written and refused as soon as it goes beyond the size the
//! listing announced. An interrupted body is resumed with `Range`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::HubSettings;
use super::verify::{self, Expected};

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Largest repository listing read, in bytes.
pub const MAX_LISTING_BYTES: u64 = 64 << 20;

/// Why a request failed.
#[derive(Debug)]
pub enum TransferError {
    /// The server answered with this HTTP error status.
    Status(u16),
    /// The server could not be reached, or the transfer broke off.
    Network(String),
    /// The server sent nothing for longer than the read timeout.
    TimedOut(String),
    /// The answer is unsafe or inconsistent (a refused redirect, a body larger than announced).
    Unsafe(String),
    /// Writing to the store failed.
    Disk(std::io::Error),
}

/// Why this client does not request a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It is not an absolute http(s) URL this client can request: `problem` says why.
    #[error("'{}' {problem}", url.escape_debug())]
    Malformed {
        /// The URL as given.
        url: String,
        /// What is wrong, e.g. `holds credentials`.
        problem: &'static str,
    },
    /// It uses plain http to a host that is not this machine.
    #[error(
        "{url} uses plain http to a host that is not this machine; only https is allowed \
         (http only to 127.0.0.1, ::1 or localhost)"
    )]
    PlainHttp {
        /// The URL.
        url: Url,
    },
    /// The endpoint holds a query (it is a prefix that paths are appended to).
    #[error("the endpoint {url} holds a query")]
    EndpointQuery {
        /// The endpoint.
        url: Url,
    },
}

/// A URL this client can request: `http` or `https`, host, port, path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL without credentials or fragment.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let refuse = |problem| {
            Err(UrlError::Malformed {
                url: url.to_string(),
                problem,
            })
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return refuse("holds spaces or control characters");
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return refuse("is not an absolute http(s) URL");
        };
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return refuse("is neither http nor https"),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.contains('@') {
            return refuse("holds credentials");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((ip, port)) if ip.parse::<Ipv6Addr>().is_ok() => {
                    (format!("[{ip}]"), port.strip_prefix(':'))
                }
                _ => return refuse("has a malformed IPv6 host"),
            },
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            },
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        if !host_ok {
            return refuse("has a malformed host");
        }
        let port = match port {
            None => default_port,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return refuse("has a malformed port"),
            },
        };
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Scheme, host and port: where the token may go.
    pub fn origin(&self) -> (&str, &str, u16) {
        (&self.scheme, &self.host, self.port)
    }

    /// Whether the host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Refuses a URL this client does not talk to: anything but https, except plain http to a
    /// loopback address.
    pub fn check_allowed(&self) -> Result<(), UrlError> {
        if self.scheme == "https" || self.is_loopback() {
            Ok(())
        } else {
            Err(UrlError::PlainHttp { url: self.clone() })
        }
    }

    /// The URL a redirect's `Location` names, relative to this one.
    pub fn join(&self, location: &str) -> Result<Self, UrlError> {
        let scheme_end = location.find("://");
        let first_special = location.find(['/', '?', '#']);
        if let Some(at) = scheme_end
            && first_special.is_none_or(|s| at < s)
        {
            return Self::parse(location);
        }
        let authority = self.authority();
        if location.starts_with("//") {
            return Self::parse(&format!("{}:{location}", self.scheme));
        }
        if location.starts_with('/') {
            return Self::parse(&format!("{}://{authority}{location}", self.scheme));
        }
        let path = self.path.split('?').next().unwrap_or("/");
        let folder = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        Self::parse(&format!("{}://{authority}{folder}{location}", self.scheme))
    }

    fn authority(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

/// Percent-encodes a path part (everything but `A-Za-z0-9-._~`).
pub fn encode_part(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP client for one hub endpoint.
pub struct Client {
    agent: ureq::Agent,
    endpoint: Url,
    token: Option<String>,
}

impl Client {
    /// A client for `settings.endpoint`; refused (without connecting) when the endpoint is not
    /// https or loopback http.
    pub fn new(settings: &HubSettings) -> Result<Self, UrlError> {
        let endpoint = Url::parse(&settings.endpoint)?;
        endpoint.check_allowed()?;
        if endpoint.path.contains('?') {
            return Err(UrlError::EndpointQuery { url: endpoint });
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(settings.connect_timeout)
            .timeout_read(settings.read_timeout)
            .timeout_write(settings.read_timeout)
            .redirects(0)
            .user_agent(concat!("modelhost/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent,
            endpoint,
            token: settings.token.clone(),
        })
    }

    /// `{endpoint}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint.to_string().trim_end_matches('/'))
    }

    /// GETs `url` (from `offset` on, when given), following redirects by hand.
    fn get(&self, url: &str, offset: Option<u64>) -> Result<ureq::Response, TransferError> {
        let refused = |e: UrlError| TransferError::Unsafe(e.to_string());
        let mut target = Url::parse(url).map_err(refused)?;
        for hop in 0..=MAX_REDIRECTS {
            target.check_allowed().map_err(refused)?;
            // A hub may not send us to this machine: loopback is for loopback mirrors only.
            if target.is_loopback() && !self.endpoint.is_loopback() {
                return Err(TransferError::Unsafe(format!(
                    "a redirect from {} to this machine ({target})",
                    self.endpoint
                )));
            }
            let mut request = self.agent.get(&target.to_string());
            if target.origin() == self.endpoint.origin()
                && let Some(token) = &self.token
            {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            if let Some(offset) = offset {
                request = request.set("Range", &format!("bytes={offset}-"));
            }
            let response = match request.call() {
                Ok(response) => response,
                Err(ureq::Error::Status(code, _)) => return Err(TransferError::Status(code)),
                Err(ureq::Error::Transport(transport)) => return Err(transport_error(&transport)),
            };
            if !(300..400).contains(&response.status()) {
                return Ok(response);
            }
            if hop == MAX_REDIRECTS {
                return Err(TransferError::Unsafe(format!(
                    "more than {MAX_REDIRECTS} redirects from {url}"
                )));
            }
            let location = response.header("location").ok_or_else(|| {
                TransferError::Unsafe(format!(
                    "{target} answered {} without a Location",
                    response.status()
                ))
            })?;
            target = target
                .join(location)
                .map_err(|e| TransferError::Unsafe(format!("a redirect to {e}")))?;
        }
        Err(TransferError::Unsafe(format!(
            "more than {MAX_REDIRECTS} redirects from {url}"
        )))
    }

    /// GETs `url` and reads the whole body, at most `limit` bytes.
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, TransferError> {
        let response = self.get(url, None)?;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(read_error)?;
        if body.len() as u64 > limit {
            return Err(TransferError::Unsafe(format!(
                "{url} answered more than {limit} bytes"
            )));
        }
        Ok(body)
    }

    /// Downloads `url` into `partial` (resuming what is there), hashing it the way `expected`
    /// is and calling `advanced` with each chunk's length; refuses a body beyond `size` bytes as
    /// soon as it arrives. Returns the hash of the whole file (the caller compares it). On
    /// `Network` and `TimedOut` errors `partial` is kept for a later resume; on the others the
    /// caller deletes it.
    pub fn download(
        &self,
        url: &str,
        partial: &Path,
        size: u64,
        expected: &Expected,
        advanced: &mut dyn FnMut(u64),
    ) -> Result<String, TransferError> {
        let mut offset = match std::fs::symlink_metadata(partial) {
            Ok(meta) if meta.is_file() && meta.len() < size => meta.len(),
            Ok(_) => {
                std::fs::remove_file(partial).map_err(TransferError::Disk)?;
                0
            }
            Err(_) => 0,
        };
        let response = match self.get(url, (offset > 0).then_some(offset)) {
            Err(TransferError::Status(416)) if offset > 0 => {
                std::fs::remove_file(partial).map_err(TransferError::Disk)?;
                offset = 0;
                self.get(url, None)?
            }
            other => other?,
        };
        let mut hasher = expected.hasher(size);
        let mut file = match response.status() {
            206 if offset > 0 => {
                check_content_range(&response, offset, size)?;
                verify::feed_file(partial, offset, &mut hasher).map_err(TransferError::Disk)?;
                advanced(offset);
                OpenOptions::new()
                    .append(true)
                    .open(partial)
                    .map_err(TransferError::Disk)?
            }
            200 => {
                offset = 0;
                File::create(partial).map_err(TransferError::Disk)?
            }
            status => {
                return Err(TransferError::Unsafe(format!(
                    "{url} answered HTTP {status} to a plain download"
                )));
            }
        };
        let announced = response
            .header("content-length")
            .and_then(|n| n.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| offset.saturating_add(n) > size) {
            return Err(TransferError::Unsafe(format!(
                "the body is longer than the {size} bytes the listing announced"
            )));
        }
        let mut reader = response.into_reader().take(size - offset + 1);
        let mut written = offset;
        let mut buffer = vec![0u8; 256 << 10];
        loop {
            let n = reader.read(&mut buffer).map_err(read_error)?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > size {
                return Err(TransferError::Unsafe(format!(
                    "the body is longer than the {size} bytes the listing announced"
                )));
            }
            file.write_all(&buffer[..n]).map_err(TransferError::Disk)?;
            hasher.update(&buffer[..n]);
            advanced(n as u64);
        }
        if written < size {
            return Err(TransferError::Network(format!(
                "the transfer broke off after {written} of {size} bytes"
            )));
        }
        file.sync_all().map_err(TransferError::Disk)?;
        Ok(hasher.finish())
    }
}

/// Checks that a `206` answers the range asked for: `Content-Range: bytes {offset}-.../{size}`.
fn check_content_range(
    response: &ureq::Response,
    offset: u64,
    size: u64,
) -> Result<(), TransferError> {
    let range = response.header("content-range").unwrap_or_default();
    let parsed = range
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('-'))
        .and_then(|(start, rest)| Some((start.parse::<u64>().ok()?, rest.split_once('/')?.1)));
    match parsed {
        Some((start, total)) if start == offset && (total == "*" || total == size.to_string()) => {
            Ok(())
        }
        _ => Err(TransferError::Unsafe(format!(
            "the hub answered the range 'bytes={offset}-' with '{}'",
            range.escape_debug()
        ))),
    }
}

/// The error for a failed read of a body.
fn read_error(error: std::io::Error) -> TransferError {
    match error.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            TransferError::TimedOut("the hub sent nothing for longer than the read timeout".into())
        }
        _ => TransferError::Network(format!("the transfer broke off: {error}")),
    }
}

/// The error for a failed request.
fn transport_error(transport: &ureq::Transport) -> TransferError {
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(transport);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        {
            return TransferError::TimedOut(format!("no answer within the timeout ({transport})"));
        }
        source = error.source();
    }
    TransferError::Network(transport.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_allowed() {
        for ok in [
            "https://huggingface.co",
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:1/x",
            "http://[::1]:99",
            "HTTPS://Example.com",
        ] {
            let url = Url::parse(ok).unwrap();
            assert_eq!(url.check_allowed(), Ok(()), "{ok}");
        }
        for refused in [
            "http://example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://128.0.0.1",
        ] {
            assert!(
                Url::parse(refused).unwrap().check_allowed().is_err(),
                "{refused}"
            );
        }
        for malformed in [
            "ftp://x",
            "huggingface.co",
            "https://user:pw@host/",
            "https://ho st/",
            "https://host:0/",
            "https://host:99999/",
            "https://[zz]/",
            "file:///etc/passwd",
        ] {
            assert!(Url::parse(malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Url::parse("https://hub.example/x").unwrap();
        assert_eq!(
            a.origin(),
            Url::parse("https://HUB.example:443/y").unwrap().origin()
        );
        assert_ne!(
            a.origin(),
            Url::parse("http://hub.example/x").unwrap().origin()
        );
        assert_ne!(
            a.origin(),
            Url::parse("https://hub.example:8443/x").unwrap().origin()
        );
        assert_ne!(
            a.origin(),
            Url::parse("https://cdn.example/x").unwrap().origin()
        );
    }

    #[test]
    fn redirect_locations_resolve_like_a_browser() {
        let base = Url::parse("https://hub.example:8443/org/m/resolve/c/a/b.json?x=1").unwrap();
        let joined = |l: &str| base.join(l).unwrap().to_string();
        assert_eq!(joined("https://cdn.example/f"), "https://cdn.example/f");
        assert_eq!(joined("//cdn.example/f"), "https://cdn.example/f");
        assert_eq!(
            joined("/api/resolve-cache/x"),
            "https://hub.example:8443/api/resolve-cache/x"
        );
        assert_eq!(
            joined("c.json"),
            "https://hub.example:8443/org/m/resolve/c/a/c.json"
        );
        assert_eq!(joined("/p?a=b://c"), "https://hub.example:8443/p?a=b://c");
        assert!(
            base.join("http://evil.example/")
                .unwrap()
                .check_allowed()
                .is_err()
        );
    }

    #[test]
    fn path_parts_are_percent_encoded() {
        assert_eq!(encode_part("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_part("a b+c.gguf"), "a%20b%2Bc.gguf");
    }
}
