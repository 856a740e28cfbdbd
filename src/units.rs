//! Parsing and printing of the durations and sizes users type and read.

use std::time::Duration;

/// What a duration looks like, for error messages.
const DURATION_EXAMPLES: &str = "e.g. 900, 500ms, 90s, 15m, 1h30m, 1.5h, 2d, 1w";

/// Milliseconds in one of the duration units users write: the short ones
/// `show` and `stats` print, and the long names other tools (bkt, systemd)
/// take, so `5min`, `1hour`, `2days`, `90sec` and `3weeks` work as typed.
fn unit_millis(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "wk" | "wks" | "week" | "weeks" => 604_800_000,
        _ => return None,
    })
}

/// The short name of a unit name (`minutes` is `m`), for messages.
pub fn short_unit(word: &str) -> Option<&'static str> {
    Some(match unit_millis(word)? {
        1 => "ms",
        1_000 => "s",
        60_000 => "m",
        3_600_000 => "h",
        86_400_000 => "d",
        _ => "w",
    })
}

/// Parses `900` (seconds), `500ms`, `90s`, `15m`, `1h`, `7d`, `1w`, the long
/// unit names (`5min`, `2 hours`, `3weeks`), fractions such as `1.5h`, and
/// sums such as `1h30m` or `2d04h` (what `show` and `stats` print). Fractions
/// below a millisecond are dropped. No allocation: a cache hit parses its
/// `--ttl` with this.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration '{text}': {DURATION_EXAMPLES}");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let (number, after) = split_decimal(rest);
        // `5 min` in one argument (quoted) is as clear as `5min`.
        let after = after.trim_start();
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let after = after.trim_start();
        let millis_per_unit: u128 = match unit {
            // A bare number means seconds, but only on its own: `1h30` is a typo.
            "" if parts == 0 && after.is_empty() => 1_000,
            "" => return Err(invalid()),
            _ => unit_millis(unit).ok_or_else(|| {
                format!(
                    "invalid duration unit '{unit}' in '{text}': use ms, s, m, h, d or w, or \
                     their names (sec, min, hour, day, week) ({DURATION_EXAMPLES})"
                )
            })?,
        };
        total += scaled(number, millis_per_unit).ok_or_else(invalid)?;
        parts += 1;
        rest = after;
    }
    u64::try_from(total)
        .map(Duration::from_millis)
        .map_err(|_| format!("duration '{text}' is too large"))
}

/// A decimal number (`12`, `1.5`, `.5`) at the start of `text`, and the rest.
fn split_decimal(text: &str) -> (&str, &str) {
    let bytes = text.as_bytes();
    let mut end = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if bytes.get(end) == Some(&b'.') {
        end += 1 + bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    }
    text.split_at(end)
}

/// `number` (decimal digits, at most one point, at least one digit) times
/// `unit`, rounded down; `None` when it is not such a number or overflows.
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let decimal = |digits: &str| {
        digits.bytes().try_fold(0u128, |acc, digit| {
            acc.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
        })
    };
    // Past nineteen fractional digits nothing is left of a unit (a day is
    // 8.64e7 ms, a TiB 1.1e12 bytes), and 10^19 * unit still fits a u128.
    let fraction = &fraction[..fraction.len().min(19)];
    let parts = decimal(fraction)?.checked_mul(unit)? / 10u128.pow(fraction.len() as u32);
    decimal(whole)?.checked_mul(unit)?.checked_add(parts)
}

/// Parses a `--timeout`: a duration, but not zero, which would kill every
/// run before it started.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "a timeout of '{text}' would kill every run at once; give a length of time such as 30s or 5m, or leave --timeout out for none"
        )),
        limit => Ok(limit),
    }
}

/// How much later than its TTL a stored value may go stale (`--jitter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Up to this many hundredths of a percent of the TTL (`10%` is 1000).
    PercentOfTtl(u32),
    /// Up to this long.
    Fixed(Duration),
}

impl Jitter {
    /// The largest delay, in milliseconds, for a value stored under `ttl`.
    pub fn max_ms(self, ttl: Duration) -> u64 {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self {
            Jitter::PercentOfTtl(hundredths) => {
                (u128::from(ttl_ms) * u128::from(hundredths) / 10_000) as u64
            }
            Jitter::Fixed(limit) => u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Parses `--jitter`: a percentage of the TTL (`10%`, `2.5%`) or a duration (`30s`).
pub fn parse_jitter(text: &str) -> Result<Jitter, String> {
    let Some(percent) = text.trim().strip_suffix('%') else {
        return parse_duration(text).map(Jitter::Fixed);
    };
    let (number, rest) = split_decimal(percent.trim());
    match scaled(number, 100) {
        Some(hundredths) if rest.is_empty() && hundredths <= 1_000_000 => {
            Ok(Jitter::PercentOfTtl(hundredths as u32))
        }
        _ => Err(format!(
            "invalid jitter '{text}': give a percentage of the TTL such as 10% or a duration such as 30s"
        )),
    }
}

/// Parses a byte size such as `4096`, `512K`, `100M`, `1.5G` (binary
/// multiples, rounded down to a byte; a trailing `B`/`iB` is allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_decimal(text.trim());
    let unit = unit.trim_end_matches("iB").trim_end_matches('B');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in '{text}': use K, M, G or T")),
    };
    let bytes = scaled(number, 1u128 << shift)
        .ok_or_else(|| format!("invalid size '{text}': expected e.g. 4096, 512K, 100M, 1.5G"))?;
    u64::try_from(bytes).map_err(|_| format!("size '{text}' is too large"))
}

/// Formats a duration compactly for tables: `850ms`, `42s`, `15m`, `3h12m`, `2d4h`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Like [`format_duration`], without zero trailing units: `15m`, `1h`, `30d`, but `1h30m`.
pub fn format_duration_brief(duration: Duration) -> String {
    let text = format_duration(duration);
    for zero in ["00h", "00m", "00s"] {
        if let Some(short) = text.strip_suffix(zero) {
            return short.to_owned();
        }
    }
    text
}

/// A value's age for `--stale-marker`'s `{age}`: at most two units, no
/// padding, whole seconds (`42s`, `5m7s`, `2h3m`, `3d`), so a one-line status
/// stays short.
pub fn format_age(duration: Duration) -> String {
    let text = format_duration_brief(Duration::from_secs(duration.as_secs()));
    let text = if text.ends_with("ms") {
        "0s".to_owned()
    } else {
        text
    };
    match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) if text[at + 1..].starts_with('0') && text.len() > at + 2 => {
            format!("{}{}", &text[..=at], &text[at + 2..])
        }
        _ => text,
    }
}

/// Formats a byte count with a binary unit: `512B`, `1.0KiB`, `12.3MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC time, `2026-11-24T08:19:00Z`.
pub fn format_utc(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_every_documented_form() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.0001s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2d04h"), Ok(Duration::from_secs(52 * 3600)));
        assert_eq!(
            parse_duration("1m30s250ms"),
            Ok(Duration::from_millis(90_250))
        );
    }

    #[test]
    fn durations_accept_long_unit_names() {
        let minutes = |n: u64| Ok(Duration::from_secs(n * 60));
        for (text, want) in [
            ("5min", minutes(5)),
            ("5 minutes", minutes(5)),
            ("1minute", minutes(1)),
            ("1hour", minutes(60)),
            ("2hrs", minutes(120)),
            ("1hr30min", minutes(90)),
            ("1h 30m", minutes(90)),
            ("2days", minutes(2 * 1440)),
            ("1day", minutes(1440)),
            ("90sec", Ok(Duration::from_secs(90))),
            ("90 seconds", Ok(Duration::from_secs(90))),
            ("1w", minutes(7 * 1440)),
            ("3 weeks", minutes(21 * 1440)),
            ("250msec", Ok(Duration::from_millis(250))),
        ] {
            assert_eq!(parse_duration(text), want, "{text}");
        }
        assert_eq!(short_unit("date"), None);
        assert_eq!(short_unit("msec"), Some("ms"));
        assert_eq!(short_unit("hours"), Some("h"));
    }

    #[test]
    fn what_tables_print_parses_back() {
        for secs in [
            0,
            1,
            59,
            60,
            61,
            3599,
            3600,
            5400,
            86_399,
            86_400,
            90_061,
            30 * 86400,
        ] {
            let duration = Duration::from_secs(secs);
            for text in [format_duration(duration), format_duration_brief(duration)] {
                let parsed = parse_duration(&text).unwrap_or_else(|err| panic!("{err}"));
                // Tables round to their two largest units.
                assert!(parsed <= duration, "{text} -> {parsed:?} > {duration:?}");
                assert!(duration - parsed < Duration::from_secs(3600), "{text}");
            }
        }
    }

    #[test]
    fn durations_reject_nonsense() {
        for bad in [
            "",
            "m",
            "-5",
            "5x",
            "5 minutes later",
            "10 0",
            "99999999999999999999d",
            "1h30",
            "1.2.3h",
            ".h",
            "h1",
            "5mi",
            "min",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_use_binary_multiples() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("K").is_err());
    }

    #[test]
    fn formatting_is_compact() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 3600 + 12 * 60)),
            "3h12m"
        );
        assert_eq!(
            format_duration_brief(Duration::from_secs(30 * 86400)),
            "30d"
        );
        assert_eq!(format_duration_brief(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration_brief(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_827_696_000), "2000-02-29T12:34:56Z");
        assert_eq!(format_utc(1_795_508_340_999), "2026-11-24T08:19:00Z");
        assert_eq!(format_size(1536), "1.5KiB");
    }

    #[test]
    fn jitter_is_a_percentage_or_a_duration() {
        assert_eq!(parse_jitter("10%"), Ok(Jitter::PercentOfTtl(1000)));
        assert_eq!(parse_jitter("2.5%"), Ok(Jitter::PercentOfTtl(250)));
        assert_eq!(
            parse_jitter("30s"),
            Ok(Jitter::Fixed(Duration::from_secs(30)))
        );
        for bad in ["%", "-5%", "10 %x", "ten%", "1e3%", "20000%"] {
            assert!(parse_jitter(bad).is_err(), "{bad}");
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(Jitter::PercentOfTtl(1000).max_ms(hour), 360_000);
        assert_eq!(Jitter::Fixed(Duration::from_secs(5)).max_ms(hour), 5_000);
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("0s").is_err());
        assert_eq!(parse_timeout("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn ages_are_short() {
        let age = |secs| format_age(Duration::from_secs(secs));
        assert_eq!(format_age(Duration::from_millis(400)), "0s");
        assert_eq!(age(42), "42s");
        assert_eq!(age(307), "5m7s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(7380), "2h3m");
        assert_eq!(age(3 * 86400), "3d");
        assert_eq!(age(86400 + 5 * 3600), "1d5h");
    }
}
