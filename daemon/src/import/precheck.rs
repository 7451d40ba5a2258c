//! The rules of CONTRACT §4, checked before anything changes.
//!
//! [`resolve`] needs only the config (rules 1, 2, 3, 7); [`check_servers`]
//! talks to both instances (rules 4, 5, 6, 8, 9, and target conflicts).

use std::collections::BTreeSet;

use dbferry_plugin_abi::protocol::{
    DatabaseSchema, ExistingTables, ObjectKind, PrepareRequest, ServerInfo, SessionConfig,
};
use dbferry_plugin_host::{Plugin, Session};

use crate::codes::{ErrorCode, Rejection};
use crate::config::{Config, Instance};
use crate::job::{CopyMethod, Job};

/// A job whose instances and databases are known.
#[derive(Clone, Debug)]
pub struct Resolved<'a> {
    /// The source instance.
    pub source: &'a Instance,
    /// The target instance.
    pub target: &'a Instance,
    /// Source → destination database names.
    pub mapping: Vec<(String, String)>,
    /// For `method = "backup-restore"`: the directory both servers reach.
    pub backup_path: Option<String>,
}

/// Rules that need only the config: 1, 2, 3 and 7.
pub fn resolve<'a>(config: &'a Config, job: &Job) -> Result<Resolved<'a>, Rejection> {
    if job.source_id == job.target_id {
        return Err(Rejection::new(
            ErrorCode::SameInstance,
            format!(
                "the source and target instance are the same ({}); they must differ",
                job.source_id
            ),
        ));
    }
    // An instance of another owner must look exactly like a missing one.
    let find = |id: &str| {
        config.instance(id).filter(|i| i.owner == job.owner).ok_or_else(|| {
            Rejection::new(
                ErrorCode::InstanceNotFound,
                format!("The specified instance {id} is not found."),
            )
        })
    };
    let source = find(&job.source_id)?;
    let target = find(&job.target_id)?;
    for instance in [source, target] {
        if !instance.category.is_dedicated() {
            return Err(Rejection::new(
                ErrorCode::IncorrectInstanceType,
                format!(
                    "instance {} is of category {}; only dedicated and dedicated-host instances support imports",
                    instance.id,
                    instance.category.as_str()
                ),
            ));
        }
    }
    if source.engine != target.engine {
        return Err(Rejection::new(
            ErrorCode::IncorrectInstanceType,
            format!(
                "the source {} runs {} and the target {} runs {}; both must run the same engine",
                source.id, source.engine, target.id, target.engine
            ),
        ));
    }
    let mapping = job.db_info.mapping(&source.engine)?;
    let backup_path = job
        .options
        .backup_path
        .clone()
        .or_else(|| target.backup_path.clone())
        .or_else(|| source.backup_path.clone());
    if job.options.method == CopyMethod::BackupRestore {
        if source.engine != "sqlserver" {
            return Err(Rejection::new(
                ErrorCode::InvalidParameter,
                format!(
                    "method = \"backup-restore\" is for SQL Server; {} instances copy logically",
                    source.engine
                ),
            ));
        }
        if backup_path.is_none() {
            return Err(Rejection::new(
                ErrorCode::MissingParameter,
                "method = \"backup-restore\" needs a backup_path (in [options] or on the instances) that both servers can reach",
            ));
        }
    }
    Ok(Resolved {
        source,
        target,
        mapping,
        backup_path,
    })
}

/// Both sessions, and what the prechecks learned.
pub struct Checked {
    /// Source session.
    pub source: Session,
    /// Target session.
    pub target: Session,
    /// Each source database's schema, in DBInfo order.
    pub schemas: Vec<DatabaseSchema>,
    /// How each session's connections travel: source, then target.
    pub transport: [InstanceTransport; 2],
    /// The batch formats the source's readers may send the target's writers
    /// besides the engine's own ([`ServerInfo::batch_formats`]): the
    /// target's, when both are the same engine.
    pub batch_formats: Vec<String>,
}

/// How one instance's connections travel, for the result and `status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTransport {
    /// The instance id.
    pub instance: String,
    /// `source` or `target`.
    pub role: String,
    /// The `tls` mode in force; `None` when the engine did not say.
    pub mode: Option<String>,
    /// Whether the connections are encrypted; `None` when the engine did not say.
    pub encrypted: Option<bool>,
    /// The TLS version, when encrypted.
    pub tls_version: Option<String>,
    /// How the server's certificate was checked: `none`, `ca`, `ca-and-host`.
    pub verified: Option<String>,
}

impl InstanceTransport {
    fn new(instance: &Instance, role: &str, info: &ServerInfo) -> Self {
        let t = info.transport.as_ref();
        Self {
            instance: instance.id.clone(),
            role: role.into(),
            mode: t.map(|t| t.mode.clone()),
            encrypted: t.map(|t| t.encrypted),
            tls_version: t.and_then(|t| t.tls_version.clone()),
            verified: t.map(|t| t.verified.clone()),
        }
    }

    /// The `encryption` label of `dbferry_sessions_total`.
    pub fn encryption_label(&self) -> &'static str {
        match self.encrypted {
            Some(true) => "tls",
            Some(false) => "plaintext",
            None => "unknown",
        }
    }
}

/// Opens a session for `instance` (rule 5: reachable).
pub fn connect(plugin: &Plugin, instance: &Instance, connections: u32) -> Result<Session, Rejection> {
    let password = instance
        .password
        .read()
        .map_err(|e| Rejection::new(ErrorCode::InternalError, e))?;
    let mut options = serde_json::Map::new();
    if let Some(edition) = &instance.edition {
        options.insert("edition".into(), edition.clone().into());
    }
    if let Some(tls) = &instance.tls {
        options.insert("tls".into(), tls.clone().into());
    }
    if let Some(port) = instance.postgres_port {
        options.insert("postgres_port".into(), port.into());
    }
    for (key, path) in [
        ("tls_ca", &instance.tls_ca),
        ("tls_cert", &instance.tls_cert),
        ("tls_key", &instance.tls_key),
    ] {
        if let Some(path) = path {
            options.insert(key.into(), path.display().to_string().into());
        }
    }
    let config = SessionConfig {
        instance_id: instance.id.clone(),
        host: instance.host.clone(),
        port: instance.port,
        user: instance.user.clone(),
        password,
        max_connections: connections,
        options,
    };
    plugin.connect(&config).map_err(|e| {
        // A TLS refusal or a refused login is not an unreachable instance:
        // it names what the mode expected and what the server did, or which
        // account was refused.
        let refusal = e
            .plugin_error()
            .and_then(|p| Some((ErrorCode::plugin_refusal(p.code.as_deref()?)?, p)));
        match refusal {
            Some((code, p)) => Rejection::new(code, p.message.clone()),
            None => Rejection::new(
                ErrorCode::IncorrectInstanceState,
                format!("instance {} is not Running: it cannot be reached: {e}", instance.id),
            ),
        }
    })
}

fn probe(session: &Session, instance: &Instance) -> Result<ServerInfo, Rejection> {
    session.probe().map_err(|e| {
        if let Some((code, p)) = e
            .plugin_error()
            .and_then(|p| Some((ErrorCode::plugin_refusal(p.code.as_deref()?)?, p)))
        {
            return Rejection::new(code, p.message.clone());
        }
        Rejection::new(
            ErrorCode::IncorrectInstanceState,
            format!("instance {} is not Running: probing it failed: {e}", instance.id),
        )
    })
}

/// A privilege the source's login certainly lacks to read a named database,
/// or the target's to write its destination, refuses the import and names it.
fn missing_privileges(resolved: &Resolved<'_>, source: &ServerInfo, target: &ServerInfo) -> Result<(), Rejection> {
    let lacking = |info: &ServerInfo, database: &str, to_read: bool| {
        info.missing_privileges
            .iter()
            .filter(|m| m.concerns(database))
            .flat_map(|m| if to_read { m.to_read.clone() } else { m.to_write.clone() })
            .collect::<Vec<_>>()
    };
    let mut problems = Vec::new();
    for (src, dst) in &resolved.mapping {
        let read = lacking(source, src, true);
        if !read.is_empty() {
            problems.push(format!(
                "the source {}'s account lacks {} on database {src}",
                resolved.source.id,
                read.join(", ")
            ));
        }
        let write = lacking(target, dst, false);
        if !write.is_empty() {
            problems.push(format!(
                "the target {}'s account lacks {} on database {dst}",
                resolved.target.id,
                write.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Rejection::new(
        ErrorCode::AccountMissingPrivilege,
        format!("{}; grant them (README lists the minimal grants)", problems.join("; ")),
    ))
}

/// SQL Server 2017 (version 14) Cluster Edition, from the server or the config (rule 4).
fn is_sql_server_2017_cluster(info: &ServerInfo, instance: &Instance) -> bool {
    let edition = info.edition.as_deref().or(instance.edition.as_deref()).unwrap_or("");
    let major = info.version.split('.').next().unwrap_or("");
    instance.engine == "sqlserver" && major == "14" && edition.to_ascii_lowercase().contains("cluster")
}

/// Rules 4, 5 (reachable), 6, 8, 9 and target conflicts. A resumed import
/// (`saved` holds the schemas its first attempt described) skips the rules
/// its own earlier work would break: storage and conflicts on the target.
pub fn check_servers(
    plugin: &Plugin,
    resolved: &Resolved<'_>,
    job: &Job,
    saved: Option<Vec<DatabaseSchema>>,
) -> Result<Checked, Rejection> {
    let connections = job.options.parallelism + 2;
    let reach = |instance: &Instance| {
        let session = connect(plugin, instance, connections)?;
        let info = probe(&session, instance)?;
        Ok::<_, Rejection>((session, info))
    };
    // The source's databases are described while it is probed, on the
    // same session (each call takes a connection of its own), which then
    // serves the import: the describe is the precheck's longest step, and
    // on Babelfish a second session would cost a second cold T-SQL login.
    // What it found waits for the rules below; their refusals come first.
    let describe = |session: &Session| {
        resolved
            .mapping
            .iter()
            .map(|(src, _)| {
                session.describe_database(src).map_err(|e| {
                    Rejection::new(
                        ErrorCode::InternalError,
                        format!("describing database {src} on the source: {e}"),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    // Both servers at once: a probe is a few catalog queries, and a server
    // that meets them in a new process (Babelfish's T-SQL parser warming up)
    // takes a second or more. The source's refusal is reported first.
    let (source, target) = std::thread::scope(|scope| {
        let panicked = |what: &str, instance: &Instance| {
            Rejection::new(
                ErrorCode::InternalError,
                format!("{what} instance {} panicked", instance.id),
            )
        };
        let target = scope.spawn(|| reach(resolved.target));
        let source = connect(plugin, resolved.source, connections).and_then(|session| {
            let (info, described) = std::thread::scope(|inner| {
                let described = inner.spawn(|| describe(&session));
                let info = probe(&session, resolved.source);
                let described = described
                    .join()
                    .map_err(|_| panicked("describing the databases of", resolved.source));
                (info, described)
            });
            Ok((info?, described?, session))
        });
        let target = target
            .join()
            .unwrap_or_else(|_| Err(panicked("probing", resolved.target)));
        (source, target)
    });
    let (source_info, described, source) = source?;
    let (target, target_info) = target?;
    let transport = [
        InstanceTransport::new(resolved.source, "source", &source_info),
        InstanceTransport::new(resolved.target, "target", &target_info),
    ];
    let batch_formats = if resolved.source.engine == resolved.target.engine {
        target_info.batch_formats.clone()
    } else {
        Vec::new()
    };

    for (info, instance) in [(&source_info, resolved.source), (&target_info, resolved.target)] {
        if is_sql_server_2017_cluster(info, instance) {
            return Err(Rejection::new(
                ErrorCode::IncorrectInstanceType,
                format!(
                    "instance {} runs SQL Server 2017 Cluster Edition, which imports do not support",
                    instance.id
                ),
            ));
        }
    }

    // Rule 6.
    let mysql = resolved.source.engine == "mysql";
    for (src, dst) in &resolved.mapping {
        match source_info.databases.iter().find(|d| &d.name == src) {
            Some(db) if db.online => {}
            Some(_) => {
                return Err(Rejection::new(
                    ErrorCode::DbNameNotFound,
                    format!("database {src} on the source {} is not online", resolved.source.id),
                ))
            }
            None => {
                return Err(Rejection::new(
                    ErrorCode::DbNameNotFound,
                    format!("database {src} does not exist on the source {}", resolved.source.id),
                ))
            }
        }
        let on_target = target_info.databases.iter().find(|d| &d.name == dst);
        match (mysql, on_target) {
            (true, Some(db)) if db.online => {}
            (true, Some(_)) => {
                return Err(Rejection::new(
                    ErrorCode::DbNameNotFound,
                    format!("database {dst} on the target {} is not online", resolved.target.id),
                ))
            }
            (true, None) => {
                return Err(Rejection::new(
                    ErrorCode::DbNameNotFound,
                    format!(
                        "database {dst} does not exist on the target {}; for MySQL it must exist on both instances (create it empty first)",
                        resolved.target.id
                    ),
                ))
            }
            // A resumed import finds its own earlier work there.
            (false, Some(db)) if db.has_objects && saved.is_none() => {
                return Err(Rejection::new(
                    ErrorCode::DbNameExists,
                    format!("destination database {dst} already exists on the target {} and is not empty", resolved.target.id),
                ))
            }
            (false, _) => {}
        }
    }

    // Rule 8.
    if resolved.target.is_locked() {
        return Err(Rejection::new(
            ErrorCode::IncorrectLockMode,
            format!(
                "the target {} has lock mode {}; imports need Unlock",
                resolved.target.id,
                resolved.target.lock_mode.as_deref().unwrap_or("")
            ),
        ));
    }
    if target_info.read_only {
        return Err(Rejection::new(
            ErrorCode::IncorrectLockMode,
            format!(
                "the target {} is read-only; imports need it writable (lock mode Unlock)",
                resolved.target.id
            ),
        ));
    }
    missing_privileges(resolved, &source_info, &target_info)?;
    if let Some(blocker) = target_info.write_blockers.first() {
        return Err(Rejection::new(
            ErrorCode::IncorrectInstanceState,
            format!("the target {} cannot accept imports: {blocker}", resolved.target.id),
        ));
    }

    if let Some(schemas) = saved {
        // The saved plan is what gets copied. Having described the source
        // again refuses a resume whose source database is gone, and tells
        // the engine which tables its snapshot may have to lock (the MySQL
        // engine's `LOCK TABLES` step, for an account without RELOAD).
        for schema in described {
            schema?;
        }
        return Ok(Checked {
            source,
            target,
            schemas,
            transport,
            batch_formats,
        });
    }

    // Rule 9: capacity > used - replaced + incoming.
    let size = |info: &ServerInfo, name: &str| {
        info.databases
            .iter()
            .find(|d| d.name == name)
            .map_or(0, |d| d.size_bytes)
    };
    let incoming: u64 = resolved.mapping.iter().map(|(s, _)| size(&source_info, s)).sum();
    let replaced: u64 = resolved.mapping.iter().map(|(_, d)| size(&target_info, d)).sum();
    let needed = i128::from(target_info.used_bytes) - i128::from(replaced) + i128::from(incoming);
    let capacity = i128::from(resolved.target.storage_bytes());
    if capacity <= needed {
        return Err(Rejection::new(
            ErrorCode::InsufficientStorage,
            format!(
                "the target {} has {} bytes of storage; it uses {} bytes, the databases replaced hold {} and the source databases {}, so it needs more than {} bytes",
                resolved.target.id, capacity, target_info.used_bytes, replaced, incoming, needed
            ),
        ));
    }

    let mut schemas = Vec::with_capacity(resolved.mapping.len());
    for ((_, dst), schema) in resolved.mapping.iter().zip(described) {
        let schema = schema?;
        if mysql && job.options.existing_tables == ExistingTables::Fail {
            let existing = target.describe_database(dst).map_err(|e| {
                Rejection::new(
                    ErrorCode::InternalError,
                    format!("describing database {dst} on the target: {e}"),
                )
            })?;
            let clashes = conflicts(&schema, &existing);
            if !clashes.is_empty() {
                return Err(Rejection::new(
                    ErrorCode::DbNameExists,
                    format!(
                        "the target database {dst} already has {}; set existing_tables = \"drop\" to replace them",
                        clashes.join(", ")
                    ),
                ));
            }
        }
        schemas.push(schema);
    }
    refuse_what_the_target_cannot_hold(&target, resolved, job, &schemas)?;
    Ok(Checked {
        source,
        target,
        schemas,
        transport,
        batch_formats,
    })
}

/// Asks the target what of the source's schemas it cannot hold (Babelfish
/// has no `hierarchyid`, spatial types or XML schema collections, for
/// example), and refuses the import with the whole list at once, so that
/// nothing is found halfway through the copy.
fn refuse_what_the_target_cannot_hold(
    target: &Session,
    resolved: &Resolved<'_>,
    job: &Job,
    schemas: &[DatabaseSchema],
) -> Result<(), Rejection> {
    let mut unheld = Vec::new();
    for ((src, dst), schema) in resolved.mapping.iter().zip(schemas) {
        let found = target
            .check_target(PrepareRequest {
                database: dst.clone(),
                schema: schema.clone(),
                existing_tables: job.options.existing_tables,
                resume: false,
                inline_index_max_bytes: 0,
                parallelism: job.options.parallelism,
            })
            .map_err(|e| {
                Rejection::new(
                    ErrorCode::InternalError,
                    format!("checking what the target can hold of database {src}: {e}"),
                )
            })?;
        unheld.extend(found.into_iter().map(|what| format!("{src}: {what}")));
    }
    if unheld.is_empty() {
        return Ok(());
    }
    Err(Rejection::new(
        ErrorCode::IncorrectInstanceType,
        format!(
            "the target {} cannot hold {} object(s) of the source: {}",
            resolved.target.id,
            unheld.len(),
            unheld.join("; ")
        ),
    ))
}

/// Target objects the copy would have to replace. Tables and views share
/// one namespace, so do procedures, functions and so on per kind.
fn conflicts(source: &DatabaseSchema, target: &DatabaseSchema) -> Vec<String> {
    let namespace = |kind: ObjectKind| match kind {
        ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence => "table",
        ObjectKind::Procedure => "procedure",
        ObjectKind::Function => "function",
        ObjectKind::Trigger => "trigger",
        ObjectKind::Event => "event",
        ObjectKind::Schema => "schema",
        ObjectKind::Database => "database",
    };
    let wanted: BTreeSet<_> = source
        .objects
        .iter()
        .map(|o| (namespace(o.kind), o.name.as_str()))
        .collect();
    target
        .objects
        .iter()
        .filter(|o| wanted.contains(&(namespace(o.kind), o.name.as_str())))
        .map(|o| format!("{} {}", format!("{:?}", o.kind).to_lowercase(), o.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Category, Secret};

    fn instance(engine: &str, edition: Option<&str>) -> Instance {
        Instance {
            id: "rm-1".into(),
            engine: engine.into(),
            owner: "1".into(),
            category: Category::Dedicated,
            storage_gb: 1.0,
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: Secret::Env("X".into()),
            lock_mode: None,
            edition: edition.map(str::to_string),
            tls: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            backup_path: None,
            postgres_port: None,
        }
    }

    fn server(version: &str, edition: Option<&str>) -> ServerInfo {
        ServerInfo {
            product: "SQL Server".into(),
            version: version.into(),
            edition: edition.map(str::to_string),
            ..ServerInfo::default()
        }
    }

    fn config(engine: &str, target_backup: &str) -> Config {
        std::env::set_var("DBFERRY_TEST_PW", "x");
        let instance = |id: &str, extra: &str| {
            format!("[[instances]]\nid = \"{id}\"\nengine = \"{engine}\"\nowner = \"1\"\ncategory = \"dedicated\"\nstorage_gb = 1\nhost = \"h\"\nport = 1\nuser = \"u\"\npassword_env = \"DBFERRY_TEST_PW\"\n{extra}\n")
        };
        let text = format!("{}{}", instance("src", ""), instance("dst", target_backup));
        Config::parse(&crate::diag::Source::new(std::path::Path::new("c.toml"), text)).expect("valid config")
    }

    fn job(engine_names: &str, options: &str) -> Job {
        let text = format!("db_instance_id = \"dst\"\nsource_db_instance_id = \"src\"\nowner = \"1\"\ndb_info = '{engine_names}'\n[options]\n{options}\n");
        Job::parse(&crate::diag::Source::new(std::path::Path::new("j.toml"), text)).expect("valid job")
    }

    #[test]
    fn backup_restore_is_for_sql_server_and_needs_a_backup_path() {
        let sqlserver = r#"{"DBNames":{"a":"b"}}"#;
        let code = |c: &Config, j: &Job| resolve(c, j).err().map(|r| r.code);
        assert_eq!(
            code(
                &config("mysql", ""),
                &job(r#"{"DBNames":["a"]}"#, "method = \"backup-restore\"")
            ),
            Some(ErrorCode::InvalidParameter)
        );
        assert_eq!(
            code(&config("sqlserver", ""), &job(sqlserver, "method = \"backup-restore\"")),
            Some(ErrorCode::MissingParameter)
        );
        let from_instance = config("sqlserver", "backup_path = \"/shared/bak\"");
        let resolved = resolve(&from_instance, &job(sqlserver, "method = \"backup-restore\"")).expect("instance path");
        assert_eq!(resolved.backup_path.as_deref(), Some("/shared/bak"));
        let from_job = resolve(
            &from_instance,
            &job(sqlserver, "method = \"backup-restore\"\nbackup_path = \"/job\""),
        )
        .expect("job path");
        assert_eq!(from_job.backup_path.as_deref(), Some("/job"), "the job's path wins");
    }

    #[test]
    fn rule_4_refuses_sql_server_2017_cluster_edition_from_the_server_or_the_config() {
        let sqlserver = instance("sqlserver", None);
        assert!(is_sql_server_2017_cluster(
            &server("14.0.3456.2", Some("Cluster Edition (64-bit)")),
            &sqlserver
        ));
        assert!(!is_sql_server_2017_cluster(
            &server("15.0.4123.1", Some("Cluster Edition (64-bit)")),
            &sqlserver
        ));
        assert!(!is_sql_server_2017_cluster(
            &server("14.0.3456.2", Some("Enterprise Edition (64-bit)")),
            &sqlserver
        ));
        // The server cannot tell: the operator's `edition` decides.
        let told = instance("sqlserver", Some("cluster"));
        assert!(is_sql_server_2017_cluster(&server("14.0.1000.169", None), &told));
        assert!(!is_sql_server_2017_cluster(
            &server("14.0.1000.169", Some("Cluster")),
            &instance("mysql", None)
        ));
    }
}
