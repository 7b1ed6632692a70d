//! A running host's status as readable tables (`modelhost status`).

use std::fmt::Write;

use crate::serve::{HostStatus, ModulePhase};

/// Left-aligned columns under a header, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
}

/// The status as text: readiness, modules, workers, models, references and the cache.
pub fn render(status: &HostStatus) -> String {
    let mut out = String::new();
    let service = &status.service;
    let _ = writeln!(
        out,
        "ready: {}    model ids: {}    weights in memory: {}    pending requests: {}\n",
        if status.ready { "yes" } else { "no" },
        service.total_loaded_models,
        service.loaded_weights,
        service.worker_pool.pending_tasks
    );
    let modules: Vec<Vec<String>> = status
        .modules
        .iter()
        .map(|m| {
            let state = match &m.state {
                ModulePhase::Starting => "starting".to_string(),
                ModulePhase::Ready => "ready".to_string(),
                ModulePhase::Failed(reason) => format!("failed: {reason}"),
                ModulePhase::Stopped => "stopped".to_string(),
            };
            vec![m.id.clone(), m.route.clone().unwrap_or("-".into()), state]
        })
        .collect();
    table(&mut out, &["MODULE", "ROUTE", "STATE"], &modules);
    let workers: Vec<Vec<String>> = service
        .worker_pool
        .workers
        .iter()
        .map(|w| {
            vec![
                w.worker_id.clone(),
                w.device.clone(),
                w.busy.to_string(),
                w.loaded_models.to_string(),
                format!("{:.1}", w.busy_seconds),
            ]
        })
        .collect();
    table(
        &mut out,
        &["WORKER", "DEVICE", "BUSY", "MODELS", "BUSY SECONDS"],
        &workers,
    );
    let mib = |bytes: u64| format!("{:.1}", bytes as f64 / (1 << 20) as f64);
    let devices: Vec<Vec<String>> = service
        .worker_pool
        .devices
        .iter()
        .map(|d| {
            let unknown = || "-".to_string();
            vec![
                d.device.clone(),
                d.budget_bytes.map_or_else(unknown, mib),
                mib(d.used_bytes),
                d.free_bytes.map_or_else(unknown, mib),
                d.evictions.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["DEVICE", "BUDGET MIB", "USED MIB", "FREE MIB", "EVICTIONS"],
        &devices,
    );
    let models: Vec<Vec<String>> = service
        .loaded_models
        .iter()
        .map(|m| {
            vec![
                m.model_id.clone(),
                m.model_type.to_string(),
                m.model_name.clone(),
                if m.loaded { "yes" } else { "no" }.into(),
                m.reference_count.to_string(),
                m.device.clone(),
                m.workers.join(","),
                mib(m.accounted_bytes),
                m.measured_bytes.map_or_else(|| "-".to_string(), mib),
                m.placement_note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "MODEL ID",
            "TYPE",
            "NAME",
            "LOADED",
            "REFS",
            "DEVICE",
            "WORKERS",
            "MIB",
            "MEASURED MIB",
            "PLACEMENT",
        ],
        &models,
    );
    let references: Vec<Vec<String>> = service
        .module_references
        .iter()
        .map(|r| {
            vec![
                r.module_id.clone(),
                r.model_id.clone(),
                r.reference_count.to_string(),
            ]
        })
        .collect();
    table(&mut out, &["MODULE", "MODEL ID", "REFS"], &references);
    let cache = &service.embedding_cache;
    let _ = writeln!(
        out,
        "embedding cache: {}, {} vectors, hit rate {:.1}%",
        if cache.enabled { "on" } else { "off" },
        cache.cached_count,
        cache.hit_rate * 100.0
    );
    out
}
