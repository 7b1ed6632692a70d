//! Module start costs of the example modules in every language (Rust, Python, JavaScript, C):
//! compiling with an empty compile cache, reading the compiled module back from the cache in a
//! fresh engine (what a second `modelhost serve` or `modelhost run` does), and instantiating it
//! (what every HTTP request does). Prints each figure and the cold/warm ratio.
//!
//! Run with `scripts/bench-module-start` (builds the modules first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelhost::runtime::RuntimeSettings;
use modelhost::runtime::{ModuleImage, ModuleOptions, Runtime};
use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{guests, manager, repo_root, test_settings};

/// A runtime with its compile cache in `cache`.
fn runtime(cache: &Path) -> Runtime {
    let manager = manager(
        Arc::new(FakeBackend::default()),
        &modelhost::engine::device::SystemDevices,
        test_settings(Duration::from_secs(300)),
    );
    let config = RuntimeSettings {
        compile_cache: true,
        compile_cache_dir: Some(cache.to_path_buf()),
        ..RuntimeSettings::default()
    };
    Runtime::new(manager, &config).expect("runtime")
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// Median time to instantiate `image` (no `initialize`), over `runs` instances.
async fn instantiate_median(runtime: &Runtime, image: &ModuleImage, runs: usize) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let instance = runtime
            .instantiate(image, ModuleOptions::default())
            .await
            .expect("instantiate");
        times.push(started.elapsed());
        drop(instance);
    }
    times.sort();
    times[runs / 2]
}

#[tokio::main]
async fn main() {
    let built = |file: &str| repo_root().join("target/modules").join(file);
    let modules: [(&str, PathBuf); 7] = [
        ("rust openai (http)", PathBuf::from(guests::OPENAI)),
        ("rust sentiment (command)", PathBuf::from(guests::SENTIMENT)),
        ("python embeddings (http)", built("python-embeddings.wasm")),
        (
            "python classifier (command)",
            built("python-classifier.wasm"),
        ),
        ("javascript embeddings (http)", built("js-embeddings.wasm")),
        (
            "javascript summarizer (command)",
            built("js-summarizer.wasm"),
        ),
        ("c embeddings (command)", built("c-embeddings.wasm")),
    ];
    println!(
        "{:<32} {:>9} {:>12} {:>16} {:>9} {:>14}",
        "module", "size MB", "compile ms", "from cache ms", "ratio", "instance µs"
    );
    for (name, path) in modules {
        assert!(
            path.is_file(),
            "{} is missing: run scripts/build-modules",
            path.display()
        );
        let cache = tempfile::tempdir().expect("temp dir");
        let (_, cold) = timed(|| runtime(cache.path()).load(&path).expect("compile"));
        let warm_runtime = runtime(cache.path());
        let (image, warm) = timed(|| warm_runtime.load(&path).expect("load"));
        let instance = instantiate_median(&warm_runtime, &image, 21).await;
        let size = std::fs::metadata(&path).expect("module file").len() as f64 / 1e6;
        println!(
            "{name:<32} {size:>9.2} {:>12.0} {:>16.1} {:>8.0}x {:>14.0}",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            cold.as_secs_f64() / warm.as_secs_f64(),
            instance.as_secs_f64() * 1e6
        );
    }
}
