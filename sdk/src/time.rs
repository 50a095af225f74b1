//! Timestamps as the WIT world wants them: milliseconds since the Unix epoch,
//! UTC ([`crate::TimestampMs`]).

/// The current time in milliseconds since the Unix epoch (WASI wall clock).
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_millis().min(i64::MAX as u128) as i64),
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(s: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    part.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u32)
    })
}

fn epoch_ms(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour as i64) * 60 + minute as i64) * 60_000 + second as i64 * 1000)
}

/// Parses an RFC 3339 timestamp such as `2024-03-01T09:30:00Z`,
/// `2024-03-01T09:30:00.123+01:00` or `2024-03-01 09:30:00z` into
/// milliseconds since the epoch (fractions beyond milliseconds are truncated).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let s = text.as_bytes();
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let year = digits(s, 0..4)? as i64;
    let month = digits(s, 5..7)?;
    let day = digits(s, 8..10)?;
    let hour = digits(s, 11..13)?;
    let minute = digits(s, 14..16)?;
    let second = digits(s, 17..19)?;
    let mut i = 19;
    let mut millis = 0i64;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match s.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0..2)?;
            let om = digits(rest, 3..5)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let total = (oh * 60 + om) as i64;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let local = epoch_ms(year, month, day, hour, minute, second)?;
    Some(local + millis - offset_minutes * 60_000)
}

/// Parses an HTTP date in the preferred IMF-fixdate form
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) into milliseconds since the epoch.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    if s.len() != 29 || &s[3..5] != b", " || &s[25..] != b" GMT" {
        return None;
    }
    if s[7] != b' ' || s[11] != b' ' || s[16] != b' ' || s[19] != b':' || s[22] != b':' {
        return None;
    }
    let day = digits(s, 5..7)?;
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as u32 + 1;
    let year = digits(s, 12..16)? as i64;
    let hour = digits(s, 17..19)?;
    let minute = digits(s, 20..22)?;
    let second = digits(s, 23..25)?;
    epoch_ms(year, month, day, hour, minute, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-03-01T09:30:00Z"),
            Some(1_709_285_400_000)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T10:30:00+01:00"),
            Some(1_709_285_400_000)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01 09:30:00.5z"),
            Some(1_709_285_400_500)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T09:30:00.123456Z"),
            Some(1_709_285_400_123)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00-00:30"),
            Some(1_709_166_600_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-03-01T09:30:00"), None);
        assert_eq!(parse_rfc3339("2024-03-01T09:30:00.Z"), None);
        assert_eq!(parse_rfc3339("2024-13-01T09:30:00Z"), None);
        assert_eq!(parse_rfc3339("2024-03-01T24:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-03-01T09:30:00+0100"), None);
    }

    #[test]
    fn http_date() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn clock() {
        assert!(now_ms() > 1_600_000_000_000);
    }
}
