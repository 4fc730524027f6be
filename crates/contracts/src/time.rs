//! RFC 3339 timestamps, always written in UTC with milliseconds and `Z`.
//!
//! Events are hashed over their timestamp text, so there must be exactly one way to write an
//! instant: `2026-04-20T00:00:00.000Z`. Input may use any RFC 3339 offset (REQUIREMENTS Q6); it is
//! normalised to UTC on parse.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an RFC 3339 timestamp ({}); expected for example `2026-04-20T00:00:00.000Z`",
            self.input, self.reason
        )
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        let ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp(ms)
    }

    /// Parse `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`/`z` and a space separator are
    /// accepted as RFC 3339 allows. Fractions beyond milliseconds are truncated.
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        let err = |reason| TimestampError {
            input: input.chars().take(64).collect(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let s = input.get(range)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (year, month, day) = match (num(0..4), num(5..7), num(8..10)) {
            (Some(y), Some(m), Some(d)) if b[4] == b'-' && b[7] == b'-' => (y, m, d),
            _ => return Err(err("bad date")),
        };
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(err("expected `T` between date and time"));
        }
        let (hour, minute, second) = match (num(11..13), num(14..16), num(17..19)) {
            (Some(h), Some(m), Some(s)) if b[13] == b':' && b[16] == b':' => (h, m, s),
            _ => return Err(err("bad time")),
        };
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err("date out of range"));
        }
        // A leap second (60) is accepted and folded into the next second, as most systems do.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("time out of range"));
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err(err("empty fraction"));
            }
            let frac = &input[start..i];
            let first3: String = frac.chars().chain("000".chars()).take(3).collect();
            millis = first3.parse().map_err(|_| err("bad fraction"))?;
        }
        let offset_minutes = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (h, m) = match (num(i + 1..i + 3), num(i + 4..i + 6)) {
                    (Some(h), Some(m)) if h <= 23 && m <= 59 => (h, m),
                    _ => return Err(err("bad offset")),
                };
                let total = h * 60 + m;
                if *sign == b'-' {
                    -total
                } else {
                    total
                }
            }
            _ => return Err(err("expected `Z` or an offset such as `+02:00` at the end")),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Ok(Timestamp(secs * 1000 + millis))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(
            Timestamp::from_unix_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        let t = Timestamp::parse("2026-04-20T00:00:00Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-04-20T00:00:00.000Z");
        assert_eq!(t.unix_millis(), 1_776_643_200_000);
        // Offsets are normalised to UTC (Q6).
        let t = Timestamp::parse("2026-04-20T02:30:00.1234+02:30").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-04-20T00:00:00.123Z");
        assert_eq!(
            Timestamp::parse("2024-02-29t23:59:59.999z")
                .expect("leap day")
                .to_rfc3339(),
            "2024-02-29T23:59:59.999Z"
        );
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        for bad in [
            "2026-04-20",
            "2026-04-20T00:00:00",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-04-20T24:00:00Z",
            "2026-04-20T00:00:00+2:00",
            "2026-04-20T00:00:00.Z",
            "２026-04-20T00:00:00Z",
        ] {
            let e = Timestamp::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            let t = Timestamp::from_unix_millis(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_rfc3339()).expect("own output parses"), t);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Timestamp::parse(&s);
        }
    }
}
