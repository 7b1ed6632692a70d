//! Attacks on the host's memory: a guest naming thousands of long model ids and many long texts
//! embedded with the cache on, measured as the heap bytes the host keeps (exact: the allocator
//! counts them), and a checkpoint declaring two billion positions, measured in the process's
//! resident set. Each stays within a stated bound, and the host serves a good request afterwards.
//! With the allocator the `modelhost` binary uses.
//!
//! Own binary: it measures the whole process's memory, which other tests' threads would change.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

/// mimalloc, counting the bytes in use.
struct Counting;

/// Heap bytes allocated and not freed.
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to mimalloc with the caller's arguments; the counter is a side
// effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let moved = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes in use now.
fn live_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

use modelhost::manager::limits::ModuleLimits;
use modelhost::types::ModuleId;
use modelhost::types::requirement::{ModelRequirement, ModelType};
use modelhost_tests::{MINILM, SMOLLM2, code, link_or_copy, model_store, probe, real_runtime};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// Resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A copy of SmolLM2 whose GGUF file declares a context of two billion positions.
fn smollm2_with_huge_context() -> String {
    let root = model_store().root().to_path_buf();
    let commit = "2222222222222222222222222222222222222222";
    let repo = root.join("models--modelhost-hostile--smollm2-2g-context");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    let original = model_store().resolve(SMOLLM2, "main").unwrap().dir;
    for entry in std::fs::read_dir(&original).unwrap().flatten() {
        let target = snapshot.join(entry.file_name());
        if entry.path().extension().is_some_and(|x| x == "gguf") {
            let mut bytes = std::fs::read(entry.path()).unwrap();
            let key = "llama.context_length";
            let mut written = (key.len() as u64).to_le_bytes().to_vec();
            written.extend(key.as_bytes());
            let at = bytes
                .windows(written.len())
                .position(|w| w == written)
                .unwrap()
                + written.len();
            assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes(), "a uint32 value");
            bytes[at + 4..at + 8].copy_from_slice(&2_000_000_000u32.to_le_bytes());
            std::fs::write(target, bytes).unwrap();
        } else {
            link_or_copy(&entry.path(), &target);
        }
    }
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    "modelhost-hostile/smollm2-2g-context".into()
}

fn register(id: &str, requirement: Value) -> Value {
    json!({"op": "register", "id": id, "requirement": requirement})
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_ids_texts_and_contexts_stay_within_memory_bounds() {
    let runtime = real_runtime();
    let good = json!({"op": "embed", "id": "good", "texts": ["still serving"]});
    let minilm = register("good", json!({"model_type": "embedding", "name": MINILM}));

    let manager = runtime.manager();
    let module = ModuleId::new("texts");
    let requirement = ModelRequirement::new(ModelType::Embedding, MINILM);
    manager
        .register(&module, "texts", requirement)
        .await
        .unwrap();
    let text = |i: usize| format!("{i} {}", "word ".repeat((1 << 20) / 5));
    let ids = |first: usize| {
        [
            minilm.clone(),
            json!({"op": "embed_many_ids", "count": 2000, "id_bytes": 64 << 10, "first": first}),
            good.clone(),
        ]
    };

    // Each attack runs four times, on other ids and texts each time. Heap bytes in use, unlike
    // the resident set, do not count memory the allocator keeps for later: what a round adds is
    // what the host keeps, plus warm-up in the first round (pools, caches, the loaded model).
    // Keeping ids or texts would add the attack's size every round (128 MiB of ids, 100 MiB of
    // text); after the first round, the smallest growth of a round is held to a sixteenth.
    let (mut ids_kept, mut texts_kept) = (u64::MAX, u64::MAX);
    for round in 0..4 {
        // 2,000 calls under unregistered 64 KB ids: 128 MB of ids, which were kept as metric
        // labels.
        let before = live_bytes();
        let (replies, _) = probe(&runtime, "ids", "", &ids(round * 2000))
            .await
            .unwrap();
        assert_eq!(replies[1]["ok"], json!({"invalid-input": 2000}));
        assert_eq!(code(&replies[2]), "ok");
        let ids_grown = live_bytes().saturating_sub(before);

        // 100 embeddings of distinct 1 MB texts with the cache on, which kept each text in its
        // key. Called on the manager, as the host serves a module's call, so that what a guest's
        // own memory does with its texts is not counted.
        let before = live_bytes();
        for i in 0..100 {
            let embedded = manager
                .embed(&module, "texts", vec![text(round * 100 + i)])
                .await
                .unwrap();
            assert!(!embedded.cached);
        }
        let texts_grown = live_bytes().saturating_sub(before);
        println!(
            "round {round}: 2000 calls with 64 KB ids kept {} MiB of heap, \
             100 cached 1 MB texts {} MiB",
            ids_grown / MIB,
            texts_grown / MIB
        );
        if round > 0 {
            ids_kept = ids_kept.min(ids_grown);
            texts_kept = texts_kept.min(texts_grown);
        }
    }
    assert!(ids_kept < 8 * MIB, "ids kept {} MiB", ids_kept / MIB);
    assert!(texts_kept < 8 * MIB, "texts kept {} MiB", texts_kept / MIB);
    assert!(
        manager
            .embed(&module, "texts", vec![text(150)])
            .await
            .unwrap()
            .cached
    );

    // A checkpoint declaring two billion positions: the context is capped, the rotary table and
    // KV cache sized by the cap, and accounted before they are made.
    let long = smollm2_with_huge_context();
    let before = resident_bytes();
    let generate = [
        minilm,
        register(
            "long",
            json!({"model_type": "text-generation", "name": long}),
        ),
        json!({"op": "generate", "id": "long", "prompt": "Hello", "options": {"max_output_length": 2}}),
        good,
    ];
    let limits = ModuleLimits::default();
    let (replies, _) = modelhost_tests::probe_limited(&runtime, "long", "", &generate, limits)
        .await
        .unwrap();
    assert!(replies.iter().all(|r| code(r) == "ok"), "{replies:?}");
    let grown = resident_bytes().saturating_sub(before);
    println!(
        "a model declaring 2e9 positions: resident memory grew {} MiB",
        grown / MIB
    );
    // The f32 weights are ~540 MB; the uncapped rotary table alone would be 512 GB.
    assert!(grown < 1200 * MIB, "grew {} MiB", grown / MIB);
}
