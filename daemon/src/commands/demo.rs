//! `dbferry demo`: the quickstart behind `make demo` (filled in with the test kit).

/// Runs the demo; returns the exit code.
pub fn demo(_rows: u64) -> i32 {
    eprintln!("error: the demo is not available in this build yet");
    1
}
