//! probe: a test module that drives the `model-manager` interface from a script.
//!
//! `initialize` settings: `{"register": {"ID": REQUIREMENT, ...}, "trap": false, "keep_on_cleanup": false}`.
//! `run` reads one JSON command per stdin line and writes one JSON line per command:
//! `{"ok": ...}` or `{"error": {"code": "...", "message": "..."}}`. Commands:
//! `{"op": "register", "id": ID, "requirement": REQUIREMENT}`, `{"op": "release", "id": ID}`,
//! `{"op": "embed", "id": ID, "texts": [...]}`, `{"op": "embed_one", "id": ID, "text": TEXT}`,
//! `{"op": "classify", "id": ID, "texts": [...]}`,
//! `{"op": "generate", "id": ID, "prompt": TEXT, "options": OPTIONS}`, the same with
//! `"op": "stream"` (the pieces are returned too) or `"op": "stream_first"` (one piece, then the
//! stream is dropped), `{"op": "chat", "id": ID, "messages": [...],
//! "options": OPTIONS}`, `{"op": "status"}`, `{"op": "trap"}`.
//!
//! Faults and sandbox checks: `{"op": "spin"}` (loops forever), `{"op": "allocate", "mb": N}`
//! (grows memory by N MiB, 1 MiB at a time), `{"op": "register_many", "count": N,
//! "requirement": REQUIREMENT}` (ids `m0`..), `{"op": "embed_many_ids", "count": N,
//! "id_bytes": B, "first": F}` (embeds under N unregistered ids of B bytes, numbered from F;
//! counts the codes),
//! `{"op": "embed_long_texts", "id": ID, "count": N, "text_bytes": B, "first": F}` (N calls of
//! one distinct B-byte text each, numbered from F), `{"op": "env"}` (the variables it sees),
//! `{"op": "read_file", "path": PATH}`, `{"op": "connect", "address": "HOST:PORT"}`,
//! `{"op": "sleep", "ms": N}` (holds still, so another process can look at the host meanwhile).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use modelhost_guest::{
    ChatMessage, Error, Generation, GenerationOptions, ModelRequirement, Module, parse_settings,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    register: BTreeMap<String, ModelRequirement>,
    trap: bool,
    keep_on_cleanup: bool,
}

static KEEP_ON_CLEANUP: AtomicBool = AtomicBool::new(false);

struct Probe;

impl Module for Probe {
    fn initialize(settings: &str) -> Result<(), Error> {
        let settings: Settings = parse_settings(settings)?;
        for (id, requirement) in &settings.register {
            modelhost_guest::register_model(id, requirement)?;
        }
        assert!(!settings.trap, "probe asked to trap during initialize");
        KEEP_ON_CLEANUP.store(settings.keep_on_cleanup, Ordering::Relaxed);
        Ok(())
    }

    fn cleanup() {
        if !KEEP_ON_CLEANUP.load(Ordering::Relaxed) {
            modelhost_guest::release_all();
        }
    }
}

modelhost_guest::export_module!(Probe);

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    Register {
        id: String,
        requirement: ModelRequirement,
    },
    Release {
        id: String,
    },
    Embed {
        id: String,
        texts: Vec<String>,
    },
    EmbedOne {
        id: String,
        text: String,
    },
    Classify {
        id: String,
        texts: Vec<String>,
    },
    Generate {
        id: String,
        prompt: String,
        #[serde(default)]
        options: GenerationOptions,
    },
    Stream {
        id: String,
        prompt: String,
        #[serde(default)]
        options: GenerationOptions,
    },
    StreamFirst {
        id: String,
        prompt: String,
        #[serde(default)]
        options: GenerationOptions,
    },
    Chat {
        id: String,
        messages: Vec<ChatMessage>,
        #[serde(default)]
        options: GenerationOptions,
    },
    Status,
    Trap,
    Spin,
    Sleep {
        ms: u64,
    },
    Allocate {
        mb: usize,
    },
    RegisterMany {
        count: usize,
        requirement: ModelRequirement,
    },
    EmbedManyIds {
        count: usize,
        id_bytes: usize,
        #[serde(default)]
        first: usize,
    },
    EmbedLongTexts {
        id: String,
        count: usize,
        text_bytes: usize,
        #[serde(default)]
        first: usize,
    },
    Env,
    ReadFile {
        path: String,
    },
    Connect {
        address: String,
    },
}

fn main() {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        if line.trim().is_empty() {
            continue;
        }
        let command: Command = serde_json::from_str(&line).expect("probe command");
        let reply = match execute(command) {
            Ok(value) => json!({ "ok": value }),
            Err(e) => json!({ "error": { "code": e.code_name(), "message": e.message } }),
        };
        writeln!(out, "{reply}").expect("stdout");
        out.flush().expect("stdout");
    }
}

fn execute(command: Command) -> Result<Value, Error> {
    Ok(match command {
        Command::Register { id, requirement } => {
            let r = modelhost_guest::register_model(&id, &requirement)?;
            json!({ "model_id": r.model_id, "new_registration": r.new_registration,
                    "model_name": r.model_name, "revision": r.revision,
                    "dimension": r.dimension, "reference_count": r.reference_count,
                    "total_reference_count": r.total_reference_count })
        }
        Command::Release { id } => {
            let r = modelhost_guest::release_model(&id)?;
            json!({ "reference_count": r.reference_count,
                    "total_reference_count": r.total_reference_count })
        }
        Command::Embed { id, texts } => {
            let e = modelhost_guest::generate_embeddings(&id, &texts)?;
            json!({ "embeddings": e.embeddings, "dimension": e.dimension, "cached": e.cached })
        }
        Command::EmbedOne { id, text } => {
            json!({ "embedding": modelhost_guest::embed(&id, &text)? })
        }
        Command::Classify { id, texts } => {
            let c = modelhost_guest::classify(&id, &texts)?;
            let results: Vec<Value> = c
                .results
                .iter()
                .map(|r| {
                    let scores: Vec<Value> = r
                        .scores
                        .iter()
                        .map(|s| json!({"label": s.label, "score": s.score}))
                        .collect();
                    json!({ "label": r.label, "score": r.score, "scores": scores })
                })
                .collect();
            json!({ "results": results })
        }
        Command::Generate {
            id,
            prompt,
            options,
        } => generation_json(&modelhost_guest::generate_text(&id, &prompt, &options)?),
        Command::Stream {
            id,
            prompt,
            options,
        } => {
            let mut stream = modelhost_guest::stream_text(&id, &prompt, &options)?;
            let pieces: Vec<String> = stream.by_ref().collect::<Result<_, _>>()?;
            let finish = stream.finish_reason().map(|r| format!("{r:?}"));
            json!({ "pieces": pieces, "text": pieces.concat(), "finish_reason": finish })
        }
        Command::StreamFirst {
            id,
            prompt,
            options,
        } => {
            // Reads one piece and drops the stream, which stops the generation.
            let mut stream = modelhost_guest::stream_text(&id, &prompt, &options)?;
            let first = stream.next().transpose()?;
            json!({ "first": first })
        }
        Command::Chat {
            id,
            messages,
            options,
        } => generation_json(&modelhost_guest::chat(&id, &messages, &options)?),
        Command::Status => status_json(&modelhost_guest::service_status()?),
        Command::Trap => panic!("probe asked to trap"),
        Command::Spin => spin(),
        Command::Sleep { ms } => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            json!({ "slept_ms": ms })
        }
        Command::Allocate { mb } => {
            let blocks: Vec<Vec<u8>> = (0..mb).map(|i| vec![i as u8; 1 << 20]).collect();
            json!({ "allocated_mb": blocks.len() })
        }
        Command::RegisterMany { count, requirement } => {
            for i in 0..count {
                modelhost_guest::register_model(&format!("m{i}"), &requirement)?;
            }
            json!({ "registered": count })
        }
        Command::EmbedManyIds {
            count,
            id_bytes,
            first,
        } => {
            let mut codes = BTreeMap::<String, usize>::new();
            for i in first..first + count {
                let id = format!("{i}-{}", "x".repeat(id_bytes));
                let code = match modelhost_guest::generate_embeddings(&id, &["x".to_string()]) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.code_name().to_string(),
                };
                *codes.entry(code).or_default() += 1;
            }
            json!(codes)
        }
        Command::EmbedLongTexts {
            id,
            count,
            text_bytes,
            first,
        } => {
            for i in first..first + count {
                let text = format!("{i} {}", "word ".repeat(text_bytes / 5));
                modelhost_guest::generate_embeddings(&id, &[text])?;
            }
            json!({ "embedded": count })
        }
        Command::Env => json!(std::env::vars().collect::<BTreeMap<_, _>>()),
        Command::ReadFile { path } => match std::fs::read(&path) {
            Ok(bytes) => json!({ "read": bytes.len() }),
            Err(e) => json!({ "denied": e.to_string() }),
        },
        Command::Connect { address } => match std::net::TcpStream::connect(&address) {
            Ok(_) => json!({ "connected": address }),
            Err(e) => json!({ "denied": e.to_string() }),
        },
    })
}

/// Never returns: only the host's CPU limit stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn generation_json(g: &Generation) -> Value {
    json!({ "text": g.text, "prompt_tokens": g.prompt_tokens,
            "tokens_generated": g.tokens_generated,
            "finish_reason": format!("{:?}", g.finish_reason) })
}

/// The service status as the guest sees it, in the specification's JSON shape (models keyed by
/// id), every field the WIT record carries.
fn status_json(s: &modelhost_guest::ServiceStatus) -> Value {
    let pool = &s.worker_pool;
    let workers: Vec<Value> = pool
        .workers
        .iter()
        .map(|w| {
            json!({ "worker_id": w.worker_id, "device": w.device, "busy": w.busy,
                    "loaded_models": w.loaded_models })
        })
        .collect();
    let models: serde_json::Map<String, Value> = s
        .loaded_models
        .iter()
        .map(|m| {
            let model = json!({ "model_id": m.model_id, "model_type": format!("{:?}", m.model_type),
                "model_name": m.model_name, "revision": m.revision,
                "reference_count": m.reference_count, "loaded": m.loaded,
                "last_accessed": m.last_accessed, "source": m.source, "device": m.device,
                "workers": m.workers, "placement_note": m.placement_note });
            (m.model_id.clone(), model)
        })
        .collect();
    let references: Vec<Value> = s
        .module_references
        .iter()
        .map(|r| {
            json!({ "module_id": r.module_id, "model_id": r.model_id,
                    "reference_count": r.reference_count })
        })
        .collect();
    json!({
        "initialized": s.initialized,
        "worker_pool": { "enabled": pool.enabled, "num_workers": pool.num_workers,
            "active_workers": pool.active_workers, "pending_tasks": pool.pending_tasks,
            "workers": workers, "notes": pool.notes },
        "embedding_cache": { "enabled": s.embedding_cache.enabled,
            "cached_count": s.embedding_cache.cached_count,
            "hit_rate": s.embedding_cache.hit_rate },
        "loaded_models": models,
        "total_loaded_models": s.total_loaded_models,
        "loaded_weights": s.loaded_weights,
        "module_references": references,
    })
}
