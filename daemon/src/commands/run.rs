//! `dbferry run`: one import in the foreground.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dbferry_copy_core::CancelToken;

use super::render::{JsonLines, ProgressBars, Quiet};
use crate::codes::{ErrorCode, Rejection};
use crate::config::Config;
use crate::ids;
use crate::import::{self, CopyTuning, EventSink, ImportResult, ImportStatus};
use crate::job::Job;
use crate::metrics::Metrics;
use crate::state::{NewImport, Store, StoredImport};

/// Exit codes of `run` (CONTRACT §1).
pub mod exit {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Rejected by validation or a precheck; nothing was changed.
    pub const REJECTED: i32 = 2;
    /// Failed while copying.
    pub const FAILED: i32 = 3;
    /// Cancelled.
    pub const CANCELLED: i32 = 4;
}

/// The exit code for a result.
pub fn exit_code(result: &ImportResult) -> i32 {
    match result.status {
        ImportStatus::Success => exit::SUCCESS,
        ImportStatus::Cancelled => exit::CANCELLED,
        ImportStatus::Failed if result.rejected => exit::REJECTED,
        _ => exit::FAILED,
    }
}

/// SIGINT or SIGTERM cancels the import; a second one ends the process.
fn cancel_on_signals(cancel: &CancelToken) {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    let cancel = cancel.clone();
    std::thread::spawn(move || loop {
        if flag.load(Ordering::SeqCst) {
            cancel.cancel();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
}

/// Prints a refusal that happened before the import had an id.
fn refuse(json: bool, rejection: &Rejection) -> i32 {
    if json {
        let object = serde_json::json!({
            "ImportId": null, "RequestId": ids::request_id(), "Status": "Failed", "Rows": 0, "Bytes": 0,
            "Code": rejection.code.as_str(), "Message": rejection.message, "Rejected": true,
        });
        println!("{object}");
    }
    eprintln!("{rejection}");
    exit::REJECTED
}

/// Runs the import of `job_path` and returns the exit code.
pub fn run(config_path: &Path, job_path: &Path, json: bool) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return refuse(
                json,
                &Rejection::new(diags.code(), format!("invalid config {}", config_path.display())),
            );
        }
    };
    let job = match Job::load(job_path) {
        Ok(j) => j,
        Err(diags) => {
            eprintln!("{diags}");
            let first = diags.0.first().map(|d| d.message.clone()).unwrap_or_default();
            return refuse(
                json,
                &Rejection::new(diags.code(), format!("invalid job {}: {first}", job_path.display())),
            );
        }
    };
    let metrics = Metrics::new();
    let ctx = match import::context(config, metrics) {
        Ok(ctx) => ctx,
        Err(rejection) => return refuse(json, &rejection),
    };
    let internal = |e: crate::state::StoreError| Rejection::new(ErrorCode::InternalError, e.to_string());
    let store = match Store::open(&ctx.config.daemon.state_dir) {
        Ok(store) => store,
        Err(e) => return refuse(json, &internal(e)),
    };
    let request_id = ids::request_id();
    let job_text = std::fs::read_to_string(job_path).unwrap_or_default();
    let origin = format!("run:{}", job_path.display());
    let created = store.create_import(&NewImport {
        request_id: &request_id,
        source_id: &job.source_id,
        target_id: &job.target_id,
        owner: &job.owner,
        origin: &origin,
        job: &job_text,
        fingerprint: None,
    });
    let import_id = match created {
        Ok(id) => id,
        Err(e) => return refuse(json, &internal(e)),
    };
    let stored = match StoredImport::load(&store, import_id) {
        Ok(c) => c,
        Err(e) => return refuse(json, &internal(e)),
    };
    let _ = store.set_status(import_id, ImportStatus::Running.as_str(), 0, 0);
    let cancel = CancelToken::new();
    cancel_on_signals(&cancel);
    let tuning = CopyTuning::default();
    let run_with = |events: &dyn EventSink| {
        import::run_import(
            &ctx,
            &job,
            import_id,
            request_id.clone(),
            &tuning,
            &stored,
            events,
            &cancel,
        )
    };
    let result = if json {
        run_with(&JsonLines)
    } else if std::io::stderr().is_terminal() {
        let bars = ProgressBars::new();
        let result = run_with(&bars);
        bars.finish();
        result
    } else {
        run_with(&Quiet)
    };

    if let Err(e) = store.finish(&result) {
        tracing::error!(error = %e, "recording the result in the state store failed");
    }
    if json {
        println!("{}", result.to_json());
    } else {
        print_summary(&result);
    }
    exit_code(&result)
}

fn print_summary(result: &ImportResult) {
    for warning in &result.warnings {
        eprintln!("warning: {warning}");
    }
    match result.status {
        ImportStatus::Success => println!(
            "import {} succeeded: {} rows, {} bytes, {} tables verified in {:.1}s",
            result.import_id,
            result.rows,
            result.bytes,
            result.tables.len(),
            result.elapsed_seconds
        ),
        _ => {
            let code = result.code.unwrap_or(ErrorCode::InternalError);
            eprintln!(
                "error[{code}]: {}",
                result.message.as_deref().unwrap_or("the import did not complete")
            );
            if !result.created.is_empty() {
                eprintln!(
                    "objects created on the target before it stopped: {}",
                    result.created.join(", ")
                );
            }
        }
    }
}
