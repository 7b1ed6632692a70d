//! `modelhost serve` against hostile clients and handlers, over real TCP on 127.0.0.1: a client
//! that stalls in its headers is disconnected, connections past the cap wait, a response body
//! nobody reads keeps its module's in-flight slot (and only that), a handler, `initialize` or
//! `cleanup` that blocks forever hits its wall-clock deadline, 500 bodies say what failed without
//! backtraces or paths, and `/status` and `/metrics` live on the admin listener only (behind a
//! token when one is configured).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use modelhost_tests::guests;
use modelhost_tests::served::{ADMIN_TOKEN_ENV, ServeOptions, Served, metric, module_entry, reply};
use serde_json::Value;

const MODELHOST: &str = env!("CARGO_BIN_EXE_modelhost-cli");

/// The http-faults module as `id` on `/id`, with extra lines for its entry.
fn faults(id: &str, extra: &str) -> String {
    format!(
        "{}{extra}\n",
        module_entry(id, Path::new(guests::HTTP_FAULTS), &format!("/{id}"), "{}")
    )
}

fn start(dir: &Path, modules: &str, options: ServeOptions) -> Served {
    let host = Served::start_with(MODELHOST, dir, &dir.join("compiled"), modules, options);
    host.wait_ready();
    host
}

/// A raw connection to `base` (`http://HOST:PORT`).
fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(base.strip_prefix("http://").unwrap()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `GET path`, asking the server to close the connection after the response when `close`.
fn send_get(stream: &mut TcpStream, path: &str, close: bool) {
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{connection}\r\n"
    )
    .unwrap();
}

/// Reads until the end of a response head (or the connection's end); `None` if nothing came
/// within the stream's read timeout.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Reads until the server closes the connection (or resets it); the bytes read.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("the connection stayed open ({e}) after {} bytes", all.len()),
        }
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `path` until it answers `status`, for up to `limit`.
fn eventually(host: &Served, path: &str, status: u16, limit: Duration) {
    let started = Instant::now();
    loop {
        let (got, body) = host.get(path);
        if got == status {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{path} still answers {got}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_stalls_in_its_headers_is_disconnected_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        serve: "header_read_timeout_seconds = 1",
        ..ServeOptions::default()
    };
    let host = start(dir.path(), "", options);
    // Half a request head, then nothing; and a connection that never sends a byte.
    let mut slow = connect(&host.base);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .unwrap();
    let mut idle = connect(&host.base);
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(host.get("/healthz").0, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    for stream in [&mut slow, &mut idle] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let answer = read_until_closed(stream);
        let answer = String::from_utf8_lossy(&answer);
        // hyper answers 408 or just closes; either way, nothing is served.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(6),
        "closed after {elapsed:?}"
    );
    assert_eq!(host.get("/healthz").0, 200);
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        serve: "max_connections = 2\nheader_read_timeout_seconds = 60",
        ..ServeOptions::default()
    };
    let host = start(dir.path(), "", options);
    // Let the connections of wait_ready close on the server's side.
    std::thread::sleep(Duration::from_millis(300));
    let first = connect(&host.base);
    let mut second = connect(&host.base);
    std::thread::sleep(Duration::from_millis(300));
    // The third connects (the kernel's backlog takes it), but is not served.
    let mut third = connect(&host.base);
    send_get(&mut third, "/healthz", true);
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    assert_eq!(read_head(&mut third), None, "served past the cap");
    // The admin listener has a cap of its own.
    assert_eq!(host.admin_get("/healthz").0, 200);
    // One idle connection closes: the waiting one is served.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = read_head(&mut third).expect("served once a connection closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(third);
    // The cap still holds one more; good requests are served.
    send_get(&mut second, "/healthz", false);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(read_head(&mut second).unwrap().starts_with("HTTP/1.1 200"));
    drop(second);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        assert_eq!(host.get("/healthz").0, 200);
    }
}

#[test]
fn an_unread_response_body_keeps_its_slot_until_the_client_goes() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(
        dir.path(),
        &faults("faults", "limits = { max_in_flight = 1 }"),
        ServeOptions::default(),
    );
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
    // A client starts an endless response and never reads it.
    let mut reader = connect(&host.base);
    send_get(&mut reader, "/faults/stream", false);
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = read_head(&mut reader).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Its instance still runs, so it still holds the module's only slot.
    for _ in 0..3 {
        let (status, body) = host.get("/faults/ok");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("max_in_flight"), "{body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The client goes away: its instance stops and the slot frees.
    drop(reader);
    eventually(&host, "/faults/ok", 200, Duration::from_secs(10));
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
}

#[test]
fn a_handler_that_blocks_forever_hits_the_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions {
        serve: "request_timeout_seconds = 3",
        ..ServeOptions::default()
    };
    let mut host = start(dir.path(), &faults("faults", ""), options);
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
    // Before the response: 504.
    let started = Instant::now();
    let (status, body) = reply(
        ureq::get(&host.url("/faults/block"))
            .timeout(Duration::from_secs(30))
            .call(),
    );
    let elapsed = started.elapsed();
    assert_eq!(status, 504, "{body}");
    let error = json(&body);
    assert_eq!(error["error"]["type"], "deadline", "{body}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("serve.request_timeout_seconds"), "{body}");
    assert!(
        elapsed >= Duration::from_millis(2900) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
    // During the body: the response is cut, not ended cleanly, and the connection closes.
    let mut client = connect(&host.base);
    send_get(&mut client, "/faults/stream", false);
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let received = read_until_closed(&mut client);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(received.len() > 4096, "{} bytes", received.len());
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "the cut body ended like a complete one"
    );
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
    let metrics = host.metrics();
    let deadlines = ["module=\"faults\"", "status=\"504\""];
    assert_eq!(
        metric(&metrics, "modelhost_http_requests_total", &deadlines),
        1.0
    );
    let log = host.stderr();
    assert!(log.contains("request deadline passed"), "{log}");
}

#[test]
fn an_initialize_that_blocks_fails_the_module_start_with_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = module_entry(
        "stuck",
        Path::new(guests::HTTP_FAULTS),
        "/stuck",
        "\"block-initialize\"",
    );
    let options = ServeOptions {
        runtime: "initialize_timeout_seconds = 1",
        ..ServeOptions::default()
    };
    // Optional: reported as failed; the others serve.
    let modules = format!("{stuck}required = false\n{}", faults("faults", ""));
    let mut host = Served::start_with(
        MODELHOST,
        dir.path(),
        &dir.path().join("compiled"),
        &modules,
        options,
    );
    let started = Instant::now();
    while host.get("/readyz").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the start did not end: {}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = host.status();
    assert_eq!(status["modules"][0]["state"], "failed", "{status}");
    let reason = status["modules"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("initialize") && reason.contains("runtime.initialize_timeout_seconds"),
        "{reason}"
    );
    // The public listener says only that it failed; the reason is for the admin API and the log.
    let (code, body) = host.get("/stuck/ok");
    assert_eq!(code, 503, "{body}");
    assert!(!body.contains("runtime.") && !body.contains('/'), "{body}");
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
    // Its references were released; the other module's remain.
    let holders: Vec<&str> = status["module_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["module_id"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["faults"]);
    drop(host);

    // Required: the host stops with the deadline error.
    let mut host = Served::start_with(
        MODELHOST,
        dir.path(),
        &dir.path().join("compiled"),
        &stuck,
        options,
    );
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = host.child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!exit.success());
    let log = host.stderr();
    assert!(
        log.contains("did not finish initialize within 1 s")
            && log.contains("runtime.initialize_timeout_seconds"),
        "{log}"
    );
}

#[test]
fn a_cleanup_that_blocks_is_stopped_at_its_deadline_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let blocking = module_entry(
        "blocking",
        Path::new(guests::HTTP_FAULTS),
        "/blocking",
        "\"block-cleanup\"",
    );
    let options = ServeOptions {
        runtime: "cleanup_timeout_seconds = 1",
        ..ServeOptions::default()
    };
    let mut host = start(dir.path(), &blocking, options);
    assert_eq!(host.get("/blocking/ok"), (200, "384".into()));
    assert_eq!(
        host.status()["module_references"].as_array().unwrap().len(),
        1
    );
    let started = Instant::now();
    let exit = host.terminate();
    let log = host.stderr();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(started.elapsed() < Duration::from_secs(20), "{log}");
    assert!(
        log.contains("did not finish cleanup within 1 s")
            && log.contains("runtime.cleanup_timeout_seconds"),
        "{log}"
    );
    // Its reference was released all the same.
    assert!(log.contains("stopped references_left=0"), "{log}");
}

#[test]
fn failure_bodies_name_the_kind_without_backtraces_or_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = start(
        dir.path(),
        &faults("faults", "limits = { cpu_seconds_per_call = 0.5 }"),
        ServeOptions::default(),
    );
    for path in ["/faults/trap", "/faults/spin"] {
        let (status, body) = host.get(path);
        assert_eq!(status, 500, "{path}: {body}");
        let error = json(&body);
        assert_eq!(error["error"]["type"], "trap", "{body}");
        assert!(body.contains("trapped"), "{body}");
        for leak in ["backtrace", "wasm", ".rs", "panicked", "/"] {
            assert!(!body.contains(leak), "{path}: {leak:?} in {body}");
        }
        assert!(!body.contains(dir.path().to_str().unwrap()), "{body}");
    }
    // The log keeps the whole error (written as the request ends: it may follow the response).
    let started = std::time::Instant::now();
    let mut log = host.stderr();
    while !log.contains("limits.cpu_seconds_per_call")
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = host.stderr();
    }
    assert!(log.contains("request failed"), "{log}");
    assert!(log.contains("backtrace"), "{log}");
    assert!(log.contains("limits.cpu_seconds_per_call"), "{log}");
    assert_eq!(host.get("/faults/ok"), (200, "384".into()));
}

#[test]
fn status_and_metrics_are_on_the_admin_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), &faults("faults", ""), ServeOptions::default());
    for path in ["/status", "/metrics"] {
        assert_eq!(host.get(path).0, 404, "{path} on the public listener");
        assert_eq!(host.admin_get(path).0, 200, "{path} on the admin listener");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(host.get(path).0, 200);
        assert_eq!(host.admin_get(path).0, 200);
    }
    assert_eq!(
        host.admin_get("/faults/ok").0,
        404,
        "no module routes on admin"
    );
    assert_eq!(host.status()["modules"][0]["id"], "faults");
    drop(host);

    // With a token: 401 without it or with a wrong one.
    let options = ServeOptions {
        admin_token: Some("s3cret-token"),
        ..ServeOptions::default()
    };
    let host = start(dir.path(), &faults("faults", ""), options);
    let url = host.admin_url("/status");
    let (status, _) = reply(ureq::get(&url).call());
    assert_eq!(status, 401);
    let (status, _) = reply(
        ureq::get(&url)
            .set("authorization", "Bearer s3cret-tokeX")
            .call(),
    );
    assert_eq!(status, 401);
    let unauthorized = ureq::get(&host.admin_url("/metrics")).call().unwrap_err();
    match unauthorized {
        ureq::Error::Status(401, response) => {
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(host.admin_get("/status").0, 200);
    assert_eq!(host.admin_get("/metrics").0, 200);
    assert_eq!(host.get("/status").0, 404);
    assert_eq!(
        host.get("/healthz").0,
        200,
        "the public health check needs no token"
    );

    // `modelhost status` sends the token the configuration names.
    let status = |token: Option<&str>| {
        let mut command = Command::new(MODELHOST);
        command
            .args(["--config", host.config.to_str().unwrap()])
            .args(["status", "--address", host.admin.as_ref().unwrap()])
            .env_remove(ADMIN_TOKEN_ENV);
        if let Some(token) = token {
            command.env(ADMIN_TOKEN_ENV, token);
        }
        command.output().unwrap()
    };
    let output = status(Some("s3cret-token"));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(table.contains("faults  /faults  ready"), "{table}");
    let output = status(Some("wrong"));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!status(None).status.success());
}
