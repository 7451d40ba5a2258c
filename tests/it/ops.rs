//! The files shipped in `config/`: they must pass the tools that will read them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::bin;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn alert_rules_pass_promtool() {
    let out = Command::new("/usr/bin/promtool")
        .args(["check", "rules"])
        .arg(repo("config/prometheus/dbferry-alerts.yml"))
        .output()
        .expect("promtool is installed by `make test`");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 5 rules found"), "{text}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo("config/systemd/dbferry.service")).expect("unit file");
    assert!(
        unit.contains("Type=notify") && unit.contains("ProtectSystem=strict") && unit.contains("NoNewPrivileges=yes")
    );
    // verify checks that ExecStart exists; point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("dbferry.service");
    std::fs::write(&local, unit.replace("/usr/bin/dbferry", &bin().display().to_string())).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Outside a booted systemd the tool may warn about the host; only unit problems count.
    let problems: Vec<&str> = text.lines().filter(|l| l.contains("dbferry.service")).collect();
    assert!(problems.is_empty() && out.status.success(), "{text}");
}

#[test]
fn the_grafana_dashboard_charts_every_contract_series() {
    let text = std::fs::read_to_string(repo("config/grafana/dbferry-dashboard.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    for series in [
        "dbferry_instance_state",
        "dbferry_bytes_transferred_total",
        "dbferry_rows_transferred_total",
        "dbferry_import_progress_ratio",
        "dbferry_queued_bytes",
        "dbferry_chunk_duration_seconds_bucket",
        "dbferry_chunk_failures_total",
        "dbferry_imports",
    ] {
        assert!(exprs.iter().any(|e| e.contains(series)), "no panel charts {series}");
    }
}
