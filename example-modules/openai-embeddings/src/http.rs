//! The `wasi:http` plumbing: read a request body, write a JSON response.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// Why a body could not be read.
pub enum BodyError {
    /// Longer than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The stream failed.
    Broken,
}

/// The whole request body.
pub fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, BodyError> {
    let body = request.consume().map_err(|()| BodyError::Broken)?;
    let stream = body.stream().map_err(|()| BodyError::Broken)?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(BodyError::Broken),
        }
        if bytes.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
    }
    drop(stream);
    Ok(bytes)
}

/// Sends `status` with the JSON `body`.
pub fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("the stream is taken once");
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            // The client went away; nothing more to send.
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}
