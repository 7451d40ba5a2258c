//! The RDS-compatible RPC API at `/` (CONTRACT §6), as the official Alibaba
//! Cloud SDKs call it: GET query string or POST form, signed with
//! Signature V1 (HMAC-SHA1 query signing) or V3 (`ACS3-HMAC-SHA256`).
//!
//! Every request is authenticated first: the AccessKeyId must be one of the
//! config's `[[access_keys]]`, the signature must match (compared in
//! constant time), the timestamp must be within ±15 minutes and the nonce
//! new (a bounded cache remembers nonces for as long as their timestamp is
//! acceptable). The key's `owner` is then the requesting account: an
//! instance of another owner answers `InvalidDBInstanceId.NotFound`, exactly
//! as a missing one.
//!
//! `ImportDatabaseBetweenInstances` goes through the same code as a job
//! file: the parameters become job text validated by [`Job::from_api`]
//! (which is [`Job::parse`]), then every precheck of CONTRACT §4 runs before
//! the answer, so the caller gets each rule's code and HTTP status directly
//! (rules 1, 2, 3, 7 from the config, rules 4, 5, 6, 8, 9 from the servers),
//! and only then is the import handed to the executor. The import checks
//! the servers again when it starts (they may have changed in between); a
//! failure found then is reported by `DescibeImportsFromDatabase` with its
//! code and message.
//!
//! [`Job::from_api`]: crate::job::Job::from_api
//! [`Job::parse`]: crate::job::Job::parse

mod actions;
pub mod clock;
pub mod nonce;
pub mod render;
pub mod sign;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::codes::{ErrorCode, Rejection};
use crate::service::Executor;
use crate::state::ImportRecord;
use nonce::NonceCache;
use render::Format;

/// The only API version (`Version` / `x-acs-version`).
pub const API_VERSION: &str = "2014-08-15";
/// How far a request's timestamp may be from the daemon's clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 15 * 60;
/// Largest request body read (a form body of parameters).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// How long a client may take to send its body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Nonces remembered at most (about 110 requests a second, sustained over
/// the 30-minute replay window, per daemon).
pub const NONCE_CAPACITY: usize = 200_000;
/// How long a listing of imports is reused by concurrent status requests.
const IMPORTS_CACHE_TTL: Duration = Duration::from_millis(250);

/// One lock per (owner, `ClientToken`) being served.
type TokenLocks = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// The imports listing: when it was read, for which generation, the records.
type CachedImports = Option<(Instant, u64, Arc<Vec<ImportRecord>>)>;

/// Checks a signature with the access key's secret.
type Verifier<'a> = Box<dyn Fn(&str) -> bool + 'a>;

/// What the API handlers share.
pub struct Api {
    executor: Executor,
    nonces: NonceCache,
    tokens: Mutex<TokenLocks>,
    imports: tokio::sync::Mutex<CachedImports>,
    generation: AtomicU64,
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The AccessKeyId.
    pub access_key_id: String,
    /// The account it acts for.
    pub owner: String,
}

/// A request's parameters: the query string, then a form body.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// Query string parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Query and form body parameters, decoded.
    pub all: Vec<(String, String)>,
}

impl Params {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, Rejection> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            Rejection::new(
                ErrorCode::MissingParameter,
                format!("{name} is mandatory for this action."),
            )
        })
    }

    fn parse(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let mut all = query.clone();
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if form {
            all.extend(form_urlencoded::parse(body).into_owned());
        }
        Self { query, all }
    }
}

impl Api {
    /// The API over `executor`.
    pub fn new(executor: Executor) -> Self {
        Self {
            executor,
            nonces: NonceCache::new(NONCE_CAPACITY),
            tokens: Mutex::default(),
            imports: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Imports as stored, shared by the status requests of a short window
    /// (and refreshed at once after this API starts or cancels one).
    async fn imports(&self) -> Result<Arc<Vec<ImportRecord>>, Rejection> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut slot = self.imports.lock().await;
        if let Some((at, seen, records)) = &*slot {
            if *seen == generation && at.elapsed() < IMPORTS_CACHE_TTL {
                return Ok(records.clone());
            }
        }
        let executor = self.executor.clone();
        let records = tokio::task::spawn_blocking(move || executor.store().imports(false))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let records = Arc::new(records);
        *slot = Some((Instant::now(), generation, records.clone()));
        Ok(records)
    }

    /// Forgets the cached listing.
    fn imports_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The lock that serialises requests carrying one owner's `ClientToken`.
    fn token_lock(&self, owner: &str, token: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, lock| Arc::strong_count(lock) > 1);
        tokens
            .entry((owner.to_string(), token.to_string()))
            .or_default()
            .clone()
    }

    /// Authenticates a request (V3 when it has an `Authorization` header,
    /// V1 otherwise); returns the caller and the action.
    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        params: &Params,
        body: &[u8],
    ) -> Result<(Caller, String), Rejection> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let missing = |name: &str| {
            Rejection::new(
                ErrorCode::MissingParameter,
                format!("{name} is mandatory for this action."),
            )
        };
        let signature_mismatch = |detail: &str| {
            Rejection::new(
                ErrorCode::SignatureDoesNotMatch,
                format!("Specified signature does not match our calculation: {detail}"),
            )
        };
        let (key_id, action, version, timestamp, nonce, verify): (_, _, _, _, _, Verifier<'_>) =
            if let Some(authorization) = header("authorization") {
                let auth = sign::V3Authorization::parse(authorization).ok_or_else(|| {
                    Rejection::new(
                        ErrorCode::InvalidParameter,
                        "Authorization must be `ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...`",
                    )
                })?;
                let action = header("x-acs-action")
                    .or(params.get("Action"))
                    .ok_or_else(|| missing("x-acs-action"))?;
                let version = header("x-acs-version").ok_or_else(|| missing("x-acs-version"))?;
                let date = header("x-acs-date").ok_or_else(|| missing("x-acs-date"))?;
                let nonce = header("x-acs-signature-nonce").ok_or_else(|| missing("x-acs-signature-nonce"))?;
                let payload = header("x-acs-content-sha256").ok_or_else(|| missing("x-acs-content-sha256"))?;
                for needed in [
                    "x-acs-action",
                    "x-acs-version",
                    "x-acs-date",
                    "x-acs-signature-nonce",
                    "x-acs-content-sha256",
                ] {
                    if !auth.signed_headers.iter().any(|h| h == needed) {
                        return Err(signature_mismatch(&format!("{needed} must be a signed header")));
                    }
                }
                if !payload.eq_ignore_ascii_case(&sign::sha256_hex(body)) {
                    return Err(signature_mismatch(
                        "x-acs-content-sha256 is not the SHA-256 of the body",
                    ));
                }
                let canonical = sign::v3_canonical_request(
                    method.as_str(),
                    uri.path(),
                    &params.query,
                    &auth.signed_headers,
                    |name| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect(),
                    payload,
                );
                let to_sign = sign::v3_string_to_sign(&canonical);
                let signature = auth.signature.clone();
                (
                    auth.access_key_id.clone(),
                    action,
                    version,
                    date,
                    nonce,
                    Box::new(move |secret: &str| sign::v3_verify(secret, &to_sign, &signature)),
                )
            } else {
                let key_id = params.required("AccessKeyId")?.to_string();
                let signature = params.required("Signature")?;
                let method_name = params.required("SignatureMethod")?;
                if method_name != "HMAC-SHA1" {
                    return Err(Rejection::new(
                        ErrorCode::InvalidParameter,
                        format!("SignatureMethod {method_name} is not supported; use HMAC-SHA1 (or Signature V3)"),
                    ));
                }
                let signature_version = params.required("SignatureVersion")?;
                if signature_version != "1.0" {
                    return Err(Rejection::new(
                        ErrorCode::InvalidParameter,
                        format!("SignatureVersion {signature_version} is not supported; use 1.0"),
                    ));
                }
                let to_sign = sign::v1_string_to_sign(method.as_str(), &params.all);
                (
                    key_id,
                    params.required("Action")?,
                    params.required("Version")?,
                    params.required("Timestamp")?,
                    params.required("SignatureNonce")?,
                    Box::new(move |secret: &str| sign::v1_verify(secret, &to_sign, signature)),
                )
            };
        let Some(stamp) = clock::parse_iso8601(timestamp) else {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                format!("the timestamp {timestamp:?} is not ISO 8601 UTC (YYYY-MM-DDThh:mm:ssZ)"),
            ));
        };
        if nonce.is_empty() || nonce.len() > 128 {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                "the signature nonce must be 1 to 128 characters",
            ));
        }
        let config = self.executor.context().config;
        let Some(key) = config.access_keys.iter().find(|k| k.id == key_id) else {
            return Err(Rejection::new(
                ErrorCode::AccessKeyNotFound,
                format!("Specified access key {key_id} is not found."),
            ));
        };
        let secret = key.secret.read().map_err(|e| {
            tracing::error!(access_key_id = %key_id, error = %e, "cannot read an access key's secret");
            Rejection::new(
                ErrorCode::InternalError,
                format!("the secret of access key {key_id} cannot be read"),
            )
        })?;
        if !verify(&secret) {
            return Err(signature_mismatch(
                "the string to sign is built from the method, the path, every sorted parameter (V1) or the canonical request (V3), keyed with the access key's secret",
            ));
        }
        let now = clock::now();
        if (now - stamp).abs() > TIMESTAMP_WINDOW_SECS {
            return Err(Rejection::new(
                ErrorCode::TimestampExpired,
                format!(
                    "Specified time stamp or date value is expired: {timestamp} is more than 15 minutes from the server's {}",
                    clock::format_iso8601(now)
                ),
            ));
        }
        self.nonces
            .admit(&key_id, nonce, stamp + TIMESTAMP_WINDOW_SECS + 1, now)
            .map_err(|e| match e {
                nonce::NonceError::Used(_) => Rejection::new(
                    ErrorCode::SignatureNonceUsed,
                    format!("Specified signature nonce {nonce} was used already."),
                ),
                nonce::NonceError::Full(_) => Rejection::new(ErrorCode::InternalError, e.to_string()),
            })?;
        if version != API_VERSION {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                format!("Version {version} is not supported; use {API_VERSION}"),
            ));
        }
        Ok((
            Caller {
                access_key_id: key_id,
                owner: key.owner.clone(),
            },
            action.to_string(),
        ))
    }
}

/// An `InternalError` rejection.
pub(crate) fn internal(error: impl std::fmt::Display) -> Rejection {
    Rejection::new(ErrorCode::InternalError, error.to_string())
}

/// The API's routes: `/`, GET and POST.
pub fn router(executor: Executor) -> Router {
    let api = Arc::new(Api::new(executor));
    Router::new().route("/", get(rpc).post(rpc)).with_state(api)
}

async fn rpc(State(api): State<Arc<Api>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let request_id = crate::ids::request_id();
    let host_id = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("dbferry")
        .to_string();
    let body: Bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            let rejection = Rejection::new(
                ErrorCode::InvalidParameter,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes or malformed"),
            );
            return render::error(Format::Json, &request_id, &host_id, &rejection);
        }
        Err(_) => {
            let rejection = Rejection::new(
                ErrorCode::InvalidParameter,
                format!("the request body was not received within {BODY_READ_TIMEOUT:?}"),
            );
            return render::error(Format::Json, &request_id, &host_id, &rejection);
        }
    };
    let params = Params::parse(&uri, &headers, &body);
    let Some(format) = Format::parse(params.get("Format")) else {
        let rejection = Rejection::new(ErrorCode::InvalidParameter, "Format must be JSON or XML");
        return render::error(Format::Json, &request_id, &host_id, &rejection);
    };
    let started = Instant::now();
    let outcome = match api.authenticate(&method, &uri, &headers, &params, &body) {
        Ok((caller, action)) => actions::dispatch(&api, &caller, &action, &params, &request_id)
            .await
            .map(|(root, node)| (action, root, node)),
        Err(rejection) => Err(rejection),
    };
    match outcome {
        Ok((action, root, node)) => {
            tracing::debug!(%action, request_id, elapsed = ?started.elapsed(), "API request served");
            render::respond(StatusCode::OK, format, &root, &node)
        }
        Err(rejection) => {
            tracing::info!(code = rejection.code.as_str(), message = %rejection.message, request_id, "API request refused");
            render::error(format, &request_id, &host_id, &rejection)
        }
    }
}
