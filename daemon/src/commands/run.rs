//! `dbferry run`: one import in the foreground.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dbferry_copy_core::CancelToken;

use super::render::{JsonLines, ProgressBars, Quiet};
use crate::codes::{ErrorCode, Rejection};
use crate::config::Config;
use crate::diag::Source;
use crate::ids;
use crate::import::{self, CopyTuning, EventSink, ImportResult, ImportStatus};
use crate::job::Job;
use crate::metrics::Metrics;
use crate::state::{ImportLease, NewImport, Store, StoredImport};

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
    let (ctx, store) = match open(config_path, json) {
        Ok(opened) => opened,
        Err(code) => return code,
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
    let lease = match take_lease(&store, import_id) {
        Ok(lease) => lease,
        Err(rejection) => return refuse(json, &rejection),
    };
    let foreground = Foreground {
        ctx: &ctx,
        store: &store,
        config_path,
        json,
        _lease: lease,
    };
    foreground.execute(&job, import_id, request_id, Vec::new())
}

/// `dbferry resume`: goes on with an import that failed, was cancelled, or
/// whose process died, in the foreground. Returns the exit code.
pub fn resume(config_path: &Path, import_id: u64, json: bool) -> i32 {
    let (ctx, store) = match open(config_path, json) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let record = match store.import(import_id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return refuse(
                json,
                &Rejection::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "import {import_id} is not found in {}",
                        ctx.config.daemon.state_dir.display()
                    ),
                ),
            )
        }
        Err(e) => return refuse(json, &internal(e)),
    };
    // The lease says whether a live process still runs it.
    let lease = match take_lease(&store, import_id) {
        Ok(lease) => lease,
        Err(rejection) => return refuse(json, &rejection),
    };
    if record.status == ImportStatus::Success.as_str() {
        return refuse(
            json,
            &Rejection::new(
                ErrorCode::InvalidParameter,
                format!("import {import_id} already succeeded; there is nothing to resume"),
            ),
        );
    }
    let job = match Job::parse(&Source::new(
        Path::new(record.origin.trim_start_matches("run:")),
        record.job.clone(),
    )) {
        Ok(job) => job,
        Err(diags) => {
            return refuse(
                json,
                &Rejection::new(
                    ErrorCode::InternalError,
                    format!("cannot resume import {import_id}: its stored job is invalid: {diags}"),
                ),
            )
        }
    };
    match store.reopen(import_id, RESUMABLE) {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                json,
                &Rejection::new(
                    ErrorCode::InvalidParameter,
                    format!("import {import_id} cannot be resumed from status {}", record.status),
                ),
            )
        }
        Err(e) => return refuse(json, &internal(e)),
    }
    tracing::info!(import_id, "resuming import");
    let foreground = Foreground {
        ctx: &ctx,
        store: &store,
        config_path,
        json,
        _lease: lease,
    };
    let earlier = earlier_created(&record);
    foreground.execute(&job, import_id, record.request_id, earlier)
}

/// Statuses `resume` takes an import from. `Running` and `Pending` count
/// only once the lease shows no process runs it.
pub const RESUMABLE: &[&str] = &["Failed", "Cancelled", "Running", "Pending"];

/// What the attempts before this one created, from their stored result.
pub fn earlier_created(record: &crate::state::ImportRecord) -> Vec<String> {
    record
        .result
        .as_ref()
        .and_then(|r| r.get("Created"))
        .and_then(serde_json::Value::as_array)
        .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn internal(e: crate::state::StoreError) -> Rejection {
    Rejection::new(ErrorCode::InternalError, e.to_string())
}

fn busy(import_id: u64) -> Rejection {
    Rejection::new(
        ErrorCode::IncorrectInstanceState,
        format!("import {import_id} is being run by another process"),
    )
}

/// Loads the config, plugins and the state store.
fn open(config_path: &Path, json: bool) -> Result<(import::ImportContext, Store), i32> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return Err(refuse(
                json,
                &Rejection::new(diags.code(), format!("invalid config {}", config_path.display())),
            ));
        }
    };
    let ctx = import::context(config, Metrics::new()).map_err(|rejection| refuse(json, &rejection))?;
    let store = Store::open(&ctx.config.daemon.state_dir).map_err(|e| refuse(json, &internal(e)))?;
    Ok((ctx, store))
}

/// One import run in this process, which holds its lease.
struct Foreground<'a> {
    ctx: &'a import::ImportContext,
    store: &'a Store,
    config_path: &'a Path,
    json: bool,
    _lease: ImportLease,
}

impl Foreground<'_> {
    fn execute(&self, job: &Job, import_id: u64, request_id: String, earlier_created: Vec<String>) -> i32 {
        let (ctx, store, json) = (self.ctx, self.store, self.json);
        let stored = match StoredImport::load(store, import_id) {
            Ok(c) => c,
            Err(e) => return refuse(json, &internal(e)),
        };
        let _ = store.set_status(import_id, ImportStatus::Running.as_str(), 0, 0);
        let cancel = CancelToken::new();
        cancel_on_signals(&cancel);
        let tuning = CopyTuning::default();
        let run_with = |events: &dyn EventSink| {
            import::Import {
                ctx,
                job,
                import_id,
                tuning: &tuning,
                store: &stored,
                events,
                cancel: &cancel,
            }
            .run(request_id.clone())
        };
        let mut result = if json {
            run_with(&JsonLines)
        } else if std::io::stderr().is_terminal() {
            let bars = ProgressBars::new();
            let result = run_with(&bars);
            bars.finish();
            result
        } else {
            run_with(&Quiet)
        };
        let resume = format!(
            "dbferry resume --config {} {import_id}",
            crate::import::shell_quote(&self.config_path.display().to_string())
        );
        import::next_steps(&mut result, &stored, earlier_created, &resume, ctx, job);

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
}

fn print_summary(result: &ImportResult) {
    // Warnings were shown as they happened, by the live output.
    match result.status {
        ImportStatus::Success => println!(
            "import {} succeeded: {} rows, {} bytes, {} tables verified in {:.1}s",
            result.import_id,
            result.rows,
            result.bytes,
            result.tables.len(),
            result.elapsed_seconds
        ),
        ImportStatus::Cancelled => {
            eprintln!(
                "import {} cancelled: {}",
                result.import_id,
                result.message.as_deref().unwrap_or("the import was cancelled")
            );
            print_stop_details(result);
        }
        _ => {
            let code = result.code.unwrap_or(ErrorCode::InternalError);
            eprintln!(
                "error[{code}]: {}",
                result.message.as_deref().unwrap_or("the import did not complete")
            );
            print_stop_details(result);
        }
    }
}

fn print_stop_details(result: &ImportResult) {
    let mut counts = std::collections::BTreeMap::new();
    for table in &result.table_states {
        *counts.entry(format!("{:?}", table.state)).or_insert(0) += 1;
    }
    if !counts.is_empty() {
        let summary: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
        eprintln!(
            "on the target: {} rows, {} bytes committed; tables: {}",
            result.rows,
            result.bytes,
            summary.join(", ")
        );
    }
    if !result.created.is_empty() {
        eprintln!("objects created on the target: {}", result.created.join(", "));
    }
    if let Some(resume) = &result.resume_command {
        eprintln!("to resume: {resume}");
    }
    if let Some(cleanup) = &result.cleanup_hint {
        eprintln!("to remove what it created instead: {cleanup}");
    }
}

/// Takes `import_id`'s lease, which proves no live process runs it;
/// refused as busy when another process holds it.
fn take_lease(store: &Store, import_id: u64) -> Result<ImportLease, Rejection> {
    match ImportLease::acquire(store.dir(), import_id) {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => Err(busy(import_id)),
        Err(e) => Err(Rejection::new(
            ErrorCode::InternalError,
            format!("taking the import's lease: {e}"),
        )),
    }
}
