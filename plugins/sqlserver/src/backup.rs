//! Copy by native backup and restore (`method = "backup-restore"`), the way
//! dbatools' `Copy-DbaDatabase -BackupRestore` does it:
//!
//! 1. source: `BACKUP DATABASE ... TO DISK = path WITH COPY_ONLY, CHECKSUM`
//!    (copy-only: the source's backup chain is untouched);
//! 2. target: `RESTORE VERIFYONLY ... WITH CHECKSUM` (the checksum check),
//!    `RESTORE FILELISTONLY` to learn the files, then `RESTORE DATABASE
//!    [destination] ... WITH MOVE` of every file to the target's default
//!    data and log paths, under the destination name, `CHECKSUM`;
//! 3. either side: the backup file is removed.
//!
//! Progress: `percent_complete` of the session running the step, from
//! `sys.dm_exec_requests`.

use dbferry_plugin_abi::protocol::{BackupProgress, ObjectKind, ObjectRef, SchemaOutcome};

use crate::cell::{int, string, text};
use crate::conn::{exec, rows, Conn};
use crate::error::{Error, Result};
use crate::quote::{ident, string as literal};

/// The backup statement.
pub fn backup_sql(database: &str, path: &str) -> String {
    format!(
        "BACKUP DATABASE {} TO DISK = {} WITH COPY_ONLY, CHECKSUM, INIT, FORMAT",
        ident(database),
        literal(path)
    )
}

/// The checksum check of a backup file.
pub fn verify_sql(path: &str) -> String {
    format!("RESTORE VERIFYONLY FROM DISK = {} WITH CHECKSUM", literal(path))
}

/// The files inside a backup.
pub fn filelist_sql(path: &str) -> String {
    format!("RESTORE FILELISTONLY FROM DISK = {}", literal(path))
}

/// The target's default data and log directories.
pub const DEFAULT_PATHS_SQL: &str = "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000)), \
     CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000))";

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFile {
    /// Logical name.
    pub logical: String,
    /// Physical name on the source.
    pub physical: String,
    /// `D` data, `L` log, `S` filestream, `F` full-text.
    pub kind: String,
}

/// Where a file goes on the target: `<dir><destination>_<logical><ext>`, the
/// extension kept from the source's file.
pub fn target_path(file: &BackupFile, database: &str, data_dir: &str, log_dir: &str) -> String {
    let dir = if file.kind == "L" { log_dir } else { data_dir };
    let sep = if dir.contains('\\') { '\\' } else { '/' };
    let mut dir = dir.to_string();
    if !dir.is_empty() && !dir.ends_with(sep) {
        dir.push(sep);
    }
    let base = file.physical.rsplit(['\\', '/']).next().unwrap_or("");
    let ext = match base.rfind('.') {
        Some(i) if file.kind != "S" => &base[i..],
        _ => "",
    };
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{dir}{}_{}{ext}", safe(database), safe(&file.logical))
}

/// The restore statement.
pub fn restore_sql(database: &str, path: &str, moves: &[(String, String)], replace: bool) -> String {
    let moves: Vec<String> = moves
        .iter()
        .map(|(logical, to)| format!("MOVE {} TO {}", literal(logical), literal(to)))
        .collect();
    format!(
        "RESTORE DATABASE {} FROM DISK = {} WITH {}, CHECKSUM, RECOVERY{}",
        ident(database),
        literal(path),
        moves.join(", "),
        if replace { ", REPLACE" } else { "" }
    )
}

/// Removes the backup file: `xp_delete_files` (2019+), else `xp_delete_file`.
pub fn cleanup_sqls(path: &str) -> [String; 2] {
    [
        format!("EXEC master.sys.xp_delete_files {}", literal(path)),
        format!("EXEC master.dbo.xp_delete_file 0, {}", literal(path)),
    ]
}

/// The progress of the request running on session `spid`.
pub fn progress_sql(spid: i64) -> String {
    format!("SELECT command, CAST(percent_complete AS float) FROM sys.dm_exec_requests WHERE session_id = {spid}")
}

/// Step 1, on the source.
pub async fn backup(conn: &mut Conn, database: &str, path: &str) -> Result<SchemaOutcome> {
    exec(conn, &backup_sql(database, path)).await?;
    Ok(SchemaOutcome::default())
}

/// Step 2, on the target.
pub async fn restore(conn: &mut Conn, database: &str, path: &str) -> Result<SchemaOutcome> {
    let existing = rows(
        conn,
        &format!("SELECT COUNT(*) FROM sys.databases WHERE name = {}", literal(database)),
    )
    .await?;
    let exists = existing.first().and_then(|r| int(r, 0)).unwrap_or(0) > 0;
    if exists {
        // The host admits an existing destination only when it is empty.
        let objects = rows(
            conn,
            &crate::probe::objects_sql(Some(database), crate::flavour::Flavour::SqlServer),
        )
        .await?;
        if objects.first().and_then(|r| int(r, 0)).unwrap_or(1) > 0 {
            return Err(Error::Conflict(format!(
                "destination database {} already exists and is not empty",
                ident(database)
            )));
        }
    }
    exec(conn, &verify_sql(path)).await?;
    let files: Vec<BackupFile> = rows(conn, &filelist_sql(path))
        .await?
        .iter()
        .map(|r| BackupFile {
            logical: string(r, 0),
            physical: string(r, 1),
            kind: string(r, 2),
        })
        .collect();
    let paths = rows(conn, DEFAULT_PATHS_SQL).await?;
    let (data_dir, log_dir) = match paths.first() {
        Some(r) => (text(r, 0).unwrap_or_default(), text(r, 1).unwrap_or_default()),
        None => (String::new(), String::new()),
    };
    if data_dir.is_empty() || log_dir.is_empty() {
        return Err(Error::Unsupported(
            "the target does not report its default data and log paths".into(),
        ));
    }
    let moves: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.logical.clone(), target_path(f, database, &data_dir, &log_dir)))
        .collect();
    exec(conn, &restore_sql(database, path, &moves, exists)).await?;
    Ok(SchemaOutcome {
        created: vec![ObjectRef {
            kind: ObjectKind::Database,
            name: database.to_string(),
        }],
        ..SchemaOutcome::default()
    })
}

/// Step 3: removes the backup file; a failure is a warning.
pub async fn cleanup(conn: &mut Conn, path: &str) -> SchemaOutcome {
    let mut errors = Vec::new();
    for sql in cleanup_sqls(path) {
        match exec(conn, &sql).await {
            Ok(()) => return SchemaOutcome::default(),
            Err(e) => errors.push(e.to_string()),
        }
    }
    SchemaOutcome {
        warnings: vec![format!(
            "the backup file {path} could not be removed: {}",
            errors.join("; ")
        )],
        ..SchemaOutcome::default()
    }
}

/// Progress of the backup or restore on session `spid`.
pub async fn progress(conn: &mut Conn, spid: i64) -> Result<BackupProgress> {
    let found = rows(conn, &progress_sql(spid)).await?;
    Ok(match found.first() {
        Some(r) => BackupProgress {
            operation: text(r, 0),
            percent: match r.cells().nth(1).map(|(_, d)| d) {
                Some(tiberius::ColumnData::F64(Some(v))) => Some(*v),
                _ => None,
            },
        },
        None => BackupProgress::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_is_copy_only_with_checksums() {
        assert_eq!(
            backup_sql("sr]c", "/shared/x'y.bak"),
            "BACKUP DATABASE [sr]]c] TO DISK = N'/shared/x''y.bak' WITH COPY_ONLY, CHECKSUM, INIT, FORMAT"
        );
        assert_eq!(verify_sql("p"), "RESTORE VERIFYONLY FROM DISK = N'p' WITH CHECKSUM");
    }

    #[test]
    fn files_move_to_the_default_paths_under_the_new_name() {
        let data = BackupFile {
            logical: "src".into(),
            physical: "C:\\Data\\src.mdf".into(),
            kind: "D".into(),
        };
        let log = BackupFile {
            logical: "src_log".into(),
            physical: "/var/opt/mssql/data/src_log.ldf".into(),
            kind: "L".into(),
        };
        assert_eq!(
            target_path(&data, "dest db", "D:\\SQLData", "E:\\Logs\\"),
            "D:\\SQLData\\dest_db_src.mdf"
        );
        assert_eq!(
            target_path(&log, "dest", "/var/opt/mssql/data/", "/var/opt/mssql/log"),
            "/var/opt/mssql/log/dest_src_log.ldf"
        );
        assert_eq!(
            restore_sql(
                "dest",
                "/b.bak",
                &[
                    ("src".into(), "/d/dest_src.mdf".into()),
                    ("src_log".into(), "/l/dest_src_log.ldf".into())
                ],
                false
            ),
            "RESTORE DATABASE [dest] FROM DISK = N'/b.bak' WITH MOVE N'src' TO N'/d/dest_src.mdf', \
             MOVE N'src_log' TO N'/l/dest_src_log.ldf', CHECKSUM, RECOVERY"
        );
        assert!(restore_sql("d", "p", &[], true).ends_with(", REPLACE"));
    }

    #[test]
    fn the_protocol_extension_is_backward_compatible_json() -> std::result::Result<(), serde_json::Error> {
        use dbferry_plugin_abi::protocol::{BackupRestoreRequest, BackupStep, Request};
        let request = Request::BackupRestore(BackupRestoreRequest {
            step: BackupStep::Restore,
            source_database: "a".into(),
            database: "b".into(),
            backup_path: "/p.bak".into(),
        });
        let json = serde_json::to_value(&request)?;
        assert_eq!(json["backup_restore"]["step"], "restore");
        // `step` defaults to the first step.
        let old: Request =
            serde_json::from_str(r#"{"backup_restore":{"source_database":"a","database":"b","backup_path":"p"}}"#)?;
        assert!(matches!(
            old,
            Request::BackupRestore(BackupRestoreRequest {
                step: BackupStep::Backup,
                ..
            })
        ));
        let progress: Request = serde_json::from_str(r#""backup_progress""#)?;
        assert!(matches!(progress, Request::BackupProgress));
        let empty: BackupProgress = serde_json::from_str("{}")?;
        assert_eq!(empty, BackupProgress::default());
        Ok(())
    }

    #[test]
    fn cleanup_and_progress_sql() {
        assert_eq!(cleanup_sqls("p")[0], "EXEC master.sys.xp_delete_files N'p'");
        assert_eq!(
            progress_sql(57),
            "SELECT command, CAST(percent_complete AS float) FROM sys.dm_exec_requests WHERE session_id = 57"
        );
    }
}
