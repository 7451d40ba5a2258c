//! How `run` shows an import: JSON lines, progress bars, or nothing.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::import::{EventSink, ImportEvent};

/// `--json`: one JSON object per event on stdout.
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &ImportEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// No terminal and no `--json`: phases and warnings as plain lines on stderr.
pub struct Quiet;

impl EventSink for Quiet {
    fn emit(&self, event: &ImportEvent) {
        match event {
            ImportEvent::Phase { phase } => eprintln!("dbferry: {phase}"),
            ImportEvent::Warning { message } => eprintln!("warning: {message}"),
            _ => {}
        }
    }
}

/// A terminal: one bar per database and one overall, with rows/s, MB/s, ETA.
pub struct ProgressBars {
    multi: MultiProgress,
    state: Mutex<BarState>,
}

struct BarState {
    overall: Option<ProgressBar>,
    databases: HashMap<String, ProgressBar>,
    started: Instant,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl ProgressBars {
    /// Bars on stderr.
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new(BarState {
                overall: None,
                databases: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }

    /// Leaves the bars on screen as they ended.
    pub fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for bar in state.databases.values().chain(state.overall.iter()) {
            bar.abandon();
        }
    }
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl EventSink for ProgressBars {
    fn emit(&self, event: &ImportEvent) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            ImportEvent::Phase { phase } => {
                let _ = self.multi.println(format!("▸ {phase}"));
            }
            ImportEvent::Warning { message } => {
                let _ = self.multi.println(format!("warning: {message}"));
            }
            ImportEvent::Transport { .. } => {}
            ImportEvent::Planned { databases, .. } => {
                let db_style = style("{prefix:>16} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>4} {msg}");
                for db in databases {
                    let bar = self.multi.add(ProgressBar::new(db.estimated_bytes.max(1)));
                    bar.set_style(db_style.clone());
                    bar.set_prefix(db.database.clone());
                    state.databases.insert(db.database.clone(), bar);
                }
                let total: u64 = databases.iter().map(|d| d.estimated_bytes).sum();
                let overall = self.multi.add(ProgressBar::new(total.max(1)));
                overall.set_style(style("{prefix:>16} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>4} {msg}"));
                overall.set_prefix("overall");
                state.overall = Some(overall);
                state.started = Instant::now();
            }
            ImportEvent::Progress {
                databases, rows, bytes, ..
            } => {
                let seconds = state.started.elapsed().as_secs_f64().max(0.001);
                for db in databases {
                    if let Some(bar) = state.databases.get(&db.database) {
                        // Size estimates are statistics; grow the bar rather than overflow it.
                        if db.bytes > bar.length().unwrap_or(0) {
                            bar.set_length(db.bytes);
                        }
                        bar.set_position(db.bytes);
                        bar.set_message(format!("{} rows ({:.0} rows/s)", db.rows, db.rows as f64 / seconds));
                    }
                }
                if let Some(bar) = &state.overall {
                    if *bytes > bar.length().unwrap_or(0) {
                        bar.set_length(*bytes);
                    }
                    bar.set_position(*bytes);
                    bar.set_message(format!("{rows} rows ({:.0} rows/s)", *rows as f64 / seconds));
                }
            }
            ImportEvent::Accepted { import_id, request_id } => {
                let _ = self.multi.println(format!("import {import_id} (request {request_id})"));
            }
        }
    }
}
