//! http-faults: a test HTTP module that misbehaves on request. `initialize` registers
//! all-MiniLM-L6-v2 as `minilm` (when its settings contain `block-initialize` it blocks in `poll`
//! for a day instead; with `block-cleanup`, `cleanup` does). `GET /ok` embeds one text and answers
//! 200, `/trap` panics, `/spin` loops forever, `/allocate` takes 256 MiB (then answers 200), `/block`
//! blocks in `poll` for a day without using CPU, and `/stream` answers 200 and then writes an
//! endless body.

use modelhost_guest::{ModelRequirement, generate_embeddings, register_model};

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "http-module",
        with: {
            "modelhost:models/types@0.1.0": modelhost_guest::bindings::modelhost::models::types,
            "modelhost:models/model-manager@0.1.0": modelhost_guest::bindings::modelhost::models::model_manager,
        },
        generate_all,
    });
}

use bindings::exports::modelhost::models::lifecycle;
use bindings::exports::wasi::http::incoming_handler;
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Faults;

/// Whether `cleanup` blocks (set by `initialize`; the module's main instance runs both).
static BLOCK_CLEANUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl lifecycle::Guest for Faults {
    fn initialize(settings: String) -> Result<(), lifecycle::Error> {
        if settings.contains("block-initialize") {
            block_for_a_day();
        }
        if settings.contains("block-cleanup") {
            BLOCK_CLEANUP.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let minilm = ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384);
        register_model("minilm", &minilm)?;
        Ok(())
    }

    fn cleanup() {
        if BLOCK_CLEANUP.load(std::sync::atomic::Ordering::Relaxed) {
            block_for_a_day();
        }
        modelhost_guest::release_all();
    }
}

impl incoming_handler::Guest for Faults {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match request.path_with_query().unwrap_or_default().as_str() {
            "/ok" => {
                let texts = vec!["still serving".to_string()];
                match generate_embeddings("minilm", &texts) {
                    Ok(e) => respond(out, 200, &format!("{}", e.dimension)),
                    Err(e) => respond(out, 500, &e.to_string()),
                }
            }
            "/trap" => panic!("asked to trap"),
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/allocate" => {
                // 256 MiB, 1 MiB at a time: far under the 4 GiB a wasm32 guest can address, so
                // only the host's memory limit stops it before it answers.
                let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 1 << 20]).collect();
                respond(out, 200, &format!("allocated {} MiB", blocks.len()));
            }
            "/block" => block_for_a_day(),
            "/stream" => {
                let response = OutgoingResponse::new(Fields::new());
                response.set_status_code(200).expect("a valid status");
                let body = response.body().expect("the body is taken once");
                ResponseOutparam::set(out, Ok(response));
                let stream = body.write().expect("the stream is taken once");
                let chunk = [b'x'; 4096];
                // Ends only when the host stops taking the bytes.
                while stream.blocking_write_and_flush(&chunk).is_ok() {}
            }
            _ => respond(out, 404, "unknown path"),
        }
    }
}

/// Waits in `poll` for a day: no CPU used, only a wall-clock deadline ends it.
fn block_for_a_day() {
    monotonic_clock::subscribe_duration(86_400 * 1_000_000_000).block();
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the stream is taken once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("a short body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("the body ends");
}

bindings::export!(Faults with_types_in bindings);
