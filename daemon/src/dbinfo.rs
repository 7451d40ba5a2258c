//! The API's `DBInfo` JSON string (CONTRACT §3, rule 7).
//!
//! MySQL takes `{"DBNames":["a","b"]}` (names kept); SQL Server takes
//! `{"DBNames":{"src":"dest"}}` (renamed). Repeated names are detected even
//! inside a JSON object, where a plain JSON map would silently keep the last.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::codes::{ErrorCode, Rejection};

/// `DBNames` as written, before the engine decides which shape is right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbNames {
    /// `["a","b"]`.
    List(Vec<String>),
    /// `{"src":"dest"}`, in the order written.
    Map(Vec<(String, String)>),
}

/// The parsed `DBInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// The databases.
    pub names: DbNames,
}

/// Typographic quotes that web pages put where JSON needs `"`.
const CURLY_QUOTES: [char; 6] = ['“', '”', '„', '‘', '’', '″'];

impl DbInfo {
    /// Parses the JSON string; errors carry `InvalidDBInfo.Format`.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let format = |message: String| Rejection::new(ErrorCode::InvalidDbInfoFormat, message);
        if let Some(quote) = text.chars().find(|c| CURLY_QUOTES.contains(c)) {
            return Err(format(format!(
                "DBInfo contains the typographic quote {quote} (as copied from a web page); \
                 JSON needs straight double quotes: {{\"DBNames\":[\"mydb\"]}}"
            )));
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "DBNames")]
            names: DbNames,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            format(format!(
                "DBInfo is not valid JSON of the form {{\"DBNames\":[...]}} or {{\"DBNames\":{{...}}}}: {e}"
            ))
        })?;
        let info = DbInfo { names: raw.names };
        if info.is_empty() {
            return Err(format("DBInfo's DBNames is empty: name at least one database".into()));
        }
        if let Some(bad) = info.all_names().find(|n| n.trim().is_empty()) {
            return Err(format(format!("DBInfo contains an empty database name {bad:?}")));
        }
        Ok(info)
    }

    fn is_empty(&self) -> bool {
        match &self.names {
            DbNames::List(l) => l.is_empty(),
            DbNames::Map(m) => m.is_empty(),
        }
    }

    fn all_names(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match &self.names {
            DbNames::List(l) => Box::new(l.iter()),
            DbNames::Map(m) => Box::new(m.iter().flat_map(|(a, b)| [a, b])),
        }
    }

    /// Source → destination pairs for `engine`, checking the shape (rule 7).
    pub fn mapping(&self, engine: &str) -> Result<Vec<(String, String)>, Rejection> {
        let pairs = match (&self.names, engine) {
            (DbNames::List(names), "mysql") => names.iter().map(|n| (n.clone(), n.clone())).collect::<Vec<_>>(),
            (DbNames::Map(pairs), "sqlserver") => pairs.clone(),
            (DbNames::Map(_), "mysql") => {
                return Err(Rejection::new(
                    ErrorCode::InvalidDbInfoFormat,
                    "for MySQL, DBNames must be an array of names (databases keep their names): {\"DBNames\":[\"mydb\"]}",
                ))
            }
            (DbNames::List(_), "sqlserver") => {
                return Err(Rejection::new(
                    ErrorCode::InvalidDbInfoFormat,
                    "for SQL Server, DBNames must be an object of source to destination names: {\"DBNames\":{\"srcdb\":\"destdb\"}}",
                ))
            }
            (_, other) => {
                return Err(Rejection::new(
                    ErrorCode::IncorrectInstanceType,
                    format!("engine {other} is not supported; only MySQL and SQL Server are"),
                ))
            }
        };
        for side in [0, 1] {
            let mut seen = std::collections::HashSet::new();
            for pair in &pairs {
                let name = if side == 0 { &pair.0 } else { &pair.1 };
                if !seen.insert(name) {
                    let which = if side == 0 { "source" } else { "destination" };
                    return Err(Rejection::new(
                        ErrorCode::DbNameDuplicate,
                        format!("database {name:?} is named twice as a {which} in DBInfo"),
                    ));
                }
            }
        }
        Ok(pairs)
    }
}

impl<'de> Deserialize<'de> for DbNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = DbNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of database names or an object of source to destination names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DbNames, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(DbNames::List(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DbNames, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(DbNames::Map(pairs))
            }
        }
        d.deserialize_any(NamesVisitor)
    }
}

impl<'de> Deserialize<'de> for DbInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DbInfo::parse(&text).map_err(|r| de::Error::custom(r.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str, engine: &str) -> Option<ErrorCode> {
        DbInfo::parse(text)
            .and_then(|i| i.mapping(engine))
            .err()
            .map(|r| r.code)
    }

    #[test]
    fn shapes_follow_the_engine() {
        assert_eq!(code(r#"{"DBNames":["a","b"]}"#, "mysql"), None);
        assert_eq!(code(r#"{"DBNames":{"a":"x"}}"#, "sqlserver"), None);
        assert_eq!(
            code(r#"{"DBNames":{"a":"x"}}"#, "mysql"),
            Some(ErrorCode::InvalidDbInfoFormat)
        );
        assert_eq!(
            code(r#"{"DBNames":["a"]}"#, "sqlserver"),
            Some(ErrorCode::InvalidDbInfoFormat)
        );
    }

    #[test]
    fn malformed_empty_and_typographic_are_format_errors() {
        for bad in [
            "",
            "DBNames",
            r#"{"DBNames":[]}"#,
            r#"{"DBNames":{}}"#,
            r#"{"DBNames":[1]}"#,
            r#"{"Names":["a"]}"#,
            r#"{"DBNames":[""]}"#,
        ] {
            assert_eq!(code(bad, "mysql"), Some(ErrorCode::InvalidDbInfoFormat), "{bad}");
        }
        let err = DbInfo::parse("{“DBNames”:[“mydb”]}").expect_err("curly quotes");
        assert!(err.message.contains('“'), "{}", err.message);
    }

    #[test]
    fn repeated_names_are_duplicates_even_as_object_keys() {
        assert_eq!(
            code(r#"{"DBNames":["a","a"]}"#, "mysql"),
            Some(ErrorCode::DbNameDuplicate)
        );
        assert_eq!(
            code(r#"{"DBNames":{"a":"x","a":"y"}}"#, "sqlserver"),
            Some(ErrorCode::DbNameDuplicate)
        );
        assert_eq!(
            code(r#"{"DBNames":{"a":"x","b":"x"}}"#, "sqlserver"),
            Some(ErrorCode::DbNameDuplicate)
        );
    }
}
