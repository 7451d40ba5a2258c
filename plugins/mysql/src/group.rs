//! Many small tables at once: one query of several `SELECT`s reads them,
//! one query of several `LOAD DATA LOCAL INFILE`s writes them. Copied one
//! by one, each table of a database of many small ones cost five calls
//! across the plugin boundary and three round trips of its own.
//!
//! Each load autocommits on its own: a group holds only whole tables that
//! this import created and writes for the first time (as the one-by-one
//! writer's autocommitted loads do), so a load that failed, or raised a
//! warning that must be looked at, leaves only its own table to redo.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use dbferry_plugin_abi::protocol::{ChunkStats, ErrorKind, PluginError};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use mysql_async::prelude::{GlobalHandler, Queryable};
use mysql_async::{Conn, InfileData, LocalInfileError};

use crate::conn::{Lease, Pool, Role, ServerFacts};
use crate::encode::push_row;
use crate::error::{Context, Error, Result};
use crate::wire::WireConn;
use crate::writer::slice_len;

/// Reads the `SELECT`s as one query on a wire connection: the payloads back
/// to back, and a part per statement read. The statement whose rows would
/// take the payload past `max_bytes` ends the group; it and the rest are
/// read and dropped, so the connection is ready for the next query.
pub async fn read_wire(conn: &mut WireConn, selects: &[String], max_bytes: usize) -> Result<(Bytes, Vec<ChunkStats>)> {
    let mut out = BytesMut::with_capacity(max_bytes.min(256 << 10));
    let mut parts = Vec::with_capacity(selects.len());
    let sql = selects.join(";\n");
    for i in 0..selects.len() {
        let columns = if i == 0 {
            conn.start_rows(&sql).await
        } else {
            conn.next_result().await
        }
        .map_err(|e| e.during(|| format!("running {}", selects[i])))?;
        let start = out.len();
        let (rows, ended) = conn
            .encode_result(columns, &mut out, max_bytes)
            .await
            .map_err(|e| e.during(|| format!("reading rows of {}", selects[i])))?;
        if !ended {
            out.truncate(start);
            conn.discard_results()
                .await
                .map_err(|e| e.during(|| "dropping the rest of a group's rows".into()))?;
            break;
        }
        parts.push(part(out.len() - start, rows));
        if i + 1 < selects.len() && !conn.more_results() {
            return Err(Error::Internal(format!(
                "a group of {} SELECTs returned {} results",
                selects.len(),
                i + 1
            )));
        }
    }
    Ok((out.freeze(), parts))
}

/// [`read_wire`] over mysql_async. `own_snapshot`: the connection is not
/// part of a shared snapshot, so the group reads in a snapshot of its own.
pub async fn read_driver(
    conn: &mut Conn,
    selects: &[String],
    max_bytes: usize,
    own_snapshot: bool,
) -> Result<(Bytes, Vec<ChunkStats>)> {
    if own_snapshot {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .ctx(|| "starting a snapshot".into())?;
    }
    let mut out = BytesMut::with_capacity(max_bytes.min(256 << 10));
    let mut parts = Vec::with_capacity(selects.len());
    {
        let mut result = conn
            .query_iter(selects.join(";\n"))
            .await
            .ctx(|| format!("running {}", selects.first().map_or("", String::as_str)))?;
        let mut full = false;
        for select in selects {
            let (start, mut rows) = (out.len(), 0u64);
            // `next` ends each result with one `None` and moves on to the next.
            while let Some(row) = result.next().await.ctx(|| format!("reading rows of {select}"))? {
                if !full {
                    push_row(&mut out, &row);
                    rows += 1;
                    if out.len() >= max_bytes {
                        full = true;
                        out.truncate(start);
                    }
                }
            }
            if !full {
                parts.push(part(out.len() - start, rows));
            }
        }
        result.drop_result().await.ctx(|| "ending a group's query".into())?;
    }
    if own_snapshot {
        conn.query_drop("COMMIT").await.ctx(|| "ending the snapshot".into())?;
    }
    Ok((out.freeze(), parts))
}

fn part(bytes: usize, rows: u64) -> ChunkStats {
    ChunkStats {
        bytes: bytes as u64,
        rows,
    }
}

/// One table's load in a group write.
pub struct Load {
    /// The `LOAD DATA` statement, naming `file`.
    pub sql: String,
    /// The file name the statement asks for.
    pub file: String,
    /// The table's payload.
    pub data: Bytes,
    /// Rows in the payload.
    pub rows: u64,
    /// The table, for errors.
    pub table: String,
}

/// A unique file name for a load's payload.
pub fn file_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("dbferry{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs the loads as one query on a writer connection; one outcome per
/// load, in order. A load that failed ends the query: it gets its error and
/// the loads after it a "not run". A load whose row count differs, or that
/// raised warnings, committed but is reported failed, so the host writes its
/// table again on its own, where warnings are looked at one by one.
pub async fn write(
    pool: &Arc<Pool>,
    loads: Vec<Load>,
    target: &ServerFacts,
) -> Result<Vec<std::result::Result<u64, PluginError>>> {
    let mut lease = pool.get(Role::Writer).await?;
    let shelved = pool.infiles().shelve(
        loads.iter().map(|l| (l.file.clone(), l.data.clone())),
        slice_len(target),
    );
    let (outcomes, clean) = run_loads(&mut lease, &loads).await;
    drop(shelved);
    if clean {
        lease.release();
    }
    Ok(outcomes)
}

/// The loads' outcomes, and whether the connection is ready for reuse.
async fn run_loads(lease: &mut Lease, loads: &[Load]) -> (Vec<std::result::Result<u64, PluginError>>, bool) {
    let conn = match lease.conn() {
        Ok(conn) => conn,
        Err(e) => return (not_run(loads.len(), &PluginError::from(e)), false),
    };
    let sql: Vec<&str> = loads.iter().map(|l| l.sql.as_str()).collect();
    let mut outcomes = Vec::with_capacity(loads.len());
    let mut result = match conn.query_iter(sql.join(";\n")).await {
        Ok(result) => result,
        Err(e) => {
            outcomes.extend(loads.first().map(|load| Err(failed(load, e))));
            outcomes.extend(not_run(loads.len().saturating_sub(1), &earlier_failed()));
            return (outcomes, false);
        }
    };
    for load in loads {
        // The counts are load i's while its result is the current one. A
        // server error of load i is kept by mysql_async until then too, and
        // comes out of this call instead of the result; the counts read
        // first are then stale and dropped.
        let (accepted, warnings) = (result.affected_rows(), result.warnings());
        if let Err(e) = result.next().await {
            outcomes.push(Err(failed(load, e)));
            outcomes.extend(not_run(loads.len() - outcomes.len(), &earlier_failed()));
            return (outcomes, false);
        }
        outcomes.push(checked(load, accepted, warnings));
    }
    let clean = result.drop_result().await.is_ok();
    (outcomes, clean)
}

fn failed(load: &Load, source: mysql_async::Error) -> PluginError {
    PluginError::from(Error::Sql {
        context: format!("loading {}", load.table),
        source,
    })
}

fn checked(load: &Load, accepted: u64, warnings: u16) -> std::result::Result<u64, PluginError> {
    if warnings > 0 {
        return Err(PluginError::new(
            ErrorKind::Data,
            format!("loading {} raised {warnings} warning(s)", load.table),
        ));
    }
    if accepted != load.rows {
        return Err(PluginError::new(
            ErrorKind::Data,
            format!(
                "the target accepted {accepted} rows of {} but {} were sent",
                load.table, load.rows
            ),
        ));
    }
    Ok(accepted)
}

fn earlier_failed() -> PluginError {
    PluginError::new(ErrorKind::Internal, "not run: a load before it in its group failed")
}

fn not_run(count: usize, why: &PluginError) -> Vec<std::result::Result<u64, PluginError>> {
    vec![Err(why.clone()); count]
}

/// Payloads waiting for the server to ask for them, by the file name their
/// `LOAD DATA` statement gives: the pool's global infile handler. Only
/// names put here are ever served; nothing is read from disk.
#[derive(Clone, Default)]
pub struct InfileShelf {
    /// Each payload with the bytes it is sent in per packet.
    payloads: Arc<Mutex<HashMap<String, (Bytes, usize)>>>,
}

impl InfileShelf {
    /// Puts `payloads` on the shelf, to be sent in packets of `slice`
    /// bytes, until the returned guard is dropped.
    fn shelve(&self, payloads: impl Iterator<Item = (String, Bytes)>, slice: usize) -> Shelved {
        let mut shelf = self.payloads.lock().unwrap_or_else(PoisonError::into_inner);
        let names = payloads
            .map(|(name, data)| {
                shelf.insert(name.clone(), (data, slice.max(1)));
                name
            })
            .collect();
        Shelved {
            shelf: self.clone(),
            names,
        }
    }
}

/// Takes a group's payloads off the shelf again, served or not.
struct Shelved {
    shelf: InfileShelf,
    names: Vec<String>,
}

impl Drop for Shelved {
    fn drop(&mut self) {
        let mut shelf = self.shelf.payloads.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &self.names {
            shelf.remove(name);
        }
    }
}

impl GlobalHandler for InfileShelf {
    fn handle(&self, file_name: &[u8]) -> BoxFuture<'static, std::result::Result<InfileData, LocalInfileError>> {
        let payload = std::str::from_utf8(file_name).ok().and_then(|name| {
            self.payloads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name)
        });
        // An error here would leave the server waiting for the file; an
        // error item instead ends the file empty and fails the load.
        let items: Vec<std::io::Result<Bytes>> = match payload {
            Some((data, slice)) => (0..data.len())
                .step_by(slice)
                .map(|at| Ok(data.slice(at..(at + slice).min(data.len()))))
                .collect(),
            None => vec![Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "the server asked for {}, which dbferry did not offer",
                    String::from_utf8_lossy(file_name)
                ),
            ))],
        };
        Box::pin(async move { Ok(futures_util::stream::iter(items).boxed()) })
    }
}
