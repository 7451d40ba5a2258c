//! Which way a chunk is written: TDS bulk load through a staging table
//! ([`crate::writer`]), or, into a Babelfish target whose PostgreSQL port
//! the config names, `COPY` ([`crate::pgload`]).

use std::sync::Arc;

use bytes::Bytes;
use dbferry_plugin_abi::plugin::Writer;
use dbferry_plugin_abi::protocol::{PluginError, WriteRequest, WriteSummary};

use crate::conn::{runtime, Pool};
use crate::detail::TableDetail;
use crate::error::Result;
use crate::flavour::Flavour;
use crate::pgload::writer::CopyWriter;
use crate::pgload::{self, PgPort};
use crate::range::predicate;
use crate::writer::SqlServerWriter;

/// A chunk being written, one way or the other.
pub enum ChunkWriter {
    /// TDS bulk load into a staging table, then one `INSERT ... SELECT`.
    Bulk(SqlServerWriter),
    /// `COPY` through Babelfish's PostgreSQL port.
    Copy(CopyWriter),
}

impl ChunkWriter {
    /// Starts writing the chunk `request` names: by `COPY` when `postgres`
    /// is set, the table's columns all travel as text `COPY` reads, and the
    /// chunk is the whole table (a redo clears it whole); else over TDS, on
    /// a connection of `pool` (only then taken).
    pub async fn open(
        pool: &Arc<Pool>,
        request: &WriteRequest,
        detail: &TableDetail,
        flavour: Flavour,
        postgres: Option<&PgPort>,
    ) -> Result<Self> {
        if let Some(port) = postgres {
            if pgload::carries(detail) && predicate(detail, &request.range)?.is_none() {
                if let Some(writer) = CopyWriter::open(port, request, detail).await? {
                    return Ok(ChunkWriter::Copy(writer));
                }
            }
            tracing::info!(table = %detail.two_part(), "written over TDS: COPY cannot carry it");
        }
        let lease = pool.get().await?;
        Ok(ChunkWriter::Bulk(
            SqlServerWriter::start(lease, request, detail, flavour).await?,
        ))
    }
}

impl Writer for ChunkWriter {
    fn write(&mut self, batch: Bytes, rows: u64) -> std::result::Result<(), PluginError> {
        Ok(match self {
            ChunkWriter::Bulk(w) => w.feed.send(batch, rows),
            ChunkWriter::Copy(w) => w.feed.send(batch, rows),
        }?)
    }

    fn commit(self) -> std::result::Result<WriteSummary, PluginError> {
        let rt = runtime()?;
        Ok(match self {
            ChunkWriter::Bulk(w) => rt.block_on(w.commit()),
            ChunkWriter::Copy(w) => rt.block_on(w.commit()),
        }?)
    }

    fn abort(self) {
        match self {
            ChunkWriter::Bulk(mut w) => w.feed.abort(),
            ChunkWriter::Copy(mut w) => w.feed.abort(),
        }
    }
}
