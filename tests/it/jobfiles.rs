//! `dbferry validate` on bad config and job files: every problem printed as
//! `FILE:LINE:COL: message` (on stdout), exit 1; a good pair exits 0.
//! No server is contacted, so none is started.
//!
//! Assumptions: positions are 1-based, columns in characters; a problem
//! with a value points at the value, an unknown key at the key; a TOML
//! syntax error points into the offending line. `dbferry run` with a bad job
//! exits 2 (CONTRACT §1: rejected by validation).

use std::path::{Path, PathBuf};

use dbferry_testkit::{dbferry, ConfigBuilder, Files, Instance, Outcome};

use crate::common::bin;

const GOOD_JOB: &str = r#"db_instance_id = "rm-target0001"
source_db_instance_id = "rm-source0001"
owner = "1234567890"
db_info = '{"DBNames":["mydb"]}'
"#;

fn instance(id: &str) -> Instance {
    Instance {
        id: id.into(),
        engine: "mysql".into(),
        owner: dbferry_testkit::DEFAULT_OWNER.into(),
        category: "dedicated".into(),
        storage_gb: 100.0,
        host: "127.0.0.1".into(),
        port: 1,
        user: "dbferry".into(),
        password: "s3cret".into(),
        lock_mode: None,
        edition: None,
        extra: Vec::new(),
    }
}

fn good_config(files: &Files) -> PathBuf {
    ConfigBuilder::new()
        .instance(instance("rm-source0001"))
        .instance(instance("rm-target0001"))
        .write(files)
}

fn validate(config: &Path, jobs: &[&Path]) -> Outcome {
    let mut args = vec!["validate".as_ref(), "--config".as_ref(), config.as_os_str()];
    args.extend(jobs.iter().map(|j| j.as_os_str()));
    dbferry(&bin(), &args)
}

/// The printed diagnostics about `file`: (line, col, message).
fn diagnostics(out: &Outcome, file: &Path) -> Vec<(usize, usize, String)> {
    let prefix = format!("{}:", file.display());
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            Some((line, col, parts.next()?.trim().to_string()))
        })
        .collect()
}

/// Validates `job_text` against a good config; asserts exit 1 and a
/// diagnostic on `line` whose message contains every `needle`. Returns it.
fn bad_job(job_text: &str, line: usize, needles: &[&str]) -> (usize, usize, String) {
    let files = Files::new();
    let config = good_config(&files);
    let job = files.write("job.toml", job_text);
    let out = validate(&config, &[&job]);
    assert_eq!(out.code, Some(1), "validate must fail\n{}", out.describe());
    let diags = diagnostics(&out, &job);
    let found = diags
        .iter()
        .find(|(l, _, m)| *l == line && needles.iter().all(|n| m.contains(n)))
        .cloned();
    found.unwrap_or_else(|| {
        panic!(
            "expected `{}:{line}:COL: ...{needles:?}...`, got {diags:?}\n{}",
            job.display(),
            out.describe()
        )
    })
}

#[test]
fn a_good_config_and_job_validate() {
    let files = Files::new();
    let config = good_config(&files);
    let job = files.write("job.toml", GOOD_JOB);
    let out = validate(&config, &[&job]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(diagnostics(&out, &job).is_empty());
}

#[test]
fn malformed_toml() {
    let text = GOOD_JOB.replace(r#"["mydb"]}'"#, r#"["mydb"]}"#);
    let (_, col, message) = bad_job(&text, 4, &[]);
    assert!(col >= 1, "{message}");
    let text = format!("{GOOD_JOB}[options\nparallelism = 2\n");
    bad_job(&text, 5, &[]);
}

#[test]
fn unknown_keys() {
    let (line, col, message) = bad_job(&format!("{GOOD_JOB}colour = \"blue\"\n"), 5, &["colour"]);
    assert_eq!((line, col), (5, 1), "points at the key: {message}");
    bad_job(
        &format!("{GOOD_JOB}\n[options]\nparalellism = 4\n"),
        7,
        &["paralellism"],
    );
    bad_job(&format!("{GOOD_JOB}\n[extras]\nx = 1\n"), 6, &["extras"]);
}

#[test]
fn wrong_types() {
    let (_, col, _) = bad_job(
        &format!("{GOOD_JOB}\n[options]\nparallelism = \"four\"\n"),
        7,
        &["parallelism"],
    );
    assert_eq!(col, 15, "points at the value");
    bad_job(
        &GOOD_JOB.replace("owner = \"1234567890\"", "owner = 1234567890"),
        3,
        &["owner"],
    );
    bad_job(&format!("{GOOD_JOB}\n[options]\nverify = \"md5\"\n"), 7, &["verify"]);
    bad_job(
        &format!("{GOOD_JOB}\n[options]\nmax_bytes_per_sec = -1\n"),
        7,
        &["max_bytes_per_sec"],
    );
    bad_job(
        &format!("{GOOD_JOB}\n[options]\nexisting_tables = true\n"),
        7,
        &["existing_tables"],
    );
}

#[test]
fn missing_keys() {
    let text = GOOD_JOB.replace("owner = \"1234567890\"\n", "");
    let files = Files::new();
    let config = good_config(&files);
    let job = files.write("job.toml", &text);
    let out = validate(&config, &[&job]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        diagnostics(&out, &job).iter().any(|(_, _, m)| m.contains("owner")),
        "{}",
        out.describe()
    );
}

#[test]
fn db_info_that_is_not_json() {
    let (_, col, message) = bad_job(&GOOD_JOB.replace(r#"'{"DBNames":["mydb"]}'"#, "'mydb'"), 4, &["JSON"]);
    assert_eq!(col, 11, "points at the value: {message}");
}

#[test]
fn db_info_with_typographic_quotes_says_so() {
    let text = GOOD_JOB.replace(r#"'{"DBNames":["mydb"]}'"#, "'{“DBNames”:[“mydb”]}'");
    let (_, _, message) = bad_job(&text, 4, &[]);
    assert!(
        message.contains('“') || message.contains('”') || message.to_lowercase().contains("typographic"),
        "the message must mention the typographic quotes: {message}"
    );
}

#[test]
fn an_empty_db_names_list() {
    let text = GOOD_JOB.replace(r#"["mydb"]"#, "[]");
    let (_, _, message) = bad_job(&text, 4, &[]);
    assert!(message.to_lowercase().contains("empty"), "{message}");
}

#[test]
fn several_problems_are_all_reported() {
    let text = format!("{GOOD_JOB}colour = 1\n[options]\nparallelism = \"x\"\nverify = 3\n");
    let files = Files::new();
    let config = good_config(&files);
    let job = files.write("job.toml", &text);
    let out = validate(&config, &[&job]);
    assert_eq!(out.code, Some(1));
    let lines: Vec<usize> = diagnostics(&out, &job).iter().map(|d| d.0).collect();
    for line in [5, 7, 8] {
        assert!(
            lines.contains(&line),
            "line {line} reported: {lines:?}\n{}",
            out.describe()
        );
    }
}

/// Line (1-based) of the first line of `text` that starts with `prefix`,
/// after `after`.
fn line_of(text: &str, prefix: &str, after: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| l.starts_with(prefix))
        .map(|(n, _)| n + 1)
        .unwrap_or_else(|| panic!("no line starting with {prefix} in:\n{text}"))
}

#[test]
fn a_group_readable_secret_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let files = Files::new();
    let config = good_config(&files);
    let secret = files.path().join("secrets/rm-target0001");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let text = std::fs::read_to_string(&config).expect("config");
    let line = line_of(&text, "password_file", line_of(&text, "id = \"rm-target0001\"", 0));
    let job = files.write("job.toml", GOOD_JOB);
    let out = validate(&config, &[&job]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let diags = diagnostics(&out, &config);
    assert!(
        diags
            .iter()
            .any(|(l, _, m)| *l == line && m.contains(&secret.display().to_string())),
        "expected {}:{line}:COL naming the secret file, got {diags:?}\n{}",
        config.display(),
        out.describe()
    );
    // World-readable too; 0600 passes (the source's secret).
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    assert_eq!(validate(&config, &[&job]).code, Some(1));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(validate(&config, &[&job]).code, Some(0));
}

#[test]
fn an_inline_password_is_refused() {
    let files = Files::new();
    let config = ConfigBuilder::new()
        .instance(instance("rm-source0001"))
        .instance(instance("rm-target0001").extra("password", "\"hunter2\""))
        .write(&files);
    let text = std::fs::read_to_string(&config).expect("config");
    let line = line_of(&text, "password = ", 0);
    let out = validate(&config, &[]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let diags = diagnostics(&out, &config);
    assert!(
        diags.iter().any(|(l, _, m)| *l == line && m.contains("password")),
        "expected {}:{line}:COL about the inline password, got {diags:?}",
        config.display()
    );
    assert!(
        !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
        "the secret is never echoed"
    );
}

#[test]
fn config_problems_unknown_keys_and_bad_values() {
    let files = Files::new();
    let config = ConfigBuilder::new()
        .instance(instance("rm-source0001").extra("colour", "\"red\""))
        .instance(instance("rm-target0001").category("tiny"))
        .write(&files);
    let text = std::fs::read_to_string(&config).expect("config");
    let out = validate(&config, &[]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let diags = diagnostics(&out, &config);
    assert!(
        diags
            .iter()
            .any(|(l, _, m)| *l == line_of(&text, "colour", 0) && m.contains("colour")),
        "{diags:?}"
    );
    assert!(
        diags
            .iter()
            .any(|(l, _, m)| *l == line_of(&text, "category = \"tiny\"", 0) && m.contains("category")),
        "{diags:?}"
    );
}

#[test]
fn run_with_a_bad_job_is_rejected_with_exit_2() {
    let files = Files::new();
    let config = good_config(&files);
    let job = files.write("job.toml", &format!("{GOOD_JOB}colour = 1\n"));
    let out = dbferry_testkit::run_job(&bin(), &config, &job);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("{}:5:1:", job.display())),
        "the position is printed\n{}",
        out.describe()
    );
    let job = files.write("typo.toml", &GOOD_JOB.replace(r#"["mydb"]"#, "[]"));
    let out = dbferry_testkit::run_job(&bin(), &config, &job);
    out.assert_rejected("InvalidDBInfo.Format");
}
