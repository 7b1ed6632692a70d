//! Counters and histograms the host keeps while it serves, and their rendering in the Prometheus
//! text format (`/metrics`). Calls are labelled by module and model; live values (queue depth,
//! loaded models, worker load) are read from the manager's state at scrape time.
//!
//! Written here rather than with `prometheus-client`: the label values of call metrics are model
//! ids that guests choose, so every family must stay below [`MAX_SERIES`] label sets (folding the
//! rest into [`OTHER`]), which `prometheus-client`'s `Family` cannot bound; and half of what is
//! exposed is live state rendered from one status snapshot per scrape, which would need a custom
//! collector anyway. What is left, two histograms and counters in the text format, is small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::types::DeviceMemoryStatus;
use crate::types::results::{ModelStatus, ServiceStatus, WorkerStatus};

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the batch size histogram buckets.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The model label of calls on ids the calling module did not hold.
pub const UNREGISTERED: &str = "(unregistered)";

/// The module and model labels of calls beyond [`MAX_SERIES`].
pub const OTHER: &str = "(other)";

/// Most label sets kept per metric family: what guests choose cannot grow the host beyond it.
pub const MAX_SERIES: usize = 10_000;

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{}le=\"{bound}\"}} {cumulative}",
                comma(labels)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{}le=\"+Inf\"}} {}",
            comma(labels),
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// `key`, or `overflow(key)` when `map` has no such key and holds [`MAX_SERIES`] already.
fn capped<K: Ord, V>(map: &BTreeMap<K, V>, key: K, overflow: impl FnOnce(K) -> K) -> K {
    if map.contains_key(&key) || map.len() < MAX_SERIES {
        key
    } else {
        overflow(key)
    }
}

fn comma(labels: &str) -> &'static str {
    if labels.is_empty() { "" } else { "," }
}

/// One model-manager call site: which module called which operation on which model id.
type CallKey = (String, String, &'static str);

#[derive(Default)]
struct Recorded {
    calls: BTreeMap<CallKey, Histogram>,
    errors: BTreeMap<(String, String, &'static str), u64>,
    http: BTreeMap<(String, u16), u64>,
    http_latency: BTreeMap<String, Histogram>,
    batches: BTreeMap<String, Histogram>,
}

/// The host's counters, shared by the runtime (calls, HTTP requests) and the workers (batches).
#[derive(Default)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
}

impl Metrics {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one `model-manager` call by `module` on `model_id`, and its error code if it failed.
    /// `model_id` is `None` when the module did not hold the id (ids a guest only names are never
    /// labels: they are counted under [`UNREGISTERED`]); past [`MAX_SERIES`] label sets, new
    /// ones are counted under [`OTHER`].
    pub fn record_call(
        &self,
        module: &str,
        model_id: Option<&str>,
        operation: &'static str,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        let mut recorded = self.recorded();
        let model = model_id.unwrap_or(UNREGISTERED).to_string();
        let key = capped(
            &recorded.calls,
            (module.to_string(), model, operation),
            |(_, _, operation)| (OTHER.to_string(), OTHER.to_string(), operation),
        );
        recorded
            .calls
            .entry(key.clone())
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
        if let Some(code) = error {
            let (module, model, _) = key;
            let key = capped(&recorded.errors, (module, model, code), |(_, _, code)| {
                (OTHER.to_string(), OTHER.to_string(), code)
            });
            *recorded.errors.entry(key).or_default() += 1;
        }
    }

    /// Records one HTTP request served by `module` with response `status`.
    pub fn record_http(&self, module: &str, status: u16, elapsed: Duration) {
        let mut recorded = self.recorded();
        let key = capped(
            &recorded.http,
            (module.to_string(), status),
            |(_, status)| (OTHER.to_string(), status),
        );
        *recorded.http.entry(key).or_default() += 1;
        let module = capped(&recorded.http_latency, module.to_string(), |_| {
            OTHER.to_string()
        });
        recorded
            .http_latency
            .entry(module)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// Records one batch of `size` texts run for `model` (the model's repository name).
    pub fn record_batch(&self, model: &str, size: usize) {
        let mut recorded = self.recorded();
        let model = capped(&recorded.batches, model.to_string(), |_| OTHER.to_string());
        recorded
            .batches
            .entry(model)
            .or_insert_with(|| Histogram::new(&BATCH_BUCKETS))
            .observe(size as f64);
    }

    /// Everything in the Prometheus text exposition format, with the live values of `status`.
    pub fn render(&self, status: &ServiceStatus, cache: CacheCounts) -> String {
        let mut out = String::new();
        let recorded = self.recorded();
        let call = |(module, model, op): &CallKey| {
            labels(&[("module", module), ("model", model), ("operation", op)])
        };
        counters(
            &mut out,
            "modelhost_requests_total",
            "model-manager calls, by module, model id and operation.",
            recorded.calls.iter().map(|(key, h)| (call(key), h.count)),
        );
        counters(
            &mut out,
            "modelhost_request_errors_total",
            "Failed model-manager calls, by module, model id and error code.",
            recorded.errors.iter().map(|((module, model, code), n)| {
                (
                    labels(&[("module", module), ("model", model), ("code", code)]),
                    *n,
                )
            }),
        );
        histograms(
            &mut out,
            "modelhost_request_duration_seconds",
            "Time spent in model-manager calls.",
            recorded.calls.iter().map(|(key, h)| (call(key), h)),
        );
        counters(
            &mut out,
            "modelhost_http_requests_total",
            "HTTP requests served by modules, by module and status code.",
            recorded.http.iter().map(|((module, code), n)| {
                (
                    labels(&[("module", module), ("status", &code.to_string())]),
                    *n,
                )
            }),
        );
        histograms(
            &mut out,
            "modelhost_http_request_duration_seconds",
            "Time to answer HTTP requests (until the response head), by module.",
            recorded
                .http_latency
                .iter()
                .map(|(m, h)| (labels(&[("module", m)]), h)),
        );
        histograms(
            &mut out,
            "modelhost_batch_size",
            "Texts per batch run on a worker, by model.",
            recorded
                .batches
                .iter()
                .map(|(m, h)| (labels(&[("model", m)]), h)),
        );
        drop(recorded);
        render_live(&mut out, status, cache);
        out
    }
}

/// Lookups of the embedding cache since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Texts found in the cache.
    pub hits: u64,
    /// Texts looked up and not found.
    pub misses: u64,
}

/// The values read from the manager's state at scrape time.
fn render_live(out: &mut String, status: &ServiceStatus, cache: CacheCounts) {
    let pool = &status.worker_pool;
    let model = |m: &ModelStatus| labels(&[("model", &m.model_id), ("name", &m.model_name)]);
    let worker = |w: &WorkerStatus| labels(&[("worker", &w.worker_id), ("device", &w.device)]);
    let one = |value: f64| [(String::new(), value)];
    gauges(
        out,
        "modelhost_queue_depth",
        "Requests waiting for a batch, over all models.",
        one(pool.pending_tasks.into()),
    );
    gauges(
        out,
        "modelhost_model_queue_depth",
        "Requests waiting in the queue of a model id's weights.",
        status
            .loaded_models
            .iter()
            .map(|m| (model(m), m.waiting_requests.into())),
    );
    counters(
        out,
        "modelhost_cache_hits_total",
        "Texts found in the embedding cache.",
        [(String::new(), cache.hits)],
    );
    counters(
        out,
        "modelhost_cache_misses_total",
        "Texts looked up in the embedding cache and not found.",
        [(String::new(), cache.misses)],
    );
    gauges(
        out,
        "modelhost_cache_entries",
        "Vectors held by the embedding cache.",
        one(status.embedding_cache.cached_count as f64),
    );
    gauges(
        out,
        "modelhost_loaded_models",
        "Model weights in memory on some worker.",
        one(status.loaded_weights.into()),
    );
    gauges(
        out,
        "modelhost_model_loaded",
        "Whether a model id's weights are loaded.",
        status
            .loaded_models
            .iter()
            .map(|m| (model(m), f64::from(u8::from(m.loaded)))),
    );
    gauges(
        out,
        "modelhost_model_references",
        "References modules hold, by module and model id.",
        status.module_references.iter().map(|r| {
            (
                labels(&[("module", &r.module_id), ("model", &r.model_id)]),
                r.reference_count.into(),
            )
        }),
    );
    let device = |d: &DeviceMemoryStatus| labels(&[("device", &d.device)]);
    gauges(
        out,
        "modelhost_device_memory_budget_bytes",
        "Bytes models may use on a device (absent when its size is unknown).",
        pool.devices
            .iter()
            .filter_map(|d| Some((device(d), d.budget_bytes? as f64))),
    );
    gauges(
        out,
        "modelhost_device_memory_used_bytes",
        "Bytes accounted to the models placed on a device.",
        pool.devices
            .iter()
            .map(|d| (device(d), d.used_bytes as f64)),
    );
    counters(
        out,
        "modelhost_evictions_total",
        "Unreferenced models evicted from a device to make room.",
        pool.devices.iter().map(|d| (device(d), d.evictions)),
    );
    gauges(
        out,
        "modelhost_model_memory_bytes",
        "Bytes accounted to a model id's weights, over its devices.",
        status
            .loaded_models
            .iter()
            .map(|m| (model(m), m.accounted_bytes as f64)),
    );
    gauges(
        out,
        "modelhost_model_measured_bytes",
        "Device memory a model id's weights took when they loaded, as the GPU driver reported it.",
        status
            .loaded_models
            .iter()
            .filter_map(|m| Some((model(m), m.measured_bytes? as f64))),
    );
    gauges(
        out,
        "modelhost_worker_busy",
        "Batches a worker has been given and not finished.",
        pool.workers.iter().map(|w| (worker(w), w.busy.into())),
    );
    samples(
        out,
        "counter",
        "modelhost_worker_busy_seconds_total",
        "Seconds a worker spent running jobs; its rate is the worker's utilization.",
        pool.workers.iter().map(|w| (worker(w), w.busy_seconds)),
    );
}

/// One metric family of plain samples: `(labels, value)` pairs.
fn samples<V: std::fmt::Display>(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in values {
        if labels.is_empty() {
            writeln!(out, "{name} {value}")
        } else {
            writeln!(out, "{name}{{{labels}}} {value}")
        }
        .expect("writing to a string");
    }
}

fn counters(
    out: &mut String,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) {
    samples(out, "counter", name, help, values);
}

fn gauges(
    out: &mut String,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, f64)>,
) {
    samples(out, "gauge", name, help, values);
}

fn histograms<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, &'a Histogram)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, histogram) in values {
        histogram.render(out, name, &labels);
    }
}

/// `name="value",...` with values escaped as the text format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{value}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::default();
        metrics.record_call(
            "m\"1",
            Some("embedder"),
            "embed",
            Duration::from_millis(3),
            None,
        );
        metrics.record_call(
            "m\"1",
            Some("embedder"),
            "embed",
            Duration::from_millis(30),
            Some("timeout"),
        );
        metrics.record_batch("org/model", 3);
        let text = metrics.render(
            &ServiceStatus::default(),
            CacheCounts { hits: 2, misses: 5 },
        );
        let requests =
            r#"modelhost_requests_total{module="m\"1",model="embedder",operation="embed"} 2"#;
        assert!(text.contains(requests), "{text}");
        assert!(text.contains(r#"code="timeout"} 1"#), "{text}");
        assert!(
            text.contains(r#"operation="embed",le="0.005"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"operation="embed",le="0.05"} 2"#), "{text}");
        assert!(
            text.contains(r#"modelhost_batch_size_bucket{model="org/model",le="4"} 1"#),
            "{text}"
        );
        assert!(text.contains("modelhost_cache_misses_total 5"), "{text}");
    }

    #[test]
    fn guest_chosen_ids_never_grow_the_label_sets() {
        let metrics = Metrics::default();
        let long = "x".repeat(64 << 10);
        for _ in 0..3 {
            metrics.record_call("m", None, "embed", Duration::ZERO, Some("not-registered"));
        }
        for i in 0..MAX_SERIES + 50 {
            let id = format!("{long}{i}");
            metrics.record_call("m", Some(&id), "embed", Duration::ZERO, Some("timeout"));
        }
        let recorded = metrics.recorded();
        assert_eq!(recorded.calls.len(), MAX_SERIES + 1);
        assert_eq!(recorded.errors.len(), MAX_SERIES + 1);
        let unregistered = ("m".to_string(), UNREGISTERED.to_string(), "embed");
        assert_eq!(recorded.calls[&unregistered].count, 3);
        let other = (OTHER.to_string(), OTHER.to_string(), "embed");
        assert_eq!(recorded.calls[&other].count, 51);
    }
}
