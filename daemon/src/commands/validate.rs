//! `dbferry validate`: every problem in the config and the job files.

use std::path::{Path, PathBuf};

use crate::codes::ErrorCode;
use crate::config::Config;
use crate::diag::Diagnostic;
use crate::import::precheck;
use crate::job::Job;

/// Checks a job against the config's static rules (1, 2, 3, 7), pointing
/// at the key each rule is about.
pub fn static_rules(config: &Config, job: &Job) -> Option<Diagnostic> {
    let rejection = precheck::resolve(config, job).err()?;
    let key = match rejection.code {
        ErrorCode::SameInstance => "source_db_instance_id",
        ErrorCode::InvalidDbInfoFormat | ErrorCode::DbNameDuplicate => "db_info",
        ErrorCode::InstanceNotFound if rejection.message.contains(&format!(" {} ", job.source_id)) => {
            "source_db_instance_id"
        }
        _ => "db_instance_id",
    };
    let message = format!("error[{}]: {}", rejection.code, rejection.message);
    Some(match &job.origin {
        Some(origin) => origin.diag(key, rejection.code, &message),
        None => Diagnostic {
            file: PathBuf::new(),
            line: 1,
            col: 1,
            message,
            code: rejection.code,
        },
    })
}

/// Prints every problem; exit 1 if there is any.
pub fn validate(config_path: &Path, jobs: &[PathBuf]) -> i32 {
    let mut problems: Vec<Diagnostic> = Vec::new();
    let config = match Config::load(config_path) {
        Ok(config) => Some(config),
        Err(diags) => {
            problems.extend(diags.0);
            None
        }
    };
    for path in jobs {
        match Job::load(path) {
            Ok(job) => {
                if let Some(diag) = config.as_ref().and_then(|c| static_rules(c, &job)) {
                    problems.push(diag);
                }
            }
            Err(diags) => problems.extend(diags.0),
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    if problems.is_empty() {
        println!("ok: {} and {} job file(s) are valid", config_path.display(), jobs.len());
        0
    } else {
        eprintln!("{} problem(s) found", problems.len());
        1
    }
}
