//! The text form of values a target stages as text and converts itself
//! (see [`crate::flavour::Flavour::stages_as_text`]): exact decimal digits,
//! ISO dates and times with every fractional digit the value has.
//!
//! Babelfish keeps times to the microsecond; a value with a seventh
//! fractional digit would be rounded there, so it is refused here rather
//! than written wrong.

use tiberius::time::{Date, DateTime2, Time};
use tiberius::ColumnData;

use crate::error::{Error, Result};

/// Days from 0001-01-01 (TDS's day 0) to 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_162;
const DAY_SECONDS: i128 = 86_400;

/// `value` as the text the server converts back, `None` for NULL.
pub fn text_of(value: &ColumnData<'_>, column: &str) -> Result<Option<String>> {
    if crate::encode::is_null(value) {
        return Ok(None);
    }
    Ok(match value {
        ColumnData::Numeric(Some(n)) => Some(numeric(n.value(), n.scale())),
        ColumnData::Time(Some(t)) => Some(time(*t, column)?),
        ColumnData::DateTime2(Some(d)) => Some(datetime2(*d, column)?),
        ColumnData::DateTimeOffset(Some(d)) => {
            let utc = d.datetime2();
            let offset = i128::from(d.offset());
            let scale = utc.time().scale();
            let per_second = 10i128.pow(u32::from(scale));
            // TDS carries the UTC instant; the text names the local time.
            let total = i128::from(utc.date().days()) * DAY_SECONDS * per_second
                + i128::from(utc.time().increments())
                + offset * 60 * per_second;
            let per_day = DAY_SECONDS * per_second;
            let days = u32::try_from(total.div_euclid(per_day))
                .map_err(|_| Error::Data(format!("a datetimeoffset of {column} is out of range")))?;
            let increments = u64::try_from(total.rem_euclid(per_day))
                .map_err(|_| Error::Data(format!("a datetimeoffset of {column} is out of range")))?;
            let local = DateTime2::new(Date::new(days), Time::new(increments, scale));
            let sign = if offset < 0 { '-' } else { '+' };
            Some(format!(
                "{} {sign}{:02}:{:02}",
                datetime2(local, column)?,
                offset.abs() / 60,
                offset.abs() % 60
            ))
        }
        ColumnData::Numeric(None)
        | ColumnData::Time(None)
        | ColumnData::DateTime2(None)
        | ColumnData::DateTimeOffset(None) => None,
        other => {
            return Err(Error::Internal(format!(
                "{column}: no text form for {other:?} when staging as text"
            )))
        }
    })
}

/// An exact decimal: `-12.50` for (-1250, 2).
pub fn numeric(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// `YYYY-MM-DD` for days since 0001-01-01.
pub fn date(days: u32) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(days) - UNIX_EPOCH_DAY + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `HH:MM:SS[.fraction]` with as many digits as the scale; refuses a
/// seventh digit that is not zero (Babelfish keeps microseconds).
pub fn time(t: Time, column: &str) -> Result<String> {
    let scale = u32::from(t.scale());
    let per_second = 10u64.pow(scale);
    let increments = t.increments();
    let seconds = increments / per_second;
    let fraction = increments % per_second;
    if scale == 7 && !fraction.is_multiple_of(10) {
        return Err(Error::Unsupported(format!(
            "a value of {column} has 100-nanosecond precision (fraction .{fraction:07}); Babelfish keeps \
             microseconds and would round it"
        )));
    }
    let mut out = format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if scale > 0 {
        out.push_str(&format!(".{fraction:0width$}", width = scale as usize));
    }
    Ok(out)
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]`.
pub fn datetime2(d: DateTime2, column: &str) -> Result<String> {
    Ok(format!("{} {}", date(d.date().days()), time(d.time(), column)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::time::DateTimeOffset;

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(numeric(-1250, 2), "-12.50");
        assert_eq!(numeric(5, 3), "0.005");
        assert_eq!(numeric(-5, 3), "-0.005");
        assert_eq!(numeric(0, 0), "0");
        assert_eq!(
            numeric(99_999_999_999_999_999_999_999_999_999_999_999_999, 10),
            "9999999999999999999999999999.9999999999"
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date(0), "0001-01-01");
        assert_eq!(date(719_162), "1970-01-01");
        assert_eq!(date(3_652_058), "9999-12-31");
        assert_eq!(date(738_944), "2024-02-29");
        assert_eq!(
            time(Time::new(863_999_999_990, 7), "c").ok().as_deref(),
            Some("23:59:59.9999990")
        );
        assert_eq!(time(Time::new(0, 0), "c").ok().as_deref(), Some("00:00:00"));
        assert_eq!(
            time(Time::new(45_296_123, 3), "c").ok().as_deref(),
            Some("12:34:56.123")
        );
        assert!(
            time(Time::new(863_999_999_999, 7), "c").is_err(),
            "a 7th digit is refused"
        );
    }

    #[test]
    fn offsets_name_the_local_time() {
        // 2024-02-29 12:34:56.123456 at -14:00 is 2024-03-01 02:34:56.123456 UTC.
        let utc = DateTime2::new(Date::new(738_945), Time::new(9_296_123_456, 6));
        let value = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, -14 * 60)));
        assert_eq!(
            text_of(&value, "c").ok().flatten().as_deref(),
            Some("2024-02-29 12:34:56.123456 -14:00")
        );
        let east = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(0), Time::new(0, 0)),
            14 * 60,
        )));
        assert_eq!(
            text_of(&east, "c").ok().flatten().as_deref(),
            Some("0001-01-01 14:00:00 +14:00")
        );
        assert_eq!(text_of(&ColumnData::Numeric(None), "c").ok(), Some(None));
    }
}
