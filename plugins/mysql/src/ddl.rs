//! Pure DDL text handling: cutting `SHOW CREATE TABLE` into the base table
//! and its deferred parts, and rewriting a DEFINER clause.
//!
//! `SHOW CREATE TABLE` prints one column, index or constraint per line
//! (string literals escape their newlines), which makes line-wise editing
//! safe.

use crate::detail::Deferred;
use crate::quote::parse_ident;

/// A table's DDL split for loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCreate {
    /// `CREATE TABLE` without the deferred parts.
    pub base: String,
    /// Secondary indexes to add after the data.
    pub indexes: Vec<Deferred>,
    /// Foreign keys to add after the data.
    pub foreign_keys: Vec<Deferred>,
}

/// What a definition line of `CREATE TABLE` is.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Keep,
    Index {
        name: String,
        first_column: Option<String>,
        unique: bool,
        fulltext: bool,
    },
    ForeignKey {
        name: String,
    },
}

fn classify(line: &str) -> Line {
    let t = line.trim_start();
    if t.starts_with('`') || t.starts_with("PRIMARY KEY") {
        return Line::Keep;
    }
    let (rest, unique, fulltext) = if let Some(r) = t
        .strip_prefix("UNIQUE KEY ")
        .or_else(|| t.strip_prefix("UNIQUE INDEX "))
    {
        (r, true, false)
    } else if let Some(r) = t.strip_prefix("KEY ").or_else(|| t.strip_prefix("INDEX ")) {
        (r, false, false)
    } else if let Some(r) = t
        .strip_prefix("FULLTEXT KEY ")
        .or_else(|| t.strip_prefix("FULLTEXT INDEX "))
    {
        (r, false, true)
    } else if let Some(r) = t
        .strip_prefix("SPATIAL KEY ")
        .or_else(|| t.strip_prefix("SPATIAL INDEX "))
        .or_else(|| t.strip_prefix("VECTOR KEY "))
        .or_else(|| t.strip_prefix("VECTOR INDEX "))
    {
        (r, false, false)
    } else if let Some(r) = t.strip_prefix("CONSTRAINT ") {
        return match parse_ident(r) {
            Some((name, after)) if after.trim_start().starts_with("FOREIGN KEY") => Line::ForeignKey { name },
            _ => Line::Keep,
        };
    } else if t.starts_with("FOREIGN KEY") {
        return Line::ForeignKey { name: String::new() };
    } else {
        return Line::Keep;
    };
    match parse_ident(rest) {
        Some((name, after)) => {
            let first_column = after
                .trim_start()
                .strip_prefix('(')
                .and_then(|cols| parse_ident(cols.trim_start()))
                .map(|(c, _)| c);
            Line::Index {
                name,
                first_column,
                unique,
                fulltext,
            }
        }
        None => Line::Keep,
    }
}

/// Splits `create` (as `SHOW CREATE TABLE` prints it). `key_index` names the
/// unique key used for chunking (kept); indexes that an AUTO_INCREMENT
/// column (`auto_increment`) needs as its key are kept too.
pub fn split_create(create: &str, key_index: Option<&str>, auto_increment: Option<&str>) -> SplitCreate {
    let lines: Vec<&str> = create.split('\n').collect();
    let Some((open, close)) = definition_lines(&lines) else {
        return SplitCreate {
            base: create.to_string(),
            indexes: Vec::new(),
            foreign_keys: Vec::new(),
        };
    };
    let definitions: Vec<&str> = lines[open + 1..close]
        .iter()
        .map(|l| l.strip_suffix(',').unwrap_or(l))
        .collect();
    // Does a kept line (the primary key, say) already give the AUTO_INCREMENT column its key?
    let starts_with_auto = |line: &str| {
        let t = line.trim_start();
        let cols = t
            .strip_prefix("PRIMARY KEY")
            .map(|r| r.trim_start())
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| parse_ident(r.trim_start()));
        matches!((cols, auto_increment), (Some((c, _)), Some(a)) if c == a)
    };
    let mut auto_keyed = definitions.iter().any(|l| starts_with_auto(l));
    let mut kept = Vec::new();
    let mut indexes = Vec::new();
    let mut foreign_keys = Vec::new();
    for line in definitions {
        match classify(line) {
            Line::Keep => kept.push(line),
            Line::Index { name, unique, .. } if unique && key_index == Some(name.as_str()) => {
                kept.push(line);
            }
            Line::Index { first_column, .. }
                if !auto_keyed && first_column.is_some() && first_column.as_deref() == auto_increment =>
            {
                auto_keyed = true;
                kept.push(line);
            }
            Line::Index { name, fulltext, .. } => indexes.push(Deferred {
                name,
                definition: line.trim().to_string(),
                fulltext,
            }),
            Line::ForeignKey { name } => foreign_keys.push(Deferred {
                name,
                definition: line.trim().to_string(),
                fulltext: false,
            }),
        }
    }
    let mut base = lines[..=open].join("\n");
    base.push('\n');
    base.push_str(&kept.join(",\n"));
    base.push('\n');
    base.push_str(&lines[close..].join("\n"));
    SplitCreate {
        base,
        indexes,
        foreign_keys,
    }
}

/// The lines that open and close the definition list: the first line ending
/// in `(` and the next one starting with `)`.
fn definition_lines(lines: &[&str]) -> Option<(usize, usize)> {
    let open = lines.iter().position(|l| l.trim_end().ends_with('('))?;
    let close = (open + 1..lines.len()).find(|&i| lines[i].starts_with(')'))?;
    Some((open, close))
}

/// `base` (a [`SplitCreate::base`]) with the deferred `indexes` put back,
/// except FULLTEXT ones: those still wait until after the data.
pub fn with_plain_indexes(base: &str, indexes: &[Deferred]) -> String {
    let plain: Vec<&str> = indexes
        .iter()
        .filter(|i| !i.fulltext)
        .map(|i| i.definition.as_str())
        .collect();
    with_definitions(base, &plain)
}

/// `base` (a [`SplitCreate::base`]) with `definitions` (deferred index
/// lines) put back at the end of its definition list.
pub fn with_definitions(base: &str, definitions: &[&str]) -> String {
    let lines: Vec<&str> = base.split('\n').collect();
    let Some((_, close)) = definition_lines(&lines).filter(|_| !definitions.is_empty()) else {
        return base.to_string();
    };
    let mut out = lines[..close].join("\n");
    for definition in definitions {
        out.push_str(",\n  ");
        out.push_str(definition);
    }
    out.push('\n');
    out.push_str(&lines[close..].join("\n"));
    out
}

/// `create` (a `CREATE TABLE` from `SHOW CREATE TABLE`) without the
/// `COLLATE` of columns that merely inherit the table's default collation.
///
/// MySQL remembers whether a column's collation was given explicitly, and
/// prints `COLLATE x` alone for an inherited collation that is not its
/// character set's primary one (a `utf8mb4_general_ci` table's columns,
/// ENUM and SET included), but `CHARACTER SET cs COLLATE x` for an explicit
/// one. Created again from that text, the column would turn explicit and
/// print differently. A `COLLATE` without `CHARACTER SET` that names the
/// table's default collation is therefore inherited, and dropping it
/// creates the same column on either engine.
pub fn without_inherited_collations(create: &str) -> String {
    let lines: Vec<&str> = create.split('\n').collect();
    let Some((open, close)) = definition_lines(&lines) else {
        return create.to_string();
    };
    let Some(table_collation) = lines[close]
        .split_whitespace()
        .find_map(|word| word.strip_prefix("COLLATE="))
    else {
        return create.to_string();
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for line in out.iter_mut().take(close).skip(open + 1) {
        if line.trim_start().starts_with('`') {
            if let Some(stripped) = without_column_collation(line, table_collation) {
                *line = stripped;
            }
        }
    }
    out.join("\n")
}

/// The column definition `line` without its ` COLLATE <collation>`, when
/// that is its first character-set attribute (no `CHARACTER SET` before it)
/// at the top level, outside quotes and parentheses.
fn without_column_collation(line: &str, collation: &str) -> Option<String> {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q == b'\'' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b' ' if depth == 0 => {
                    let rest = &line[i..];
                    if rest.starts_with(" CHARACTER SET ") {
                        return None;
                    }
                    if let Some(name) = rest.strip_prefix(" COLLATE ") {
                        let end = name.find([' ', ',']).unwrap_or(name.len());
                        if &name[..end] != collation {
                            return None;
                        }
                        let cut = i + " COLLATE ".len() + end;
                        return Some(format!("{}{}", &line[..i], &line[cut..]));
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Replaces the `DEFINER=...` clause of a `SHOW CREATE` statement by
/// `DEFINER=CURRENT_USER`; `None` when it has none. Returns the new text
/// and the old definer.
pub fn rewrite_definer(create: &str) -> Option<(String, String)> {
    let at = create.find("DEFINER=")?;
    let value_start = at + "DEFINER=".len();
    let rest = &create[value_start..];
    let consumed = definer_len(rest)?;
    let old = rest[..consumed].to_string();
    let mut out = String::with_capacity(create.len());
    out.push_str(&create[..value_start]);
    out.push_str("CURRENT_USER");
    out.push_str(&rest[consumed..]);
    Some((out, old))
}

/// Length of a definer value at the start of `s`: `user`@`host`, `role`,
/// 'user'@'host' or CURRENT_USER[()].
fn definer_len(s: &str) -> Option<usize> {
    fn quoted(s: &str) -> Option<usize> {
        match s.as_bytes().first()? {
            b'`' => parse_ident(s).map(|(_, rest)| s.len() - rest.len()),
            b'\'' => crate::quote::skip_string(s).map(|(lit, _)| lit.len()),
            _ => None,
        }
    }
    if let Some(r) = s.strip_prefix("CURRENT_USER") {
        return Some(if r.starts_with("()") { 14 } else { 12 });
    }
    let user = quoted(s)?;
    match s[user..].strip_prefix('@') {
        Some(host) => Some(user + 1 + quoted(host)?),
        None => Some(user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = "CREATE TABLE `t``x` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `a` varchar(10) DEFAULT 'x,\\n KEY `no`',\n  `b` int(11) NOT NULL,\n  `c` text DEFAULT NULL,\n  `g` point NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `ub` (`b`),\n  UNIQUE KEY `ua` (`a`),\n  KEY `k``1` (`a`,`b`),\n  FULLTEXT KEY `ft` (`c`),\n  SPATIAL KEY `sp` (`g`),\n  CONSTRAINT `fk` FOREIGN KEY (`b`) REFERENCES `p` (`id`) ON DELETE CASCADE,\n  CONSTRAINT `chk` CHECK (`b` > 0)\n) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='a,\\nb'\n PARTITION BY HASH (`id`)\nPARTITIONS 4";

    #[test]
    fn secondary_indexes_and_foreign_keys_are_deferred() {
        let split = split_create(CREATE, Some("PRIMARY"), Some("id"));
        assert_eq!(
            split.base,
            "CREATE TABLE `t``x` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `a` varchar(10) DEFAULT 'x,\\n KEY `no`',\n  `b` int(11) NOT NULL,\n  `c` text DEFAULT NULL,\n  `g` point NOT NULL,\n  PRIMARY KEY (`id`),\n  CONSTRAINT `chk` CHECK (`b` > 0)\n) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='a,\\nb'\n PARTITION BY HASH (`id`)\nPARTITIONS 4"
        );
        let names: Vec<_> = split.indexes.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["ub", "ua", "k`1", "ft", "sp"]);
        assert_eq!(split.indexes[2].definition, "KEY `k``1` (`a`,`b`)");
        assert!(split.indexes[3].fulltext);
        assert_eq!(split.foreign_keys.len(), 1);
        assert_eq!(split.foreign_keys[0].name, "fk");
        assert_eq!(
            split.foreign_keys[0].definition,
            "CONSTRAINT `fk` FOREIGN KEY (`b`) REFERENCES `p` (`id`) ON DELETE CASCADE"
        );
    }

    #[test]
    fn deferred_indexes_can_be_put_back() {
        let split = split_create(CREATE, Some("PRIMARY"), Some("id"));
        let inline = with_plain_indexes(&split.base, &split.indexes);
        assert!(inline.contains(
            "  CONSTRAINT `chk` CHECK (`b` > 0),\n  UNIQUE KEY `ub` (`b`),\n  UNIQUE KEY `ua` (`a`),\n  KEY `k``1` (`a`,`b`),\n  SPATIAL KEY `sp` (`g`)\n) ENGINE=InnoDB"
        ));
        assert!(inline.ends_with("PARTITIONS 4"));
        assert_eq!(with_definitions(&split.base, &[]), split.base);
    }

    #[test]
    fn the_chunking_unique_key_stays() {
        let split = split_create(CREATE, Some("ub"), Some("id"));
        assert!(split.base.contains("  UNIQUE KEY `ub` (`b`),\n"));
        assert!(!split.indexes.iter().any(|d| d.name == "ub"));
    }

    #[test]
    fn an_auto_increment_column_keeps_its_only_key() {
        let create = "CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`a`,`id`),\n  KEY `by_id` (`id`),\n  KEY `other` (`a`)\n) ENGINE=InnoDB";
        let split = split_create(create, Some("PRIMARY"), Some("id"));
        assert!(split.base.contains("KEY `by_id` (`id`)"));
        assert_eq!(split.indexes.len(), 1);
        assert_eq!(split.indexes[0].name, "other");
    }

    #[test]
    fn a_table_without_deferrable_parts_is_unchanged() {
        let create = "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL\n) ENGINE=InnoDB DEFAULT CHARSET=latin1";
        let split = split_create(create, None, None);
        assert_eq!(split.base, create);
        assert!(split.indexes.is_empty() && split.foreign_keys.is_empty());
    }

    #[test]
    fn definers_are_rewritten() {
        let view = "CREATE ALGORITHM=UNDEFINED DEFINER=`ro``ot`@`local host` SQL SECURITY DEFINER VIEW `v` AS select 1";
        let (new, old) = rewrite_definer(view).expect("has a definer");
        assert_eq!(
            new,
            "CREATE ALGORITHM=UNDEFINED DEFINER=CURRENT_USER SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(old, "`ro``ot`@`local host`");
        let role = "CREATE DEFINER=`admin` PROCEDURE `p`() select 1";
        assert_eq!(
            rewrite_definer(role).map(|r| r.0).as_deref(),
            Some("CREATE DEFINER=CURRENT_USER PROCEDURE `p`() select 1")
        );
        let quoted = "CREATE DEFINER='u'@'%' EVENT `e` ON SCHEDULE EVERY 1 DAY DO select 1";
        assert_eq!(
            rewrite_definer(quoted).map(|r| r.0).as_deref(),
            Some("CREATE DEFINER=CURRENT_USER EVENT `e` ON SCHEDULE EVERY 1 DAY DO select 1")
        );
        assert!(rewrite_definer("CREATE VIEW `v` AS select 1").is_none());
    }

    #[test]
    fn inherited_column_collations_are_dropped_and_explicit_ones_kept() {
        let create = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `v` varchar(10) COLLATE utf8mb4_general_ci DEFAULT ' COLLATE x',\n  \
                      `e` enum('a COLLATE utf8mb4_general_ci','b') COLLATE utf8mb4_general_ci NOT NULL,\n  \
                      `x` varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci DEFAULT NULL,\n  \
                      `o` varchar(5) COLLATE utf8mb4_bin DEFAULT NULL,\n  \
                      `g` varchar(20) GENERATED ALWAYS AS (concat(`v`,_utf8mb4'x' COLLATE utf8mb4_general_ci)) VIRTUAL,\n  \
                      PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
        let expected = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `v` varchar(10) DEFAULT ' COLLATE x',\n  \
                        `e` enum('a COLLATE utf8mb4_general_ci','b') NOT NULL,\n  \
                        `x` varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci DEFAULT NULL,\n  \
                        `o` varchar(5) COLLATE utf8mb4_bin DEFAULT NULL,\n  \
                        `g` varchar(20) GENERATED ALWAYS AS (concat(`v`,_utf8mb4'x' COLLATE utf8mb4_general_ci)) VIRTUAL,\n  \
                        PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
        assert_eq!(without_inherited_collations(create), expected);
        // A table on its charset's default collation prints no COLLATE=.
        let plain = "CREATE TABLE `t` (\n  `v` varchar(1) COLLATE utf8mb4_bin\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        assert_eq!(without_inherited_collations(plain), plain);
    }
}
