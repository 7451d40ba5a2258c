//! The four actions.

use std::sync::Arc;
use std::time::Duration;

use super::render::Node;
use super::{clock, internal, Api, Caller, Params};
use crate::codes::{ErrorCode, Rejection};
use crate::config::Instance;
use crate::import::precheck;
use crate::instances::InstanceState;
use crate::job::{ApiRequest, Job};
use crate::service::executor::CancelError;
use crate::service::Executor;

/// How long `DescribeDBInstanceAttribute` waits for the server's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest `ClientToken`, as the cloud API allows.
const MAX_CLIENT_TOKEN: usize = 64;

/// Runs `action`; returns the XML root element name and the body.
pub(super) async fn dispatch(
    api: &Arc<Api>,
    caller: &Caller,
    action: &str,
    params: &Params,
    request_id: &str,
) -> Result<(String, Node), Rejection> {
    let body = match action {
        "ImportDatabaseBetweenInstances" => import(api, caller, params).await?,
        "DescibeImportsFromDatabase" => describe_imports(api, caller, params, request_id).await?,
        "CancelImport" => cancel(api, caller, params, request_id).await?,
        "DescribeDBInstanceAttribute" => describe_instance(api, caller, params, request_id).await?,
        other => {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                format!(
                    "Action {other:?} is not supported; use ImportDatabaseBetweenInstances, DescibeImportsFromDatabase, CancelImport or DescribeDBInstanceAttribute"
                ),
            ))
        }
    };
    Ok((format!("{action}Response"), body))
}

fn not_found(id: &str) -> Rejection {
    Rejection::new(
        ErrorCode::InstanceNotFound,
        format!("The specified instance {id} is not found."),
    )
}

/// The caller's instance `id`; another owner's looks exactly like a missing one.
fn owned_instance(api: &Api, caller: &Caller, id: &str) -> Result<Instance, Rejection> {
    api.executor
        .context()
        .config
        .instance(id)
        .filter(|i| i.owner == caller.owner)
        .cloned()
        .ok_or_else(|| not_found(id))
}

fn parse_number(params: &Params, name: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, Rejection> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                Rejection::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "{name} must be an integer from {} to {}, found {text:?}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Rejection> + Send + 'static,
) -> Result<T, Rejection> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// `ImportDatabaseBetweenInstances`.
async fn import(api: &Arc<Api>, caller: &Caller, params: &Params) -> Result<Node, Rejection> {
    let token = params.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string);
    if let Some(token) = &token {
        if token.len() > MAX_CLIENT_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                format!("ClientToken must be at most {MAX_CLIENT_TOKEN} printable ASCII characters"),
            ));
        }
    }
    let job = Job::from_api(&ApiRequest {
        target_id: params.get("DBInstanceId"),
        source_id: params.get("SourceDBInstanceId"),
        db_info: params.get("DBInfo"),
        owner: &caller.owner,
    })?;
    let lock = token.as_deref().map(|t| api.token_lock(&caller.owner, t));
    let _held = match &lock {
        Some(lock) => Some(lock.clone().lock_owned().await),
        None => None,
    };
    let executor = api.executor.clone();
    let owner = caller.owner.clone();
    let submitted = blocking(move || {
        let store = executor.store();
        if let Some(token) = &token {
            if let Some(id) = store.client_token(&owner, token).map_err(internal)? {
                tracing::info!(import_id = id, "ClientToken seen before: same import");
                return Ok((id, crate::ids::request_id()));
            }
        }
        precheck_now(&executor, &job)?;
        let text = job.text().unwrap_or_default().to_string();
        let (id, request_id) = executor.submit(job, "api", &text, None)?;
        if let Some(token) = &token {
            if let Err(e) = store.remember_client_token(&owner, token, id) {
                tracing::error!(import_id = id, error = %e, "cannot remember a ClientToken");
            }
        }
        Ok((id, request_id))
    })
    .await;
    api.imports_changed();
    let (id, request_id) = submitted?;
    Ok(Node::obj([("ImportId", id.into()), ("RequestId", request_id.into())]))
}

/// Every rule of CONTRACT §4 before the import is accepted, through the
/// functions the import itself uses: [`precheck::resolve`] (rules 1, 2, 3,
/// 7) and [`precheck::check_servers`] (4, 5, 6, 8, 9). Rule 5's "in no
/// other import" also counts the imports this daemon has queued or running.
fn precheck_now(executor: &Executor, job: &Job) -> Result<(), Rejection> {
    let ctx = executor.context();
    let resolved = precheck::resolve(&ctx.config, job)?;
    let ids = [resolved.source.id.as_str(), resolved.target.id.as_str()];
    for id in ids {
        if let Some(state @ (InstanceState::Migrating | InstanceState::Importing)) = ctx.instances.state(id) {
            return Err(Rejection::new(
                ErrorCode::IncorrectInstanceState,
                format!("instance {id} is not Running: it is {}", state.as_str()),
            ));
        }
    }
    let unfinished = executor.store().imports(true).map_err(internal)?;
    if let Some((other, id)) = unfinished.iter().find_map(|r| {
        ids.iter()
            .find(|id| r.source_id == **id || r.target_id == **id)
            .map(|id| (r, *id))
    }) {
        return Err(Rejection::new(
            ErrorCode::IncorrectInstanceState,
            format!(
                "instance {id} is not Running: it is in import {} ({})",
                other.id, other.status
            ),
        ));
    }
    let plugin = ctx.engines.get(&resolved.source.engine).ok_or_else(|| {
        Rejection::new(
            ErrorCode::InternalError,
            format!("no plugin for engine {} is loaded", resolved.source.engine),
        )
    })?;
    precheck::check_servers(plugin, &resolved, job, None).map(drop)
}

/// The engine as the cloud API names it.
fn engine_name(engine: &str) -> &str {
    match engine {
        "mysql" => "MySQL",
        "sqlserver" => "SQLServer",
        other => other,
    }
}

/// `DescribeDBInstanceAttribute`.
async fn describe_instance(
    api: &Arc<Api>,
    caller: &Caller,
    params: &Params,
    request_id: &str,
) -> Result<Node, Rejection> {
    let id = params.required("DBInstanceId")?;
    let instance = owned_instance(api, caller, id)?;
    let ctx = api.executor.context();
    let state = ctx.instances.state(id).unwrap_or(InstanceState::Running);
    let probe = {
        let (ctx, instance) = (ctx.clone(), instance.clone());
        tokio::time::timeout(
            PROBE_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let plugin = ctx
                    .engines
                    .get(&instance.engine)
                    .ok_or_else(|| format!("no plugin for engine {}", instance.engine))?;
                let session = precheck::connect(plugin, &instance, 1).map_err(|r| r.message)?;
                session.probe().map_err(|e| e.to_string())
            }),
        )
        .await
    };
    let info = match probe {
        Ok(Ok(Ok(info))) => Some(info),
        Ok(Ok(Err(message))) => {
            tracing::debug!(instance_id = id, %message, "probe failed");
            None
        }
        _ => None,
    };
    let status = match (state, &info) {
        (InstanceState::Running, None) => InstanceState::Unavailable,
        (InstanceState::Unavailable, Some(_)) => InstanceState::Running,
        (state, _) => state,
    };
    let (lock_mode, lock_reason) = match (&instance.lock_mode, &info) {
        (Some(mode), _) if mode != "Unlock" => (mode.clone(), Some("set by the operator (lock_mode)".to_string())),
        (_, Some(info)) if info.read_only => ("ManualLock".to_string(), Some("the server is read-only".to_string())),
        _ => ("Unlock".to_string(), None),
    };
    let attribute = Node::obj([
        ("DBInstanceId", id.into()),
        ("DBInstanceStatus", status.as_str().into()),
        ("Engine", engine_name(&instance.engine).into()),
        (
            "EngineVersion",
            Node::opt_str(info.as_ref().map(|i| i.version.as_str())),
        ),
        ("Category", instance.category.as_str().into()),
        ("LockMode", lock_mode.into()),
        ("LockReason", Node::opt_str(lock_reason.as_deref())),
        (
            "DBInstanceStorage",
            if instance.storage_gb.fract() == 0.0 {
                Node::Int(instance.storage_gb as i64)
            } else {
                Node::Float(instance.storage_gb)
            },
        ),
        (
            "DBInstanceDiskUsed",
            info.as_ref().map_or(Node::Null, |i| i.used_bytes.into()),
        ),
        ("ReadOnly", info.as_ref().map_or(Node::Null, |i| i.read_only.into())),
    ]);
    Ok(Node::obj([
        ("RequestId", request_id.into()),
        (
            "Items",
            Node::obj([("DBInstanceAttribute", Node::List(vec![attribute]))]),
        ),
    ]))
}

/// `DescibeImportsFromDatabase` (the cloud API's spelling).
async fn describe_imports(
    api: &Arc<Api>,
    caller: &Caller,
    params: &Params,
    request_id: &str,
) -> Result<Node, Rejection> {
    let id = params.required("DBInstanceId")?;
    owned_instance(api, caller, id)?;
    let import_id = parse_number(params, "ImportId", 1..=u64::MAX)?;
    let page_size = parse_number(params, "PageSize", 1..=100)?.unwrap_or(30);
    let page_number = parse_number(params, "PageNumber", 1..=u64::MAX)?.unwrap_or(1);
    let records = api.imports().await?;
    let matching: Vec<_> = records
        .iter()
        .filter(|r| r.source_id == id || r.target_id == id)
        .filter(|r| import_id.is_none_or(|n| r.id == n))
        .collect();
    let total = matching.len();
    let skip = usize::try_from((page_number - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
    let items: Vec<Node> = matching
        .into_iter()
        .skip(skip)
        .take(page_size as usize)
        .map(|r| {
            let live = if r.status == "Running" || r.status == "Pending" {
                api.executor.progress(r.id)
            } else {
                None
            };
            let (rows, bytes) = live
                .as_ref()
                .map_or((r.rows, r.bytes), |l| (l.rows.max(r.rows), l.bytes.max(r.bytes)));
            let progress = match (&live, r.status.as_str()) {
                (_, "Success") => 100,
                (Some(l), _) => (l.ratio * 100.0).floor().clamp(0.0, 99.0) as u64,
                _ => 0,
            };
            Node::obj([
                ("ImportId", r.id.into()),
                ("SourceDBInstanceId", r.source_id.as_str().into()),
                ("DBInstanceId", r.target_id.as_str().into()),
                ("Status", r.status.as_str().into()),
                ("Progress", progress.into()),
                ("Phase", Node::opt_str(live.as_ref().map(|l| l.phase))),
                ("Rows", rows.into()),
                ("Bytes", bytes.into()),
                ("StartTime", clock::format_iso8601(r.created_at).into()),
                (
                    "EndTime",
                    Node::opt_str(r.ended_at.map(clock::format_iso8601).as_deref()),
                ),
                ("ErrorCode", Node::opt_str(r.code.as_deref())),
                ("ErrorMessage", Node::opt_str(r.message.as_deref())),
                ("Origin", r.origin.as_str().into()),
            ])
        })
        .collect();
    Ok(Node::obj([
        ("RequestId", request_id.into()),
        ("TotalRecordCount", (total as u64).into()),
        ("PageNumber", page_number.into()),
        ("PageRecordCount", (items.len() as u64).into()),
        ("Items", Node::obj([("ImportResultFromDB", Node::List(items))])),
    ]))
}

/// `CancelImport`.
async fn cancel(api: &Arc<Api>, caller: &Caller, params: &Params, request_id: &str) -> Result<Node, Rejection> {
    let id = params.required("DBInstanceId")?.to_string();
    owned_instance(api, caller, &id)?;
    let import_id = params.required("ImportId")?;
    let import_id = import_id.parse::<u64>().map_err(|_| {
        Rejection::new(
            ErrorCode::InvalidParameter,
            format!("ImportId must be a positive integer, found {import_id:?}"),
        )
    })?;
    let executor = api.executor.clone();
    let instance = id.clone();
    blocking(move || {
        let not_ours = || {
            Rejection::new(
                ErrorCode::InvalidParameter,
                format!("import {import_id} is not an import of instance {instance}"),
            )
        };
        let record = executor
            .store()
            .import(import_id)
            .map_err(internal)?
            .ok_or_else(not_ours)?;
        if record.source_id != instance && record.target_id != instance {
            return Err(not_ours());
        }
        executor.cancel(import_id).map_err(|e| match e {
            CancelError::NotFound(_) => not_ours(),
            CancelError::Ended(..) => Rejection::new(
                ErrorCode::InvalidParameter,
                format!("{e}; only a Pending or Running import can be cancelled"),
            ),
        })
    })
    .await?;
    api.imports_changed();
    Ok(Node::obj([
        ("RequestId", request_id.into()),
        ("ImportId", import_id.into()),
    ]))
}
