//! The `wasi:http` plumbing: read a request body, send a JSON response or a stream of
//! server-sent events.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};

/// Most bytes one `blocking-write-and-flush` may carry.
const WRITE_CHUNK: usize = 4096;

/// Why a body could not be read.
pub enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The stream failed.
    Broken,
}

/// The whole request body, at most `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, BodyError> {
    let body = request.consume().map_err(|()| BodyError::Broken)?;
    let stream = body.stream().map_err(|()| BodyError::Broken)?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError::Broken),
        }
        if bytes.len() > limit {
            return Err(BodyError::TooLarge);
        }
    }
    drop(stream);
    Ok(bytes)
}

/// Sends `status` with the JSON `body`.
pub fn respond_json(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = [
        ("content-type", b"application/json".to_vec()),
        ("content-length", body.len().to_string().into_bytes()),
    ];
    let Some((outgoing, stream)) = start(out, status, &headers) else {
        return;
    };
    if write_all(&stream, body) {
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

/// Sends `events` as server-sent events (`data: EVENT` each, flushed as it comes), then
/// `data: [DONE]`. A client that goes away ends the iteration, which drops what the iterator
/// holds (a generation stops with its stream).
pub fn respond_events(out: ResponseOutparam, events: impl Iterator<Item = String>) {
    let headers = [
        ("content-type", b"text/event-stream".to_vec()),
        ("cache-control", b"no-cache".to_vec()),
    ];
    let Some((outgoing, stream)) = start(out, 200, &headers) else {
        return;
    };
    for event in events.chain(std::iter::once("[DONE]".to_string())) {
        if !write_all(&stream, format!("data: {event}\n\n").as_bytes()) {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Sends the status line and headers; the body and its stream come back to write into.
fn start(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, Vec<u8>)],
) -> Option<(OutgoingBody, OutputStream)> {
    let headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    let headers = Fields::from_list(&headers).expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().ok()?;
    Some((outgoing, stream))
}

/// Writes and flushes `bytes`; false when the client went away.
fn write_all(stream: &OutputStream, bytes: &[u8]) -> bool {
    bytes
        .chunks(WRITE_CHUNK)
        .all(|chunk| stream.blocking_write_and_flush(chunk).is_ok())
}
