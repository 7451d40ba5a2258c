//! The batch format between this plugin's reader and writer.
//!
//! Used only between a sqlserver reader and a sqlserver writer (the host
//! passes batches through untouched). Little-endian throughout:
//!
//! ```text
//! batch  := "DFS1" width:u16 record*       width = values per row
//! record := row | piece
//! row    := value{width}
//! piece  := 20 index:u16 value             a part of the row's value at
//!                                          `index`, tagged text or bytes
//! value  := tag:u8 payload
//!   0  NULL            (no payload)
//!   1  tinyint         u8
//!   2  smallint        i16
//!   3  int             i32
//!   4  bigint          i64
//!   5  real            f32 (bit pattern)
//!   6  float           f64 (bit pattern)
//!   7  bit             u8 (0 or 1)
//!   8  text            len:u32 UTF-8 bytes
//!   9  bytes           len:u32 bytes
//!   10 uniqueidentifier 16 bytes (RFC 4122 order)
//!   11 decimal         value:i128 scale:u8
//!   12 datetime        days:i32 fragments:u32 (1/300 s)
//!   13 smalldatetime   days:u16 minutes:u16
//!   14 date            days:u32 (since 0001-01-01)
//!   15 time            increments:u64 scale:u8
//!   16 datetime2       days:u32 increments:u64 scale:u8
//!   17 datetimeoffset  days:u32 increments:u64 scale:u8 offset_minutes:i16
//!   18 xml             len:u32 UTF-8 bytes
//!   19 pending         (no payload) the value follows in pieces
//! ```
//!
//! A row with pending values is followed by their pieces, in order (see
//! [`crate::pieces`]); a piece always belongs to the last row before it.
//!
//! Every value is length-prefixed or fixed-size, so a batch is parsed
//! without any schema; the writer checks `width` against its table. Values
//! are the raw TDS quantities, so date/time and decimal values round-trip
//! bit for bit.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, Uuid};

use crate::error::{Error, Result};

/// The batch header's magic.
pub const MAGIC: &[u8; 4] = b"DFS1";

mod tag {
    pub const NULL: u8 = 0;
    pub const U8: u8 = 1;
    pub const I16: u8 = 2;
    pub const I32: u8 = 3;
    pub const I64: u8 = 4;
    pub const F32: u8 = 5;
    pub const F64: u8 = 6;
    pub const BIT: u8 = 7;
    pub const TEXT: u8 = 8;
    pub const BYTES: u8 = 9;
    pub const GUID: u8 = 10;
    pub const NUMERIC: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const SMALLDATETIME: u8 = 13;
    pub const DATE: u8 = 14;
    pub const TIME: u8 = 15;
    pub const DATETIME2: u8 = 16;
    pub const DATETIMEOFFSET: u8 = 17;
    pub const XML: u8 = 18;
    pub const PENDING: u8 = 19;
    pub const PIECE: u8 = 20;
}

/// One record of a batch.
#[derive(Debug)]
pub enum Record {
    /// A row: `width` values, those at `pending` (ascending) placeholders
    /// for values that follow in pieces.
    Row {
        /// The values.
        values: Vec<ColumnData<'static>>,
        /// Indexes of the values that follow in pieces.
        pending: Vec<usize>,
    },
    /// A piece of the last row's value at `index`.
    Piece {
        /// The value's index in its row.
        index: usize,
        /// Text or bytes to append.
        data: ColumnData<'static>,
    },
}

/// Starts a batch of rows `width` values wide.
pub fn start_batch(buf: &mut BytesMut, width: usize) -> Result<()> {
    let width = u16::try_from(width).map_err(|_| Error::Unsupported(format!("{width} columns are too many")))?;
    buf.put_slice(MAGIC);
    buf.put_u16_le(width);
    Ok(())
}

fn put_len(buf: &mut BytesMut, len: usize) -> Result<()> {
    let len = u32::try_from(len).map_err(|_| Error::Data(format!("a value of {len} bytes exceeds 4 GiB")))?;
    buf.put_u32_le(len);
    Ok(())
}

/// Appends one value.
pub fn put_value(buf: &mut BytesMut, value: &ColumnData<'_>) -> Result<()> {
    match value {
        ColumnData::U8(Some(v)) => {
            buf.put_u8(tag::U8);
            buf.put_u8(*v);
        }
        ColumnData::I16(Some(v)) => {
            buf.put_u8(tag::I16);
            buf.put_i16_le(*v);
        }
        ColumnData::I32(Some(v)) => {
            buf.put_u8(tag::I32);
            buf.put_i32_le(*v);
        }
        ColumnData::I64(Some(v)) => {
            buf.put_u8(tag::I64);
            buf.put_i64_le(*v);
        }
        ColumnData::F32(Some(v)) => {
            buf.put_u8(tag::F32);
            buf.put_u32_le(v.to_bits());
        }
        ColumnData::F64(Some(v)) => {
            buf.put_u8(tag::F64);
            buf.put_u64_le(v.to_bits());
        }
        ColumnData::Bit(Some(v)) => {
            buf.put_u8(tag::BIT);
            buf.put_u8(u8::from(*v));
        }
        ColumnData::String(Some(s)) => {
            buf.put_u8(tag::TEXT);
            put_len(buf, s.len())?;
            buf.put_slice(s.as_bytes());
        }
        ColumnData::Binary(Some(b)) => {
            buf.put_u8(tag::BYTES);
            put_len(buf, b.len())?;
            buf.put_slice(b);
        }
        ColumnData::Guid(Some(g)) => {
            buf.put_u8(tag::GUID);
            buf.put_slice(g.as_bytes());
        }
        ColumnData::Numeric(Some(n)) => {
            buf.put_u8(tag::NUMERIC);
            buf.put_i128_le(n.value());
            buf.put_u8(n.scale());
        }
        ColumnData::DateTime(Some(d)) => {
            buf.put_u8(tag::DATETIME);
            buf.put_i32_le(d.days());
            buf.put_u32_le(d.seconds_fragments());
        }
        ColumnData::SmallDateTime(Some(d)) => {
            buf.put_u8(tag::SMALLDATETIME);
            buf.put_u16_le(d.days());
            buf.put_u16_le(d.seconds_fragments());
        }
        ColumnData::Date(Some(d)) => {
            buf.put_u8(tag::DATE);
            buf.put_u32_le(d.days());
        }
        ColumnData::Time(Some(t)) => {
            buf.put_u8(tag::TIME);
            buf.put_u64_le(t.increments());
            buf.put_u8(t.scale());
        }
        ColumnData::DateTime2(Some(d)) => {
            buf.put_u8(tag::DATETIME2);
            put_datetime2(buf, d);
        }
        ColumnData::DateTimeOffset(Some(d)) => {
            buf.put_u8(tag::DATETIMEOFFSET);
            put_datetime2(buf, &d.datetime2());
            buf.put_i16_le(d.offset());
        }
        ColumnData::Xml(Some(x)) => {
            let text = x.as_ref().clone().into_string();
            buf.put_u8(tag::XML);
            put_len(buf, text.len())?;
            buf.put_slice(text.as_bytes());
        }
        _ => buf.put_u8(tag::NULL),
    }
    Ok(())
}

/// Appends a placeholder for a value that follows in pieces.
pub fn put_pending(buf: &mut BytesMut) {
    buf.put_u8(tag::PENDING);
}

/// Appends a piece of the last row's value at `index`: text or bytes.
pub fn put_piece(buf: &mut BytesMut, index: usize, data: &ColumnData<'_>) -> Result<()> {
    if !matches!(data, ColumnData::String(Some(_)) | ColumnData::Binary(Some(_))) {
        return Err(Error::Internal("a piece is text or bytes".into()));
    }
    let index = u16::try_from(index).map_err(|_| Error::Internal(format!("value index {index} out of range")))?;
    buf.put_u8(tag::PIECE);
    buf.put_u16_le(index);
    put_value(buf, data)
}

fn put_datetime2(buf: &mut BytesMut, d: &DateTime2) {
    buf.put_u32_le(d.date().days());
    buf.put_u64_le(d.time().increments());
    buf.put_u8(d.time().scale());
}

/// Reads batches value by value.
pub struct Decoder {
    buf: Bytes,
    width: usize,
}

fn short() -> Error {
    Error::Invalid("a batch ends in the middle of a value".into())
}

impl Decoder {
    /// Checks the header of `batch`.
    pub fn new(mut batch: Bytes) -> Result<Self> {
        if batch.len() < 6 || &batch[..4] != MAGIC {
            return Err(Error::Invalid("not a sqlserver batch (bad header)".into()));
        }
        batch.advance(4);
        let width = usize::from(batch.get_u16_le());
        Ok(Self { buf: batch, width })
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether every row was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<()> {
        if self.buf.remaining() < n {
            Err(short())
        } else {
            Ok(())
        }
    }

    fn take(&mut self) -> Result<Bytes> {
        self.need(4)?;
        let len = self.buf.get_u32_le() as usize;
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    fn text(&mut self) -> Result<String> {
        let bytes = self.take()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Invalid("a text value is not UTF-8".into()))
    }

    fn datetime2(&mut self) -> Result<DateTime2> {
        self.need(13)?;
        let days = self.buf.get_u32_le();
        let increments = self.buf.get_u64_le();
        let scale = self.buf.get_u8();
        Ok(DateTime2::new(Date::new(days), Time::new(increments, scale)))
    }

    /// The next value.
    pub fn value(&mut self) -> Result<ColumnData<'static>> {
        self.need(1)?;
        let tag = self.buf.get_u8();
        let fixed = match tag {
            tag::U8 | tag::BIT => 1,
            tag::I16 => 2,
            tag::I32 | tag::F32 | tag::DATE | tag::SMALLDATETIME => 4,
            tag::I64 | tag::F64 | tag::DATETIME => 8,
            tag::TIME => 9,
            tag::GUID => 16,
            tag::NUMERIC => 17,
            _ => 0,
        };
        self.need(fixed)?;
        Ok(match tag {
            tag::NULL => ColumnData::I32(None),
            tag::U8 => ColumnData::U8(Some(self.buf.get_u8())),
            tag::I16 => ColumnData::I16(Some(self.buf.get_i16_le())),
            tag::I32 => ColumnData::I32(Some(self.buf.get_i32_le())),
            tag::I64 => ColumnData::I64(Some(self.buf.get_i64_le())),
            tag::F32 => ColumnData::F32(Some(f32::from_bits(self.buf.get_u32_le()))),
            tag::F64 => ColumnData::F64(Some(f64::from_bits(self.buf.get_u64_le()))),
            tag::BIT => ColumnData::Bit(Some(self.buf.get_u8() != 0)),
            tag::TEXT => ColumnData::String(Some(Cow::Owned(self.text()?))),
            tag::BYTES => ColumnData::Binary(Some(Cow::Owned(self.take()?.to_vec()))),
            tag::GUID => {
                let mut raw = [0u8; 16];
                self.buf.copy_to_slice(&mut raw);
                ColumnData::Guid(Some(Uuid::from_bytes(raw)))
            }
            tag::NUMERIC => {
                let value = self.buf.get_i128_le();
                let scale = self.buf.get_u8();
                ColumnData::Numeric(Some(Numeric::new_with_scale(value, scale)))
            }
            tag::DATETIME => {
                let days = self.buf.get_i32_le();
                let fragments = self.buf.get_u32_le();
                ColumnData::DateTime(Some(DateTime::new(days, fragments)))
            }
            tag::SMALLDATETIME => {
                let days = self.buf.get_u16_le();
                let minutes = self.buf.get_u16_le();
                ColumnData::SmallDateTime(Some(SmallDateTime::new(days, minutes)))
            }
            tag::DATE => ColumnData::Date(Some(Date::new(self.buf.get_u32_le()))),
            tag::TIME => {
                let increments = self.buf.get_u64_le();
                let scale = self.buf.get_u8();
                ColumnData::Time(Some(Time::new(increments, scale)))
            }
            tag::DATETIME2 => ColumnData::DateTime2(Some(self.datetime2()?)),
            tag::DATETIMEOFFSET => {
                let dt = self.datetime2()?;
                self.need(2)?;
                let offset = self.buf.get_i16_le();
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(dt, offset)))
            }
            tag::XML => ColumnData::Xml(Some(Cow::Owned(XmlData::new(self.text()?)))),
            other => return Err(Error::Invalid(format!("unknown value tag {other} in a batch"))),
        })
    }

    /// The next record, `None` at the end.
    pub fn record(&mut self) -> Result<Option<Record>> {
        if self.is_empty() {
            return Ok(None);
        }
        if self.buf[0] == tag::PIECE {
            self.need(3)?;
            self.buf.advance(1);
            let index = usize::from(self.buf.get_u16_le());
            if index >= self.width {
                return Err(Error::Invalid(format!(
                    "a piece of value {index} in a row of {}",
                    self.width
                )));
            }
            let data = self.value()?;
            if !matches!(data, ColumnData::String(Some(_)) | ColumnData::Binary(Some(_))) {
                return Err(Error::Invalid("a piece is neither text nor bytes".into()));
            }
            return Ok(Some(Record::Piece { index, data }));
        }
        let mut values = Vec::with_capacity(self.width);
        let mut pending = Vec::new();
        for index in 0..self.width {
            if self.buf.first() == Some(&tag::PENDING) {
                self.buf.advance(1);
                pending.push(index);
                values.push(ColumnData::I32(None));
            } else {
                values.push(self.value()?);
            }
        }
        Ok(Some(Record::Row { values, pending }))
    }

    /// The next row, `None` at the end; a piece or a pending value is an error.
    pub fn row(&mut self) -> Result<Option<Vec<ColumnData<'static>>>> {
        match self.record()? {
            None => Ok(None),
            Some(Record::Row { values, pending }) if pending.is_empty() => Ok(Some(values)),
            Some(_) => Err(Error::Invalid("a batch holds pieces where rows were expected".into())),
        }
    }
}

/// A NULL of the transport type, for typed NULLs where tiberius needs them.
pub fn is_null(value: &ColumnData<'_>) -> bool {
    matches!(
        value,
        ColumnData::U8(None)
            | ColumnData::I16(None)
            | ColumnData::I32(None)
            | ColumnData::I64(None)
            | ColumnData::F32(None)
            | ColumnData::F64(None)
            | ColumnData::Bit(None)
            | ColumnData::String(None)
            | ColumnData::Guid(None)
            | ColumnData::Binary(None)
            | ColumnData::Numeric(None)
            | ColumnData::Xml(None)
            | ColumnData::DateTime(None)
            | ColumnData::SmallDateTime(None)
            | ColumnData::Time(None)
            | ColumnData::Date(None)
            | ColumnData::DateTime2(None)
            | ColumnData::DateTimeOffset(None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value() -> Vec<ColumnData<'static>> {
        vec![
            ColumnData::Bit(Some(true)),
            ColumnData::Bit(Some(false)),
            ColumnData::U8(Some(255)),
            ColumnData::I16(Some(i16::MIN)),
            ColumnData::I32(Some(-7)),
            ColumnData::I64(Some(i64::MAX)),
            ColumnData::F32(Some(f32::MIN_POSITIVE)),
            ColumnData::F64(Some(-0.1)),
            ColumnData::F64(Some(f64::MAX)),
            // decimal(38,10) at its extreme, money as decimal(19,4).
            ColumnData::Numeric(Some(Numeric::new_with_scale(-(10i128.pow(38) - 1), 10))),
            ColumnData::Numeric(Some(Numeric::new_with_scale(9_223_372_036_854_775_807, 4))),
            ColumnData::Date(Some(Date::new(3_652_058))),
            ColumnData::Time(Some(Time::new(863_999_999_999, 7))),
            ColumnData::DateTime(Some(DateTime::new(-53_690, 25_919_999))),
            ColumnData::SmallDateTime(Some(SmallDateTime::new(65_535, 1439))),
            ColumnData::DateTime2(Some(DateTime2::new(Date::new(0), Time::new(1, 7)))),
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                DateTime2::new(Date::new(738_000), Time::new(12_345, 3)),
                -840,
            ))),
            ColumnData::String(Some(Cow::Owned("naïve ] ' \u{1F600} \0".into()))),
            ColumnData::String(Some(Cow::Owned(String::new()))),
            ColumnData::Binary(Some(Cow::Owned(vec![0, 1, 255]))),
            ColumnData::Binary(Some(Cow::Owned(Vec::new()))),
            ColumnData::Guid(Some(Uuid::from_bytes([7; 16]))),
            ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a b=\"1\"/>")))),
            ColumnData::String(None),
        ]
    }

    #[test]
    fn every_value_round_trips_bit_for_bit() {
        let values = every_value();
        let mut buf = BytesMut::new();
        start_batch(&mut buf, values.len()).expect("header");
        for _ in 0..3 {
            for v in &values {
                put_value(&mut buf, v).expect("encode");
            }
        }
        let mut decoder = Decoder::new(buf.freeze()).expect("decoder");
        assert_eq!(decoder.width(), values.len());
        let mut rows = 0;
        while let Some(row) = decoder.row().expect("row") {
            rows += 1;
            for (got, want) in row.iter().zip(&values) {
                if is_null(want) {
                    assert!(is_null(got));
                } else {
                    assert_eq!(format!("{got:?}"), format!("{want:?}"));
                }
            }
        }
        assert_eq!(rows, 3);
    }

    #[test]
    fn large_values_pass_and_truncation_is_detected() {
        let big = vec![0xAB_u8; 64 << 20];
        let mut buf = BytesMut::new();
        start_batch(&mut buf, 1).expect("header");
        put_value(&mut buf, &ColumnData::Binary(Some(Cow::Borrowed(&big)))).expect("encode");
        let bytes = buf.freeze();
        let mut decoder = Decoder::new(bytes.clone()).expect("decoder");
        match decoder.row().expect("row").as_deref() {
            Some([ColumnData::Binary(Some(b))]) => assert_eq!(b.len(), 64 << 20),
            other => panic!("unexpected {:?}", other.map(|r| r.len())),
        }
        let mut cut = Decoder::new(bytes.slice(..bytes.len() - 1)).expect("decoder");
        assert!(cut.row().is_err());
        assert!(Decoder::new(Bytes::from_static(b"XXXX\x01\x00")).is_err());
        let mut bad = Decoder::new(Bytes::from_static(b"DFS1\x01\x00\xFE")).expect("decoder");
        assert!(bad.row().is_err());
    }

    #[test]
    fn pieces_follow_their_row_and_belong_to_a_value_of_it() {
        let mut buf = BytesMut::new();
        start_batch(&mut buf, 3).expect("header");
        put_value(&mut buf, &ColumnData::I32(Some(7))).expect("key");
        put_pending(&mut buf);
        put_pending(&mut buf);
        put_piece(&mut buf, 1, &ColumnData::String(Some("日本".into()))).expect("text piece");
        put_piece(&mut buf, 2, &ColumnData::Binary(Some(vec![0, 255].into()))).expect("bytes piece");
        assert!(put_piece(&mut buf, 2, &ColumnData::I32(Some(1))).is_err());
        let mut decoder = Decoder::new(buf.freeze()).expect("decoder");
        match decoder.record().expect("row") {
            Some(Record::Row { values, pending }) => {
                assert!(matches!(values[0], ColumnData::I32(Some(7))));
                assert_eq!(pending, vec![1, 2]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            decoder.record().expect("piece"),
            Some(Record::Piece { index: 1, data: ColumnData::String(Some(s)) }) if s == "日本"
        ));
        assert!(matches!(
            decoder.record().expect("piece"),
            Some(Record::Piece { index: 2, data: ColumnData::Binary(Some(b)) }) if b.as_ref() == [0, 255]
        ));
        assert!(decoder.record().expect("end").is_none());
        let mut stray = Decoder::new(Bytes::from_static(b"DFS1\x01\x00\x14\x05\x00\x00")).expect("decoder");
        assert!(stray.record().is_err(), "a piece of a value past the row's width");
        let mut rows_only = Decoder::new(Bytes::from_static(b"DFS1\x01\x00\x13")).expect("decoder");
        assert!(
            rows_only.row().is_err(),
            "a pending value where whole rows were expected"
        );
    }
}
