//! Response bodies in the cloud API's two formats (CONTRACT §6): JSON by
//! default, XML with `Format=XML`. A [`Node`] keeps its fields in the order
//! written; in XML a list repeats its parent's element name, as the cloud's
//! XML does (`<Items><X>..</X><X>..</X></Items>` for `{"Items":{"X":[..]}}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::codes::Rejection;

/// A response value.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// JSON `null`; an empty element in XML.
    Null,
    /// Fields in order.
    Obj(Vec<(String, Node)>),
    /// A list.
    List(Vec<Node>),
}

impl Node {
    /// An object from `(name, value)` pairs.
    pub fn obj<const N: usize>(fields: [(&str, Node); N]) -> Node {
        Node::Obj(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// A string, or `Null`.
    pub fn opt_str(value: Option<&str>) -> Node {
        value.map_or(Node::Null, |s| Node::Str(s.to_string()))
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Node::Str(s.to_string())
    }
}

impl From<String> for Node {
    fn from(s: String) -> Self {
        Node::Str(s)
    }
}

impl From<u64> for Node {
    fn from(n: u64) -> Self {
        Node::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Node {
    fn from(n: i64) -> Self {
        Node::Int(n)
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Node::Bool(b)
    }
}

/// The response format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/xml`.
    Xml,
}

impl Format {
    /// `Format` as a request gives it (case-insensitive); `None` if unknown.
    pub fn parse(value: Option<&str>) -> Option<Format> {
        match value.map(str::to_ascii_uppercase).as_deref() {
            None | Some("") | Some("JSON") => Some(Format::Json),
            Some("XML") => Some(Format::Xml),
            _ => None,
        }
    }
}

fn json(node: &Node, out: &mut String) {
    match node {
        Node::Str(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Float(f) if f.is_finite() => out.push_str(&serde_json::Value::from(*f).to_string()),
        Node::Float(_) | Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                json(v, out);
            }
            out.push('}');
        }
        Node::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(v, out);
            }
            out.push(']');
        }
    }
}

/// Escapes text for XML content.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn xml_element(name: &str, node: &Node, out: &mut String) {
    if let Node::List(items) = node {
        for item in items {
            xml_element(name, item, out);
        }
        return;
    }
    out.push('<');
    out.push_str(name);
    out.push('>');
    match node {
        Node::Str(s) => escape(s, out),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Float(f) if f.is_finite() => out.push_str(&f.to_string()),
        Node::Float(_) | Node::Null => {}
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Obj(fields) => {
            for (k, v) in fields {
                xml_element(k, v, out);
            }
        }
        Node::List(_) => {}
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Renders `body` (an object) as JSON, or as XML under `root`.
pub fn render(format: Format, root: &str, body: &Node) -> String {
    let mut out = String::new();
    match format {
        Format::Json => json(body, &mut out),
        Format::Xml => xml_element(root, body, &mut out),
    }
    out
}

/// A complete HTTP response.
pub fn respond(status: StatusCode, format: Format, root: &str, body: &Node) -> Response {
    let content_type = match format {
        Format::Json => "application/json;charset=utf-8",
        Format::Xml => "text/xml;charset=utf-8",
    };
    let mut response = (status, render(format, root, body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The contract's error shape, with the code's HTTP status (CONTRACT §5, §6).
pub fn error(format: Format, request_id: &str, host_id: &str, rejection: &Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Node::obj([
        ("RequestId", request_id.into()),
        ("HostId", host_id.into()),
        ("Code", rejection.code.as_str().into()),
        ("Message", rejection.message.as_str().into()),
    ]);
    let mut response = respond(status, format, "Error", &body);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-acs-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_order_and_xml_repeats_list_elements() {
        let body = Node::obj([
            ("ImportId", 2122321u64.into()),
            ("RequestId", "R<&>".into()),
            (
                "Items",
                Node::obj([(
                    "Item",
                    Node::List(vec![Node::obj([("A", 1u64.into())]), Node::obj([("A", Node::Null)])]),
                )]),
            ),
        ]);
        assert_eq!(
            render(Format::Json, "X", &body),
            r#"{"ImportId":2122321,"RequestId":"R<&>","Items":{"Item":[{"A":1},{"A":null}]}}"#
        );
        assert_eq!(
            render(Format::Xml, "X", &body),
            "<X><ImportId>2122321</ImportId><RequestId>R&lt;&amp;&gt;</RequestId><Items><Item><A>1</A></Item><Item><A></A></Item></Items></X>"
        );
        assert_eq!(Format::parse(Some("xml")), Some(Format::Xml));
        assert_eq!(Format::parse(None), Some(Format::Json));
        assert_eq!(Format::parse(Some("yaml")), None);
    }
}
