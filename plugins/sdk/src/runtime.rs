//! The plugin's process-wide tokio runtime.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The runtime every blocking plugin call runs on, started on first use
/// with worker threads named `thread_name`. The error says why it could not
/// start.
pub fn runtime(thread_name: &'static str) -> Result<&'static Runtime, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(thread_name)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| format!("cannot start the plugin runtime: {e}"))
}
