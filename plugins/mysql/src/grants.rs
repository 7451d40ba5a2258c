//! The privileges the login certainly lacks, from `SHOW GRANTS`, so that a
//! missing one is a precheck refusal naming it rather than a failure halfway.
//!
//! Only certainty refuses: grants that this reading cannot evaluate (roles,
//! partial revokes, wildcard database patterns, table- or column-level
//! grants) make the answer "unknown", and the import goes ahead (a statement
//! refused later still names the privilege). Dynamic privileges (`*_ADMIN`)
//! are never required: see the snapshot ladder in [`crate::snapshot`].

use std::collections::{BTreeSet, HashMap};

use dbferry_plugin_abi::protocol::MissingPrivileges;

/// What reading a database as a source needs.
pub const TO_READ: [&str; 1] = ["SELECT"];
/// What writing a database as a target needs: tables, deferred indexes,
/// loading, clearing a chunk before its redo, counting for verification.
pub const TO_WRITE: [&str; 6] = ["SELECT", "INSERT", "DELETE", "CREATE", "ALTER", "INDEX"];

/// The login's static privileges, global and per database, when
/// `SHOW GRANTS` could be read with certainty.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Grants {
    global: BTreeSet<String>,
    databases: HashMap<String, BTreeSet<String>>,
}

impl Grants {
    /// Reads the lines of `SHOW GRANTS`; `None` when any line is beyond
    /// certainty.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut grants = Grants::default();
        for line in lines {
            let line = line.trim();
            if line.starts_with("SET DEFAULT ROLE") {
                continue;
            }
            let rest = line.strip_prefix("GRANT ")?;
            // A role granted to the login ("GRANT `r`@`%` TO …"), partial
            // revokes, anything else: unknown.
            let (privileges, on) = rest.split_once(" ON ")?;
            if privileges.starts_with("PROXY") {
                continue;
            }
            if privileges.contains('(') || privileges.contains('`') {
                return None;
            }
            let target = on.split(" TO ").next()?.trim();
            let set: BTreeSet<String> = privileges
                .split(',')
                .map(|p| p.trim().to_ascii_uppercase())
                .map(|p| if p == "ALL" { "ALL PRIVILEGES".to_string() } else { p })
                .collect();
            if target == "*.*" {
                grants.global.extend(set);
            } else if let Some(database) = database_level(target) {
                grants.databases.entry(database?).or_default().extend(set);
            } else {
                // A table or routine grant: it may be what a database needs.
                return None;
            }
        }
        Some(grants)
    }

    fn holds(&self, database: &str, privilege: &str) -> bool {
        let has = |set: &BTreeSet<String>| set.contains(privilege) || set.contains("ALL PRIVILEGES");
        has(&self.global) || self.databases.get(database).is_some_and(has)
    }

    /// What `database` lacks for reading and for writing.
    pub fn missing(&self, database: &str) -> MissingPrivileges {
        let lacking = |needed: &[&str]| {
            needed
                .iter()
                .filter(|p| !self.holds(database, p))
                .map(|p| p.to_string())
                .collect()
        };
        MissingPrivileges {
            database: database.to_string(),
            to_read: lacking(&TO_READ),
            to_write: lacking(&TO_WRITE),
        }
    }
}

/// `` `db`.* `` to `Some(Some(db))`; `Some(None)` when the pattern has
/// wildcards (`%`, or `_` not escaped), which this reading does not match;
/// `None` when it is not a database-level target.
fn database_level(target: &str) -> Option<Option<String>> {
    let quoted = target.strip_suffix(".*")?.strip_prefix('`')?.strip_suffix('`')?;
    let name = quoted.replace("``", "`");
    let mut plain = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('_' | '%' | '\\')) => plain.push(e),
                _ => return Some(None),
            },
            '%' | '_' => return Some(None),
            c => plain.push(c),
        }
    }
    Some(Some(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(lines: &[&str], db: &str) -> Option<(Vec<String>, Vec<String>)> {
        let m = Grants::parse(lines.iter().copied())?.missing(db);
        Some((m.to_read, m.to_write))
    }

    #[test]
    fn a_cloud_account_lacks_nothing() {
        let cloud = "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, PROCESS, REFERENCES, INDEX, ALTER, \
                     LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER \
                     ON *.* TO `cloud`@`%`";
        assert_eq!(missing(&[cloud], "shop"), Some((vec![], vec![])));
        let all = "GRANT ALL PRIVILEGES ON *.* TO `ferry`@`%` IDENTIFIED BY PASSWORD '*AB' WITH GRANT OPTION";
        assert_eq!(missing(&[all], "shop"), Some((vec![], vec![])));
    }

    #[test]
    fn database_grants_count_for_their_database_only() {
        let lines = [
            "GRANT USAGE ON *.* TO `lim`@`%`",
            "GRANT SELECT ON `shop`.* TO `lim`@`%`",
            "GRANT ALL PRIVILEGES ON `new\\_shop`.* TO `lim`@`%`",
        ];
        let (read, write) = missing(&lines, "shop").expect("certain");
        assert!(read.is_empty());
        assert_eq!(write, ["INSERT", "DELETE", "CREATE", "ALTER", "INDEX"]);
        assert_eq!(missing(&lines, "new_shop"), Some((vec![], vec![])));
        assert_eq!(missing(&lines, "other").expect("certain").0, ["SELECT"]);
    }

    #[test]
    fn what_cannot_be_evaluated_refuses_nothing() {
        for uncertain in [
            "GRANT `reader`@`%` TO `u`@`%`",
            "GRANT `reader` TO `u`@`%`",
            "GRANT SELECT ON `shop`.`orders` TO `u`@`%`",
            "GRANT SELECT (id) ON `shop`.`orders` TO `u`@`%`",
            "GRANT SELECT ON `sh%`.* TO `u`@`%`",
            "GRANT SELECT ON `sh_p`.* TO `u`@`%`",
            "REVOKE INSERT ON `mysql`.* FROM `u`@`%`",
        ] {
            let lines = ["GRANT USAGE ON *.* TO `u`@`%`", uncertain];
            let parsed = Grants::parse(lines.iter().copied());
            let refused = parsed.map(|g| g.missing("shop")).is_some_and(|m| !m.to_read.is_empty());
            assert!(!refused, "{uncertain}");
        }
    }
}
