//! Periodic health probes: an instance that cannot be reached is
//! `Unavailable` until it answers again. Instances held by an import are
//! left alone; the import itself reports their trouble.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;

use super::executor::Executor;
use crate::import::precheck;

/// Time between two probes of one instance.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Probes every configured instance until `shutdown` fires.
pub async fn probe_instances(executor: Executor, mut shutdown: broadcast::Receiver<()>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {}
        }
        let ctx = executor.context();
        for instance in ctx.config.instances.clone() {
            if !in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(instance.id.clone())
            {
                continue; // the last probe of it has not returned yet
            }
            let (ctx, in_flight) = (ctx.clone(), in_flight.clone());
            tokio::task::spawn_blocking(move || {
                let reachable = ctx.engines.get(&instance.engine).is_some_and(|plugin| {
                    precheck::connect(plugin, &instance, 1)
                        .and_then(|s| {
                            s.probe().map_err(|e| {
                                crate::codes::Rejection::new(
                                    crate::codes::ErrorCode::IncorrectInstanceState,
                                    e.to_string(),
                                )
                            })
                        })
                        .is_ok()
                });
                if reachable {
                    ctx.instances.mark_reachable(&instance.id);
                } else {
                    if ctx.instances.state(&instance.id) != Some(crate::instances::InstanceState::Unavailable) {
                        tracing::warn!(instance_id = %instance.id, "instance unreachable");
                    }
                    ctx.instances.mark_unavailable(&instance.id);
                }
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&instance.id);
            });
        }
    }
}
