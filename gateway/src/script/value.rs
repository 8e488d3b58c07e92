//! Scalar values of the script format: decimals, offsets, timestamps, dates
//!
//! Each type validates itself while it is deserialized, so a bad value is reported with the
//! line, column and field path of the record that holds it.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Most integer digits a [`Dec`] may have
pub const DEC_MAX_INT_DIGITS: usize = 20;
/// Most fraction digits a [`Dec`] may have
pub const DEC_MAX_FRAC_DIGITS: usize = 10;

/// An exact decimal number, kept as the text the script gave (`"388.2"`, `"-0.5"`, `"100"`)
///
/// Prices, amounts and quantities travel as decimal strings both in the protobuf messages and
/// in the HTTP JSON; the SDK parses them with `rust_decimal`. A script writes them as JSON strings
/// (or plain JSON numbers, which are taken as the shortest text that round-trips). Accepted form:
/// an optional `-`, at most 20 integer digits, optionally `.` and 1 to 10 fraction digits; no
/// exponent. Equality and order are by value (`"1.50" == "1.5"`); the text is kept as written.
#[derive(Clone, Debug)]
pub struct Dec(String);

impl Dec {
    /// Parse and validate `s`
    pub fn parse(s: &str) -> Result<Dec, String> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(format!(
                "expected a decimal number like \"388.2\" or \"-5\", got {s:?}"
            ));
        }
        if int.len() > DEC_MAX_INT_DIGITS || frac.map_or(0, str::len) > DEC_MAX_FRAC_DIGITS {
            return Err(format!(
                "decimal {s:?} is too long (at most {DEC_MAX_INT_DIGITS} integer and {DEC_MAX_FRAC_DIGITS} fraction digits)"
            ));
        }
        Ok(Dec(s.to_owned()))
    }

    /// Zero (`"0"`)
    pub fn zero() -> Dec {
        Dec("0".to_owned())
    }

    /// The decimal's text, as the script wrote it
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value scaled to [`DEC_MAX_FRAC_DIGITS`] fraction digits (exact: at most 30 digits)
    fn scaled(&self) -> i128 {
        let (neg, digits) = match self.0.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, self.0.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let mut v: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            v = v * 10 + i128::from(b - b'0');
        }
        for _ in frac.len()..DEC_MAX_FRAC_DIGITS {
            v *= 10;
        }
        if neg {
            -v
        } else {
            v
        }
    }

    /// The exact sum, or `None` when it does not fit the accepted form
    pub fn checked_add(&self, other: &Dec) -> Option<Dec> {
        let sum = self.scaled().checked_add(other.scaled())?;
        let scale = frac_len(&self.0).max(frac_len(&other.0));
        Dec::parse(&format_scaled(sum, scale)).ok()
    }
}

fn frac_len(s: &str) -> usize {
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

/// `v / 10^DEC_MAX_FRAC_DIGITS` written with `scale` fraction digits
fn format_scaled(v: i128, scale: usize) -> String {
    let neg = v < 0;
    let mut digits = v.unsigned_abs().to_string();
    if digits.len() <= DEC_MAX_FRAC_DIGITS {
        digits = format!(
            "{}{digits}",
            "0".repeat(DEC_MAX_FRAC_DIGITS + 1 - digits.len())
        );
    }
    let (int, frac) = digits.split_at(digits.len() - DEC_MAX_FRAC_DIGITS);
    let frac = &frac[..scale];
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

impl PartialEq for Dec {
    fn eq(&self, other: &Self) -> bool {
        self.scaled() == other.scaled()
    }
}

impl Eq for Dec {}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dec {
    fn cmp(&self, other: &Self) -> Ordering {
        self.scaled().cmp(&other.scaled())
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number, e.g. \"388.2\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dec, E> {
                Dec::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dec, E> {
                Dec::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dec, E> {
                Dec::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dec, E> {
                Dec::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Longest offset a timeline item may have (30 days)
pub const MAX_OFFSET: Duration = Duration::from_secs(30 * 24 * 3600);

/// When a timeline item is due: an offset from the start of the timeline
///
/// Written as a string of `<number><unit>` parts with units `h`, `m`, `s` and `ms` (`"1500ms"`,
/// `"1.5s"`, `"2m"`, `"1h30m"`, `"0"`), or as a JSON number of seconds (`1.5`). At most 30 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub Duration);

impl Offset {
    /// Parse `"1m30s"`-style text
    pub fn parse(s: &str) -> Result<Offset, String> {
        let bad = || {
            format!("expected an offset like \"1.5s\", \"250ms\", \"2m\" or \"1h30m\", got {s:?}")
        };
        let t = s.trim();
        if t == "0" {
            return Ok(Offset(Duration::ZERO));
        }
        if t.is_empty() {
            return Err(bad());
        }
        let mut total_ms: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_ms: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            let (int, frac) = num.split_once('.').unwrap_or((num, ""));
            if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
                return Err(bad());
            }
            if int.len() > 12 || frac.len() > 6 {
                return Err(format!("offset {s:?} is out of range (at most 30 days)"));
            }
            // value in micro-units of `unit`, then to ms (fractions of a millisecond are dropped)
            let micro = int.parse::<u128>().map_err(|_| bad())? * 1_000_000
                + frac.parse::<u128>().unwrap_or(0) * 10u128.pow(6 - frac.len() as u32);
            total_ms += micro * unit_ms / 1_000_000;
            rest = tail;
        }
        let d = Duration::from_millis(u64::try_from(total_ms).unwrap_or(u64::MAX));
        if d > MAX_OFFSET {
            return Err(format!("offset {s:?} is out of range (at most 30 days)"));
        }
        Ok(Offset(d))
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Offset;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an offset such as \"1.5s\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Offset, E> {
                Offset::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Offset, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Offset, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Offset, E> {
                if !(v.is_finite() && v >= 0.0 && v <= MAX_OFFSET.as_secs_f64()) {
                    return Err(E::custom(format!(
                        "offset {v} s is out of range (0 to 30 days)"
                    )));
                }
                Ok(Offset(Duration::from_millis((v * 1000.0).round() as u64)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Earliest accepted timestamp: 1970-01-01T00:00:00Z
pub const MIN_UNIX: i64 = 0;
/// Latest accepted timestamp: 9999-12-31T23:59:59Z
pub const MAX_UNIX: i64 = 253_402_300_799;

/// A point in time, in Unix seconds
///
/// Written as a JSON integer of Unix seconds or an RFC 3339 string
/// (`"2024-01-02T09:30:00+08:00"`, `"2024-01-02T01:30:00Z"`; a fraction of a second is
/// dropped). Between 1970 and 9999, so that the SDK's `OffsetDateTime::from_unix_timestamp`
/// accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// Parse an RFC 3339 date-time
    pub fn parse_rfc3339(s: &str) -> Result<UnixTime, String> {
        let bad = || {
            format!("expected Unix seconds or an RFC 3339 time like \"2024-01-02T09:30:00+08:00\", got {s:?}")
        };
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad());
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
            let t = s.get(r).ok_or_else(bad)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse::<i64>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let o = oh * 3600 + om * 60;
                if *c == b'-' {
                    -o
                } else {
                    o
                }
            }
            _ => return Err(bad()),
        };
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
            return Err(bad());
        }
        if sec > 60 {
            return Err(bad());
        }
        let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
        UnixTime::checked(t)
    }

    /// `t` if it lies in the accepted range
    pub fn checked(t: i64) -> Result<UnixTime, String> {
        if (MIN_UNIX..=MAX_UNIX).contains(&t) {
            Ok(UnixTime(t))
        } else {
            Err(format!(
                "time {t} is out of range (1970-01-01 to 9999-12-31 in Unix seconds)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UnixTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix seconds or an RFC 3339 time")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<UnixTime, E> {
                UnixTime::parse_rfc3339(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UnixTime, E> {
                UnixTime::checked(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UnixTime, E> {
                UnixTime::checked(i64::try_from(v).unwrap_or(i64::MAX)).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A calendar day, written `"YYYYMMDD"` (the form the SDK's trading-day requests use) or
/// `"YYYY-MM-DD"`
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// Parse `YYYYMMDD` or `YYYY-MM-DD`
    pub fn parse(s: &str) -> Result<Day, String> {
        let bad = || format!("expected a day like \"20240102\" or \"2024-01-02\", got {s:?}");
        let compact: String = match s.len() {
            8 => s.to_owned(),
            10 if s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' => s.replace('-', ""),
            _ => return Err(bad()),
        };
        if compact.len() != 8 || !compact.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let v: u32 = compact.parse().map_err(|_| bad())?;
        let (y, m, d) = (
            i64::from(v / 10_000),
            i64::from(v / 100 % 100),
            i64::from(v % 100),
        );
        if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(bad());
        }
        Ok(Day(v))
    }

    /// `YYYYMMDD`
    pub fn compact(self) -> String {
        format!("{:08}", self.0)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Day::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for ok in [
            "0",
            "388.2",
            "-0.5",
            "100",
            "12345678901234567890.0123456789",
        ] {
            assert_eq!(Dec::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1e5",
            "1,5",
            " 1",
            "abc",
            "--1",
            "1.2.3",
            "+1",
            "123456789012345678901",
            "0.12345678901",
        ] {
            assert!(Dec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn decimal_order_and_sum_are_exact() {
        let d = |s| Dec::parse(s).unwrap();
        assert!(d("388.2") > d("388.19"));
        assert!(d("-1") < d("0"));
        assert_eq!(d("1.50").cmp(&d("1.5")), Ordering::Equal);
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("1.50").as_str(), "1.50", "the text is kept");
        assert_eq!(d("-0"), d("0"));
        assert_eq!(d("0.1").checked_add(&d("0.2")).unwrap().as_str(), "0.3");
        assert_eq!(d("100").checked_add(&d("0.25")).unwrap().as_str(), "100.25");
        assert_eq!(d("-1.5").checked_add(&d("0.5")).unwrap().as_str(), "-1.0");
        assert_eq!(d("-0.5").checked_add(&d("0.25")).unwrap().as_str(), "-0.25");
        let big = d("99999999999999999999");
        assert!(
            big.checked_add(&d("1")).is_none(),
            "21 integer digits must not be produced"
        );
    }

    #[test]
    fn decimals_from_json_numbers() {
        let v: Dec = serde_json::from_str("388.2").unwrap();
        assert_eq!(v.as_str(), "388.2");
        let v: Dec = serde_json::from_str("42").unwrap();
        assert_eq!(v.as_str(), "42");
        assert!(serde_json::from_str::<Dec>("1e30").is_err());
    }

    #[test]
    fn offsets() {
        let ms = |s| Offset::parse(s).unwrap().0.as_millis();
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("1500ms"), 1500);
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("1m0.25s"), 60_250);
        for bad in [
            "", "5", "1x", "s", "1.s", ".5s", "1..5s", "-1s", "31d", "721h", "1 s",
        ] {
            assert!(Offset::parse(bad).is_err(), "{bad:?} accepted");
        }
        let v: Offset = serde_json::from_str("2.5").unwrap();
        assert_eq!(v.0.as_millis(), 2500);
        assert!(serde_json::from_str::<Offset>("-1").is_err());
    }

    #[test]
    fn rfc3339() {
        let t = |s| UnixTime::parse_rfc3339(s).unwrap().0;
        assert_eq!(t("1970-01-01T00:00:00Z"), 0);
        assert_eq!(t("2024-01-02T01:30:00Z"), 1_704_159_000);
        assert_eq!(t("2024-01-02T09:30:00+08:00"), 1_704_159_000);
        assert_eq!(t("2024-01-02T09:30:00.999+08:00"), 1_704_159_000);
        assert_eq!(t("2000-02-29T00:00:00Z"), 951_782_400);
        assert_eq!(t("9999-12-31T23:59:59Z"), MAX_UNIX);
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-01-02",
            "2024-01-02T25:00:00Z",
            "2024-01-02T09:30:00",
            "2024-01-02T09:30:00+0800",
            "1969-12-31T23:59:59Z",
            "2024-1-02T09:30:00Z",
        ] {
            assert!(UnixTime::parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<UnixTime>("-5").is_err());
        assert_eq!(
            serde_json::from_str::<UnixTime>("1704159000").unwrap().0,
            1_704_159_000
        );
    }

    #[test]
    fn days() {
        assert_eq!(Day::parse("20240102").unwrap().compact(), "20240102");
        assert_eq!(Day::parse("2024-02-29").unwrap().compact(), "20240229");
        for bad in [
            "2023-02-29",
            "20241301",
            "2024010",
            "2024/01/02",
            "abcdefgh",
            "00000101",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
