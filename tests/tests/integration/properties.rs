//! A property test of the whole boundary: random requirements and random calls (well-typed for
//! the WIT, but otherwise anything: odd names, ids, sizes, sampling values, texts, stop lists)
//! driven through the probe guest against the real host and backend. Whatever comes in, every
//! answer is a typed result (never `internal`), the guest never traps, and a good call then
//! succeeds.

use std::sync::OnceLock;

use modelhost::manager::limits::ModuleLimits;
use modelhost::runtime::Runtime;
use modelhost_tests::{FIXTURE_ORG, MINILM, SMOLLM2, code, probe_limited, real_runtime};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One host and its async runtime for every case.
fn host() -> &'static (tokio::runtime::Runtime, Runtime) {
    static HOST: OnceLock<(tokio::runtime::Runtime, Runtime)> = OnceLock::new();
    HOST.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let runtime = tokio.block_on(async { real_runtime() });
        (tokio, runtime)
    })
}

/// Text of any characters, up to `max` of them.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

/// A model id: one of a few, or anything.
fn model_id() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b"]).prop_map(String::from),
        1 => text(40),
        1 => (1usize..400).prop_map(|n| "x".repeat(n)),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            MINILM.to_string(),
            SMOLLM2.to_string(),
            format!("{FIXTURE_ORG}/t5-tiny-random-realvocab"),
            format!("{FIXTURE_ORG}/distilbert-tiny-random-cls"),
            "nobody/none".to_string(),
            "../../etc".to_string(),
            "/abs/path".to_string(),
        ]),
        1 => text(30),
    ]
}

/// A chat role: the usual ones, or anything.
fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["system", "user", "assistant"]).prop_map(String::from),
        1 => text(12),
    ]
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![4 => Just(None), 1 => value.prop_map(Some)]
}

/// A float a module might send: ordinary, edge or absurd (finite: JSON has no NaN).
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        -2.0f32..3.0,
        prop::sample::select(vec![0.0f32, -0.0, 1.0, 1e30, -1e30, f32::MIN_POSITIVE]),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..600, 1 => 0u32..5, 1 => Just(u32::MAX), 1 => Just(4097)]
}

/// A requirement a well-behaved module would send: a model of the type it serves, ordinary
/// settings; the calls that follow then reach real inference.
fn sound_requirement() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            ("embedding", MINILM.to_string()),
            ("text-generation", SMOLLM2.to_string()),
            (
                "text2text",
                format!("{FIXTURE_ORG}/t5-tiny-random-realvocab"),
            ),
            (
                "classification",
                format!("{FIXTURE_ORG}/distilbert-tiny-random-cls"),
            ),
        ]),
        maybe(1u32..64),
        maybe(1u32..600),
        0u32..3,
        any::<bool>(),
    )
        .prop_map(
            |((kind, name), batch_size, max_input_length, preload_workers, cache)| {
                json!({"model_type": kind, "name": name, "batch_size": batch_size,
                   "max_input_length": max_input_length, "preload_workers": preload_workers,
                   "cache_embeddings": cache})
            },
        )
}

fn requirement() -> impl Strategy<Value = Value> {
    prop_oneof![3 => sound_requirement(), 2 => wild_requirement()]
}

/// A requirement with anything in it.
fn wild_requirement() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "embedding",
            "text2text",
            "text-generation",
            "classification",
        ]),
        name(),
        maybe(prop_oneof![Just("main".to_string()), text(20)]),
        prop::sample::select(vec!["auto", "cpu", "cuda", "cuda:3"]),
        (
            maybe(count()),
            maybe(count()),
            maybe(count()),
            maybe(count()),
        ),
        (
            maybe(float()),
            maybe(float()),
            maybe(float()),
            maybe(float()),
        ),
        (0u32..3, maybe(count()), maybe(text(20))),
    )
        .prop_map(|(kind, name, revision, device, counts, floats, rest)| {
            let (dimension, batch_size, max_input_length, top_k) = counts;
            let (temperature, top_p, repetition_penalty, threshold) = floats;
            let (preload_workers, num_labels, weights_file) = rest;
            json!({
                "model_type": kind, "name": name, "revision": revision, "device": device,
                "dimension": dimension, "batch_size": batch_size,
                "max_input_length": max_input_length, "top_k": top_k,
                "temperature": temperature, "top_p": top_p,
                "repetition_penalty": repetition_penalty, "threshold": threshold,
                "preload_workers": preload_workers, "num_labels": num_labels,
                "weights_file": weights_file,
            })
        })
}

fn options() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => (maybe(1u32..4), maybe(0.0f32..1.5), any::<u64>()).prop_map(|(max, t, seed)| {
            json!({"max_output_length": max, "temperature": t, "seed": seed})
        }),
        1 => wild_options(),
    ]
}

/// Generation options with anything in them.
fn wild_options() -> impl Strategy<Value = Value> {
    (
        maybe(0u32..4),
        maybe(float()),
        maybe(count()),
        maybe(float()),
        prop::collection::vec(text(6), 0..20),
        maybe(any::<u64>()),
    )
        .prop_map(|(max, temperature, top_k, top_p, stop, seed)| {
            json!({"max_output_length": max, "temperature": temperature, "top_k": top_k,
                   "top_p": top_p, "stop": stop, "seed": seed})
        })
}

fn command() -> impl Strategy<Value = Value> {
    let texts = || prop::collection::vec(text(60), 0..4);
    prop_oneof![
        3 => (model_id(), requirement())
            .prop_map(|(id, r)| json!({"op": "register", "id": id, "requirement": r})),
        1 => model_id().prop_map(|id| json!({"op": "release", "id": id})),
        2 => (model_id(), texts())
            .prop_map(|(id, t)| json!({"op": "embed", "id": id, "texts": t})),
        1 => (model_id(), texts())
            .prop_map(|(id, t)| json!({"op": "classify", "id": id, "texts": t})),
        1 => (model_id(), text(40), options()).prop_map(|(id, p, o)| {
            json!({"op": "generate", "id": id, "prompt": p, "options": o})
        }),
        1 => (model_id(), prop::collection::vec((role(), text(30)), 0..3), options()).prop_map(
            |(id, messages, o)| {
                let messages: Vec<Value> = messages
                    .into_iter()
                    .map(|(role, content)| json!({"role": role, "content": content}))
                    .collect();
                json!({"op": "chat", "id": id, "messages": messages, "options": o})
            }
        ),
        1 => Just(json!({"op": "status"})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_calls_get_typed_answers_and_the_host_serves_on(
        commands in prop::collection::vec(command(), 1..16)
    ) {
        let (tokio, runtime) = host();
        let good = [
            json!({"op": "register", "id": "good",
                   "requirement": {"model_type": "embedding", "name": MINILM}}),
            json!({"op": "embed", "id": "good", "texts": ["still serving"]}),
        ];
        let mut script = commands.clone();
        script.extend(good.iter().cloned());
        let limits = ModuleLimits {
            max_new_tokens: 4,
            max_texts_per_call: 16,
            max_bytes_per_call: 4096,
            ..ModuleLimits::default()
        };
        let (replies, _) = tokio
            .block_on(probe_limited(runtime, "property", "", &script, limits))
            .expect("the probe ran to its end");
        prop_assert_eq!(replies.len(), script.len());
        for (command, reply) in script.iter().zip(&replies) {
            // A typed answer: a result, or an error with its code; `internal` is a host bug.
            let typed = reply.get("ok").is_some() || reply["error"]["code"].is_string();
            prop_assert!(typed && code(reply) != "internal", "{} gave {}", command, reply);
        }
        let last = &replies[replies.len() - 1];
        prop_assert_eq!(code(last), "ok", "the good call after the script: {}", last);
    }
}
