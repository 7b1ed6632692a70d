//! Host benchmarks on the real all-MiniLM-L6-v2, through real guest modules. Prints figures and
//! the ratio each goal is judged by:
//!
//! 1. cross-module batching: 8 modules sending single texts at once vs 1 module sending 32 a call;
//! 2. the guest -> host -> guest path for a batch of 32 vs calling the backend directly;
//! 3. cache-hit throughput through the guest boundary;
//! 4. memory of the `modelhost` process itself (not of this bench): RSS added when a second id
//!    shares a loaded model, and RSS returned when idle weights are unloaded;
//! 5. CPU workers: the 8-module load on 1 vs 2 CPU workers sharing the cores.
//!
//! Run with `cargo bench -p modelhost-tests --bench host` (after `scripts/fetch-models`).

/// The allocator the `modelhost` binary uses, so the speed figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelhost::backends::{CandleBackend, LoadedModel, ModelBackend};
use modelhost::manager::ManagerSettings;
use modelhost::runtime::{ModuleImage, ModuleOptions, Runtime, Stdio};
use modelhost::types::ComputeDevice;
use modelhost::types::requirement::{ModelType, Precision};
use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{MINILM, fixtures, guests, model_store, runtime_with, test_settings};

const REQUIREMENT: &str =
    r#"{"model_type": "embedding", "name": "sentence-transformers/all-MiniLM-L6-v2"}"#;

/// The first `n` AG News test texts, as title + ". " + description.
fn agnews(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("data/agnews-test.csv")).unwrap();
    let mut rows = Vec::new();
    let mut reader = text.as_str();
    while rows.len() < n && !reader.is_empty() {
        let (fields, rest) = csv_row(reader);
        rows.push(format!("{}. {}", fields[1], fields[2]).replace('\n', " "));
        reader = rest;
    }
    rows
}

/// One CSV row with quoted fields ("" escapes a quote), and the rest of the input.
fn csv_row(input: &str) -> (Vec<String>, &str) {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek().map(|p| p.1) == Some('"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            ('\n', false) => return (fields, &input[i + 1..]),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    (fields, "")
}

fn settings(cache: bool, cpu_workers: usize) -> ManagerSettings {
    let mut settings = test_settings(Duration::from_millis(500));
    settings.cache.enabled = cache;
    settings.pool.devices = vec!["cpu".parse().unwrap()];
    settings.pool.num_workers = cpu_workers;
    settings
}

/// Runs `shares.len()` load-generator modules at once, each sending its share `per_call` texts a
/// call, `rounds` times. Returns the wall time and the time each module measured itself.
async fn run_modules(
    runtime: &Arc<Runtime>,
    image: &ModuleImage,
    shares: Vec<Vec<String>>,
    per_call: usize,
    rounds: usize,
) -> (Duration, Vec<f64>) {
    let mut modules = Vec::new();
    for (i, share) in shares.into_iter().enumerate() {
        let options = ModuleOptions {
            name: Some(format!("load{i}")),
            args: vec![per_call.to_string(), rounds.to_string()],
            stdio: Stdio::Capture {
                stdin: share.join("\n").into_bytes(),
            },
            ..ModuleOptions::default()
        };
        let mut module = runtime.instantiate(image, options).await.unwrap();
        module.initialize(REQUIREMENT).await.unwrap();
        modules.push(module);
    }
    let started = Instant::now();
    let tasks: Vec<_> = modules
        .into_iter()
        .map(|mut module| {
            tokio::spawn(async move {
                assert_eq!(module.run().await.unwrap(), 0);
                let out = String::from_utf8(module.stdout().unwrap()).unwrap();
                let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
                module.cleanup().await.unwrap();
                summary["elapsed_ms"].as_f64().unwrap()
            })
        })
        .collect();
    let mut inside = Vec::new();
    for task in tasks {
        inside.push(task.await.unwrap());
    }
    (started.elapsed(), inside)
}

/// VmRSS from a `/proc/PID/status` file, in bytes.
fn rss_of(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The smallest of several timings: interference from the rest of the machine only adds time.
fn fastest(values: Vec<f64>) -> f64 {
    values.into_iter().fold(f64::INFINITY, f64::min)
}

fn start_runtime(settings: ManagerSettings) -> (Arc<Runtime>, ModuleImage) {
    let runtime = Arc::new(runtime_with(Arc::new(CandleBackend), settings));
    let image = runtime.load(Path::new(guests::LOAD_GENERATOR)).unwrap();
    (runtime, image)
}

/// 8 modules with one text a call vs 1 module with 32 a call, on `cpu_workers` CPU workers.
async fn batching(texts: &[String], cpu_workers: usize) -> (f64, f64) {
    let (runtime, image) = start_runtime(settings(false, cpu_workers));
    let (warm, _) = run_modules(&runtime, &image, vec![texts[..32].to_vec()], 32, 1).await;
    assert!(warm > Duration::ZERO);
    let (one, _) = run_modules(&runtime, &image, vec![texts.to_vec()], 32, 1).await;
    let shares: Vec<Vec<String>> = texts
        .chunks(texts.len() / 8)
        .map(<[String]>::to_vec)
        .collect();
    let (eight, _) = run_modules(&runtime, &image, shares, 1, 1).await;
    let rate = |d: Duration| texts.len() as f64 / d.as_secs_f64();
    (rate(one), rate(eight))
}

/// The `modelhost` command (this package's build of it: the same `main`, the same allocator),
/// running the probe module, scripted one command at a time over its stdin; the resident set of
/// that process is read between commands. What users run, not this bench process, whose own
/// allocations (and the allocator's treatment of them) would blur the figures.
struct HostProcess {
    child: std::process::Child,
    replies: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl HostProcess {
    fn start(config: &Path) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio as Piped};
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
            .arg("--config")
            .arg(config)
            .args(["--models-dir", model_store().root().to_str().unwrap()])
            .args(["run", guests::PROBE])
            .env("RUST_LOG", "warn")
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .spawn()
            .expect("modelhost-cli");
        let replies = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, replies }
    }

    /// Sends one probe command and returns its `ok` answer.
    fn call(&mut self, command: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        let line = self.replies.next().unwrap().unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(reply["error"].is_null(), "{command}: {reply}");
        reply["ok"].clone()
    }

    fn rss_bytes(&self) -> u64 {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// RSS of the `modelhost` process with nothing loaded, with a model in use under one id and
/// under a second id (as a second module sharing it), and after both were released and the
/// weights unloaded for being idle.
fn memory(texts: &[String]) -> String {
    use std::fmt::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("modelhost.toml");
    std::fs::write(
        &config,
        "[models]\nidle_unload_seconds = 1\n[embedding_cache]\nenabled = false\n",
    )
    .unwrap();
    let mut host = HostProcess::start(&config);
    let register = |id: &str| {
        serde_json::json!({"op": "register", "id": id,
            "requirement": {"model_type": "embedding", "name": MINILM}})
    };
    let embed = |id: &str| serde_json::json!({"op": "embed", "id": id, "texts": &texts[..32]});
    host.call(serde_json::json!({"op": "status"}));
    let before = host.rss_bytes();
    host.call(register("first"));
    host.call(embed("first"));
    let one = host.rss_bytes();
    host.call(register("second"));
    host.call(embed("second"));
    let two = host.rss_bytes();
    host.call(serde_json::json!({"op": "release", "id": "first"}));
    host.call(serde_json::json!({"op": "release", "id": "second"}));
    let released = Instant::now();
    while host.call(serde_json::json!({"op": "status"}))["loaded_weights"] != 0 {
        assert!(
            released.elapsed() < Duration::from_secs(30),
            "never unloaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let unloaded_after = released.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let unloaded = host.rss_bytes();
    drop(host);

    let files = model_store().resolve(MINILM, "main").unwrap();
    let weights = std::fs::metadata(files.path("model.safetensors"))
        .unwrap()
        .len();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let mut report = String::new();
    let mut line = |text: String| writeln!(report, "{text}").unwrap();
    line(format!(
        "4. memory of the modelhost process (weights file {:.1} MB)",
        mb(weights)
    ));
    line(format!(
        "   RSS with the module, no model:       {:8.1} MB",
        mb(before)
    ));
    line(format!(
        "   RSS with the model in use:           {:8.1} MB",
        mb(one)
    ));
    line(format!(
        "   RSS with a 2nd id on the same model: {:8.1} MB",
        mb(two)
    ));
    line(format!(
        "   added by the 2nd (goal < 5%):        {:8.2}% of the weights",
        two.saturating_sub(one) as f64 * 100.0 / weights as f64
    ));
    line(format!(
        "   RSS after idle unload:               {:8.1} MB ({:.1} MB returned; unloaded {:.1} s \
         after the release, idle time 1 s)\n",
        mb(unloaded),
        mb(two.saturating_sub(unloaded)),
        unloaded_after.as_secs_f64()
    ));
    report
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let texts = agnews(1000);
    let memory_report = memory(&texts);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "modelhost host benchmarks: {MINILM}, AG News texts, {threads} cores, release build\n"
    );

    // 1. Batching across modules.
    let (one, eight) = batching(&texts[..256], 1).await;
    println!("1. 256 texts, 1 cpu worker, cache off");
    println!("   1 module, 32 texts a call:          {one:8.1} texts/s");
    println!("   8 modules, 1 text a call each:      {eight:8.1} texts/s");
    println!(
        "   ratio (goal >= 0.8):                {:8.2}x\n",
        eight / one
    );

    // 2. The path through the guest vs the backend called directly, same 32 texts.
    let batch: Vec<String> = texts[..32].to_vec();
    let files = model_store().resolve(MINILM, "main").unwrap();
    let backend = CandleBackend;
    let encoder = backend
        .inspect(ModelType::Embedding, &files)
        .unwrap()
        .encoder;
    let LoadedModel::Sequence(model) = backend
        .load(
            ModelType::Embedding,
            &files,
            ComputeDevice::Cpu,
            Precision::Exact,
        )
        .unwrap()
    else {
        panic!("an embedding model loads as a sequence model");
    };
    let (runtime, image) = start_runtime(settings(false, 1));
    let (trials, rounds) = (4, 4);
    let mut direct = Vec::new();
    let mut guest = Vec::new();
    let model = Arc::new(model);
    for _ in 0..trials {
        let (_, inside) = run_modules(&runtime, &image, vec![batch.clone()], 32, rounds).await;
        guest.push(inside[0] / rounds as f64);
        // The backend runs on a thread of its own, as it does on a worker.
        let (model, encoder, batch) = (model.clone(), encoder.clone(), batch.clone());
        let elapsed = std::thread::spawn(move || {
            let started = Instant::now();
            for _ in 0..rounds {
                let tokens = encoder.encode(&batch, 256).unwrap();
                let rows: Vec<&[u32]> = tokens.iter().map(Vec::as_slice).collect();
                model.run(&rows).unwrap();
            }
            started.elapsed()
        })
        .join()
        .unwrap();
        direct.push(elapsed.as_secs_f64() * 1000.0 / rounds as f64);
    }
    let (direct, guest) = (fastest(direct), fastest(guest));
    println!("2. one call of 32 texts (fastest of {trials} x {rounds} calls, alternating)");
    println!("   backend directly (tokenize + embed): {direct:8.2} ms");
    println!("   guest -> host -> guest:              {guest:8.2} ms");
    println!(
        "   overhead (goal <= 2%):               {:8.2}%",
        (guest / direct - 1.0) * 100.0
    );
    // The same path with a backend that computes nothing: what the boundary, the queue and the
    // worker hand-offs cost by themselves.
    let fake_runtime = Arc::new(runtime_with(
        Arc::new(FakeBackend::default()),
        settings(false, 1),
    ));
    let fake_image = fake_runtime
        .load(Path::new(guests::LOAD_GENERATOR))
        .unwrap();
    let calls = 2000;
    let (_, inside) = run_modules(&fake_runtime, &fake_image, vec![batch.clone()], 32, calls).await;
    let path_ms = inside[0] / calls as f64;
    println!(
        "   the path alone (a no-op backend):    {path_ms:8.3} ms = {:.3}% of the direct call\n",
        path_ms / direct * 100.0
    );

    // 3. Cache hits through the boundary.
    let (runtime, image) = start_runtime(settings(true, 1));
    run_modules(&runtime, &image, vec![batch.clone()], 32, 1).await;
    let hit_rounds = 2000;
    let (_, inside) = run_modules(&runtime, &image, vec![batch.clone()], 32, hit_rounds).await;
    let hits = (32 * hit_rounds) as f64 / (inside[0] / 1000.0);
    println!("3. cache hits, 32 texts a call, {hit_rounds} calls");
    println!("   throughput (goal >= 200000):         {hits:8.0} texts/s\n");

    // 4. Memory, measured before everything else.
    print!("{memory_report}");

    // 5. CPU workers share one compute thread pool.
    let (one_worker_batched, one_worker) = batching(&texts[..256], 1).await;
    let (two_workers_batched, two_workers) = batching(&texts[..256], 2).await;
    println!("5. 8 modules x single texts on cpu workers sharing {threads} cores");
    println!(
        "   1 cpu worker:                        {one_worker:8.1} texts/s (batched sender {one_worker_batched:.1})"
    );
    println!(
        "   2 cpu workers:                       {two_workers:8.1} texts/s (batched sender {two_workers_batched:.1})"
    );
}
