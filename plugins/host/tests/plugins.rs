//! Plugin-host tests against the real fixture plugins (no database needed).
//!
//! They load `libfixture_engine.so` and `libfixture_bad_abi.so`
//! from the Cargo target directory, which `cargo build --workspace` (or
//! `make build`) produces; `cargo test -p dbferry-plugin-host` alone does not
//! build cdylibs of other packages, so a missing file fails loudly.
//!
//! Covered: the ABI refusal (file, ABI 99 and ours named), caught panics that
//! leave the host and the plugin usable, plugin log events reaching the
//! host's `tracing`, `load_dir` returning good plugins and failures side by
//! side, and `copy_core::run_copy` end to end over fixture readers/writers:
//! rows arrive, checkpoints are recorded, cancellation stops within a second,
//! and a resumed run skips committed chunks without duplicating rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use dbferry_copy_core::checkpoint::{CheckpointStore, ChunkStats, MemoryCheckpoints};
use dbferry_copy_core::error::BoxError;
use dbferry_copy_core::pipeline::{BatchReader, BatchWriter, ChunkSink, ChunkSource, CopySettings, ProgressSink};
use dbferry_copy_core::plan::{plan_table, ChunkId, ChunkTask, KeySplitter, TableEstimate};
use dbferry_copy_core::{run_copy, CancelToken, CopyError, KeyTuple};
use dbferry_plugin_abi::ffi;
use dbferry_plugin_abi::protocol::{
    Detail, DigestRequest, ReadRequest, SessionConfig, SplitRequest, TableSchema, VerifyMode, WriteRequest,
};
use dbferry_plugin_host::{load_dir, HostError, Plugin, Session};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

// ---------------------------------------------------------------- fixtures

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// `target/<profile>/lib<name>.so`, or a loud failure.
fn cdylib(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| target_dir().join("debug"));
    let file = profile_dir.join(format!("lib{name}.so"));
    assert!(
        file.is_file(),
        "\n\n========== FIXTURE PLUGIN NOT BUILT ==========\n\
         {} is missing.\n\
         run `cargo build --workspace` first (or `make build` / `make test`):\n\
         `cargo test -p dbferry-plugin-host` alone does not build the cdylib\n\
         fixture plugins these tests load.\n\
         ==============================================\n",
        file.display()
    );
    file
}

fn fixture_path() -> PathBuf {
    cdylib("fixture_engine")
}

fn bad_abi_path() -> PathBuf {
    cdylib("fixture_bad_abi")
}

fn fixture() -> Plugin {
    install_capture();
    Plugin::load(&fixture_path()).expect("the fixture plugin loads")
}

fn config(instance: &str, options: serde_json::Value) -> SessionConfig {
    SessionConfig {
        instance_id: instance.into(),
        host: "fixture.invalid".into(),
        port: 1,
        user: "nobody".into(),
        password: "secret".into(),
        max_connections: 8,
        options: options.as_object().cloned().unwrap_or_default(),
    }
}

/// A unique instance id, so tests sharing the plugin's in-memory store and
/// the global log capture never see each other.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

// ------------------------------------------------------------ log capture

#[derive(Clone, Debug)]
struct Captured {
    level: tracing::Level,
    target: String,
    text: String,
}

fn captured() -> &'static Mutex<Vec<Captured>> {
    static EVENTS: OnceLock<Mutex<Vec<Captured>>> = OnceLock::new();
    EVENTS.get_or_init(Default::default)
}

struct CaptureLayer;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        captured()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Captured {
                level: *event.metadata().level(),
                target: event.metadata().target().to_string(),
                text: text.0,
            });
    }
}

/// Installs the capturing subscriber as the host's global default, once,
/// before any plugin is loaded.
fn install_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(CaptureLayer);
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test binary");
    });
}

fn events_mentioning(needle: &str) -> Vec<Captured> {
    captured()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|e| e.text.contains(needle))
        .cloned()
        .collect()
}

// ------------------------------------------------------------------ tests

#[test]
fn the_fixture_loads_and_reports_itself() {
    let plugin = fixture();
    let info = plugin.info();
    assert_eq!(info.engine, "fixture");
    assert_eq!(info.abi, format!("{}.{}", ffi::ABI_MAJOR, ffi::ABI_MINOR));
    assert_eq!(info.file, fixture_path());
    let session = plugin
        .connect(&config(&unique("probe"), serde_json::json!({})))
        .expect("connect");
    let server = session.probe().expect("probe");
    assert_eq!(server.product, "Fixture");
    assert_eq!(server.databases[0].name, "fixturedb");
}

#[test]
fn a_plugin_of_another_abi_is_refused_naming_the_file_its_abi_and_ours() {
    install_capture();
    let path = bad_abi_path();
    let error = match Plugin::load(&path) {
        Ok(_) => panic!("a plugin with ABI major 99 must be refused"),
        Err(error) => error,
    };
    assert!(
        matches!(error, HostError::Incompatible { .. }),
        "wrong error kind: {error:?}"
    );
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "must name the file: {text}");
    assert!(text.contains("99.0"), "must name the plugin's ABI (99): {text}");
    let ours = format!("{}.{}", ffi::ABI_MAJOR, ffi::ABI_MINOR);
    assert!(
        text.contains(&format!("ABI {ours}")),
        "must name our ABI ({ours}): {text}"
    );
}

#[test]
fn a_file_that_is_no_library_or_no_plugin_is_refused_with_its_name() {
    install_capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, b"this is not an ELF file").expect("write");
    let error = Plugin::load(&junk).err().expect("junk must not load");
    assert!(matches!(error, HostError::Load { .. }), "{error:?}");
    assert!(error.to_string().contains(&junk.display().to_string()), "{error}");
}

#[test]
fn a_panicking_call_is_an_error_and_the_host_and_plugin_carry_on() {
    let plugin = fixture();
    let instance = unique("panicky");
    let session = plugin
        .connect(&config(&instance, serde_json::json!({"panic_in": "probe"})))
        .expect("connect");
    let error = session.probe().expect_err("probe panics");
    assert!(error.is_panic(), "a caught panic is reported as such: {error:?}");
    assert!(error.to_string().contains("deliberate panic in probe"), "{error}");
    // The same session still answers other calls...
    let schema = session.describe_database("fixturedb").expect("describe after a panic");
    assert_eq!(schema.tables.len(), 1);
    // ...the same call panics again (and is caught again)...
    assert!(session.probe().err().is_some_and(|e| e.is_panic()));
    // ...and new sessions work.
    let healthy = plugin
        .connect(&config(&unique("healthy"), serde_json::json!({})))
        .expect("connect");
    assert_eq!(healthy.probe().expect("probe").product, "Fixture");
}

#[test]
fn panics_in_connect_reader_writer_and_commit_are_caught() {
    let plugin = fixture();
    let error = plugin
        .connect(&config(&unique("p"), serde_json::json!({"panic_in": "connect"})))
        .err()
        .expect("connect panics");
    assert!(error.is_panic(), "{error:?}");

    let table = table_schema(100);
    let read = ReadRequest {
        database: "fixturedb".into(),
        table: table.clone(),
        range: dbferry_copy_core::KeyRange::whole(vec!["id".into()]),
        batch_bytes: 1 << 16,
        formats: Vec::new(),
    };
    let source = plugin
        .connect(&config(
            &unique("p"),
            serde_json::json!({"panic_in": "reader", "rows": 100}),
        ))
        .expect("connect");
    let mut reader = source.open_reader(read.clone()).expect("open reader");
    assert!(
        reader.next_batch().err().is_some_and(|e| e.is_panic()),
        "reader panic is caught"
    );
    drop(reader);

    for place in ["writer", "commit"] {
        let target = plugin
            .connect(&config(&unique("p"), serde_json::json!({"panic_in": place})))
            .expect("connect");
        let mut writer = target
            .open_writer(WriteRequest {
                database: "fixturedb".into(),
                table: table.clone(),
                range: read.range.clone(),
                redo: false,
            })
            .expect("open writer");
        let outcome = writer
            .write(bytes::Bytes::from_static(b"1\tpayload-1\n"), 1)
            .and_then(|()| writer.commit().map(|_| ()));
        assert!(
            outcome.err().is_some_and(|e| e.is_panic()),
            "a panic in {place} is caught"
        );
    }
    // Still alive and usable.
    assert!(plugin.connect(&config(&unique("p"), serde_json::json!({}))).is_ok());
}

#[test]
fn an_ordinary_plugin_error_keeps_its_code_and_is_no_panic() {
    let plugin = fixture();
    let session = plugin
        .connect(&config(&unique("f"), serde_json::json!({"fail_in": "probe"})))
        .expect("connect");
    let error = session.probe().expect_err("probe fails");
    assert!(!error.is_panic());
    let inner = error.plugin_error().expect("a plugin error");
    assert_eq!(inner.code.as_deref(), Some("InternalError"));
}

#[test]
fn plugin_log_events_reach_the_hosts_tracing() {
    let plugin = fixture();
    let instance = unique("logging");
    let session = plugin
        .connect(&config(&instance, serde_json::json!({})))
        .expect("connect");
    session.probe().expect("probe");
    let events = events_mentioning(&instance);
    assert!(
        events.iter().any(|e| e.text.contains("fixture session opened")),
        "the plugin's connect log must arrive: {events:?}"
    );
    let probe = events
        .iter()
        .find(|e| e.text.contains("fixture probe"))
        .unwrap_or_else(|| panic!("the plugin's probe log must arrive: {events:?}"));
    assert_eq!(probe.level, tracing::Level::INFO);
    assert_eq!(
        probe.target, "dbferry::plugin",
        "re-emitted under the host's plugin target"
    );
    assert!(
        probe.text.contains("fixture_engine"),
        "keeps the plugin's own target: {probe:?}"
    );
}

#[test]
fn load_dir_returns_good_plugins_and_failures_side_by_side() {
    install_capture();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture_path(), dir.path().join("libdbferry_fixture_plugin.so")).expect("copy fixture");
    std::fs::copy(bad_abi_path(), dir.path().join("libdbferry_bad_abi_plugin.so")).expect("copy bad");
    std::fs::write(dir.path().join("README.txt"), "not a plugin").expect("write");
    std::fs::copy(bad_abi_path(), dir.path().join("libother.so")).expect("copy a non-plugin library");
    let (plugins, failures) = load_dir(dir.path()).expect("the directory is readable");
    assert_eq!(plugins.len(), 1, "the good plugin loads");
    assert_eq!(plugins[0].info().engine, "fixture");
    assert_eq!(
        failures.len(),
        1,
        "only the bad libdbferry_*.so fails; other files are not plugins: {failures:?}"
    );
    assert!(
        failures[0].to_string().contains("libdbferry_bad_abi_plugin.so"),
        "{}",
        failures[0]
    );
    assert!(failures[0].to_string().contains("99"), "{}", failures[0]);

    let missing = load_dir(&dir.path().join("nope"))
        .err()
        .expect("a missing dir is an error");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn the_library_stays_loaded_while_a_session_lives() {
    let plugin = fixture();
    let session = plugin
        .connect(&config(&unique("alive"), serde_json::json!({})))
        .expect("connect");
    drop(plugin);
    // Calls go through the function table of a library nobody else holds.
    assert_eq!(session.probe().expect("probe").product, "Fixture");
}

// -------------------------------------------------------- copy end to end

fn table_schema(rows: u64) -> TableSchema {
    TableSchema {
        name: "items".into(),
        key: Some(vec!["id".into()]),
        estimated_rows: rows,
        estimated_bytes: rows * 24,
        detail: Detail::encode(&serde_json::json!({"fixture": true})).expect("detail"),
    }
}

struct Source {
    session: Session,
    table: TableSchema,
}

impl ChunkSource for Source {
    fn open(&self, chunk: &ChunkTask) -> Result<Box<dyn BatchReader>, BoxError> {
        let reader = self.session.open_reader(ReadRequest {
            database: "fixturedb".into(),
            table: self.table.clone(),
            range: chunk.range.clone(),
            batch_bytes: 1 << 16,
            formats: Vec::new(),
        })?;
        Ok(Box::new(reader))
    }
}

struct Sink {
    session: Session,
    table: TableSchema,
}

impl ChunkSink for Sink {
    fn open(&self, chunk: &ChunkTask, redo: bool) -> Result<Box<dyn BatchWriter>, BoxError> {
        let writer = self.session.open_writer(WriteRequest {
            database: "fixturedb".into(),
            table: self.table.clone(),
            range: chunk.range.clone(),
            redo,
        })?;
        Ok(Box::new(writer))
    }
}

struct Splitter<'a>(&'a Session, &'a TableSchema);

impl KeySplitter for Splitter<'_> {
    fn split_points(&self, parts: u32) -> Result<Vec<KeyTuple>, String> {
        self.0
            .split_points(SplitRequest {
                database: "fixturedb".into(),
                table: self.1.clone(),
                parts,
            })
            .map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct Progress {
    rows: AtomicU64,
    committed: AtomicU64,
}

impl ProgressSink for Progress {
    fn batch_written(&self, _id: ChunkId, rows: u64, _bytes: u64) {
        self.rows.fetch_add(rows, Ordering::SeqCst);
    }
    fn chunk_committed(&self, _id: ChunkId, _stats: ChunkStats) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }
}

struct Copy {
    source: Source,
    sink: Sink,
    chunks: Vec<ChunkTask>,
    target: Session,
    table: TableSchema,
}

fn copy_setup(rows: u64, chunks: u32, source_options: serde_json::Value) -> Copy {
    let plugin = fixture();
    let mut options = source_options;
    options["rows"] = serde_json::json!(rows);
    let source = plugin
        .connect(&config(&unique("src"), options))
        .expect("connect source");
    // rows 0: a target that received nothing reports 0 rows.
    let target = plugin
        .connect(&config(&unique("dst"), serde_json::json!({"rows": 0})))
        .expect("connect target");
    let table = table_schema(rows);
    let estimate = TableEstimate {
        rows,
        bytes: table.estimated_bytes,
        key: table.key.clone(),
    };
    let chunk_bytes = table.estimated_bytes.div_ceil(u64::from(chunks)).max(1);
    let planned = plan_table(
        0,
        "items",
        &estimate,
        chunk_bytes,
        chunks,
        true,
        &Splitter(&source, &table),
    )
    .expect("plan");
    Copy {
        source: Source {
            session: source,
            table: table.clone(),
        },
        sink: Sink {
            session: target.clone(),
            table: table.clone(),
        },
        chunks: planned,
        target,
        table,
    }
}

fn settings(resumed: bool) -> CopySettings {
    CopySettings {
        lanes: 3,
        queue_depth: 4,
        memory_budget: 1 << 20,
        max_bytes_per_sec: 0,
        resumed,
        retries: 0,
        inline_chunk_bytes: 0,
        group_chunks: 1,
    }
}

/// (rows on the target, ids written more than once).
fn target_digest(copy: &Copy) -> (u64, String) {
    let digest = copy
        .target
        .table_digest(DigestRequest {
            database: "fixturedb".into(),
            table: copy.table.clone(),
            mode: VerifyMode::Checksum,
            in_snapshot: false,
        })
        .expect("digest");
    (digest.rows, digest.checksum.unwrap_or_default())
}

#[test]
fn run_copy_moves_every_row_and_checkpoints_every_chunk() {
    let copy = copy_setup(10_000, 8, serde_json::json!({"batch_rows": 250}));
    assert_eq!(copy.chunks.len(), 8, "the planner split the table: {:?}", copy.chunks);
    let checkpoints = MemoryCheckpoints::default();
    let progress = Progress::default();
    let report = run_copy(
        &copy.chunks,
        &settings(false),
        &copy.source,
        &copy.sink,
        &checkpoints,
        &progress,
        &CancelToken::new(),
    )
    .expect("copy succeeds");
    assert_eq!(report.rows, 10_000);
    assert_eq!(report.chunks_copied, 8);
    assert_eq!(report.chunks_skipped, 0);
    assert!(report.bytes > 10_000 * 10, "bytes are counted: {}", report.bytes);
    assert_eq!(checkpoints.all().len(), 8, "one checkpoint per committed chunk");
    assert_eq!(checkpoints.all().values().map(|s| s.rows).sum::<u64>(), 10_000);
    assert_eq!(progress.rows.load(Ordering::SeqCst), 10_000);
    assert_eq!(progress.committed.load(Ordering::SeqCst), 8);
    assert_eq!(
        target_digest(&copy),
        (10_000, "0".to_string()),
        "every row arrived exactly once"
    );
}

#[test]
fn a_plugin_error_or_panic_mid_copy_fails_the_copy_with_the_cause() {
    for place in ["reader", "writer"] {
        let copy = copy_setup(1000, 2, serde_json::json!({"panic_in": place}));
        let copy = if place == "writer" {
            // The writer's panic is configured on the target session.
            let plugin = fixture();
            let target = plugin
                .connect(&config(&unique("dst"), serde_json::json!({"panic_in": "writer"})))
                .expect("connect");
            Copy {
                sink: Sink {
                    session: target.clone(),
                    table: copy.table.clone(),
                },
                target,
                ..copy
            }
        } else {
            copy
        };
        let error = run_copy(
            &copy.chunks,
            &settings(false),
            &copy.source,
            &copy.sink,
            &MemoryCheckpoints::default(),
            &Progress::default(),
            &CancelToken::new(),
        )
        .err()
        .unwrap_or_else(|| panic!("a panic in the {place} must fail the copy"));
        let expected_read = place == "reader";
        assert!(
            matches!(&error, CopyError::Read { .. }) == expected_read,
            "the failing side is named: {error}"
        );
        assert!(error.to_string().contains("deliberate panic"), "{error}");
    }
}

#[test]
fn cancellation_stops_a_copy_within_a_second() {
    // 200 batches of 10 rows, 50 ms apart per lane: ~3 s of work.
    let copy = copy_setup(2000, 3, serde_json::json!({"batch_rows": 10, "delay_ms": 50}));
    let cancel = CancelToken::new();
    let checkpoints = MemoryCheckpoints::default();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            cancel.cancel();
            Instant::now()
        })
    };
    let result = run_copy(
        &copy.chunks,
        &settings(false),
        &copy.source,
        &copy.sink,
        &checkpoints,
        &Progress::default(),
        &cancel,
    );
    let stopped = Instant::now();
    let cancelled_at = canceller.join().expect("canceller");
    assert!(matches!(result, Err(CopyError::Cancelled)), "{result:?}");
    let latency = stopped.saturating_duration_since(cancelled_at);
    assert!(
        latency < Duration::from_secs(1),
        "stopped {latency:?} after the cancellation"
    );
    let (rows, dups) = target_digest(&copy);
    assert!(rows < 2000, "the copy did not finish anyway ({rows} rows)");
    assert!(dups == "0" || (rows == 0 && dups.is_empty()), "no row twice: {dups}");
}

#[test]
fn a_resumed_copy_skips_committed_chunks_and_duplicates_nothing() {
    let copy = copy_setup(4000, 8, serde_json::json!({"batch_rows": 50, "delay_ms": 10}));
    assert_eq!(copy.chunks.len(), 8);
    let checkpoints = Arc::new(MemoryCheckpoints::default());

    // First run: cancel once some (not all) chunks are committed.
    let cancel = CancelToken::new();
    let watcher = {
        let (cancel, checkpoints) = (cancel.clone(), checkpoints.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while checkpoints.all().len() < 3 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            cancel.cancel();
        })
    };
    let first = run_copy(
        &copy.chunks,
        &settings(false),
        &copy.source,
        &copy.sink,
        checkpoints.as_ref(),
        &Progress::default(),
        &cancel,
    );
    watcher.join().expect("watcher");
    assert!(matches!(first, Err(CopyError::Cancelled)), "{first:?}");
    let done_before = checkpoints.all().len() as u64;
    assert!(
        (3..8).contains(&done_before),
        "{done_before} chunks committed before the cancel"
    );

    // Second run, resumed with the same store.
    let second = run_copy(
        &copy.chunks,
        &settings(true),
        &copy.source,
        &copy.sink,
        checkpoints.as_ref(),
        &Progress::default(),
        &CancelToken::new(),
    )
    .expect("the resumed copy finishes");
    assert_eq!(second.chunks_skipped, done_before, "committed chunks are skipped");
    assert_eq!(second.chunks_copied, 8 - done_before);
    assert!(
        second.rows < 4000,
        "only the remaining chunks were copied ({} rows)",
        second.rows
    );
    assert_eq!(checkpoints.all().len(), 8);
    assert_eq!(target_digest(&copy), (4000, "0".to_string()), "all rows, none twice");
}

#[test]
fn checkpoint_store_sees_only_committed_chunks() {
    // A writer failing at commit must leave no checkpoint behind.
    let copy = copy_setup(500, 1, serde_json::json!({}));
    let plugin = fixture();
    let target = plugin
        .connect(&config(&unique("dst"), serde_json::json!({"fail_in": "commit"})))
        .expect("connect");
    let sink = Sink {
        session: target,
        table: copy.table.clone(),
    };
    let checkpoints = MemoryCheckpoints::default();
    let result = run_copy(
        &copy.chunks,
        &settings(false),
        &copy.source,
        &sink,
        &checkpoints,
        &Progress::default(),
        &CancelToken::new(),
    );
    assert!(matches!(result, Err(CopyError::Write { .. })), "{result:?}");
    assert!(checkpoints.all().is_empty());
    assert!(!checkpoints.is_committed(copy.chunks[0].id));
}
