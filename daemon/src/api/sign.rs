//! Request signatures as the Alibaba Cloud SDKs compute them.
//!
//! - **V1** (RPC, `SignatureVersion=1.0`, `SignatureMethod=HMAC-SHA1`):
//!   every parameter but `Signature` (query and form body alike), sorted by
//!   name, each name and value percent-encoded (RFC 3986), joined with `&`;
//!   the string to sign is `METHOD&%2F&` + that string percent-encoded
//!   again; the signature is base64 of HMAC-SHA1 keyed with `secret&`.
//! - **V3** (`Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`):
//!   the canonical request is `METHOD\nPATH\nQUERY\nHEADERS\nSIGNED\nPAYLOAD`
//!   where QUERY is the sorted, encoded query, HEADERS the signed headers as
//!   `name:value\n` (lower-case names, trimmed values, repeated values
//!   sorted and joined with `,`), PAYLOAD the `x-acs-content-sha256` header
//!   (hex SHA-256 of the body). The string to sign is
//!   `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request; the
//!   signature is hex HMAC-SHA256 keyed with the secret.
//!
//! Verification compares MACs in constant time (`Mac::verify_slice`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Everything but RFC 3986's unreserved characters is encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The V3 algorithm name.
pub const ACS3_HMAC_SHA256: &str = "ACS3-HMAC-SHA256";

/// Percent-encodes `text` the way both signature versions need it
/// (space as `%20`, `*` as `%2A`, `~` kept).
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, RFC3986).to_string()
}

/// `name=value` pairs, encoded and sorted by name (then value), joined with `&`.
fn canonical_query<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(String, String)> = params.map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The V1 string to sign for `method` and every parameter (`Signature` is left out).
pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let query = canonical_query(
        params
            .iter()
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    format!("{method}&%2F&{}", percent_encode(&query))
}

/// HMAC-SHA1 keyed with `secret&` (HMAC takes keys of any length).
fn v1_mac(secret: &str) -> Option<Hmac<sha1::Sha1>> {
    <Hmac<sha1::Sha1> as Mac>::new_from_slice(format!("{secret}&").as_bytes()).ok()
}

/// The V1 signature (base64) of `string_to_sign`.
pub fn v1_sign(secret: &str, string_to_sign: &str) -> String {
    let Some(mut mac) = v1_mac(secret) else {
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64) is the V1 signature of `string_to_sign`; constant time.
pub fn v1_verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Some(mut mac) = v1_mac(secret) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The parts of a V3 `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V3Authorization {
    /// The AccessKeyId (`Credential=`).
    pub access_key_id: String,
    /// Lower-case names of the signed headers, as listed.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

impl V3Authorization {
    /// Parses `ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...`;
    /// `None` when it is not that shape.
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.trim().strip_prefix(ACS3_HMAC_SHA256)?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=')?;
            match key.trim() {
                "Credential" => credential = Some(value.trim().to_string()),
                "SignedHeaders" => signed = Some(value.trim().to_string()),
                "Signature" => signature = Some(value.trim().to_string()),
                _ => {}
            }
        }
        Some(Self {
            access_key_id: credential.filter(|c| !c.is_empty())?,
            signed_headers: signed?
                .split(';')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            signature: signature?,
        })
    }
}

/// The V3 canonical request. `headers` gives every value of a (lower-case)
/// header name as received.
pub fn v3_canonical_request<'a>(
    method: &str,
    path: &str,
    query: &[(String, String)],
    signed_headers: &[String],
    header_values: impl Fn(&str) -> Vec<&'a str>,
    payload_sha256: &str,
) -> String {
    let query = canonical_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut names: Vec<&String> = signed_headers.iter().collect();
    names.sort();
    names.dedup();
    let mut headers = String::new();
    for name in &names {
        let mut values: Vec<&str> = header_values(name).into_iter().map(str::trim).collect();
        values.sort_unstable();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    let signed = names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(";");
    let path = if path.is_empty() { "/" } else { path };
    format!("{method}\n{path}\n{query}\n{headers}\n{signed}\n{payload_sha256}")
}

/// The V3 string to sign of a canonical request.
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ACS3_HMAC_SHA256}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// HMAC-SHA256 keyed with the secret (HMAC takes keys of any length).
fn v3_mac(secret: &str) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()
}

/// The V3 signature (hex) of `string_to_sign`.
pub fn v3_sign(secret: &str, string_to_sign: &str) -> String {
    let Some(mut mac) = v3_mac(secret) else {
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the V3 signature of `string_to_sign`; constant time.
pub fn v3_verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let Some(mut mac) = v3_mac(secret) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// Hex SHA-256 of a body.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn v1_matches_the_documented_example() {
        // The worked example of Alibaba Cloud's RPC signature documentation
        // (DescribeRegions, secret "testsecret").
        let p = params(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        let to_sign = v1_string_to_sign("GET", &p);
        assert_eq!(
            to_sign,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(v1_sign("testsecret", &to_sign), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert!(v1_verify("testsecret", &to_sign, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
        assert!(!v1_verify("testsecreT", &to_sign, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
        assert!(!v1_verify("testsecret", &to_sign, "not base64!"));
    }

    #[test]
    fn encoding_follows_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
    }

    #[test]
    fn v3_authorization_parses_and_verifies() {
        let auth =
            V3Authorization::parse("ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-action,Signature=ab12")
                .expect("parses");
        assert_eq!(auth.access_key_id, "AK");
        assert_eq!(auth.signed_headers, ["host", "x-acs-action"]);
        assert!(V3Authorization::parse("ACS3-HMAC-SHA256 SignedHeaders=a,Signature=b").is_none());
        let canonical = v3_canonical_request(
            "POST",
            "/",
            &params(&[("b", "2 3"), ("a", "1")]),
            &auth.signed_headers,
            |name| if name == "host" { vec![" h "] } else { vec!["Y", "X"] },
            &sha256_hex(b""),
        );
        assert_eq!(
            canonical,
            format!(
                "POST\n/\na=1&b=2%203\nhost:h\nx-acs-action:X,Y\n\nhost;x-acs-action\n{}",
                sha256_hex(b"")
            )
        );
        let to_sign = v3_string_to_sign(&canonical);
        let signature = v3_sign("s", &to_sign);
        assert!(v3_verify("s", &to_sign, &signature));
        assert!(!v3_verify("t", &to_sign, &signature));
    }
}
