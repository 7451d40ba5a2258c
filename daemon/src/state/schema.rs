//! The store's tables, created or upgraded on open.

use rusqlite::Connection;

/// Each entry upgrades the schema by one version; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    owner       TEXT NOT NULL,
    origin      TEXT NOT NULL,
    job         TEXT NOT NULL,
    status      TEXT NOT NULL,
    code        TEXT,
    message     TEXT,
    rows        INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    plan        TEXT,
    result      TEXT
);
CREATE INDEX imports_status ON imports (status);
CREATE TABLE chunks (
    import_id   INTEGER NOT NULL REFERENCES imports (id),
    table_index INTEGER NOT NULL,
    ordinal     INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (import_id, table_index, ordinal)
);
CREATE TABLE seen_jobs (
    fingerprint TEXT PRIMARY KEY,
    file        TEXT NOT NULL,
    import_id   INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL
);
",
    "
CREATE TABLE client_tokens (
    owner       TEXT NOT NULL,
    token       TEXT NOT NULL,
    import_id   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner, token)
);
",
];

/// Brings the schema up to date inside one transaction.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            index + 1
        ))?;
    }
    Ok(())
}
