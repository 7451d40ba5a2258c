//! Server facts for the prechecks: version and edition, databases with
//! their state and sizes, instance storage in use.

use dbferry_plugin_abi::protocol::{DatabaseInfo, MissingPrivileges, ServerInfo};

use crate::catalog_source::CatalogSource;
use crate::cell::{flag, int, string, text, u64};
use crate::error::Result;
use crate::flavour::Flavour;
use crate::quote::ident;

/// Counts a database's user objects (tables, views, routines, constraints,
/// sequences, types): `database`'s, or with `None` the current one's.
pub fn objects_sql(database: Option<&str>, flavour: Flavour) -> String {
    let db = database.map(|d| format!("{}.", ident(d))).unwrap_or_default();
    let schemas = flavour.catalog().user_schemas;
    format!(
        "SELECT (SELECT COUNT_BIG(*) FROM {db}sys.objects WHERE is_ms_shipped = 0) + \
         (SELECT COUNT_BIG(*) FROM {db}sys.types WHERE is_user_defined = 1) + \
         (SELECT COUNT_BIG(*) FROM {db}sys.schemas s WHERE {schemas})"
    )
}

/// SQL Server 2017 (major version 14) "Cluster Edition": the configured
/// `edition` names a cluster, or the server reports one, or (what the
/// managed cluster edition is underneath) a 2017 server runs with Always On
/// availability groups enabled.
pub fn is_2017_cluster(version: &str, edition: Option<&str>, hadr: bool, configured: Option<&str>) -> bool {
    let major = version.split('.').next().unwrap_or("");
    if major != "14" {
        return false;
    }
    let named = |e: Option<&str>| e.is_some_and(|e| e.to_ascii_lowercase().contains("cluster"));
    named(configured) || named(edition) || hadr
}

/// The edition the session reports: the configured one wins (the server
/// cannot always tell), and a 2017 Always On server is reported as a
/// cluster edition so the host's rule 4 sees it.
pub fn reported_edition(
    version: &str,
    edition: Option<String>,
    hadr: bool,
    configured: Option<&str>,
) -> Option<String> {
    if let Some(configured) = configured {
        return Some(configured.to_string());
    }
    if is_2017_cluster(version, edition.as_deref(), hadr, None)
        && !edition
            .as_deref()
            .is_some_and(|e| e.to_ascii_lowercase().contains("cluster"))
    {
        return Some(format!(
            "{} (Cluster: Always On availability groups)",
            edition.unwrap_or_default()
        ));
    }
    edition
}

/// Probes the server, through `flavour`'s catalogues: version, edition,
/// HADR, whether the login may create databases, sizes.
pub async fn probe(
    conn: &mut impl CatalogSource,
    configured_edition: Option<&str>,
    flavour: Flavour,
) -> Result<ServerInfo> {
    let catalog = flavour.catalog();
    let server = conn.rows(catalog.server).await?;
    let (version, edition, hadr, can_create, used) = match server.first() {
        Some(r) => (string(r, 0), text(r, 1), flag(r, 2), int(r, 3) == Some(1), u64(r, 4)),
        None => (String::new(), None, false, false, 0),
    };
    let mut databases = Vec::new();
    for r in conn.rows(catalog.databases).await? {
        let name = string(&r, 0);
        let online = string(&r, 1) == "ONLINE";
        // Objects are counted only where the database can be opened; an
        // offline or inaccessible one counts as not empty.
        let has_objects = if online {
            conn.count_objects(&name, flavour).await.is_none_or(|count| count > 0)
        } else {
            true
        };
        databases.push(DatabaseInfo {
            name,
            online,
            size_bytes: u64(&r, 3),
            has_objects,
        });
    }
    // Needed only as a target; a source login without it reads as before.
    let missing_privileges = if can_create {
        Vec::new()
    } else {
        vec![MissingPrivileges {
            database: MissingPrivileges::EVERY_DATABASE.to_string(),
            to_read: Vec::new(),
            to_write: vec!["the CREATE ANY DATABASE permission".to_string()],
        }]
    };
    Ok(ServerInfo {
        product: flavour.product().into(),
        edition: reported_edition(&version, edition, hadr, configured_edition),
        version,
        // SQL Server has no server-wide read-only mode; a read-only
        // destination database is refused when the import touches it.
        read_only: false,
        used_bytes: used,
        databases,
        write_blockers: Vec::new(),
        transport: None,
        missing_privileges,
        batch_formats: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_edition_is_detected_on_2017_only() {
        assert!(is_2017_cluster("14.0.3456.2", None, false, Some("cluster")));
        assert!(is_2017_cluster(
            "14.0.3456.2",
            Some("Enterprise Cluster Edition"),
            false,
            None
        ));
        assert!(is_2017_cluster(
            "14.0.3456.2",
            Some("Enterprise Edition (64-bit)"),
            true,
            None
        ));
        assert!(!is_2017_cluster(
            "14.0.3456.2",
            Some("Enterprise Edition (64-bit)"),
            false,
            None
        ));
        assert!(!is_2017_cluster(
            "15.0.4000.1",
            Some("Enterprise Edition"),
            true,
            Some("cluster")
        ));
        assert!(!is_2017_cluster("16.0.1000.6", None, false, None));
    }

    #[test]
    fn reported_edition_feeds_the_hosts_rule() {
        // The host refuses version 14 with "cluster" in the edition.
        let e = reported_edition("14.0.1000.169", Some("Enterprise Edition (64-bit)".into()), true, None);
        assert!(e.as_deref().is_some_and(|e| e.to_lowercase().contains("cluster")));
        let e = reported_edition("14.0.1000.169", Some("Standard Edition".into()), false, None);
        assert_eq!(e.as_deref(), Some("Standard Edition"));
        let e = reported_edition("15.0.2000.5", Some("Developer Edition".into()), false, Some("cluster"));
        assert_eq!(e.as_deref(), Some("cluster"));
    }

    #[test]
    fn object_counts_are_database_qualified_or_of_the_current_one() {
        assert!(objects_sql(Some("a]b"), crate::flavour::Flavour::SqlServer).contains("FROM [a]]b].sys.objects"));
        assert!(objects_sql(None, crate::flavour::Flavour::Babelfish).contains("FROM sys.objects"));
    }
}
