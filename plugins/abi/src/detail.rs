//! Engine-private details, and how a session keeps them so that requests
//! can name a detail instead of carrying it.
//!
//! A MySQL table's detail is about 2 KB of JSON, and the host used to send
//! it on every request that named the table: the read, the write, both
//! digests, the schema steps. On 1,000 small tables that was a fifth of the
//! host's CPU. Now the host sends each detail to a session once
//! ([`Request::KeepDetails`](crate::protocol::Request::KeepDetails)) and
//! later requests carry its number; the SDK puts the kept detail back before
//! the engine sees the request, so engines never meet a number.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::protocol::{
    DatabaseSchema, DigestRequest, DigestsRequest, ErrorKind, FinishRequest, PluginError, PrepareRequest,
    RangeDigestsRequest, ReadGroupRequest, ReadRequest, Request, SplitRequest, TableIndexesRequest, WriteGroupRequest,
    WriteRequest,
};

/// Engine-private JSON that the host carries without looking inside: a JSON
/// object, or `null`.
///
/// Kept as shared JSON text: building and dropping a `serde_json::Value`
/// tree for each request cost more than the copy of small tables, and
/// clones (the host clones a table into every request) only count a
/// reference. On the wire a bare number stands for a detail the session
/// keeps; that is why an engine's detail may not be a number.
#[derive(Clone, Debug)]
pub struct Detail(Arc<RawValue>);

impl Detail {
    /// The detail that says nothing (`null`).
    pub fn null() -> Self {
        Self(Arc::from(RawValue::NULL.to_owned()))
    }

    /// Encodes an engine's own detail structure, which must encode as a JSON
    /// object.
    pub fn encode<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        if !raw.get().starts_with('{') {
            return Err(serde::ser::Error::custom("an engine's detail must be a JSON object"));
        }
        Ok(Self(Arc::from(raw)))
    }

    /// Decodes it as an engine's own detail structure.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The wire form of the detail a session keeps as number `id`.
    fn kept(id: u64) -> Self {
        Self(Arc::from(
            RawValue::from_string(id.to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned()),
        ))
    }

    /// The number of a kept detail, if this is one.
    fn kept_id(&self) -> Option<u64> {
        let text = self.0.get();
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        }
    }

    /// The same for a detail and its clones, and not given to another
    /// detail while any of them lives: a cheap key for what a session
    /// derives from a detail, where hashing kilobytes of text is not.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }
}

impl Default for Detail {
    fn default() -> Self {
        Self::null()
    }
}

impl Serialize for Detail {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| Self(Arc::from(raw)))
    }
}

/// A detail the host asks a session to keep, and the number later requests
/// name it by.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptDetail {
    /// The number, unique within the session.
    pub id: u64,
    /// The detail.
    pub detail: Detail,
}

/// A request that may carry details.
pub trait CarriesDetails {
    /// Every detail in it.
    fn details_mut(&mut self) -> Vec<&mut Detail>;
}

impl CarriesDetails for DatabaseSchema {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        let mut details = vec![&mut self.detail];
        details.extend(self.tables.iter_mut().map(|t| &mut t.detail));
        details
    }
}

macro_rules! carries_one_table {
    ($($request:ty),*) => {$(
        impl CarriesDetails for $request {
            fn details_mut(&mut self) -> Vec<&mut Detail> {
                vec![&mut self.table.detail]
            }
        }
    )*};
}
carries_one_table!(
    SplitRequest,
    DigestRequest,
    RangeDigestsRequest,
    ReadRequest,
    WriteRequest
);

impl CarriesDetails for DigestsRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        self.tables.iter_mut().map(|t| &mut t.detail).collect()
    }
}

impl CarriesDetails for PrepareRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        self.schema.details_mut()
    }
}

impl CarriesDetails for FinishRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        self.schema.details_mut()
    }
}

impl CarriesDetails for TableIndexesRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        vec![&mut self.table.detail]
    }
}

impl CarriesDetails for ReadGroupRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        self.chunks.iter_mut().map(|c| &mut c.table.detail).collect()
    }
}

impl CarriesDetails for WriteGroupRequest {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        self.chunks.iter_mut().map(|c| &mut c.table.detail).collect()
    }
}

impl CarriesDetails for Request {
    fn details_mut(&mut self) -> Vec<&mut Detail> {
        match self {
            Request::SplitPoints(r) => r.details_mut(),
            Request::PrepareTarget(r) | Request::CheckTarget(r) => r.details_mut(),
            Request::FinishTarget(r) => r.details_mut(),
            Request::AddTableIndexes(r) => r.details_mut(),
            Request::TableDigest(r) => r.details_mut(),
            Request::TableDigests(r) => r.details_mut(),
            Request::RangeDigests(r) => r.details_mut(),
            Request::Probe
            | Request::DescribeDatabase { .. }
            | Request::BeginSnapshot { .. }
            | Request::EndSnapshot
            | Request::BackupRestore(_)
            | Request::BackupProgress
            | Request::KeepDetails(_)
            | Request::Interrupt => Vec::new(),
        }
    }
}

/// The details of `schema` that a session keeps when it answers
/// `DescribeDatabase` with `keep_from: Some(first)`: every one that is not
/// `null`, in [`CarriesDetails::details_mut`] order, numbered from `first`.
/// Host and plugin both number them with this function.
pub fn number_details(schema: &mut DatabaseSchema, first: u64) -> Vec<KeptDetail> {
    schema
        .details_mut()
        .into_iter()
        .filter(|detail| !detail.is_null())
        .zip(first..)
        .map(|(detail, id)| KeptDetail {
            id,
            detail: detail.clone(),
        })
        .collect()
}

/// The host's side: which details a session already keeps.
#[derive(Default)]
pub struct SentDetails {
    /// By the identity of the text: the detail, held so that its identity
    /// cannot be reused by another, and the number that stands for it on
    /// the wire, made once rather than on every request.
    kept: HashMap<usize, (Detail, Detail)>,
    /// The number the next detail gets.
    next: u64,
}

impl SentDetails {
    /// The details in `request` that the session does not keep yet, each
    /// once, with the numbers to keep them by. Once the session has kept
    /// them, call [`SentDetails::kept`].
    pub fn unsent(&self, request: &mut dyn CarriesDetails) -> Vec<KeptDetail> {
        let mut fresh = HashSet::new();
        let mut unsent = Vec::new();
        for detail in request.details_mut() {
            let identity = detail.identity();
            if detail.is_null() || self.kept.contains_key(&identity) || !fresh.insert(identity) {
                continue;
            }
            let id = self.next_id() + unsent.len() as u64;
            unsent.push(KeptDetail {
                id,
                detail: detail.clone(),
            });
        }
        unsent
    }

    /// The number the next detail sent gets.
    pub fn next_id(&self) -> u64 {
        self.next.max(1)
    }

    /// Records that the session keeps `details`.
    pub fn kept(&mut self, details: Vec<KeptDetail>) {
        for KeptDetail { id, detail } in details {
            self.next = self.next.max(id + 1);
            self.kept.insert(detail.identity(), (detail, Detail::kept(id)));
        }
    }

    /// Replaces every detail of `request` that the session keeps by its number.
    pub fn name(&self, request: &mut dyn CarriesDetails) {
        for detail in request.details_mut() {
            if let Some((_, number)) = self.kept.get(&detail.identity()) {
                *detail = number.clone();
            }
        }
    }
}

/// The plugin's side: the details a session keeps, by number.
#[derive(Default)]
pub struct KeptDetails {
    by_id: HashMap<u64, Detail>,
}

impl KeptDetails {
    /// Keeps `details`.
    pub fn keep(&mut self, details: Vec<KeptDetail>) {
        self.by_id.extend(details.into_iter().map(|k| (k.id, k.detail)));
    }

    /// Puts every kept detail that `request` names back in its place.
    pub fn restore(&self, request: &mut dyn CarriesDetails) -> Result<(), PluginError> {
        for detail in request.details_mut() {
            if let Some(id) = detail.kept_id() {
                *detail = self.by_id.get(&id).cloned().ok_or_else(|| {
                    PluginError::new(
                        ErrorKind::InvalidRequest,
                        format!("the request names detail {id}, which this session does not keep"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{TableSchema, VerifyMode};

    fn table(name: &str, detail: &Detail) -> TableSchema {
        TableSchema {
            name: name.into(),
            detail: detail.clone(),
            ..TableSchema::default()
        }
    }

    fn digests(tables: Vec<TableSchema>) -> Request {
        Request::TableDigests(DigestsRequest {
            database: "d".into(),
            tables,
            mode: VerifyMode::Count,
            in_snapshot: false,
        })
    }

    #[test]
    fn a_kept_detail_crosses_as_its_number_and_comes_back_whole() {
        let a = Detail::encode(&serde_json::json!({"create": "CREATE TABLE a (x int)"})).unwrap_or_default();
        let b = Detail::encode(&serde_json::json!({"create": "CREATE TABLE b (x int)"})).unwrap_or_default();
        let (mut host, mut plugin) = (SentDetails::default(), KeptDetails::default());

        let mut first = digests(vec![
            table("a", &a),
            table("b", &b),
            table("a2", &a),
            table("n", &Detail::null()),
        ]);
        let unsent = host.unsent(&mut first);
        assert_eq!(unsent.len(), 2, "each distinct detail once, null never");
        let keep = serde_json::to_vec(&Request::KeepDetails(unsent.clone())).unwrap_or_default();
        let Ok(Request::KeepDetails(arrived)) = serde_json::from_slice::<Request>(&keep) else {
            panic!("KeepDetails must decode");
        };
        plugin.keep(arrived);
        host.kept(unsent);

        let mut second = digests(vec![table("b", &b), table("a", &a), table("n", &Detail::null())]);
        assert!(host.unsent(&mut second).is_empty(), "nothing new to send");
        host.name(&mut second);
        let wire = serde_json::to_string(&second).unwrap_or_default();
        assert!(!wire.contains("CREATE"), "{wire}");
        let Ok(mut arrived) = serde_json::from_str::<Request>(&wire) else {
            panic!("the request must decode: {wire}");
        };
        assert!(plugin.restore(&mut arrived).is_ok());
        let Request::TableDigests(arrived) = arrived else {
            panic!("still a digests request");
        };
        let texts: Vec<&str> = arrived.tables.iter().map(|t| t.detail.as_json()).collect();
        assert_eq!(texts, [b.as_json(), a.as_json(), "null"]);
    }

    #[test]
    fn a_described_schema_is_kept_on_both_sides_without_being_sent_back() {
        let a = Detail::encode(&serde_json::json!({"create": "CREATE TABLE a (x int)"})).unwrap_or_default();
        let b = Detail::encode(&serde_json::json!({"create": "CREATE TABLE b (x int)"})).unwrap_or_default();
        let mut described = DatabaseSchema {
            database: "d".into(),
            tables: vec![table("a", &a), table("n", &Detail::null()), table("b", &b)],
            ..DatabaseSchema::default()
        };
        let (mut host, mut plugin) = (SentDetails::default(), KeptDetails::default());
        let first = host.next_id();
        plugin.keep(number_details(&mut described, first));
        let answer = serde_json::to_vec(&described).unwrap_or_default();
        let Ok(mut schema) = serde_json::from_slice::<DatabaseSchema>(&answer) else {
            panic!("the schema must decode");
        };
        host.kept(number_details(&mut schema, first));

        let mut request = digests(schema.tables.clone());
        assert!(host.unsent(&mut request).is_empty(), "the session already keeps them");
        host.name(&mut request);
        assert!(plugin.restore(&mut request).is_ok());
        let Request::TableDigests(request) = request else {
            panic!("still a digests request");
        };
        let texts: Vec<&str> = request.tables.iter().map(|t| t.detail.as_json()).collect();
        assert_eq!(texts, [a.as_json(), "null", b.as_json()]);
        assert_eq!(host.next_id(), first + 2, "the next detail gets a fresh number");
    }

    #[test]
    fn a_number_the_session_does_not_keep_is_refused() {
        let mut request = digests(vec![table("a", &Detail::kept(7))]);
        let Err(error) = KeptDetails::default().restore(&mut request) else {
            panic!("an unknown number must be refused");
        };
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(error.message.contains("detail 7"), "{}", error.message);
    }

    #[test]
    fn an_engine_detail_must_be_an_object() {
        assert!(Detail::encode(&42).is_err());
        assert!(Detail::encode(&"text").is_err());
        assert!(Detail::encode(&serde_json::json!({})).is_ok());
    }
}
