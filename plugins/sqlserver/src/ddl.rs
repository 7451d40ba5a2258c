//! T-SQL text for every object kind. Pure functions, tested below; each
//! returned string is one batch.

use crate::detail::{
    AliasType, CheckDetail, ForeignKeyDetail, IndexConstraint, IndexDetail, IndexKind, ModuleDetail, ModuleKind,
    SequenceDetail, TableDetail, XmlCollection,
};
use crate::quote::{ident, string, two_part};
use crate::types::ColumnDetail;

/// `CREATE DATABASE [d] COLLATE c`.
pub fn create_database(database: &str, collation: &str) -> String {
    if collation.is_empty() {
        format!("CREATE DATABASE {}", ident(database))
    } else {
        format!(
            "CREATE DATABASE {} COLLATE {}",
            ident(database),
            collation_name(collation)
        )
    }
}

/// A collation name as SQL: it is an identifier of letters, digits and underscores; anything
/// else is refused by falling back to the server default.
pub fn collation_name(collation: &str) -> String {
    if collation.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        collation.to_string()
    } else {
        "DATABASE_DEFAULT".to_string()
    }
}

/// `CREATE SCHEMA [s]`.
pub fn create_schema(schema: &str) -> String {
    format!("CREATE SCHEMA {}", ident(schema))
}

/// `CREATE TYPE [s].[n] FROM base [NOT] NULL`.
pub fn create_alias_type(t: &AliasType) -> String {
    format!(
        "CREATE TYPE {} FROM {} {}",
        two_part(&t.schema, &t.name),
        t.base,
        if t.nullable { "NULL" } else { "NOT NULL" }
    )
}

/// `CREATE XML SCHEMA COLLECTION [s].[n] AS N'...'`.
pub fn create_xml_collection(c: &XmlCollection) -> String {
    format!(
        "CREATE XML SCHEMA COLLECTION {} AS {}",
        two_part(&c.schema, &c.name),
        string(&c.definition)
    )
}

/// `CREATE SEQUENCE`, restarted after the source's last value so the next
/// value is the one the source would hand out.
pub fn create_sequence(s: &SequenceDetail) -> String {
    let restart = match &s.last_used {
        Some(last) => next_sequence_value(s, last).unwrap_or_else(|| s.start.clone()),
        None => s.start.clone(),
    };
    let cache = match (&s.cache, s.cached) {
        (_, false) => " NO CACHE".to_string(),
        (Some(n), true) => format!(" CACHE {n}"),
        (None, true) => " CACHE".to_string(),
    };
    format!(
        "CREATE SEQUENCE {} AS {} START WITH {restart} INCREMENT BY {} MINVALUE {} MAXVALUE {} {}{cache}",
        two_part(&s.schema, &s.name),
        s.type_sql,
        s.increment,
        s.min,
        s.max,
        if s.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

/// The value after `last`, wrapping when the sequence cycles; `None` when it
/// is exhausted (the sequence then restarts at its last value).
fn next_sequence_value(s: &SequenceDetail, last: &str) -> Option<String> {
    let last: i128 = last.parse().ok()?;
    let inc: i128 = s.increment.parse().ok()?;
    let (min, max): (i128, i128) = (s.min.parse().ok()?, s.max.parse().ok()?);
    let next = last.checked_add(inc)?;
    if next > max || next < min {
        if s.cycle {
            return Some(if inc > 0 { min } else { max }.to_string());
        }
        return Some(last.to_string());
    }
    Some(next.to_string())
}

/// One column's definition inside CREATE TABLE.
pub fn column_sql(c: &ColumnDetail) -> String {
    let name = ident(&c.name);
    if let Some(computed) = &c.computed {
        let mut out = format!("{name} AS {}", computed.definition);
        if computed.persisted {
            out.push_str(" PERSISTED");
            if !c.nullable {
                out.push_str(" NOT NULL");
            }
        }
        return out;
    }
    let mut out = format!("{name} {}", c.type_sql());
    if c.sparse {
        out.push_str(" SPARSE");
    }
    if let (Some(collation), None) = (&c.collation, &c.alias) {
        out.push_str(&format!(" COLLATE {}", collation_name(collation)));
    }
    if let Some(id) = &c.identity {
        out.push_str(&format!(" IDENTITY({},{})", id.seed, id.increment));
        if id.not_for_replication {
            out.push_str(" NOT FOR REPLICATION");
        }
    }
    if c.rowguidcol {
        out.push_str(" ROWGUIDCOL");
    }
    out.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
    if let Some(default) = &c.default {
        out.push_str(&format!(
            " CONSTRAINT {} DEFAULT {}",
            ident(&default.name),
            default.definition
        ));
    }
    out
}

/// CREATE TABLE with columns, identity, computed columns and named
/// defaults; keys, indexes, checks and foreign keys come after the data.
pub fn create_table(t: &TableDetail) -> String {
    let columns: Vec<String> = t.columns.iter().map(column_sql).collect();
    format!("CREATE TABLE {} (\n    {}\n)", t.two_part(), columns.join(",\n    "))
}

/// `DROP TABLE [s].[t]`.
pub fn drop_table(t: &TableDetail) -> String {
    format!("DROP TABLE {}", t.two_part())
}

fn index_options(i: &IndexDetail) -> String {
    let mut options = Vec::new();
    if i.padded {
        options.push("PAD_INDEX = ON".to_string());
    }
    if i.fill_factor > 0 {
        options.push(format!("FILLFACTOR = {}", i.fill_factor));
    }
    if i.ignore_dup_key {
        options.push("IGNORE_DUP_KEY = ON".to_string());
    }
    if !i.allow_row_locks {
        options.push("ALLOW_ROW_LOCKS = OFF".to_string());
    }
    if !i.allow_page_locks {
        options.push("ALLOW_PAGE_LOCKS = OFF".to_string());
    }
    if options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", options.join(", "))
    }
}

fn key_list(columns: &[(String, bool)]) -> String {
    columns
        .iter()
        .map(|(c, desc)| format!("{} {}", ident(c), if *desc { "DESC" } else { "ASC" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn name_list(columns: &[String]) -> String {
    columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// The statement(s) that build an index, primary key or unique constraint.
pub fn create_index(t: &TableDetail, i: &IndexDetail) -> Vec<String> {
    let table = t.two_part();
    let clustered = if i.kind.is_clustered() {
        "CLUSTERED"
    } else {
        "NONCLUSTERED"
    };
    let mut out = vec![match (i.constraint, i.kind) {
        (IndexConstraint::PrimaryKey | IndexConstraint::Unique, _) => format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {} {clustered} ({}){}",
            ident(&i.name),
            if i.constraint == IndexConstraint::PrimaryKey {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            },
            key_list(&i.columns),
            index_options(i)
        ),
        (IndexConstraint::None, IndexKind::ClusteredColumnstore) => {
            format!("CREATE CLUSTERED COLUMNSTORE INDEX {} ON {table}", ident(&i.name))
        }
        (IndexConstraint::None, IndexKind::NonclusteredColumnstore) => {
            let mut sql = format!(
                "CREATE NONCLUSTERED COLUMNSTORE INDEX {} ON {table} ({})",
                ident(&i.name),
                name_list(&i.included)
            );
            if let Some(filter) = &i.filter {
                sql.push_str(&format!(" WHERE {filter}"));
            }
            sql
        }
        (IndexConstraint::None, _) => {
            let mut sql = format!(
                "CREATE {}{clustered} INDEX {} ON {table} ({})",
                if i.unique { "UNIQUE " } else { "" },
                ident(&i.name),
                key_list(&i.columns)
            );
            if !i.included.is_empty() {
                sql.push_str(&format!(" INCLUDE ({})", name_list(&i.included)));
            }
            if let Some(filter) = &i.filter {
                sql.push_str(&format!(" WHERE {filter}"));
            }
            sql.push_str(&index_options(i));
            sql
        }
    }];
    if i.disabled {
        out.push(format!("ALTER INDEX {} ON {table} DISABLE", ident(&i.name)));
    }
    out
}

/// Indexes in build order: clustered first (a clustered index rebuilds
/// every other), then the rest in source order.
pub fn index_order(t: &TableDetail) -> Vec<&IndexDetail> {
    let mut out: Vec<&IndexDetail> = t.indexes.iter().filter(|i| i.kind.is_clustered()).collect();
    out.extend(t.indexes.iter().filter(|i| !i.kind.is_clustered()));
    out
}

/// The statement(s) that add a CHECK constraint, validated unless the
/// source's was not trusted, disabled when the source's was.
pub fn add_check(t: &TableDetail, c: &CheckDetail) -> Vec<String> {
    let table = t.two_part();
    let mut out = vec![format!(
        "ALTER TABLE {table} WITH {} ADD CONSTRAINT {} CHECK{} {}",
        if c.not_trusted || c.disabled {
            "NOCHECK"
        } else {
            "CHECK"
        },
        ident(&c.name),
        if c.not_for_replication {
            " NOT FOR REPLICATION"
        } else {
            ""
        },
        c.definition
    )];
    if c.disabled {
        out.push(format!("ALTER TABLE {table} NOCHECK CONSTRAINT {}", ident(&c.name)));
    }
    out
}

/// The statement(s) that add a FOREIGN KEY.
pub fn add_foreign_key(t: &TableDetail, f: &ForeignKeyDetail) -> Vec<String> {
    let table = t.two_part();
    let action = |a: &str| match a.replace('_', " ").to_ascii_uppercase().as_str() {
        "CASCADE" => "CASCADE",
        "SET NULL" => "SET NULL",
        "SET DEFAULT" => "SET DEFAULT",
        _ => "NO ACTION",
    };
    let mut out =
        vec![format!(
        "ALTER TABLE {table} WITH {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}{}",
        if f.not_trusted || f.disabled { "NOCHECK" } else { "CHECK" },
        ident(&f.name),
        name_list(&f.columns),
        two_part(&f.referenced.0, &f.referenced.1),
        name_list(&f.referenced_columns),
        action(&f.on_delete),
        action(&f.on_update),
        if f.not_for_replication { " NOT FOR REPLICATION" } else { "" }
    )];
    if f.disabled {
        out.push(format!("ALTER TABLE {table} NOCHECK CONSTRAINT {}", ident(&f.name)));
    }
    out
}

/// Sets the identity's current value to the source's, given what the target
/// holds after the load: `target_last` is the target's `last_value` (`None`
/// when no row was ever inserted there). Never moves the value backwards
/// past rows the target holds. `None` when nothing needs doing. `table` is
/// the table as `DBCC CHECKIDENT` takes it on the target's flavour
/// ([`crate::flavour::Flavour::checkident_table`]).
pub fn reseed_identity(table: &str, column: &ColumnDetail, target_last: Option<&str>) -> Option<String> {
    let id = column.identity.as_ref()?;
    let source_last: i128 = id.last_value.as_deref()?.parse().ok()?;
    let increment: i128 = id.increment.parse().ok()?;
    let reseed = match target_last.and_then(|v| v.parse::<i128>().ok()) {
        // Never-used identity: the next insert takes the reseed value itself.
        None => source_last.checked_add(increment)?,
        Some(target) => {
            let ahead = if increment > 0 {
                source_last > target
            } else {
                source_last < target
            };
            if !ahead {
                return None;
            }
            source_last
        }
    };
    Some(format!("DBCC CHECKIDENT ({table}, RESEED, {reseed}) WITH NO_INFOMSGS"))
}

/// The batches that create a module: its SET options (they are saved with
/// the module), its definition as written, and DISABLE for a disabled trigger.
pub fn create_module(m: &ModuleDetail) -> Vec<String> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    let mut out = vec![
        format!(
            "SET ANSI_NULLS {}; SET QUOTED_IDENTIFIER {}",
            on(m.ansi_nulls),
            on(m.quoted_identifier)
        ),
        m.definition.clone(),
    ];
    if m.kind == ModuleKind::Trigger && m.disabled {
        out.push(match &m.parent {
            Some((schema, table)) => format!(
                "DISABLE TRIGGER {} ON {}",
                two_part(&m.schema, &m.name),
                two_part(schema, table)
            ),
            None => format!("DISABLE TRIGGER {} ON DATABASE", ident(&m.name)),
        });
    }
    out.push("SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON".into());
    out
}

/// Orders modules so every one comes after those it references
/// (`edges`: (referencing, referenced) index pairs). Cycles (possible with
/// deferred name resolution of procedures) keep source order.
pub fn dependency_order(count: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut done = vec![false; count];
    let mut visiting = vec![false; count];
    let mut out = Vec::with_capacity(count);
    fn visit(n: usize, edges: &[(usize, usize)], done: &mut [bool], visiting: &mut [bool], out: &mut Vec<usize>) {
        if done[n] || visiting[n] {
            return;
        }
        visiting[n] = true;
        for &(from, to) in edges {
            if from == n && to != n && to < done.len() {
                visit(to, edges, done, visiting, out);
            }
        }
        visiting[n] = false;
        done[n] = true;
        out.push(n);
    }
    for n in 0..count {
        visit(n, edges, &mut done, &mut visiting, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::object_literal;
    use crate::types::{Computed, DefaultConstraint, Identity};

    fn table() -> TableDetail {
        let mut id = ColumnDetail::plain("id", "int", 4, 10, 0);
        id.nullable = false;
        id.identity = Some(Identity {
            seed: "1".into(),
            increment: "1".into(),
            last_value: Some("41".into()),
            not_for_replication: false,
        });
        let mut name = ColumnDetail::plain("na]me", "nvarchar", 100, 0, 0);
        name.collation = Some("Latin1_General_CI_AS".into());
        name.default = Some(DefaultConstraint {
            name: "DF_t_name".into(),
            definition: "(N'x')".into(),
        });
        let mut total = ColumnDetail::plain("total", "int", 4, 10, 0);
        total.computed = Some(Computed {
            definition: "([id]*(2))".into(),
            persisted: true,
        });
        total.nullable = false;
        let mut virt = ColumnDetail::plain("half", "int", 4, 10, 0);
        virt.computed = Some(Computed {
            definition: "([id]/(2))".into(),
            persisted: false,
        });
        let mut guid = ColumnDetail::plain("g", "uniqueidentifier", 16, 0, 0);
        guid.rowguidcol = true;
        guid.nullable = false;
        let mut sparse = ColumnDetail::plain("s", "varchar", -1, 0, 0);
        sparse.sparse = true;
        sparse.collation = Some("Latin1_General_100_CI_AS_SC_UTF8".into());
        TableDetail {
            schema: "sa]les".into(),
            name: "or'ders".into(),
            columns: vec![id, name, total, virt, guid, sparse],
            ..TableDetail::default()
        }
    }

    #[test]
    fn databases_schemas_and_types() {
        assert_eq!(
            create_database("de]st", "SQL_Latin1_General_CP1_CI_AS"),
            "CREATE DATABASE [de]]st] COLLATE SQL_Latin1_General_CP1_CI_AS"
        );
        assert_eq!(create_database("d", ""), "CREATE DATABASE [d]");
        assert_eq!(
            create_database("d", "x; DROP"),
            "CREATE DATABASE [d] COLLATE DATABASE_DEFAULT"
        );
        assert_eq!(create_schema("a]b"), "CREATE SCHEMA [a]]b]");
        let alias = AliasType {
            schema: "dbo".into(),
            name: "Phone".into(),
            base: "varchar(20)".into(),
            nullable: false,
        };
        assert_eq!(
            create_alias_type(&alias),
            "CREATE TYPE [dbo].[Phone] FROM varchar(20) NOT NULL"
        );
        let xml = XmlCollection {
            schema: "dbo".into(),
            name: "c".into(),
            definition: "<xsd:schema x='1'/>".into(),
        };
        assert_eq!(
            create_xml_collection(&xml),
            "CREATE XML SCHEMA COLLECTION [dbo].[c] AS N'<xsd:schema x=''1''/>'"
        );
    }

    #[test]
    fn tables_carry_identity_computed_defaults_and_collations() {
        assert_eq!(
            create_table(&table()),
            "CREATE TABLE [sa]]les].[or'ders] (\n    \
             [id] int IDENTITY(1,1) NOT NULL,\n    \
             [na]]me] nvarchar(50) COLLATE Latin1_General_CI_AS NULL CONSTRAINT [DF_t_name] DEFAULT (N'x'),\n    \
             [total] AS ([id]*(2)) PERSISTED NOT NULL,\n    \
             [half] AS ([id]/(2)),\n    \
             [g] uniqueidentifier ROWGUIDCOL NOT NULL,\n    \
             [s] varchar(max) SPARSE COLLATE Latin1_General_100_CI_AS_SC_UTF8 NULL\n)"
        );
        assert_eq!(drop_table(&table()), "DROP TABLE [sa]]les].[or'ders]");
    }

    fn index(name: &str, kind: IndexKind, constraint: IndexConstraint) -> IndexDetail {
        IndexDetail {
            name: name.into(),
            kind,
            constraint,
            unique: constraint != IndexConstraint::None,
            columns: vec![("id".into(), false), ("na]me".into(), true)],
            included: Vec::new(),
            filter: None,
            ignore_dup_key: false,
            fill_factor: 0,
            padded: false,
            allow_row_locks: true,
            allow_page_locks: true,
            disabled: false,
        }
    }

    #[test]
    fn keys_and_indexes_build_clustered_first() {
        let mut t = table();
        let mut filtered = index("IX_f", IndexKind::Nonclustered, IndexConstraint::None);
        filtered.included = vec!["g".into()];
        filtered.filter = Some("([s] IS NOT NULL)".into());
        filtered.fill_factor = 80;
        filtered.disabled = true;
        t.indexes = vec![
            index("UQ_t", IndexKind::Nonclustered, IndexConstraint::Unique),
            filtered,
            index("PK_t", IndexKind::Clustered, IndexConstraint::PrimaryKey),
            index("CCI", IndexKind::NonclusteredColumnstore, IndexConstraint::None),
        ];
        t.indexes[3].included = vec!["id".into()];
        let order: Vec<&str> = index_order(&t).iter().map(|i| i.name.as_str()).collect();
        assert_eq!(order, ["PK_t", "UQ_t", "IX_f", "CCI"]);
        assert_eq!(
            create_index(&t, &t.indexes[2]),
            ["ALTER TABLE [sa]]les].[or'ders] ADD CONSTRAINT [PK_t] PRIMARY KEY CLUSTERED ([id] ASC, [na]]me] DESC)"]
        );
        assert_eq!(
            create_index(&t, &t.indexes[0]),
            ["ALTER TABLE [sa]]les].[or'ders] ADD CONSTRAINT [UQ_t] UNIQUE NONCLUSTERED ([id] ASC, [na]]me] DESC)"]
        );
        assert_eq!(
            create_index(&t, &t.indexes[1]),
            [
                "CREATE NONCLUSTERED INDEX [IX_f] ON [sa]]les].[or'ders] ([id] ASC, [na]]me] DESC) INCLUDE ([g]) \
                 WHERE ([s] IS NOT NULL) WITH (FILLFACTOR = 80)",
                "ALTER INDEX [IX_f] ON [sa]]les].[or'ders] DISABLE"
            ]
        );
        assert_eq!(
            create_index(&t, &t.indexes[3]),
            ["CREATE NONCLUSTERED COLUMNSTORE INDEX [CCI] ON [sa]]les].[or'ders] ([id])"]
        );
        let mut unique = index("UX", IndexKind::Clustered, IndexConstraint::None);
        unique.unique = true;
        unique.ignore_dup_key = true;
        unique.allow_page_locks = false;
        assert_eq!(
            create_index(&t, &unique),
            [
                "CREATE UNIQUE CLUSTERED INDEX [UX] ON [sa]]les].[or'ders] ([id] ASC, [na]]me] DESC) \
              WITH (IGNORE_DUP_KEY = ON, ALLOW_PAGE_LOCKS = OFF)"
            ]
        );
        let cci = index("C", IndexKind::ClusteredColumnstore, IndexConstraint::None);
        assert_eq!(
            create_index(&t, &cci),
            ["CREATE CLUSTERED COLUMNSTORE INDEX [C] ON [sa]]les].[or'ders]"]
        );
    }

    #[test]
    fn checks_and_foreign_keys_keep_trust_and_state() {
        let t = table();
        let check = CheckDetail {
            name: "CK_t".into(),
            definition: "([id]>(0))".into(),
            disabled: false,
            not_trusted: false,
            not_for_replication: false,
        };
        assert_eq!(
            add_check(&t, &check),
            ["ALTER TABLE [sa]]les].[or'ders] WITH CHECK ADD CONSTRAINT [CK_t] CHECK ([id]>(0))"]
        );
        let disabled = CheckDetail {
            disabled: true,
            not_for_replication: true,
            ..check
        };
        assert_eq!(
            add_check(&t, &disabled),
            [
                "ALTER TABLE [sa]]les].[or'ders] WITH NOCHECK ADD CONSTRAINT [CK_t] CHECK NOT FOR REPLICATION ([id]>(0))",
                "ALTER TABLE [sa]]les].[or'ders] NOCHECK CONSTRAINT [CK_t]"
            ]
        );
        let fk = ForeignKeyDetail {
            name: "FK_t".into(),
            columns: vec!["id".into()],
            referenced: ("dbo".into(), "pa]rent".into()),
            referenced_columns: vec!["pid".into()],
            on_delete: "CASCADE".into(),
            on_update: "SET_NULL".into(),
            disabled: false,
            not_trusted: true,
            not_for_replication: false,
        };
        assert_eq!(
            add_foreign_key(&t, &fk),
            [
                "ALTER TABLE [sa]]les].[or'ders] WITH NOCHECK ADD CONSTRAINT [FK_t] FOREIGN KEY ([id]) \
              REFERENCES [dbo].[pa]]rent] ([pid]) ON DELETE CASCADE ON UPDATE SET NULL"
            ]
        );
    }

    #[test]
    fn identity_reseeds_to_the_source_value() {
        let t = table();
        let id = &t.columns[0];
        // The load left the target at 30 (rows above 30 were deleted on the source).
        assert_eq!(
            reseed_identity(&object_literal(&t.schema, &t.name), id, Some("30")).as_deref(),
            Some("DBCC CHECKIDENT (N'[sa]]les].[or''ders]', RESEED, 41) WITH NO_INFOMSGS")
        );
        // The target already holds the source's last value: nothing to do.
        assert_eq!(
            reseed_identity(&object_literal(&t.schema, &t.name), id, Some("41")),
            None
        );
        // Never moves backwards past loaded rows.
        assert_eq!(
            reseed_identity(&object_literal(&t.schema, &t.name), id, Some("50")),
            None
        );
        // No row ever inserted on the target: the next insert takes the reseed value.
        assert_eq!(
            reseed_identity(&object_literal(&t.schema, &t.name), id, None).as_deref(),
            Some("DBCC CHECKIDENT (N'[sa]]les].[or''ders]', RESEED, 42) WITH NO_INFOMSGS")
        );
        let mut fresh = t.clone();
        if let Some(identity) = fresh.columns[0].identity.as_mut() {
            identity.last_value = None;
        }
        assert_eq!(
            reseed_identity(&object_literal(&fresh.schema, &fresh.name), &fresh.columns[0], None),
            None
        );
    }

    #[test]
    fn sequences_restart_after_the_source_value() {
        let mut s = SequenceDetail {
            schema: "dbo".into(),
            name: "seq".into(),
            type_sql: "bigint".into(),
            start: "1".into(),
            increment: "5".into(),
            min: "1".into(),
            max: "100".into(),
            cycle: false,
            cache: Some("50".into()),
            cached: true,
            last_used: Some("96".into()),
        };
        assert_eq!(
            create_sequence(&s),
            "CREATE SEQUENCE [dbo].[seq] AS bigint START WITH 96 INCREMENT BY 5 MINVALUE 1 MAXVALUE 100 NO CYCLE CACHE 50"
        );
        s.cycle = true;
        s.cached = false;
        assert!(create_sequence(&s).contains("START WITH 1 INCREMENT BY 5"));
        assert!(create_sequence(&s).ends_with("CYCLE NO CACHE"));
        s.last_used = Some("11".into());
        assert!(create_sequence(&s).contains("START WITH 16 "));
        s.last_used = None;
        assert!(create_sequence(&s).contains("START WITH 1 "));
    }

    #[test]
    fn modules_keep_their_set_options_and_state() {
        let view = ModuleDetail {
            kind: ModuleKind::View,
            schema: "dbo".into(),
            name: "v".into(),
            definition: "CREATE VIEW dbo.v AS SELECT 1 AS one".into(),
            ansi_nulls: true,
            quoted_identifier: false,
            disabled: false,
            parent: None,
        };
        assert_eq!(
            create_module(&view),
            [
                "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER OFF",
                "CREATE VIEW dbo.v AS SELECT 1 AS one",
                "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON"
            ]
        );
        let trigger = ModuleDetail {
            kind: ModuleKind::Trigger,
            name: "tr]".into(),
            disabled: true,
            parent: Some(("dbo".into(), "t".into())),
            definition: "CREATE TRIGGER dbo.tr ON dbo.t AFTER INSERT AS SELECT 1".into(),
            ..view.clone()
        };
        assert_eq!(create_module(&trigger)[2], "DISABLE TRIGGER [dbo].[tr]]] ON [dbo].[t]");
        let ddl = ModuleDetail {
            schema: String::new(),
            parent: None,
            ..trigger
        };
        assert_eq!(create_module(&ddl)[2], "DISABLE TRIGGER [tr]]] ON DATABASE");
        assert_eq!(ddl.object_name(), "tr]");
    }

    #[test]
    fn modules_come_after_what_they_reference() {
        // 0 = proc using view 2, 1 = function, 2 = view using function 1.
        assert_eq!(dependency_order(3, &[(0, 2), (2, 1)]), [1, 2, 0]);
        // A cycle keeps going in source order and includes everything once.
        let order = dependency_order(2, &[(0, 1), (1, 0)]);
        assert_eq!(order.len(), 2);
        assert_eq!(dependency_order(2, &[(0, 0), (1, 9)]), [0, 1]);
    }
}
