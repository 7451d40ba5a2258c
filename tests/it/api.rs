//! The RDS-compatible API driven by the official Alibaba Cloud SDKs from
//! PyPI: `aliyun-python-sdk-core` (`CommonRequest`, Signature V1) and
//! `alibabacloud-tea-openapi` (`call_api`, RPC style, Signature V3), in a
//! virtualenv created once under `target/sdk-venv` (a failure to create it,
//! for instance without network access to PyPI, fails the tests loudly).
//!
//! `tests/it/sdk/rds.py` takes a JSON list of calls on stdin and prints one
//! JSON result per call; these tests assert on them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dbferry_testkit::{on_both_flavours, ConfigBuilder, Files, Instance, Job, MariaDb, DEFAULT_OWNER};
use serde_json::{json, Value};

use crate::common::{
    assert_same, big_table, bin_dir, closed_port, create_source, dedicated_pair, free_port, http, pair, pair_of,
    unique, Daemon, DST, SRC,
};

/// The caller's key (owner: the testkit's default owner, who owns SRC and DST).
pub(crate) const AK: &str = "LTAI5tDbferryOwner";
pub(crate) const SECRET: &str = "s3cret/with+odd=chars&more";
/// A key of another account, which owns only `rm-other0001`.
const OTHER_AK: &str = "LTAI5tDbferryOther";
const OTHER_SECRET: &str = "another-secret";
const OTHER_OWNER: &str = "9999999999";

/// The virtualenv's python, with both SDKs installed (created once).
fn sdk_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let target = bin_dir().parent().map(Path::to_path_buf).expect("target directory");
            let venv = target.join("sdk-venv");
            let python = venv.join("bin/python");
            let check = || {
                python.exists()
                    && Command::new(&python)
                        .args(["-c", "import aliyunsdkcore.client, alibabacloud_tea_openapi.client, darabonba.runtime"])
                        .status()
                        .is_ok_and(|s| s.success())
            };
            if !check() {
                let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
                assert!(
                    made.is_ok_and(|s| s.success()),
                    "cannot create the SDK virtualenv {} (is python3-venv installed? `make deps` installs it)",
                    venv.display()
                );
                let installed = Command::new(venv.join("bin/pip"))
                    .args([
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "aliyun-python-sdk-core>=2.16,<3",
                        "alibabacloud-tea-openapi>=0.4.6,<0.5",
                        "alibabacloud-tea-util>=0.3.15,<0.4",
                    ])
                    .output()
                    .expect("run pip");
                assert!(
                    installed.status.success() && check(),
                    "installing the Alibaba Cloud SDKs from PyPI failed; these tests need them and are not skipped:\n{}{}",
                    String::from_utf8_lossy(&installed.stdout),
                    String::from_utf8_lossy(&installed.stderr)
                );
            }
            python
        })
        .clone()
}

/// Runs SDK calls; one result per call.
pub(crate) fn sdk(calls: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/it/sdk/rds.py");
    let mut child = Command::new(sdk_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the SDK script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::from(calls.to_vec()).to_string().as_bytes())
        .expect("send the calls");
    let out = child.wait_with_output().expect("SDK script");
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK script output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), calls.len());
    results
}

/// One SDK call.
pub(crate) fn call(call: Value) -> Value {
    sdk(&[call]).remove(0)
}

/// A call spec for `sdk` ("v1" or "v3") against `port`.
pub(crate) fn spec(sdk: &str, port: u16, action: &str, params: Value) -> Value {
    json!({"sdk": sdk, "endpoint": format!("127.0.0.1:{port}"), "key": AK, "secret": SECRET, "action": action, "params": params})
}

pub(crate) fn with(mut spec: Value, key: &str, value: impl Into<Value>) -> Value {
    spec[key] = value.into();
    spec
}

/// The `Code` of an error result, as the response body carries it.
pub(crate) fn code(result: &Value) -> String {
    result["body"]["Code"]
        .as_str()
        .or(result["code"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn ok(result: &Value) -> &Value {
    assert!(
        result["error"] == false && result["status"] == 200,
        "expected success, got {result:#}"
    );
    &result["body"]
}

/// A config with SRC, DST, both access keys and `extra` instances; the
/// daemon started on it.
struct ApiDaemon {
    files: Files,
    daemon: Daemon,
    port: u16,
}

fn start(source: &MariaDb, target: &MariaDb, extra: Vec<Instance>) -> ApiDaemon {
    let port = free_port();
    let files = Files::new();
    let mut builder = ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, source))
        .instance(Instance::mysql(DST, target))
        .instance(Instance::mysql("rm-other0001", target).owner(OTHER_OWNER))
        .access_key(AK, SECRET, DEFAULT_OWNER)
        .access_key(OTHER_AK, OTHER_SECRET, OTHER_OWNER);
    for instance in extra {
        builder = builder.instance(instance);
    }
    let config = builder.write(&files);
    let daemon = Daemon::start(&config, port, &files.path().join("daemon.log"));
    ApiDaemon { files, daemon, port }
}

/// Polls `DescibeImportsFromDatabase` until import `id` of `instance` ends.
pub(crate) fn wait_ended(sdk_name: &str, port: u16, instance: &str, id: u64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let result = call(spec(
            sdk_name,
            port,
            "DescibeImportsFromDatabase",
            json!({"DBInstanceId": instance, "ImportId": id}),
        ));
        let body = ok(&result);
        let item = body["Items"]["ImportResultFromDB"][0].clone();
        assert_eq!(item["ImportId"], id, "{body:#}");
        if !matches!(item["Status"].as_str(), Some("Pending" | "Running")) {
            return item;
        }
        assert!(Instant::now() < deadline, "import {id} did not end: {item:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(crate) fn attribute(sdk_name: &str, port: u16, instance: &str) -> Value {
    let result = call(spec(
        sdk_name,
        port,
        "DescribeDBInstanceAttribute",
        json!({"DBInstanceId": instance}),
    ));
    ok(&result)["Items"]["DBInstanceAttribute"][0].clone()
}

fn db_info(dbs: &[&str]) -> String {
    json!({"DBNames": dbs}).to_string()
}

// Imports through the API go through the engine: on both flavours.
on_both_flavours! {
fn the_sdks_import_poll_describe_and_cancel(flavour: Flavour) {
    let pair = pair_of(flavour);
    let (db1, db2, db3) = (unique("api_v1"), unique("api_v3"), unique("api_cancel"));
    big_table(pair.source, pair.target, &db1, 20_000);
    big_table(pair.source, pair.target, &db2, 5_000);
    big_table(pair.source, pair.target, &db3, 200_000);
    let mut api = start(pair.source, pair.target, Vec::new());
    let port = api.port;

    // V1 (GET query), with a ClientToken; the same token through V3 (POST) names the same import.
    let token = unique("token");
    let params =
        json!({"DBInstanceId": DST, "SourceDBInstanceId": SRC, "DBInfo": db_info(&[&db1]), "ClientToken": token});
    let first = call(spec("v1", port, "ImportDatabaseBetweenInstances", params.clone()));
    let body = ok(&first).clone();
    let id1 = body["ImportId"].as_u64().expect("ImportId is a positive integer");
    let request_id = body["RequestId"].as_str().expect("RequestId");
    assert!(uuid_like(request_id), "{request_id}");
    let keys: Vec<_> = body.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, ["ImportId", "RequestId"], "{body:#}");
    let again = call(with(
        spec("v3", port, "ImportDatabaseBetweenInstances", params.clone()),
        "method",
        "POST",
    ));
    assert_eq!(ok(&again)["ImportId"], id1, "same ClientToken, same import");
    assert_ne!(
        ok(&again)["RequestId"],
        body["RequestId"],
        "a new RequestId per request"
    );

    let item = wait_ended("v1", port, DST, id1, Duration::from_secs(120));
    assert_eq!(item["Status"], "Success", "{item:#}\n{}", api.daemon.log_text());
    assert_eq!(item["Rows"], 20_000);
    assert_eq!(item["Progress"], 100);
    assert_eq!(item["SourceDBInstanceId"], SRC);
    assert!(
        item["StartTime"].as_str().is_some_and(|t| t.ends_with('Z')) && item["EndTime"].is_string(),
        "{item:#}"
    );
    assert_eq!(item["ErrorCode"], Value::Null);
    assert_same(pair.source, pair.target, &db1);

    // V3 (POST form).
    let second = call(with(
        spec(
            "v3",
            port,
            "ImportDatabaseBetweenInstances",
            json!({"DBInstanceId": DST, "SourceDBInstanceId": SRC, "DBInfo": db_info(&[&db2])}),
        ),
        "method",
        "POST",
    ));
    let id2 = ok(&second)["ImportId"].as_u64().expect("ImportId");
    assert!(id2 > id1, "ImportIds increase");
    let item = wait_ended("v3", port, SRC, id2, Duration::from_secs(120));
    assert_eq!(item["Status"], "Success", "{item:#}");
    assert_same(pair.source, pair.target, &db2);

    // After: both Running, with the server's facts.
    for sdk_name in ["v1", "v3"] {
        let target = attribute(sdk_name, port, DST);
        assert_eq!(target["DBInstanceStatus"], "Running", "{target:#}");
        assert_eq!(target["Engine"], "MySQL");
        assert_eq!(target["LockMode"], "Unlock");
        assert_eq!(target["Category"], "dedicated");
        assert_eq!(target["DBInstanceStorage"], 100);
        assert!(
            target["DBInstanceDiskUsed"].as_u64().is_some_and(|u| u > 0),
            "{target:#}"
        );
        assert!(
            target["EngineVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{target:#}"
        );
    }

    // During: a slow import dropped as a job file shows through the API.
    // Small chunks: progress counts committed chunks, so the first must
    // commit well before the copy ends.
    let job = Job::mysql(DST, SRC, &[&db3])
        .option("max_bytes_per_sec", "1000000")
        .option("chunk_bytes", "1048576")
        .render();
    std::fs::write(api.files.path().join("jobs.d/slow.toml"), job).expect("drop the job");
    let running = api.daemon.wait_import(Duration::from_secs(60), |i| {
        i["Status"] == "Running" && i["Rows"].as_u64().is_some_and(|r| r > 0)
    });
    let id3 = running["ImportId"].as_u64().expect("id");
    // One batch while it runs: states, the listing, rule 5 answered
    // synchronously (the instances are busy), then CancelImport.
    let attr = |sdk_name: &str, id: &str| {
        spec(
            sdk_name,
            port,
            "DescribeDBInstanceAttribute",
            json!({"DBInstanceId": id}),
        )
    };
    let during = sdk(&[
        attr("v1", SRC),
        attr("v1", DST),
        attr("v3", SRC),
        attr("v3", DST),
        spec("v1", port, "DescibeImportsFromDatabase", json!({"DBInstanceId": SRC})),
        spec(
            "v1",
            port,
            "ImportDatabaseBetweenInstances",
            json!({"DBInstanceId": DST, "SourceDBInstanceId": SRC, "DBInfo": db_info(&[&db1])}),
        ),
        spec(
            "v3",
            port,
            "CancelImport",
            json!({"DBInstanceId": DST, "ImportId": id3}),
        ),
    ]);
    let state = |r: &Value| ok(r)["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"].clone();
    assert_eq!(
        during[..4].iter().map(state).collect::<Vec<_>>(),
        ["Migrating", "Importing", "Migrating", "Importing"],
        "{during:#?}"
    );
    let listed = ok(&during[4]);
    assert_eq!(listed["TotalRecordCount"], 3, "{listed:#}");
    let live = &listed["Items"]["ImportResultFromDB"][0];
    assert_eq!(
        (live["ImportId"].as_u64(), live["Status"].as_str()),
        (Some(id3), Some("Running")),
        "{live:#}"
    );
    assert!(live["Rows"].as_u64().is_some_and(|r| r > 0), "{live:#}");
    assert!(live["Progress"].as_u64().is_some_and(|p| p < 100), "{live:#}");
    let busy = &during[5];
    assert_eq!(
        (busy["status"].as_u64(), code(busy).as_str()),
        (Some(403), "IncorrectDBInstanceState"),
        "{busy:#}"
    );
    assert_eq!(ok(&during[6])["ImportId"], id3);
    let item = wait_ended("v1", port, DST, id3, Duration::from_secs(60));
    assert_eq!(item["Status"], "Cancelled", "{item:#}");
    let twice = call(spec(
        "v1",
        port,
        "CancelImport",
        json!({"DBInstanceId": DST, "ImportId": id3}),
    ));
    assert_eq!(code(&twice), "InvalidParameter", "{twice:#}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while attribute("v1", port, DST)["DBInstanceStatus"] != "Running" {
        assert!(Instant::now() < deadline, "the target went back to Running");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(attribute("v3", port, SRC)["DBInstanceStatus"], "Running");

    // The ClientToken survives a restart.
    api.daemon.terminate();
    api.daemon.spawn();
    let after = call(spec("v1", port, "ImportDatabaseBetweenInstances", params));
    assert_eq!(ok(&after)["ImportId"], id1, "ClientToken remembered across restarts");
}
}

fn uuid_like(text: &str) -> bool {
    let parts: Vec<_> = text.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// ISO 8601 UTC, `minutes` from now.
fn timestamp(minutes: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    dbferry::api::clock::format_iso8601(now + minutes * 60)
}

#[test]
fn signatures_timestamps_nonces_and_owners_are_checked() {
    let pair = pair();
    let api = start(pair.source, pair.target, Vec::new());
    let port = api.port;
    let attr = |sdk_name: &str| {
        spec(
            sdk_name,
            port,
            "DescribeDBInstanceAttribute",
            json!({"DBInstanceId": SRC}),
        )
    };
    for sdk_name in ["v1", "v3"] {
        let nonce = unique(&format!("nonce-{sdk_name}"));
        let results = sdk(&[
            attr(sdk_name),
            with(attr(sdk_name), "secret", "not-the-secret"),
            with(attr(sdk_name), "key", "LTAI5tNoSuchKey"),
            with(attr(sdk_name), "timestamp", timestamp(-60)),
            with(attr(sdk_name), "timestamp", timestamp(20)),
            with(attr(sdk_name), "timestamp", timestamp(-10)),
            with(attr(sdk_name), "nonce", nonce.clone()),
            with(attr(sdk_name), "nonce", nonce),
        ]);
        let got: Vec<_> = results
            .iter()
            .map(|r| (r["status"].as_u64().unwrap_or(0), code(r)))
            .collect();
        let expect = |s: u64, c: &str| (s, c.to_string());
        assert_eq!(
            got,
            [
                expect(200, ""),
                expect(400, "SignatureDoesNotMatch"),
                expect(404, "InvalidAccessKeyId.NotFound"),
                expect(400, "InvalidTimeStamp.Expired"),
                expect(400, "InvalidTimeStamp.Expired"),
                expect(200, ""),
                expect(200, ""),
                expect(400, "SignatureNonceUsed"),
            ],
            "{sdk_name}: {results:#?}"
        );
    }

    // An owner who owns only one of the two instances: exactly as if missing.
    let other = |sdk_name: &str, action: &str, params: Value| {
        with(
            with(spec(sdk_name, port, action, params), "key", OTHER_AK),
            "secret",
            OTHER_SECRET,
        )
    };
    let import = |source: &str| json!({"DBInstanceId": "rm-other0001", "SourceDBInstanceId": source, "DBInfo": db_info(&["mysql"])});
    for sdk_name in ["v1", "v3"] {
        let results = sdk(&[
            other(sdk_name, "ImportDatabaseBetweenInstances", import(SRC)),
            other(sdk_name, "ImportDatabaseBetweenInstances", import("rm-missing0001")),
            other(sdk_name, "DescribeDBInstanceAttribute", json!({"DBInstanceId": SRC})),
            other(
                sdk_name,
                "DescribeDBInstanceAttribute",
                json!({"DBInstanceId": "rm-missing0001"}),
            ),
            other(sdk_name, "DescibeImportsFromDatabase", json!({"DBInstanceId": SRC})),
            other(sdk_name, "CancelImport", json!({"DBInstanceId": DST, "ImportId": 1})),
            other(
                sdk_name,
                "DescribeDBInstanceAttribute",
                json!({"DBInstanceId": "rm-other0001"}),
            ),
        ]);
        let shape = |r: &Value, id: &str| {
            (
                r["status"].as_u64(),
                code(r),
                r["body"]["Message"].as_str().map(|m| m.replace(id, "ID")),
            )
        };
        for pair in [(0, 1), (2, 3)] {
            assert_eq!(
                shape(&results[pair.0], SRC),
                shape(&results[pair.1], "rm-missing0001"),
                "{sdk_name}: another owner's instance must look missing: {results:#?}"
            );
        }
        for r in &results[..6] {
            assert_eq!(
                (r["status"].as_u64(), code(r)),
                (Some(404), "InvalidDBInstanceId.NotFound".into()),
                "{r:#}"
            );
        }
        assert_eq!(
            ok(&results[6])["Items"]["DBInstanceAttribute"][0]["DBInstanceId"],
            "rm-other0001"
        );
    }
    let log = api.daemon.log_text();
    assert!(
        !log.contains(SECRET) && !log.contains(OTHER_SECRET),
        "secrets must never be logged"
    );
}

/// An expected code, its HTTP status, the call, and a change to the call spec.
type Case<'a> = (&'a str, u64, (&'a str, Value), Option<(&'a str, Value)>);

// The prechecks behind the codes are the engine's: on both flavours.
on_both_flavours! {
/// Every code of CONTRACT §5 with its HTTP status, in JSON and XML, through both SDKs.
fn every_contract_error_code_in_json_and_xml(flavour: Flavour) {
    let pair = pair_of(flavour);
    let (db, clash) = (unique("api_codes"), unique("api_clash"));
    create_source(
        (pair.source, pair.target),
        &db,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    create_source(
        (pair.source, pair.target),
        &clash,
        "utf8mb4",
        "CREATE TABLE t (id INT PRIMARY KEY);",
    );
    pair.target.exec_in(&clash, "CREATE TABLE t (id INT PRIMARY KEY);");
    let api = start(
        pair.source,
        pair.target,
        vec![
            Instance::mysql("rm-general0001", pair.target).category("general"),
            Instance::mysql("rm-down0001", pair.target).port(closed_port()),
            Instance::mysql("rm-locked0001", pair.target).lock_mode("ManualLock"),
            Instance::mysql("rm-tiny0001", pair.target).storage_gb(0.000001),
            Instance::mysql("rm-broken0001", pair.target),
        ],
    );
    let port = api.port;
    // A secret the daemon can no longer read: any use of it is an InternalError.
    let broken = api.files.path().join("secrets/rm-broken0001");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");

    let import = |target: &str, source: &str, info: &str| {
        (
            "ImportDatabaseBetweenInstances",
            json!({"DBInstanceId": target, "SourceDBInstanceId": source, "DBInfo": info}),
        )
    };
    let dbs = db_info(&[&db]);
    let cases: Vec<Case<'_>> = vec![
        (
            "MissingParameter",
            400,
            (
                "ImportDatabaseBetweenInstances",
                json!({"DBInstanceId": DST, "SourceDBInstanceId": SRC}),
            ),
            None,
        ),
        (
            "InvalidParameter",
            400,
            (
                "DescibeImportsFromDatabase",
                json!({"DBInstanceId": DST, "PageSize": "0"}),
            ),
            None,
        ),
        ("InvalidParameter.SameInstance", 400, import(DST, DST, &dbs), None),
        (
            "InvalidDBInfo.Format",
            400,
            import(DST, SRC, "{\"DBNames\":\"mydb\"}"),
            None,
        ),
        (
            "InvalidDBName.Duplicate",
            400,
            import(DST, SRC, &db_info(&[&db, &db])),
            None,
        ),
        (
            "InvalidDBInstanceId.NotFound",
            404,
            import("rm-missing0001", SRC, &dbs),
            None,
        ),
        (
            "IncorrectDBInstanceType",
            403,
            import("rm-general0001", SRC, &dbs),
            None,
        ),
        ("IncorrectDBInstanceState", 403, import("rm-down0001", SRC, &dbs), None),
        (
            "InvalidDBName.NotFound",
            404,
            import(DST, SRC, &db_info(&["api_no_such_db"])),
            None,
        ),
        ("InvalidDBName.Exists", 403, import(DST, SRC, &db_info(&[&clash])), None),
        (
            "IncorrectDBInstanceLockMode",
            403,
            import("rm-locked0001", SRC, &dbs),
            None,
        ),
        ("InsufficientStorage", 403, import("rm-tiny0001", SRC, &dbs), None),
        ("InternalError", 500, import("rm-broken0001", SRC, &dbs), None),
        (
            "InvalidAccessKeyId.NotFound",
            404,
            ("DescribeDBInstanceAttribute", json!({"DBInstanceId": DST})),
            Some(("key", json!("LTAI5tNobody"))),
        ),
        (
            "SignatureDoesNotMatch",
            400,
            ("DescribeDBInstanceAttribute", json!({"DBInstanceId": DST})),
            Some(("secret", json!("wrong"))),
        ),
        (
            "InvalidTimeStamp.Expired",
            400,
            ("DescribeDBInstanceAttribute", json!({"DBInstanceId": DST})),
            Some(("timestamp", json!(timestamp(-30)))),
        ),
        (
            "SignatureNonceUsed",
            400,
            ("DescribeDBInstanceAttribute", json!({"DBInstanceId": DST})),
            Some(("nonce", json!(""))),
        ),
    ];
    let mut calls = Vec::new();
    let mut expected = Vec::new();
    for (n, (code_name, status, (action, params), tweak)) in cases.iter().enumerate() {
        for sdk_name in ["v1", "v3"] {
            for format in ["JSON", "XML"] {
                let mut c = with(spec(sdk_name, port, action, params.clone()), "format", format);
                if let Some((key, value)) = tweak {
                    c = with(c, key, value.clone());
                }
                if *code_name == "SignatureNonceUsed" {
                    let nonce = format!("replayed-{n}-{sdk_name}-{format}-{}", unique("n"));
                    c = with(c, "nonce", nonce);
                    calls.push(c.clone()); // the first use succeeds
                    expected.push(None);
                }
                calls.push(c);
                expected.push(Some((*code_name, *status, sdk_name, format)));
            }
        }
    }
    let results = sdk(&calls);
    let mut seen = std::collections::BTreeSet::new();
    for (result, expect) in results.iter().zip(&expected) {
        let Some((code_name, status, sdk_name, format)) = expect else {
            assert_eq!(result["status"], 200, "{result:#}");
            continue;
        };
        let what = format!("{code_name} via {sdk_name} in {format}: {result:#}");
        assert_eq!(result["status"].as_u64(), Some(*status), "{what}");
        match (*sdk_name, *format) {
            (_, "JSON") => {
                let body = &result["body"];
                assert_eq!(body["Code"], *code_name, "{what}");
                assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
                assert!(body["RequestId"].as_str().is_some_and(uuid_like), "{what}");
                assert!(body["HostId"].is_string(), "{what}");
                // What the SDK itself parsed out of the response.
                assert_eq!(result["code"], *code_name, "{what}");
            }
            ("v1", _) => {
                let raw = result["raw"].as_str().unwrap_or_default();
                assert_eq!(result["content_type"], "text/xml;charset=utf-8", "{what}");
                assert!(
                    raw.starts_with("<Error><RequestId>") && raw.ends_with("</Error>"),
                    "{what}"
                );
                let order = ["<RequestId>", "<HostId>", "<Code>", "<Message>"].map(|t| raw.find(t));
                assert!(
                    order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
                    "{what}"
                );
                assert!(raw.contains(&format!("<Code>{code_name}</Code>")), "{what}");
            }
            _ => {
                // The V3 SDK parses an XML error itself (it checks the content type).
                assert_eq!(result["code"], *code_name, "{what}");
                assert_eq!(result["body"]["Code"], *code_name, "{what}");
            }
        }
        seen.insert(code_name.to_string());
    }
    assert_eq!(seen.len(), 17, "every contract code was produced: {seen:?}");
    // Success in XML, shaped like the seed page.
    let xml = call(with(
        spec("v1", port, "DescribeDBInstanceAttribute", json!({"DBInstanceId": DST})),
        "format",
        "XML",
    ));
    let raw = xml["raw"].as_str().unwrap_or_default();
    assert!(
        raw.starts_with("<DescribeDBInstanceAttributeResponse><RequestId>")
            && raw.contains("<Items><DBInstanceAttribute><DBInstanceId>rm-target0001</DBInstanceId>")
            && raw.ends_with("</DescribeDBInstanceAttributeResponse>"),
        "{raw}"
    );
    let log = api.daemon.log_text();
    assert!(!log.contains(SECRET), "secrets must never be logged");
}
}

/// A V1-signed GET URL (path and query) for `action`, signed by dbferry's
/// own V1 code (which the SDK tests above hold to the SDKs' signatures).
fn signed_url(action: &str, params: &[(&str, &str)], nonce: &str) -> String {
    use dbferry::api::sign::{percent_encode, v1_sign, v1_string_to_sign};
    let mut all: Vec<(String, String)> = vec![
        ("Action".into(), action.into()),
        ("Version".into(), "2014-08-15".into()),
        ("AccessKeyId".into(), AK.into()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), nonce.into()),
        ("Timestamp".into(), timestamp(0)),
        ("Format".into(), "JSON".into()),
    ];
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signature = v1_sign(SECRET, &v1_string_to_sign("GET", &all));
    all.push(("Signature".into(), signature));
    let query: Vec<_> = all
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("/?{}", query.join("&"))
}

/// Submits an import of `db` through the API and waits for it: wall time.
fn timed_import(port: u16, db: &str) -> Duration {
    let started = Instant::now();
    let url = signed_url(
        "ImportDatabaseBetweenInstances",
        &[
            ("DBInstanceId", DST),
            ("SourceDBInstanceId", SRC),
            ("DBInfo", &db_info(&[db])),
        ],
        &unique("timed"),
    );
    let (status, body) = http(port, "GET", &url).expect("submit");
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).expect("JSON")["ImportId"]
        .as_u64()
        .expect("ImportId");
    loop {
        let (_, body) = http(port, "GET", &format!("/v1/imports/{id}")).expect("status");
        let import: Value = serde_json::from_str(&body).expect("JSON");
        match import["Status"].as_str() {
            Some("Pending" | "Running") => std::thread::sleep(Duration::from_millis(50)),
            Some("Success") => return started.elapsed(),
            _ => panic!("import failed: {import:#}"),
        }
        assert!(started.elapsed() < Duration::from_secs(300), "import {id} too slow");
    }
}

/// A GET on a kept-alive connection (opened when `connection` is `None`,
/// dropped on any error), as SDK clients and dashboards keep theirs.
fn keep_alive_get(
    connection: &mut Option<std::io::BufReader<TcpStream>>,
    port: u16,
    path: &str,
) -> Option<(u16, String)> {
    use std::io::BufRead;
    let answer = (|| {
        if connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            *connection = Some(std::io::BufReader::new(stream));
        }
        let reader = connection.as_mut()?;
        write!(reader.get_mut(), "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    })();
    if answer.is_none() {
        *connection = None;
    }
    answer
}

/// `n` timed `/healthz` requests.
fn health_latencies(port: u16, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let asked = Instant::now();
            assert_eq!(http(port, "GET", "/healthz").map(|(s, _)| s), Some(200));
            asked.elapsed()
        })
        .collect()
}

/// p50, p99 and max.
fn percentiles(mut samples: Vec<Duration>) -> [Duration; 3] {
    samples.sort();
    let at = |q: usize| {
        samples
            .get((samples.len() * q / 100).min(samples.len().saturating_sub(1)))
            .copied()
    };
    [at(50), at(99), samples.last().copied()].map(Option::unwrap_or_default)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// What one measured import shows.
struct Measured {
    wall: Duration,
    daemon_cpu: f64,
}

/// 200 polling clients until `stop`; counts, latencies and failures.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    health: Arc<Mutex<Vec<Duration>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, clients: usize, round: usize) -> Self {
        let mut load = Load {
            stop: Arc::default(),
            served: Arc::default(),
            failures: Arc::default(),
            latencies: Arc::default(),
            health: Arc::default(),
            threads: Vec::new(),
        };
        for n in 0..clients {
            let (stop, served, failures, latencies) = (
                load.stop.clone(),
                load.served.clone(),
                load.failures.clone(),
                load.latencies.clone(),
            );
            load.threads.push(std::thread::spawn(move || {
                let mut i = 0;
                let mut connection = None;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let nonce = format!("load-{round}-{n}-{i}");
                    let url = signed_url("DescibeImportsFromDatabase", &[("DBInstanceId", DST)], &nonce);
                    let asked = Instant::now();
                    match keep_alive_get(&mut connection, port, &url) {
                        Some((200, body)) if body.contains("ImportResultFromDB") => {
                            served.fetch_add(1, Ordering::Relaxed);
                            latencies.lock().expect("lock").push(asked.elapsed());
                        }
                        other => failures.lock().expect("lock").push(format!("{other:?}")),
                    }
                    // A dashboard polls; 200 of them poll at once.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }));
        }
        let (stop, health) = (load.stop.clone(), load.health.clone());
        load.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                health.lock().expect("lock").extend(health_latencies(port, 1));
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
        std::thread::sleep(Duration::from_millis(500)); // the load is on
        load
    }

    fn stop(self) -> Self {
        self.stop.store(true, Ordering::SeqCst);
        let threads = self.threads;
        for thread in threads {
            thread.join().expect("load thread");
        }
        Load {
            threads: Vec::new(),
            ..self
        }
    }
}

/// 200 clients poll the status of a running import: every request is
/// answered correctly and the import completes exactly. The wall times and
/// latencies are printed as a measurement, not asserted: the suite runs
/// its tests in parallel on 2 cores, where any timing bound is a coin toss
/// (the numbers quoted in the closing note came from this output).
#[test]
fn two_hundred_concurrent_status_requests_do_not_slow_an_import() {
    const CLIENTS: usize = 200;
    const ROWS: u64 = 400_000;
    let (source, target) = dedicated_pair();
    let db = unique("api_load");
    big_table(&source, &target, &db, ROWS);
    let api = start(&source, &target, Vec::new());
    let port = api.port;
    let pid = api
        .daemon
        .child
        .as_ref()
        .map(std::process::Child::id)
        .expect("daemon pid");
    let health_quiet = percentiles(health_latencies(port, 50));

    // A quiet and a loaded import of the same database (the target table is
    // dropped in between), for the measurement printed below.
    let (mut quiet, mut loaded, mut loads) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..1 {
        for under_load in [false, true] {
            target.exec(&format!("DROP TABLE IF EXISTS `{db}`.t"));
            let load = under_load.then(|| Load::start(port, CLIENTS, round));
            let cpu = cpu_seconds(pid);
            let wall = timed_import(port, &db);
            let measured = Measured {
                wall,
                daemon_cpu: cpu_seconds(pid) - cpu,
            };
            if let Some(load) = load {
                loads.push(load.stop());
                loaded.push(measured);
            } else {
                quiet.push(measured);
            }
        }
    }
    assert_same(&source, &target, &db);
    let best = |runs: &[Measured]| runs.iter().map(|m| m.wall).min().unwrap_or_default();
    let (baseline, under_load) = (best(&quiet), best(&loaded));
    let ratio = under_load.as_secs_f64() / baseline.as_secs_f64();
    let served: u64 = loads.iter().map(|l| l.served.load(Ordering::SeqCst)).sum();
    let failures: Vec<String> = loads
        .iter()
        .flat_map(|l| l.failures.lock().expect("lock").clone())
        .collect();
    let status = percentiles(
        loads
            .iter()
            .flat_map(|l| l.latencies.lock().expect("lock").clone())
            .collect(),
    );
    let health_loaded = percentiles(
        loads
            .iter()
            .flat_map(|l| l.health.lock().expect("lock").clone())
            .collect(),
    );
    let loaded_seconds: f64 = loaded.iter().map(|m| m.wall.as_secs_f64()).sum();
    let cpu = |runs: &[Measured]| {
        runs.iter()
            .map(|m| format!("{:.2}s", m.daemon_cpu))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let walls = |runs: &[Measured]| {
        runs.iter()
            .map(|m| format!("{:.2?}", m.wall))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "load test: import of {ROWS} rows: alone {} (daemon CPU {}), with {CLIENTS} clients polling \
         DescibeImportsFromDatabase every 200 ms {} (daemon CPU {}); ratio {ratio:.2}; \
         {served} status requests served ({:.0}/s), latency p50/p99/max {status:.1?}; \
         /healthz p50/p99/max {health_quiet:.1?} alone, {health_loaded:.1?} under load; {} failures",
        walls(&quiet),
        cpu(&quiet),
        walls(&loaded),
        cpu(&loaded),
        served as f64 / loaded_seconds,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "status requests failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(served as usize >= CLIENTS, "the load ran: {served} requests");
    let health_answers: usize = loads.iter().map(|l| l.health.lock().expect("lock").len()).sum();
    assert!(health_answers > 0, "/healthz answered under load");
}

#[test]
fn slow_clients_and_oversized_bodies_are_cut_off() {
    let pair = pair();
    let api = start(pair.source, pair.target, Vec::new());
    let port = api.port;

    // A body over the limit: refused in the Error shape.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let body = vec![b'a'; 1 << 20];
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    let _ = stream.write_all(&body); // the server may stop reading early
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("\"Code\":\"InvalidParameter\"") && response.contains("larger than"),
        "{response}"
    );

    // A client that never finishes its headers is disconnected.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("partial head");
    slow.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = slow.read(&mut buf);
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Ok(_) | Err(_)) && took < Duration::from_secs(15) && took >= Duration::from_secs(5),
        "a stalled client must be cut off after the header timeout, took {took:?} ({read:?})"
    );
    // Meanwhile and after, the daemon serves.
    assert_eq!(http(port, "GET", "/healthz").map(|(s, _)| s), Some(200));
}

#[test]
fn tls_listener_serves_the_sdks() {
    let pair = pair();
    let port = free_port();
    let files = Files::new();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("self-signed certificate");
    let cert = files.write("tls/cert.pem", &certified.cert.pem());
    let key = files
        .write_mode("tls/key.pem", &certified.key_pair.serialize_pem(), 0o600)
        .expect("key file");
    let text = ConfigBuilder::new()
        .listen(&format!("127.0.0.1:{port}"))
        .instance(Instance::mysql(SRC, pair.source))
        .instance(Instance::mysql(DST, pair.target))
        .access_key(AK, SECRET, DEFAULT_OWNER)
        .try_render(&files)
        .expect("render");
    let text = text.replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    let config = files.write("dbferry.toml", &text);
    let python = sdk_python();
    let https_get = |path: &str| -> Option<u16> {
        let script = format!(
            "import ssl, urllib.request\nctx = ssl.create_default_context(cafile={cert:?})\nprint(urllib.request.urlopen('https://127.0.0.1:{port}{path}', context=ctx, timeout=5).status)",
            cert = cert.display().to_string()
        );
        let out = Command::new(&python).args(["-c", &script]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let mut daemon = Daemon::new(&config, port, &files.path().join("daemon.log"));
    daemon.spawn_until(&|_| https_get("/readyz") == Some(200));
    assert_eq!(https_get("/healthz"), Some(200));
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(http(port, "GET", "/healthz").is_none_or(|(s, _)| s != 200));
    for sdk_name in ["v1", "v3"] {
        let result = call(with(
            with(
                spec(
                    sdk_name,
                    port,
                    "DescribeDBInstanceAttribute",
                    json!({"DBInstanceId": DST}),
                ),
                "protocol",
                "https",
            ),
            "ca",
            cert.display().to_string(),
        ));
        assert_eq!(
            ok(&result)["Items"]["DBInstanceAttribute"][0]["DBInstanceStatus"],
            "Running",
            "{sdk_name}"
        );
    }
}
