//! `dbferry daemon`: the long-running service.
//!
//! [`run`] is the whole service given a listener and a shutdown signal, so
//! tests start the real thing in-process; [`main`] adds what only a real
//! process has: the listening socket from the config, UNIX signals and systemd.

mod budget;
pub mod executor;
mod health;
pub mod http;
mod jobs;
pub mod listener;
mod systemd;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::config::Config;
use crate::import;
use crate::metrics::Metrics;
use crate::state::Store;
pub use executor::Executor;

/// How long SIGTERM waits for imports to checkpoint (systemd's default stop
/// timeout is 90 s; the contract promises 30).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Plugins could not be loaded.
    #[error("{0}")]
    Plugins(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
    /// Serving HTTP failed.
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The listener's TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
}

/// Serves until `shutdown` completes. Each message on `reload` re-reads the
/// config file; an invalid one is logged and the old config kept.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: mpsc::Receiver<()>,
) -> Result<(), DaemonError> {
    let ready = Arc::new(AtomicBool::new(false));
    let tls = match (&config.daemon.tls_cert, &config.daemon.tls_key) {
        (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key)?),
        _ => None,
    };
    let metrics = Metrics::new();
    let ctx = import::context(config.clone(), metrics).map_err(|r| DaemonError::Plugins(r.message))?;
    let store = Arc::new(Store::open(&config.daemon.state_dir)?);
    let executor = Executor::new(ctx, store, config.daemon.workers);
    let resumed = executor
        .resume_unfinished()
        .map_err(|r| DaemonError::Plugins(r.message))?;

    let (stop, _) = broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(jobs::watch(
        config.daemon.jobs_dir.clone(),
        executor.clone(),
        stop.subscribe(),
    ));
    tasks.spawn(health::probe_instances(executor.clone(), stop.subscribe()));
    tasks.spawn(systemd::watchdog(stop.subscribe()));
    {
        let (executor, path, mut stopped) = (executor.clone(), config.path.clone(), stop.subscribe());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.recv() => return,
                    message = reload.recv() => match message {
                        Some(()) => reload_config(&executor, &path),
                        None => return,
                    },
                }
            }
        });
    }

    let address = listener.local_addr()?;
    ready.store(true, Ordering::SeqCst);
    let plugins: Vec<_> = executor
        .context()
        .engines
        .infos()
        .into_iter()
        .map(|i| i.engine)
        .collect();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, scheme, resumed, plugins = ?plugins, "dbferry daemon ready");
    systemd::ready(&format!("serving on {address}; {resumed} import(s) resumed"));

    let app = http::router(http::AppState {
        executor: executor.clone(),
        ready,
    });
    let served = listener::serve(listener, app, tls, shutdown).await;

    tracing::info!("shutting down: no new imports; checkpointing the running ones");
    systemd::stopping();
    let _ = stop.send(());
    let stopping = executor.clone();
    let _ = tokio::task::spawn_blocking(move || stopping.shutdown(SHUTDOWN_GRACE)).await;
    tasks.shutdown().await;
    tracing::info!("dbferry daemon stopped");
    served.map_err(DaemonError::Http)
}

fn reload_config(executor: &Executor, path: &Path) {
    match Config::load(path) {
        Ok(config) => {
            let ctx = import::reload_context(&executor.context(), config);
            executor.replace_context(ctx);
            tracing::info!(config = %path.display(), "config reloaded");
            systemd::status("config reloaded");
        }
        Err(diags) => {
            for diag in &diags.0 {
                tracing::error!("{diag}");
            }
            tracing::error!(config = %path.display(), "config reload refused; keeping the previous config");
        }
    }
}

/// `dbferry daemon`: binds the configured address, maps SIGTERM/SIGINT to
/// shutdown and SIGHUP to reload. Returns the exit code.
pub fn main(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(diags) => {
            eprintln!("{diags}");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(config.daemon.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %config.daemon.listen, error = %e, "cannot listen");
                return 1;
            }
        };
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let signals = async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = hup.recv() => { let _ = reload_tx.try_send(()); }
                }
            }
        };
        match run(config, listener, signals, reload_rx).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "daemon failed");
                1
            }
        }
    })
}
