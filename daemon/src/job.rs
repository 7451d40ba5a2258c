//! Import requests: job files (CONTRACT §3), and later API calls, become a
//! [`Job`] through the same validation.

use std::path::Path;

use dbferry_plugin_abi::protocol::{ExistingTables, VerifyMode};

use crate::codes::{ErrorCode, Rejection};
use crate::config::{parse, Fields};
use crate::dbinfo::DbInfo;
use crate::diag::{Diagnostics, Source};

/// Most lanes a job may ask for.
pub const MAX_PARALLELISM: i64 = 64;

/// One import request.
#[derive(Clone, Debug)]
pub struct Job {
    /// The TARGET instance (API: `DBInstanceId`).
    pub target_id: String,
    /// The SOURCE instance (API: `SourceDBInstanceId`).
    pub source_id: String,
    /// The requesting account.
    pub owner: String,
    /// The databases.
    pub db_info: DbInfo,
    /// `[options]`.
    pub options: JobOptions,
    /// Where the job came from, to point rejections at the key they are about.
    pub origin: Option<Origin>,
}

/// A job file and where its keys stand in it.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file's text.
    pub source: Source,
    /// Byte spans of the top-level values, by key.
    pub spans: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl Origin {
    /// A diagnostic at `key`'s value (the file start if absent).
    pub fn diag(&self, key: &str, code: ErrorCode, message: &str) -> crate::diag::Diagnostic {
        let span = self.spans.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone());
        self.source.diag(span, code, message)
    }
}

/// `[options]` of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOptions {
    /// Concurrent chunk lanes.
    pub parallelism: u32,
    /// How the copy is verified.
    pub verify: VerifyMode,
    /// Byte rate cap; 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// A target table that already exists.
    pub existing_tables: ExistingTables,
    /// Target size of one chunk (one target transaction), bytes.
    pub chunk_bytes: u64,
    /// How the data moves.
    pub method: CopyMethod,
    /// Directory both servers reach, for `method = "backup-restore"`
    /// (overrides the instances' `backup_path`).
    pub backup_path: Option<String>,
    /// How long a source or target that went away is waited for before the
    /// import fails (it can be resumed later).
    pub outage_timeout: std::time::Duration,
}

/// How an import moves the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CopyMethod {
    /// Rows through the copy core (every engine).
    #[default]
    Logical,
    /// The engine's native backup, restored under the destination name
    /// (SQL Server, for instances that share a backup path).
    BackupRestore,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            parallelism: 4,
            verify: VerifyMode::Count,
            max_bytes_per_sec: 0,
            existing_tables: ExistingTables::Fail,
            chunk_bytes: 32 << 20,
            method: CopyMethod::Logical,
            backup_path: None,
            outage_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// The parameters of an `ImportDatabaseBetweenInstances` API call.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiRequest<'a> {
    /// `DBInstanceId`: the target.
    pub target_id: Option<&'a str>,
    /// `SourceDBInstanceId`.
    pub source_id: Option<&'a str>,
    /// `DBInfo`, the JSON string.
    pub db_info: Option<&'a str>,
    /// The account of the caller's access key.
    pub owner: &'a str,
}

/// Job file keys and the API parameters they come from.
const API_NAMES: [(&str, &str); 4] = [
    ("source_db_instance_id", "SourceDBInstanceId"),
    ("db_instance_id", "DBInstanceId"),
    ("db_info", "DBInfo"),
    ("owner", "AccessKeyId's owner"),
];

impl Job {
    /// An API request as a job: rendered as job file text (CONTRACT §3, so
    /// the daemon stores and resumes it like any job) and validated by
    /// [`Job::parse`], the function every job file goes through. Options
    /// take their defaults. The text is [`Job::text`].
    pub fn from_api(request: &ApiRequest<'_>) -> Result<Self, Rejection> {
        let missing = |name: &str| {
            Rejection::new(
                ErrorCode::MissingParameter,
                format!("{name} is mandatory for this action."),
            )
        };
        let target = request.target_id.ok_or_else(|| missing("DBInstanceId"))?;
        let source = request.source_id.ok_or_else(|| missing("SourceDBInstanceId"))?;
        let db_info = request.db_info.ok_or_else(|| missing("DBInfo"))?;
        let mut doc = toml_edit::DocumentMut::new();
        doc["db_instance_id"] = toml_edit::value(target);
        doc["source_db_instance_id"] = toml_edit::value(source);
        doc["owner"] = toml_edit::value(request.owner);
        doc["db_info"] = toml_edit::value(db_info);
        let text = doc.to_string();
        Self::parse(&Source::new(Path::new("api"), text)).map_err(|diags| {
            let first = diags.0.first();
            let mut message = first.map_or_else(|| "invalid request".to_string(), |d| d.message.clone());
            for (key, name) in API_NAMES {
                message = message.replace(&format!("`{key}`"), name);
            }
            Rejection::new(diags.code(), message)
        })
    }

    /// The job's text (the job file, or what an API request rendered).
    pub fn text(&self) -> Option<&str> {
        self.origin.as_ref().map(|o| o.source.text.as_str())
    }

    /// Reads and validates a job file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read(path).map_err(|e| {
            let source = Source::new(path, String::new());
            Diagnostics(vec![source.diag(
                None,
                ErrorCode::InvalidParameter,
                format!("cannot read job file: {e}"),
            )])
        })?;
        let text = String::from_utf8(text).map_err(|e| {
            let source = Source::new(path, String::new());
            let message = format!(
                "job file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            );
            Diagnostics(vec![source.diag(None, ErrorCode::InvalidParameter, message)])
        })?;
        Self::parse(&Source::new(path, text))
    }

    /// Validates job text.
    pub fn parse(source: &Source) -> Result<Self, Diagnostics> {
        let doc = parse(source).map_err(|d| Diagnostics(vec![d]))?;
        let mut diags = Vec::new();
        let mut f = Fields::new(source, doc.as_table(), None, "", &mut diags);
        let target_id = f.non_empty("db_instance_id", true);
        let source_id = f.non_empty("source_db_instance_id", true);
        let owner = f.non_empty("owner", true);
        let db_info_text = f.string("db_info", true);
        let options_table = f.table("options");
        f.finish();

        let db_info_span = db_info_text.as_ref().and_then(|t| t.span.clone());
        let db_info = db_info_text.and_then(|text| match DbInfo::parse(&text.value) {
            Ok(info) => Some(info),
            Err(rejection) => {
                diags.push(source.diag(text.span, rejection.code, rejection.message));
                None
            }
        });
        let mut options = JobOptions::default();
        if let Some((table, span)) = options_table {
            let mut f = Fields::new(source, table, span, "[options]", &mut diags);
            if let Some(n) = f.integer("parallelism", false, 1..MAX_PARALLELISM + 1) {
                options.parallelism = n.value as u32;
            }
            if let Some(v) = f.choice("verify", false, &["none", "count", "checksum"]) {
                options.verify = match v.value.as_str() {
                    "none" => VerifyMode::None,
                    "checksum" => VerifyMode::Checksum,
                    _ => VerifyMode::Count,
                };
            }
            if let Some(n) = f.integer("max_bytes_per_sec", false, 0..i64::MAX) {
                options.max_bytes_per_sec = n.value as u64;
            }
            if let Some(n) = f.integer("chunk_bytes", false, (64 << 10)..(1 << 40)) {
                options.chunk_bytes = n.value as u64;
            }
            if let Some(v) = f.choice("method", false, &["logical", "backup-restore"]) {
                if v.value == "backup-restore" {
                    options.method = CopyMethod::BackupRestore;
                }
            }
            if let Some(n) = f.integer("outage_timeout", false, 0..(7 * 24 * 3600)) {
                options.outage_timeout = std::time::Duration::from_secs(n.value as u64);
            }
            if let Some(p) = f.non_empty("backup_path", false) {
                options.backup_path = Some(p.value);
            }
            if let Some(v) = f.choice("existing_tables", false, &["fail", "drop"]) {
                options.existing_tables = if v.value == "drop" {
                    ExistingTables::Drop
                } else {
                    ExistingTables::Fail
                };
            }
            f.finish();
        }
        match (target_id, source_id, owner, db_info) {
            (Some(target), Some(src), Some(owner), Some(db_info)) if diags.is_empty() => {
                let spans = [
                    ("db_instance_id", target.span),
                    ("source_db_instance_id", src.span),
                    ("owner", owner.span),
                    ("db_info", db_info_span),
                ]
                .into_iter()
                .filter_map(|(k, s)| s.map(|s| (k, s)))
                .collect();
                Ok(Job {
                    target_id: target.value,
                    source_id: src.value,
                    owner: owner.value,
                    db_info,
                    options,
                    origin: Some(Origin {
                        source: source.clone(),
                        spans,
                    }),
                })
            }
            _ => Err(Diagnostics(diags)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Job::parse(&Source::new(Path::new("j.toml"), text.into())) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str =
        "db_instance_id = \"t\"\nsource_db_instance_id = \"s\"\nowner = \"1\"\ndb_info = '{\"DBNames\":[\"a\"]}'\n";

    #[test]
    fn a_good_job_parses_with_defaults() {
        let job = Job::parse(&Source::new(Path::new("j.toml"), GOOD.into())).expect("valid");
        assert_eq!(job.options, JobOptions::default());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = format!("{GOOD}colour = 1\n[options]\nparallelism = \"many\"\nverify = \"md5\"\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("j.toml:5:1: unknown key `colour`"), "{errs:?}");
        assert!(
            errs[1].starts_with("j.toml:7:15: `parallelism` in [options] must be an integer"),
            "{errs:?}"
        );
        assert!(errs[2].starts_with("j.toml:8:10: `verify`"), "{errs:?}");
    }

    #[test]
    fn api_requests_go_through_the_same_validation() {
        let request = ApiRequest {
            target_id: Some("t\"x"),
            source_id: Some("s"),
            db_info: Some(r#"{"DBNames":["a"]}"#),
            owner: "1",
        };
        let job = Job::from_api(&request).expect("valid");
        assert_eq!((job.target_id.as_str(), job.source_id.as_str()), ("t\"x", "s"));
        assert_eq!(job.options, JobOptions::default());
        let again = Job::parse(&Source::new(Path::new("api"), job.text().expect("text").into())).expect("reparses");
        assert_eq!(again.target_id, job.target_id);

        let missing = Job::from_api(&ApiRequest {
            db_info: None,
            ..request
        })
        .expect_err("missing");
        assert_eq!(missing.code, ErrorCode::MissingParameter);
        assert!(missing.message.contains("DBInfo"), "{}", missing.message);
        let bad = Job::from_api(&ApiRequest {
            db_info: Some("{“DBNames”:[“a”]}"),
            ..request
        })
        .expect_err("bad");
        assert_eq!(bad.code, ErrorCode::InvalidDbInfoFormat);
        let empty = Job::from_api(&ApiRequest {
            source_id: Some(""),
            ..request
        })
        .expect_err("empty");
        assert_eq!(empty.code, ErrorCode::InvalidParameter);
        assert!(empty.message.contains("SourceDBInstanceId"), "{}", empty.message);
    }

    #[test]
    fn missing_keys_and_bad_db_info_are_reported() {
        let errs = errors("owner = \"1\"\ndb_info = '{“DBNames”:[“a”]}'\n");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("db_instance_id")));
        assert!(
            errs.iter().any(|e| e.starts_with("j.toml:2:11:") && e.contains('“')),
            "{errs:?}"
        );
    }
}
