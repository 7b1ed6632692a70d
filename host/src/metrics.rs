//! Counters and histograms the host keeps while it serves, and their rendering in the Prometheus
//! text format (`/metrics`). Calls are labelled by module and model; live values (queue depth,
//! loaded models, worker load) are read from the manager's state at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::results::ServiceStatus;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the batch size histogram buckets.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

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
    pub fn record_call(
        &self,
        module: &str,
        model_id: &str,
        operation: &'static str,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        let mut recorded = self.recorded();
        recorded
            .calls
            .entry((module.to_string(), model_id.to_string(), operation))
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
        if let Some(code) = error {
            *recorded
                .errors
                .entry((module.to_string(), model_id.to_string(), code))
                .or_default() += 1;
        }
    }

    /// Records one HTTP request served by `module` with response `status`.
    pub fn record_http(&self, module: &str, status: u16, elapsed: Duration) {
        let mut recorded = self.recorded();
        *recorded
            .http
            .entry((module.to_string(), status))
            .or_default() += 1;
        recorded
            .http_latency
            .entry(module.to_string())
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// Records one batch of `size` texts run for `model` (the model's repository name).
    pub fn record_batch(&self, model: &str, size: usize) {
        self.recorded()
            .batches
            .entry(model.to_string())
            .or_insert_with(|| Histogram::new(&BATCH_BUCKETS))
            .observe(size as f64);
    }

    /// Everything in the Prometheus text exposition format, with the live values of `status`.
    pub fn render(&self, status: &ServiceStatus, cache: CacheCounts) -> String {
        let mut out = String::new();
        let recorded = self.recorded();

        family(
            &mut out,
            "modelhost_requests_total",
            "counter",
            "model-manager calls, by module, model id and operation.",
        );
        for ((module, model, op), h) in &recorded.calls {
            let labels = labels(&[("module", module), ("model", model), ("operation", op)]);
            let _ = writeln!(out, "modelhost_requests_total{{{labels}}} {}", h.count);
        }
        family(
            &mut out,
            "modelhost_request_errors_total",
            "counter",
            "Failed model-manager calls, by module, model id and error code.",
        );
        for ((module, model, code), n) in &recorded.errors {
            let labels = labels(&[("module", module), ("model", model), ("code", code)]);
            let _ = writeln!(out, "modelhost_request_errors_total{{{labels}}} {n}");
        }
        family(
            &mut out,
            "modelhost_request_duration_seconds",
            "histogram",
            "Time spent in model-manager calls.",
        );
        for ((module, model, op), h) in &recorded.calls {
            let labels = labels(&[("module", module), ("model", model), ("operation", op)]);
            h.render(&mut out, "modelhost_request_duration_seconds", &labels);
        }
        family(
            &mut out,
            "modelhost_http_requests_total",
            "counter",
            "HTTP requests served by modules, by module and status code.",
        );
        for ((module, code), n) in &recorded.http {
            let labels = labels(&[("module", module), ("status", &code.to_string())]);
            let _ = writeln!(out, "modelhost_http_requests_total{{{labels}}} {n}");
        }
        family(
            &mut out,
            "modelhost_http_request_duration_seconds",
            "histogram",
            "Time to serve HTTP requests, by module.",
        );
        for (module, h) in &recorded.http_latency {
            h.render(
                &mut out,
                "modelhost_http_request_duration_seconds",
                &labels(&[("module", module)]),
            );
        }
        family(
            &mut out,
            "modelhost_batch_size",
            "histogram",
            "Texts per batch run on a worker, by model.",
        );
        for (model, h) in &recorded.batches {
            h.render(
                &mut out,
                "modelhost_batch_size",
                &labels(&[("model", model)]),
            );
        }
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

fn render_live(out: &mut String, status: &ServiceStatus, cache: CacheCounts) {
    family(
        out,
        "modelhost_queue_depth",
        "gauge",
        "Requests waiting for a batch, over all models.",
    );
    let _ = writeln!(
        out,
        "modelhost_queue_depth {}",
        status.worker_pool.pending_tasks
    );
    family(
        out,
        "modelhost_cache_hits_total",
        "counter",
        "Texts found in the embedding cache.",
    );
    let _ = writeln!(out, "modelhost_cache_hits_total {}", cache.hits);
    family(
        out,
        "modelhost_cache_misses_total",
        "counter",
        "Texts looked up in the embedding cache and not found.",
    );
    let _ = writeln!(out, "modelhost_cache_misses_total {}", cache.misses);
    family(
        out,
        "modelhost_cache_entries",
        "gauge",
        "Vectors held by the embedding cache.",
    );
    let _ = writeln!(
        out,
        "modelhost_cache_entries {}",
        status.embedding_cache.cached_count
    );
    family(
        out,
        "modelhost_loaded_models",
        "gauge",
        "Model weights in memory on some worker.",
    );
    let _ = writeln!(
        out,
        "modelhost_loaded_models {}",
        status.total_loaded_models
    );
    family(
        out,
        "modelhost_model_loaded",
        "gauge",
        "Whether a registered model id's weights are loaded, by model id.",
    );
    for model in &status.models {
        let labels = labels(&[("model", &model.model_id), ("name", &model.model_name)]);
        let _ = writeln!(
            out,
            "modelhost_model_loaded{{{labels}}} {}",
            u8::from(model.loaded)
        );
    }
    family(
        out,
        "modelhost_model_references",
        "gauge",
        "References modules hold, by module and model id.",
    );
    for reference in &status.module_references {
        let labels = labels(&[
            ("module", &reference.module_id),
            ("model", &reference.model_id),
        ]);
        let _ = writeln!(
            out,
            "modelhost_model_references{{{labels}}} {}",
            reference.reference_count
        );
    }
    family(
        out,
        "modelhost_worker_busy",
        "gauge",
        "Batches a worker has been given and not finished.",
    );
    for worker in &status.worker_pool.workers {
        let labels = labels(&[("worker", &worker.worker_id), ("device", &worker.device)]);
        let _ = writeln!(out, "modelhost_worker_busy{{{labels}}} {}", worker.busy);
    }
    family(
        out,
        "modelhost_worker_busy_seconds_total",
        "counter",
        "Seconds a worker spent running jobs; its rate is the worker's utilization.",
    );
    for worker in &status.worker_pool.workers {
        let labels = labels(&[("worker", &worker.worker_id), ("device", &worker.device)]);
        let _ = writeln!(
            out,
            "modelhost_worker_busy_seconds_total{{{labels}}} {}",
            worker.busy_seconds
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
        metrics.record_call("m\"1", "embedder", "embed", Duration::from_millis(3), None);
        metrics.record_call(
            "m\"1",
            "embedder",
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
}
