//! The configuration's unit tests: documented defaults, module entries, every key's error and
//! range, and conversions of extreme or unchecked values.

use std::time::Duration;

use super::*;
use crate::engine::workers::LoadBalancing;
use crate::runtime::settings::{duration, optional_seconds};
use crate::serve::settings::route_matches;
use crate::types::DevicePreference;

#[test]
fn documented_defaults_are_the_defaults() {
    assert_eq!(
        HostConfig::parse(DEFAULT_CONFIG).unwrap(),
        HostConfig::default()
    );
    assert_eq!(HostConfig::parse("").unwrap(), HostConfig::default());
}

#[test]
fn module_settings_become_json_and_routes_match_whole_segments() {
    let config = HostConfig::parse(
        "[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/a\"\n\
         settings = { model = \"org/name\", batch = 4 }",
    )
    .unwrap();
    let settings: serde_json::Value =
        serde_json::from_str(&config.modules[0].settings_text()).unwrap();
    assert_eq!(
        settings,
        serde_json::json!({"model": "org/name", "batch": 4})
    );
    assert!(config.modules[0].required);
    assert!(route_matches("/a", "/a/v1") && route_matches("/a", "/a"));
    assert!(!route_matches("/a", "/ab") && route_matches("/", "/x"));
}

#[test]
fn bad_keys_and_values_are_named() {
    let err = HostConfig::parse("[models]\nidle_unload = 3").unwrap_err();
    assert!(err.to_string().contains("idle_unload"), "{err}");
    let err = HostConfig::parse("[worker_pool]\nbatch_size = 0").unwrap_err();
    assert!(err.to_string().contains("worker_pool.batch_size"), "{err}");
    let err = HostConfig::parse("[worker_pool]\ndevices = [\"tpu\"]").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("worker_pool.devices") && text.contains("tpu"),
        "{err}"
    );
    let err = HostConfig::parse("device_preference = \"gpu\"").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`device_preference`") && text.contains("unknown device 'gpu'"),
        "{err}"
    );
    // The manager's keys are top-level, as in the specification, not under [worker_pool].
    let err = HostConfig::parse("[worker_pool]\ngpu_memory_fraction = 0.5").unwrap_err();
    assert!(err.to_string().contains("gpu_memory_fraction"), "{err}");
    let err = HostConfig::parse("[worker_pool]\nload_balancing = \"random\"").unwrap_err();
    assert!(err.to_string().contains("load_balancing"), "{err}");
    // Typos are caught in `[limits]` and in a module's limits alike.
    let err = HostConfig::parse("[limits]\nmax_modelz = 3").unwrap_err();
    assert!(err.to_string().contains("max_modelz"), "{err}");
    let module = "[[modules]]\nid = \"m\"\npath = \"m.wasm\"\n";
    let err = HostConfig::parse(&format!("{module}limits = {{ max_modelz = 3 }}")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("modules[m].limits") && text.contains("max_modelz"),
        "{err}"
    );
    let err = HostConfig::parse(&format!("{module}[modules.limits]\nallowed_models = \"*\""))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("modules[m].limits") && text.contains("allowed_models"),
        "{err}"
    );
    let err = HostConfig::parse("[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/healthz\"")
        .unwrap_err();
    assert!(err.to_string().contains("/healthz"), "{err}");
    // `/status` and `/metrics` live on the admin listener: a module may serve them.
    HostConfig::parse("[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/metrics\"").unwrap();
    let twice = "[[modules]]\nid = \"a\"\npath = \"a.wasm\"\n";
    let err = HostConfig::parse(&twice.repeat(2)).unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
    let err = HostConfig::parse("[worker_pool]\nqueue_timeout = 0").unwrap_err();
    assert!(
        err.to_string().contains("worker_pool.queue_timeout"),
        "{err}"
    );
}
/// Parses `text`, which must fail (without panicking) with an error that names `key`.
fn rejected(text: &str, key: &str) {
    let outcome = std::panic::catch_unwind(|| HostConfig::parse(text));
    let error = outcome
        .unwrap_or_else(|_| panic!("parsing panicked: {text}"))
        .expect_err(text);
    let message = error.to_string();
    assert!(message.contains(key), "{text}: `{key}` not in: {message}");
}

#[test]
fn every_number_out_of_range_is_rejected_with_its_key() {
    let module = "[[modules]]\nid = \"m\"\npath = \"m.wasm\"\n";
    let big = "9223372036854775807";
    let cases: Vec<(String, &str)> = [
        (
            "[limits]\ncpu_seconds_per_call = inf",
            "limits.cpu_seconds_per_call",
        ),
        (
            "[limits]\ncpu_seconds_per_call = nan",
            "limits.cpu_seconds_per_call",
        ),
        (
            "[limits]\ncpu_seconds_per_call = -1",
            "limits.cpu_seconds_per_call",
        ),
        (
            "[limits]\ncpu_seconds_per_call = 1e300",
            "limits.cpu_seconds_per_call",
        ),
        ("[limits]\nmax_in_flight = 0", "limits.max_in_flight"),
        ("[limits]\nmemory_mb = 0", "limits.memory_mb"),
        ("[limits]\nmemory_mb = 100000000", "limits.memory_mb"),
        ("[limits]\nmemory_mb = -1", "memory_mb"),
        ("[limits]\nmemory_mb = 1e300", "memory_mb"),
        ("[limits]\ntable_elements = 0", "limits.table_elements"),
        ("[limits]\nmax_models = 0", "limits.max_models"),
        (
            "[limits]\nmax_texts_per_call = 0",
            "limits.max_texts_per_call",
        ),
        (
            "[limits]\nmax_bytes_per_call = 0",
            "limits.max_bytes_per_call",
        ),
        ("[limits]\nmax_new_tokens = 0", "limits.max_new_tokens"),
        (
            "[worker_pool]\nqueue_timeout = 1e300",
            "worker_pool.queue_timeout",
        ),
        (
            "[worker_pool]\nqueue_timeout = inf",
            "worker_pool.queue_timeout",
        ),
        (
            "[worker_pool]\nqueue_timeout = nan",
            "worker_pool.queue_timeout",
        ),
        (
            "[worker_pool]\nqueue_timeout = -5",
            "worker_pool.queue_timeout",
        ),
        (
            "[worker_pool]\nqueue_timeout = 0",
            "worker_pool.queue_timeout",
        ),
        ("gpu_memory_fraction = nan", "`gpu_memory_fraction`"),
        ("cpu_memory_fraction = 1.5", "`cpu_memory_fraction`"),
        ("[worker_pool]\nbatch_size = 0", "worker_pool.batch_size"),
        (
            "[worker_pool]\nmax_batch_tokens = 0",
            "worker_pool.max_batch_tokens",
        ),
        (
            "[worker_pool]\nmax_queue_length = 0",
            "worker_pool.max_queue_length",
        ),
        (
            "[worker_pool]\nnum_workers = 100000",
            "worker_pool.num_workers",
        ),
        (
            "[embedding_cache]\nttl_seconds = 0",
            "embedding_cache.ttl_seconds",
        ),
        (
            "[embedding_cache]\nmax_cache_size = 0",
            "embedding_cache.max_cache_size",
        ),
        (
            "[embedding_cache]\nmax_cache_mb = 0",
            "embedding_cache.max_cache_mb",
        ),
        (
            "[serve]\nheader_read_timeout_seconds = 0",
            "serve.header_read_timeout_seconds",
        ),
        (
            "[serve]\nheader_read_timeout_seconds = nan",
            "serve.header_read_timeout_seconds",
        ),
        (
            "[serve]\nrequest_timeout_seconds = inf",
            "serve.request_timeout_seconds",
        ),
        (
            "[serve]\nrequest_timeout_seconds = -1",
            "serve.request_timeout_seconds",
        ),
        ("[serve]\nmax_connections = 0", "serve.max_connections"),
        ("[serve]\nadmin_token_env = \"\"", "serve.admin_token_env"),
        (
            "[runtime]\ninitialize_timeout_seconds = nan",
            "runtime.initialize_timeout_seconds",
        ),
        (
            "[runtime]\ncleanup_timeout_seconds = 1e300",
            "runtime.cleanup_timeout_seconds",
        ),
        (
            "[runtime]\nrun_timeout_seconds = -0.5",
            "runtime.run_timeout_seconds",
        ),
    ]
    .into_iter()
    .map(|(text, key)| (text.to_string(), key))
    .chain([
        (
            format!("[models]\nidle_unload_seconds = {big}"),
            "models.idle_unload_seconds",
        ),
        (
            format!("[embedding_cache]\nttl_seconds = {big}"),
            "embedding_cache.ttl_seconds",
        ),
        (
            format!("[serve]\nshutdown_grace_seconds = {big}"),
            "serve.shutdown_grace_seconds",
        ),
        (
            format!("{module}limits = {{ cpu_seconds_per_call = inf }}"),
            "modules[m].limits.cpu_seconds_per_call",
        ),
        (
            format!("{module}limits = {{ cpu_seconds_per_call = nan }}"),
            "modules[m].limits.cpu_seconds_per_call",
        ),
        (
            format!("{module}limits = {{ cpu_seconds_per_call = -1.0 }}"),
            "modules[m].limits.cpu_seconds_per_call",
        ),
        (
            format!("{module}limits = {{ max_in_flight = 0 }}"),
            "modules[m].limits.max_in_flight",
        ),
        (
            format!("{module}limits = {{ memory_mb = 0 }}"),
            "modules[m].limits.memory_mb",
        ),
        (
            format!("{module}limits = {{ memory_mb = 70000 }}"),
            "modules[m].limits.memory_mb",
        ),
        (
            format!("{module}limits = {{ table_elements = 0 }}"),
            "modules[m].limits.table_elements",
        ),
        (
            format!("{module}limits = {{ max_new_tokens = 0 }}"),
            "modules[m].limits.max_new_tokens",
        ),
        (
            format!("{module}limits = {{ max_in_flight = -3 }}"),
            "max_in_flight",
        ),
    ])
    .collect();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (text, key) in &cases {
        rejected(text, key);
    }
    // The message says what the key must be.
    let err = HostConfig::parse("[limits]\nmax_in_flight = 0").unwrap_err();
    assert!(err.to_string().contains("from 1 to"), "{err}");
}

#[test]
fn accepted_extremes_convert_without_panic_and_zero_means_no_limit() {
    let config = HostConfig::parse(
        "gpu_memory_fraction = 1\n\
         [models]\ndownload = false\nidle_unload_seconds = 315360000\n\
         [worker_pool]\nqueue_timeout = 315360000\n\
         [embedding_cache]\nttl_seconds = 315360000\n\
         [serve]\nheader_read_timeout_seconds = 315360000\nrequest_timeout_seconds = 0\n\
         shutdown_grace_seconds = 315360000\nmax_connections = 1048576\n\
         [runtime]\ninitialize_timeout_seconds = 0\ncleanup_timeout_seconds = 315360000\n\
         [limits]\ncpu_seconds_per_call = 315360000\nmemory_mb = 65536\n\
         [[modules]]\nid = \"m\"\npath = \"m.wasm\"\n\
         limits = { cpu_seconds_per_call = 0, max_in_flight = 1, memory_mb = 1 }\n",
    )
    .unwrap();
    let settings = config.manager_settings();
    assert_eq!(settings.idle_unload, Duration::from_secs(315_360_000));
    let global = config.module_limits(None).unwrap();
    assert_eq!(
        global.cpu_time_per_call,
        Some(Duration::from_secs(315_360_000))
    );
    assert_eq!(global.memory_bytes, 65_536 << 20);
    let module = config.module_limits(Some(&config.modules[0])).unwrap();
    assert_eq!(module.cpu_time_per_call, None);
    assert_eq!((module.max_in_flight, module.memory_bytes), (1, 1 << 20));
    let served = config.served_modules().unwrap();
    assert_eq!((served.len(), &served[0].limits), (1, &module));
    assert_eq!(
        optional_seconds(config.runtime.initialize_timeout_seconds),
        None
    );

    // A configuration built in code, never validated, converts without a panic too.
    let mut unchecked = HostConfig::default();
    unchecked.models.download = false;
    unchecked.models.idle_unload_seconds = u64::MAX;
    unchecked.worker_pool.queue_timeout = f64::NAN;
    unchecked.worker_pool.devices = Vec::new();
    unchecked.embedding_cache.ttl_seconds = u64::MAX;
    unchecked.limits.cpu_seconds_per_call = f64::INFINITY;
    unchecked.limits.memory_mb = u64::MAX;
    let settings = unchecked.manager_settings();
    assert!(!settings.pool.devices.is_empty());
    let limits = unchecked.module_limits(None).unwrap();
    assert_eq!(
        limits.cpu_time_per_call,
        Some(Duration::from_secs(315_360_000))
    );
    // Module limits that cannot be merged are an error, not a panic.
    let mut module: ModuleSettings = toml::from_str("id = \"m\"\npath = \"m.wasm\"").unwrap();
    module.limits.insert("max_models".into(), "many".into());
    unchecked.modules.push(module);
    let err = unchecked
        .module_limits(Some(&unchecked.modules[0]))
        .unwrap_err();
    assert!(err.to_string().contains("modules[m].limits"), "{err}");
    assert!(unchecked.served_modules().is_err());
    for seconds in [f64::NAN, f64::NEG_INFINITY, -1.0, 0.0, 1e300] {
        assert!(duration(seconds) <= Duration::from_secs(315_360_000));
        assert!(optional_seconds(seconds).is_none_or(|d| d.as_secs() == 315_360_000));
    }
}

#[test]
fn typed_values_and_module_limits_merge_key_by_key() {
    let config = HostConfig::parse(
        "enabled = false\ndevice_preference = \"cuda\"\nallow_gpu_growth = false\n\
         [worker_pool]\ndevices = [\"cuda:1\", \"cpu\"]\nload_balancing = \"least_busy\"\n\
         [limits]\nmax_models = 7\nallowed_models = [\"org/*\"]\n\
         [[modules]]\nid = \"a\"\npath = \"a.wasm\"\n\
         [modules.limits]\nmax_in_flight = 2\nallow_outgoing_http = true\n\
         [[modules]]\nid = \"b\"\npath = \"b.wasm\"\n",
    )
    .unwrap();
    let settings = config.manager_settings();
    assert!(!settings.enabled);
    let pool = settings.pool;
    assert_eq!(
        pool.devices,
        [DevicePreference::CudaOrdinal(1), DevicePreference::Cpu]
    );
    assert_eq!(pool.device_preference, DevicePreference::Cuda);
    assert!(!pool.memory.gpu_growth);
    assert_eq!(pool.load_balancing, LoadBalancing::LeastBusy);
    let a = config.limits_of(&config.modules[0]).unwrap();
    let expected = LimitsConfig {
        max_models: 7,
        allowed_models: vec!["org/*".into()],
        max_in_flight: 2,
        allow_outgoing_http: true,
        ..LimitsConfig::default()
    };
    assert_eq!(a, expected);
    assert_eq!(config.limits_of(&config.modules[1]).unwrap(), config.limits);
}
