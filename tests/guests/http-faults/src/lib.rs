//! http-faults: a test HTTP module that misbehaves on request. `initialize` registers
//! all-MiniLM-L6-v2 as `minilm`; `GET /ok` embeds one text and answers 200, `/trap` panics,
//! `/spin` loops forever, `/allocate` grows memory until it fails.

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
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Faults;

impl lifecycle::Guest for Faults {
    fn initialize(_settings: String) -> Result<(), lifecycle::Error> {
        let minilm = ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384);
        register_model("minilm", &minilm)?;
        Ok(())
    }

    fn cleanup() {
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
                // Only the host's memory limit stops it.
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(vec![blocks.len() as u8; 1 << 20]);
                }
            }
            _ => respond(out, 404, "unknown path"),
        }
    }
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
