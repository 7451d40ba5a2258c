//! `dbferry status` and `dbferry cancel`: clients of a running daemon's JSON API.

use serde_json::Value;

fn get(url: &str) -> Result<Value, String> {
    let mut response = ureq::get(url).call().map_err(|e| format!("{url}: {e}"))?;
    response
        .body_mut()
        .read_json::<Value>()
        .map_err(|e| format!("{url}: {e}"))
}

/// Prints the daemon's imports (or one); exit 1 if the daemon cannot be asked.
pub fn status(endpoint: &str, import_id: Option<u64>, json: bool) -> i32 {
    let base = endpoint.trim_end_matches('/');
    let url = match import_id {
        Some(id) => format!("{base}/v1/imports/{id}"),
        None => format!("{base}/v1/imports"),
    };
    let value = match get(&url) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if json {
        println!("{value}");
        return 0;
    }
    let rows: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    println!(
        "{:>8}  {:<10} {:<20} {:<20} {:>6} {:>12} {:>14}  CODE / MESSAGE",
        "IMPORT", "STATUS", "SOURCE", "TARGET", "PROG", "ROWS", "BYTES"
    );
    for row in rows {
        let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let number = |k: &str| row.get(k).and_then(Value::as_u64).unwrap_or(0);
        let progress = row.get("Progress").and_then(Value::as_f64).unwrap_or(0.0);
        let detail = match (text("Code"), text("Message")) {
            (code, message) if code.is_empty() => message,
            (code, message) => format!("{code}: {message}"),
        };
        println!(
            "{:>8}  {:<10} {:<20} {:<20} {:>5.0}% {:>12} {:>14}  {}",
            number("ImportId"),
            text("Status"),
            text("Source"),
            text("Target"),
            progress * 100.0,
            number("Rows"),
            number("Bytes"),
            detail.lines().next().unwrap_or("")
        );
    }
    0
}

/// Asks the daemon to cancel an import; exit 1 if it refuses.
pub fn cancel(endpoint: &str, import_id: u64) -> i32 {
    let url = format!("{}/v1/imports/{import_id}/cancel", endpoint.trim_end_matches('/'));
    match ureq::post(&url).send_empty() {
        Ok(_) => {
            println!("cancel requested for import {import_id}");
            0
        }
        Err(e) => {
            eprintln!("error: {url}: {e}");
            1
        }
    }
}

/// Asks the daemon to resume an import; exit 1 if it refuses.
pub fn resume(endpoint: &str, import_id: u64) -> i32 {
    let url = format!("{}/v1/imports/{import_id}/resume", endpoint.trim_end_matches('/'));
    match ureq::post(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
    {
        Ok(response) if response.status().is_success() => {
            println!("import {import_id} resumed");
            0
        }
        Ok(mut response) => {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            eprintln!("error: {url}: {} {body}", response.status());
            1
        }
        Err(e) => {
            eprintln!("error: {url}: {e}");
            1
        }
    }
}
