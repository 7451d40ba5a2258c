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
    // A plan of 1,000 tables is about 2 MB. In the imports row, every later
    // update of that row (status, progress, the result) wrote it again.
    "
CREATE TABLE plans (
    import_id   INTEGER PRIMARY KEY REFERENCES imports (id),
    plan        TEXT NOT NULL
);
INSERT INTO plans (import_id, plan) SELECT id, plan FROM imports WHERE plan IS NOT NULL;
UPDATE imports SET plan = NULL WHERE plan IS NOT NULL;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_kept_in_the_imports_row_moves_to_its_own_table() -> Result<(), Box<dyn std::error::Error>> {
        let conn = Connection::open_in_memory()?;
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql)?;
        }
        conn.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO imports (request_id, source_id, target_id, owner, origin, job, status, created_at, plan)
             VALUES ('r', 's', 't', 'o', 'api', '{}', 'Success', 0, '[1,2]')",
        )?;
        migrate(&conn)?;
        let moved: String = conn.query_row("SELECT plan FROM plans WHERE import_id = 1", [], |r| r.get(0))?;
        let left: Option<String> = conn.query_row("SELECT plan FROM imports WHERE id = 1", [], |r| r.get(0))?;
        assert_eq!((moved.as_str(), left), ("[1,2]", None));
        Ok(())
    }
}
