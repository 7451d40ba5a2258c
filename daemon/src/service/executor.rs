//! Runs imports for the daemon: one thread each, under the lane budget,
//! recorded in the store from `Pending` to their end.
//!
//! Shutdown is not cancellation: an import stopped by SIGTERM keeps its
//! `Running` record (its committed chunks are checkpointed, the chunks in
//! flight roll back), so the next start resumes it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dbferry_copy_core::CancelToken;
use serde::Serialize;

use super::budget::LaneBudget;
use crate::codes::{ErrorCode, Rejection};
use crate::diag::Source;
use crate::import::{self, CopyTuning, EventSink, ImportContext, ImportEvent, ImportResult, ImportStatus};
use crate::job::Job;
use crate::state::{ImportLease, ImportRecord, NewImport, Store, StoredImport};

/// Live progress of a running import, for the status API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveProgress {
    /// Rows so far.
    pub rows: u64,
    /// Bytes so far.
    pub bytes: u64,
    /// 0..1.
    pub ratio: f64,
    /// The current phase.
    pub phase: &'static str,
    /// How each instance's connections travel, once the prechecks know.
    pub transport: Vec<crate::import::precheck::InstanceTransport>,
}

struct Running {
    cancel: CancelToken,
    user_cancelled: AtomicBool,
    progress: Mutex<LiveProgress>,
}

impl EventSink for Running {
    fn emit(&self, event: &ImportEvent) {
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            ImportEvent::Phase { phase } => progress.phase = phase,
            ImportEvent::Transport { instances } => progress.transport = instances.clone(),
            ImportEvent::Progress { rows, bytes, ratio, .. } => {
                progress.rows = *rows;
                progress.bytes = *bytes;
                progress.ratio = *ratio;
            }
            _ => {}
        }
    }
}

struct Inner {
    ctx: RwLock<ImportContext>,
    store: Arc<Store>,
    tuning: CopyTuning,
    budget: LaneBudget,
    running: Mutex<HashMap<u64, Arc<Running>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shutting_down: AtomicBool,
    /// What earlier attempts of a resumed import created, until it runs.
    earlier_created: Mutex<HashMap<u64, Vec<String>>>,
}

/// Submits, tracks, cancels and resumes imports. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// Why a resume request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// No such import.
    #[error("import {0} is not found")]
    NotFound(u64),
    /// It is running, here or in another process.
    #[error("import {0} is running")]
    Running(u64),
    /// It succeeded.
    #[error("import {0} already succeeded; there is nothing to resume")]
    Succeeded(u64),
    /// The daemon cannot resume it (shutting down, a store failure, an invalid stored job).
    #[error("{0}")]
    Refused(String),
}

/// Why a cancel request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// No such import.
    #[error("import {0} is not found")]
    NotFound(u64),
    /// It already ended.
    #[error("import {0} already ended with status {1}")]
    Ended(u64, String),
}

impl Executor {
    /// An executor with `lanes` copy lanes shared by all imports.
    pub fn new(ctx: ImportContext, store: Arc<Store>, lanes: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                ctx: RwLock::new(ctx),
                store,
                tuning: CopyTuning::default(),
                budget: LaneBudget::new(lanes),
                running: Mutex::default(),
                threads: Mutex::default(),
                shutting_down: AtomicBool::new(false),
                earlier_created: Mutex::default(),
            }),
        }
    }

    /// The current import context.
    pub fn context(&self) -> ImportContext {
        self.inner.ctx.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swaps in a reloaded context (SIGHUP); running imports keep theirs.
    pub fn replace_context(&self, ctx: ImportContext) {
        *self.inner.ctx.write().unwrap_or_else(PoisonError::into_inner) = ctx;
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Records a request that validation refused, so `status` shows it.
    pub fn record_rejected(
        &self,
        origin: &str,
        text: &str,
        fingerprint: Option<&str>,
        rejection: &Rejection,
    ) -> Result<u64, Rejection> {
        let request_id = crate::ids::request_id();
        let id = self.create(&request_id, None, origin, text, fingerprint)?;
        let mut result = ImportResult::new(id, request_id);
        result.reject(rejection.clone());
        self.finish_unstarted(&result);
        Ok(id)
    }

    fn create(
        &self,
        request_id: &str,
        job: Option<&Job>,
        origin: &str,
        text: &str,
        fingerprint: Option<&str>,
    ) -> Result<u64, Rejection> {
        let (source, target, owner) = job.map_or(("", "", ""), |j| (&j.source_id, &j.target_id, &j.owner));
        self.inner
            .store
            .create_import(&NewImport {
                request_id,
                source_id: source,
                target_id: target,
                owner,
                origin,
                job: text,
                fingerprint,
            })
            .map_err(|e| Rejection::new(ErrorCode::InternalError, e.to_string()))
    }

    fn finish(&self, result: &ImportResult) {
        if let Err(e) = self.inner.store.finish(result) {
            tracing::error!(import_id = result.import_id, error = %e, "recording an import's result failed");
        }
    }

    /// Ends an import that never reached `Import::run` (which counts its own).
    fn finish_unstarted(&self, result: &ImportResult) {
        self.finish(result);
        let metrics = self.context().metrics;
        metrics.imports.with_label_values(&[result.status.as_str()]).inc();
    }

    /// Accepts an import: stored as `Pending`, started when lanes are free.
    /// Returns its ImportId and RequestId.
    pub fn submit(
        &self,
        job: Job,
        origin: &str,
        text: &str,
        fingerprint: Option<&str>,
    ) -> Result<(u64, String), Rejection> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(Rejection::new(ErrorCode::InternalError, "the daemon is shutting down"));
        }
        let request_id = crate::ids::request_id();
        let id = self.create(&request_id, Some(&job), origin, text, fingerprint)?;
        tracing::info!(import_id = id, request_id = %request_id, origin, "import accepted");
        self.launch(id, request_id.clone(), job);
        Ok((id, request_id))
    }

    /// Restarts every import a previous daemon left `Pending` or `Running`.
    /// Imports of `dbferry run` (origin `run:…`) belong to the command line:
    /// they are resumed only when asked ([`Executor::resume`] or `dbferry resume`).
    pub fn resume_unfinished(&self) -> Result<usize, Rejection> {
        let records: Vec<_> = self
            .inner
            .store
            .imports(true)
            .map_err(|e| Rejection::new(ErrorCode::InternalError, e.to_string()))?
            .into_iter()
            .filter(|record| !record.origin.starts_with("run:"))
            .collect();
        let count = records.len();
        for record in records.into_iter().rev() {
            let origin = Path::new(record.origin.trim_start_matches("run:"));
            match Job::parse(&Source::new(origin, record.job.clone())) {
                Ok(job) => {
                    tracing::info!(import_id = record.id, request_id = %record.request_id, "resuming import after a restart");
                    self.launch(record.id, record.request_id.clone(), job);
                }
                Err(diags) => {
                    let mut result = ImportResult::new(record.id, record.request_id.clone());
                    result.fail(
                        ErrorCode::InternalError,
                        format!("cannot resume: the stored job is invalid: {diags}"),
                    );
                    self.finish_unstarted(&result);
                }
            }
        }
        Ok(count)
    }

    /// Goes on with an import that failed, was cancelled, or whose process
    /// died (its lease is free): only its uncommitted work is done again.
    pub fn resume(&self, id: u64) -> Result<(), ResumeError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(ResumeError::Refused("the daemon is shutting down".into()));
        }
        if self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
        {
            return Err(ResumeError::Running(id));
        }
        let store = &self.inner.store;
        let record = match store.import(id) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(ResumeError::NotFound(id)),
            Err(e) => return Err(ResumeError::Refused(e.to_string())),
        };
        if record.status == ImportStatus::Success.as_str() {
            return Err(ResumeError::Succeeded(id));
        }
        // Another process (a `dbferry run`) may be running it.
        match ImportLease::acquire(store.dir(), id) {
            Ok(Some(_free)) => {}
            Ok(None) => return Err(ResumeError::Running(id)),
            Err(e) => return Err(ResumeError::Refused(format!("taking the import's lease: {e}"))),
        }
        let origin = Path::new(record.origin.trim_start_matches("run:"));
        let job = Job::parse(&Source::new(origin, record.job.clone()))
            .map_err(|diags| ResumeError::Refused(format!("the stored job is invalid: {diags}")))?;
        let earlier = crate::commands::run::earlier_created(&record);
        match store.reopen(id, crate::commands::run::RESUMABLE) {
            Ok(true) => {}
            Ok(false) => return Err(ResumeError::Running(id)),
            Err(e) => return Err(ResumeError::Refused(e.to_string())),
        }
        tracing::info!(import_id = id, "import resume requested");
        self.inner
            .earlier_created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, earlier);
        self.launch(id, record.request_id, job);
        Ok(())
    }

    fn launch(&self, id: u64, request_id: String, job: Job) {
        let running = Arc::new(Running {
            cancel: CancelToken::new(),
            user_cancelled: AtomicBool::new(false),
            progress: Mutex::new(LiveProgress {
                phase: "pending",
                ..LiveProgress::default()
            }),
        });
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, running.clone());
        let metrics = self.context().metrics;
        metrics.imports.with_label_values(&["Pending"]).inc();
        let this = self.clone();
        let spawned = std::thread::Builder::new().name(format!("import-{id}")).spawn(move || {
            let lanes = this.inner.budget.acquire(job.options.parallelism, &running.cancel);
            metrics.imports.with_label_values(&["Pending"]).dec();
            match lanes {
                Some(lanes) => {
                    this.execute(id, request_id, &job, &running);
                    this.inner.budget.release(lanes);
                }
                None => this.stopped_while_pending(id, request_id, &running),
            }
            this.inner
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
        match spawned {
            Ok(handle) => self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle),
            Err(e) => tracing::error!(import_id = id, error = %e, "cannot start the import's thread"),
        }
    }

    fn stopped_while_pending(&self, id: u64, request_id: String, running: &Running) {
        if running.user_cancelled.load(Ordering::SeqCst) {
            let mut result = ImportResult::new(id, request_id);
            result.status = ImportStatus::Cancelled;
            result.message = Some("cancelled before it started".into());
            self.finish_unstarted(&result);
        }
    }

    fn execute(&self, id: u64, request_id: String, job: &Job, running: &Running) {
        let store = &self.inner.store;
        let _lease = match ImportLease::acquire(store.dir(), id) {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::warn!(
                    import_id = id,
                    "another process runs this import; leaving it to that process"
                );
                return;
            }
            Err(e) => {
                let mut result = ImportResult::new(id, request_id);
                result.fail(ErrorCode::InternalError, format!("taking the import's lease: {e}"));
                return self.finish_unstarted(&result);
            }
        };
        let _ = store.set_status(id, "Running", 0, 0);
        let ctx = self.context();
        let stored = match StoredImport::load(store, id) {
            Ok(stored) => stored,
            Err(e) => {
                let mut result = ImportResult::new(id, request_id);
                result.fail(ErrorCode::InternalError, e.to_string());
                return self.finish_unstarted(&result);
            }
        };
        let mut result = import::Import {
            ctx: &ctx,
            job,
            import_id: id,
            tuning: &self.inner.tuning,
            store: &stored,
            events: running,
            cancel: &running.cancel,
        }
        .run(request_id);
        let earlier = self
            .inner
            .earlier_created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
            .unwrap_or_default();
        let scheme = if ctx.config.daemon.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let resume = format!("dbferry resume --endpoint {scheme}://{} {id}", ctx.config.daemon.listen);
        import::next_steps(&mut result, &stored, earlier, &resume, &ctx, job);
        let interrupted = result.status == ImportStatus::Cancelled
            && self.inner.shutting_down.load(Ordering::SeqCst)
            && !running.user_cancelled.load(Ordering::SeqCst);
        if interrupted {
            // Keep the record Running: the next start resumes it.
            let _ = store.set_status(id, "Running", result.rows, result.bytes);
            tracing::info!(
                import_id = id,
                "import checkpointed for shutdown; it resumes at the next start"
            );
        } else {
            self.finish(&result);
        }
    }

    /// Cancels a running or pending import.
    pub fn cancel(&self, id: u64) -> Result<(), CancelError> {
        if let Some(running) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            running.user_cancelled.store(true, Ordering::SeqCst);
            running.cancel.cancel();
            tracing::info!(import_id = id, "import cancel requested");
            return Ok(());
        }
        match self.inner.store.import(id) {
            Ok(Some(record)) => Err(CancelError::Ended(id, record.status)),
            _ => Err(CancelError::NotFound(id)),
        }
    }

    /// Live progress of a running import.
    pub fn progress(&self, id: u64) -> Option<LiveProgress> {
        let running = self.inner.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .get(&id)
            .map(|r| r.progress.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Stored imports, newest first.
    pub fn imports(&self) -> Vec<ImportRecord> {
        self.inner.store.imports(false).unwrap_or_default()
    }

    /// Stops taking imports, stops the running ones at their next batch
    /// (committed chunks stay checkpointed) and waits up to `deadline`.
    pub fn shutdown(&self, deadline: Duration) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        for running in self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            running.cancel.cancel();
        }
        let started = Instant::now();
        let threads: Vec<_> = std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            while !thread.is_finished() && started.elapsed() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("an import did not stop in time; its chunk in flight rolls back when the process exits");
            }
        }
    }
}
