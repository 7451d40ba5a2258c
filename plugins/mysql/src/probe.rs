//! Server facts for the prechecks.

use dbferry_plugin_abi::protocol::{DatabaseInfo, ServerInfo, TransportInfo};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::{cell, parse_version, ServerFacts};
use crate::error::{Context, Result};
use crate::tls::TlsMode;

/// Databases that belong to the server, never to users.
pub const SYSTEM_DATABASES: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

async fn rows(conn: &mut Conn, sql: &str) -> Result<Vec<Row>> {
    conn.query::<Row, _>(sql).await.ctx(|| format!("running {sql}"))
}

/// Reads version and packet size (at connect).
pub async fn facts(conn: &mut Conn) -> Result<ServerFacts> {
    let row = rows(conn, "SELECT @@version, @@version_comment, @@max_allowed_packet").await?;
    let row = row.first();
    let version = row.map(|r| cell::string(r, 0)).unwrap_or_default();
    let comment = row.map(|r| cell::string(r, 1)).unwrap_or_default();
    Ok(ServerFacts {
        mariadb: version.to_ascii_lowercase().contains("mariadb") || comment.to_ascii_lowercase().contains("mariadb"),
        numbers: parse_version(&version),
        max_allowed_packet: row.map(|r| cell::u64(r, 2)).unwrap_or(4 << 20),
        version,
    })
}

/// How `conn` travels, as the server sees it (`Ssl_version` is empty on
/// a plaintext connection), under `mode`.
pub async fn transport(conn: &mut Conn, mode: TlsMode) -> Result<TransportInfo> {
    let row = rows(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'").await?;
    let version = row.first().map(|r| cell::string(r, 1)).filter(|v| !v.is_empty());
    Ok(TransportInfo {
        mode: mode.as_str().to_string(),
        encrypted: version.is_some(),
        verified: if version.is_some() { mode.verification() } else { "none" }.to_string(),
        tls_version: version,
    })
}

/// The facts of [`ServerInfo`].
pub async fn probe(conn: &mut Conn, facts: &ServerFacts, mode: TlsMode) -> Result<ServerInfo> {
    let flags = rows(conn, "SELECT @@read_only, @@local_infile").await?;
    let mut read_only = flags.first().map(|r| cell::u64(r, 0) != 0).unwrap_or(false);
    let local_infile = flags.first().map(|r| cell::u64(r, 1) != 0).unwrap_or(false);
    if !facts.mariadb {
        // MySQL 5.7+; absent elsewhere.
        if let Ok(r) = conn.query_first::<Row, _>("SELECT @@super_read_only").await {
            read_only |= r.map(|r| cell::u64(&r, 0) != 0).unwrap_or(false);
        }
    }
    facts.fresh_statistics(conn).await?;
    let mut used_bytes = 0u64;
    let mut sizes = std::collections::HashMap::new();
    let files = crate::sizes::file_sizes(conn, facts).await?;
    for r in rows(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME, IFNULL(DATA_LENGTH, 0) + IFNULL(INDEX_LENGTH, 0) \
         FROM information_schema.TABLES",
    )
    .await?
    {
        let (schema, table) = (cell::string(&r, 0), cell::string(&r, 1));
        let file = files.get(&(schema.clone(), table)).copied();
        let size = crate::sizes::table_bytes(cell::u64(&r, 2), 0, file);
        used_bytes += size;
        let entry = sizes.entry(schema).or_insert((0u64, 0u64));
        entry.0 += size;
        entry.1 += 1;
    }
    let mut other_objects = std::collections::HashSet::new();
    for sql in [
        "SELECT DISTINCT ROUTINE_SCHEMA FROM information_schema.ROUTINES",
        "SELECT DISTINCT EVENT_SCHEMA FROM information_schema.EVENTS",
    ] {
        for r in rows(conn, sql).await? {
            other_objects.insert(cell::string(&r, 0));
        }
    }
    let mut databases = Vec::new();
    for r in rows(
        conn,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
    )
    .await?
    {
        let name = cell::string(&r, 0);
        if SYSTEM_DATABASES.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let (size, tables) = sizes.get(&name).copied().unwrap_or((0, 0));
        databases.push(DatabaseInfo {
            online: true,
            size_bytes: size,
            has_objects: tables > 0 || other_objects.contains(&name),
            name,
        });
    }
    let mut write_blockers = Vec::new();
    if !local_infile {
        write_blockers.push("local_infile is OFF: LOAD DATA LOCAL INFILE is refused".to_string());
    }
    let grants: Vec<Row> = rows(conn, "SHOW GRANTS").await.unwrap_or_default();
    let grants = crate::grants::Grants::parse(
        grants
            .iter()
            .map(|r| cell::string(r, 0))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let missing_privileges = match grants {
        Some(grants) => databases
            .iter()
            .map(|d| grants.missing(&d.name))
            .filter(|m| !m.to_read.is_empty() || !m.to_write.is_empty())
            .collect(),
        None => Vec::new(),
    };
    Ok(ServerInfo {
        missing_privileges,
        product: facts.product().to_string(),
        version: facts.version.clone(),
        edition: None,
        read_only,
        used_bytes,
        databases,
        write_blockers,
        transport: Some(transport(conn, mode).await?),
        batch_formats: Vec::new(),
    })
}
