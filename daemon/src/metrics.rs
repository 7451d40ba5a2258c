//! Every Prometheus series dbferry exports, defined in one place (CONTRACT §8).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The metric handles; clone freely (they are reference-counted).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `dbferry_instance_state{instance_id,engine,state}`: 1 for the current state.
    pub instance_state: IntGaugeVec,
    /// `dbferry_bytes_transferred_total{source_instance,target_instance,database}`.
    pub bytes_transferred: IntCounterVec,
    /// `dbferry_rows_transferred_total{source_instance,target_instance,database}`.
    pub rows_transferred: IntCounterVec,
    /// `dbferry_imports{status}`: imports in each status.
    pub imports: IntGaugeVec,
    /// `dbferry_import_progress_ratio{import_id}`: 0..1 for running imports.
    pub progress: GaugeVec,
    /// `dbferry_chunk_duration_seconds{phase}`: time to copy one chunk.
    pub chunk_seconds: HistogramVec,
    /// `dbferry_queued_bytes`: bytes waiting between readers and writers (backpressure).
    pub queued_bytes: IntGauge,
    /// `dbferry_chunk_failures_total{side}`: chunks that failed for good.
    pub chunk_failures: IntCounterVec,
    /// `dbferry_chunk_retries_total`: chunks copied again after an error.
    pub chunk_retries: IntCounter,
    /// 1 while an import waits for an instance that went away.
    pub import_waiting: IntGaugeVec,
    /// Outages imports waited for.
    pub outages: IntCounterVec,
    /// `dbferry_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `dbferry_plugin_info{engine,version,abi}`: 1 per loaded plugin.
    pub plugin_info: IntGaugeVec,
    /// `dbferry_sessions_total{instance_id,encryption}`: sessions imports
    /// opened, by how their connections travel (`tls`, `plaintext`, `unknown`).
    pub sessions: IntCounterVec,
}

/// Import statuses, as `dbferry_imports{status}` labels them.
pub const IMPORT_STATUSES: [&str; 5] = ["Pending", "Running", "Success", "Failed", "Cancelled"];

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
        let registry = Registry::new();
        let instance_state = IntGaugeVec::new(
            Opts::new(
                "dbferry_instance_state",
                "Instance state: 1 for the current state, 0 for the others.",
            ),
            &["instance_id", "engine", "state"],
        );
        let bytes_transferred = IntCounterVec::new(
            Opts::new("dbferry_bytes_transferred_total", "Payload bytes written to targets."),
            &["source_instance", "target_instance", "database"],
        );
        let rows_transferred = IntCounterVec::new(
            Opts::new("dbferry_rows_transferred_total", "Rows written to targets."),
            &["source_instance", "target_instance", "database"],
        );
        let imports = IntGaugeVec::new(Opts::new("dbferry_imports", "Imports in each status."), &["status"]);
        let progress = GaugeVec::new(
            Opts::new("dbferry_import_progress_ratio", "Progress of running imports, 0 to 1."),
            &["import_id"],
        );
        let chunk_seconds = HistogramVec::new(
            HistogramOpts::new("dbferry_chunk_duration_seconds", "Time to copy and commit one chunk.")
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).unwrap_or_default()),
            &["engine"],
        );
        let queued_bytes = IntGauge::new("dbferry_queued_bytes", "Bytes queued between readers and writers.");
        let chunk_failures = IntCounterVec::new(
            Opts::new("dbferry_chunk_failures_total", "Chunks that failed, by side."),
            &["side"],
        );
        let chunk_retries = IntCounter::new("dbferry_chunk_retries_total", "Chunks copied again after an error.");
        let import_waiting = IntGaugeVec::new(
            Opts::new(
                "dbferry_import_waiting",
                "1 while an import waits for a source or target that went away.",
            ),
            &["import_id"],
        );
        let outages = IntCounterVec::new(
            Opts::new(
                "dbferry_outages_total",
                "Outages imports waited for, by the side that failed first.",
            ),
            &["side"],
        );
        let build_info = IntGaugeVec::new(Opts::new("dbferry_build_info", "dbferry build."), &["version"]);
        let plugin_info = IntGaugeVec::new(
            Opts::new("dbferry_plugin_info", "Loaded engine plugins."),
            &["engine", "version", "abi"],
        );
        let sessions = IntCounterVec::new(
            Opts::new(
                "dbferry_sessions_total",
                "Sessions imports opened to instances, by encryption of their connections.",
            ),
            &["instance_id", "encryption"],
        );
        let metrics = (|| -> prometheus::Result<Metrics> {
            let m = Metrics {
                registry: registry.clone(),
                instance_state: instance_state?,
                bytes_transferred: bytes_transferred?,
                rows_transferred: rows_transferred?,
                imports: imports?,
                progress: progress?,
                chunk_seconds: chunk_seconds?,
                queued_bytes: queued_bytes?,
                chunk_failures: chunk_failures?,
                chunk_retries: chunk_retries?,
                import_waiting: import_waiting?,
                outages: outages?,
                build_info: build_info?,
                plugin_info: plugin_info?,
                sessions: sessions?,
            };
            registry.register(Box::new(m.instance_state.clone()))?;
            registry.register(Box::new(m.bytes_transferred.clone()))?;
            registry.register(Box::new(m.rows_transferred.clone()))?;
            registry.register(Box::new(m.imports.clone()))?;
            registry.register(Box::new(m.progress.clone()))?;
            registry.register(Box::new(m.chunk_seconds.clone()))?;
            registry.register(Box::new(m.queued_bytes.clone()))?;
            registry.register(Box::new(m.chunk_failures.clone()))?;
            registry.register(Box::new(m.chunk_retries.clone()))?;
            registry.register(Box::new(m.import_waiting.clone()))?;
            registry.register(Box::new(m.outages.clone()))?;
            registry.register(Box::new(m.build_info.clone()))?;
            registry.register(Box::new(m.plugin_info.clone()))?;
            registry.register(Box::new(m.sessions.clone()))?;
            Ok(m)
        })();
        // The definitions above are static and valid; a failure here is a
        // programming error caught by the unit test below.
        #[allow(clippy::expect_used)]
        let metrics = metrics.expect("metric definitions are valid");
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for status in IMPORT_STATUSES {
            metrics.imports.with_label_values(&[status]).set(0);
        }
        metrics
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_series_are_exported() {
        let metrics = Metrics::new();
        metrics
            .instance_state
            .with_label_values(&["rm-1", "mysql", "Running"])
            .set(1);
        metrics.bytes_transferred.with_label_values(&["a", "b", "db"]).inc_by(5);
        metrics.rows_transferred.with_label_values(&["a", "b", "db"]).inc_by(1);
        metrics.progress.with_label_values(&["7"]).set(0.5);
        let text = metrics.render();
        for name in [
            "dbferry_instance_state{engine=\"mysql\",instance_id=\"rm-1\",state=\"Running\"} 1",
            "dbferry_bytes_transferred_total",
            "dbferry_rows_transferred_total",
            "dbferry_imports{status=\"Pending\"} 0",
            "dbferry_import_progress_ratio{import_id=\"7\"} 0.5",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
