//! Key values and ranges: how a chunk names its slice of a table.

use serde::{Deserialize, Serialize};

/// One column value of a chunking key, in a form every engine can turn back
/// into a literal of the column's own type and collation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum KeyValue {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// Any other value as the engine's exact bytes (text, decimal, temporal,
    /// binary). Hex-encoded in JSON so non-UTF-8 keys survive.
    Bytes(#[serde(with = "hex_bytes")] Vec<u8>),
}

/// A value of every key column, in key order.
pub type KeyTuple = Vec<KeyValue>;

/// A half-open slice of a table in key order: `lower < key <= upper`.
/// `None` on either side means unbounded, so `KeyRange::default()` with an
/// empty key is the whole table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The key columns, in key order. Empty for a table streamed as one unit.
    pub columns: Vec<String>,
    /// Exclusive lower bound.
    pub lower: Option<KeyTuple>,
    /// Inclusive upper bound.
    pub upper: Option<KeyTuple>,
}

impl KeyRange {
    /// The whole table, in the order of `columns`.
    pub fn whole(columns: Vec<String>) -> Self {
        Self {
            columns,
            lower: None,
            upper: None,
        }
    }

    /// Whether this range covers the entire table.
    pub fn is_whole(&self) -> bool {
        self.lower.is_none() && self.upper.is_none()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_key_bytes_round_trip_through_json() {
        let range = KeyRange {
            columns: vec!["k".into()],
            lower: Some(vec![KeyValue::Bytes(vec![0xff, 0x00, b'\\'])]),
            upper: Some(vec![KeyValue::Int(-5), KeyValue::UInt(u64::MAX)]),
        };
        let json = serde_json::to_string(&range).expect("serialize");
        let back: KeyRange = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, range);
    }
}
