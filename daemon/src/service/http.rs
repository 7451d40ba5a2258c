//! HTTP: `/metrics`, `/healthz`, `/readyz` and the native JSON API that
//! `dbferry status` and `dbferry cancel` use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::executor::{CancelError, Executor, LiveProgress, ResumeError};
use crate::state::ImportRecord;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The executor.
    pub executor: Executor,
    /// Set once plugins and state are loaded.
    pub ready: Arc<AtomicBool>,
}

/// One import as the native API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportView {
    /// ImportId.
    pub import_id: u64,
    /// RequestId.
    pub request_id: String,
    /// Status.
    pub status: String,
    /// Source instance.
    pub source: String,
    /// Target instance.
    pub target: String,
    /// Job file, `api` or `run:FILE`.
    pub origin: String,
    /// Rows copied.
    pub rows: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Progress, 0..1 (1 once it succeeded).
    pub progress: f64,
    /// Current phase while running.
    pub phase: Option<&'static str>,
    /// Error code.
    pub code: Option<String>,
    /// Error message.
    pub message: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub ended_at: Option<i64>,
    /// How each instance's connections travel (the result's `Transport`),
    /// while the import runs and after it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<serde_json::Value>,
}

impl ImportView {
    /// Merges a stored record with live progress.
    pub fn new(record: ImportRecord, live: Option<LiveProgress>) -> Self {
        let success = record.status == "Success";
        let (rows, bytes, progress, phase) = match &live {
            Some(l) => (
                l.rows.max(record.rows),
                l.bytes.max(record.bytes),
                l.ratio,
                Some(l.phase),
            ),
            None => (record.rows, record.bytes, if success { 1.0 } else { 0.0 }, None),
        };
        Self {
            import_id: record.id,
            request_id: record.request_id,
            status: record.status,
            source: record.source_id,
            target: record.target_id,
            origin: record.origin,
            rows,
            bytes,
            progress,
            phase,
            code: record.code,
            message: record.message,
            created_at: record.created_at,
            ended_at: record.ended_at,
            transport: record
                .result
                .as_ref()
                .and_then(|r| r.get("Transport"))
                .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                .cloned()
                .or_else(|| {
                    live.as_ref()
                        .filter(|l| !l.transport.is_empty())
                        .and_then(|l| serde_json::to_value(&l.transport).ok())
                }),
        }
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/imports", get(list))
        .route("/v1/imports/{id}", get(one))
        .route("/v1/imports/{id}/cancel", post(cancel))
        .route("/v1/imports/{id}/resume", post(resume))
        .with_state(state.clone())
        .merge(crate::api::router(state.executor))
        .layer(axum::middleware::from_fn(request_timeout))
}

/// Longest time a request may take, its body included (slow clients).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

async fn request_timeout(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {REQUEST_TIMEOUT:?}"),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.executor.context().metrics.render();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "Message": message }))).into_response()
}

async fn list(State(state): State<AppState>) -> Response {
    let executor = state.executor.clone();
    let views = tokio::task::spawn_blocking(move || {
        executor
            .imports()
            .into_iter()
            .map(|r| {
                let live = executor.progress(r.id);
                ImportView::new(r, live)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match views {
        Ok(views) => Json(views).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn one(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    let executor = state.executor.clone();
    let found =
        tokio::task::spawn_blocking(move || executor.store().import(id).map(|r| (r, executor.progress(id)))).await;
    match found {
        Ok(Ok((Some(record), live))) => Json(ImportView::new(record, live)).into_response(),
        Ok(Ok((None, _))) => error(StatusCode::NOT_FOUND, format!("import {id} is not found")),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn cancel(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    match state.executor.cancel(id) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "ImportId": id, "Message": "cancel requested" })),
        )
            .into_response(),
        Err(e @ CancelError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ CancelError::Ended(..)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn resume(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    let executor = state.executor.clone();
    match tokio::task::spawn_blocking(move || executor.resume(id)).await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "ImportId": id, "Message": "resume requested" })),
        )
            .into_response(),
        Ok(Err(e @ ResumeError::NotFound(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ (ResumeError::Running(_) | ResumeError::Succeeded(_)))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e @ ResumeError::Refused(_))) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
