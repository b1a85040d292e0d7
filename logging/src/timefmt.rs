//! Timestamps as `flogtool` prints them (`--timestamps=MODE`).

/// The `--timestamps` modes, in Python's order.
pub const MODES: [&str; 4] = ["short-local", "long-local", "utc", "epoch"];

/// How timestamps are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeMode {
    /// `%H:%M:%S.mmm`, local time (the default).
    #[default]
    ShortLocal,
    /// `%Y-%m-%d_%H:%M:%S.uuuuuu±hhmm`, local time.
    LongLocal,
    /// `%Y-%m-%d_%H:%M:%S.uuuuuuZ`, UTC.
    Utc,
    /// Seconds since the epoch, `%.3f`.
    Epoch,
}

impl TimeMode {
    /// Parse a mode name.
    pub fn parse(s: &str) -> Option<TimeMode> {
        Some(match s {
            "short-local" => TimeMode::ShortLocal,
            "long-local" => TimeMode::LongLocal,
            "utc" => TimeMode::Utc,
            "epoch" => TimeMode::Epoch,
            _ => return None,
        })
    }
}

/// The local time zone: the UTC offset (seconds east) in force at a given
/// instant. The caller supplies it (the library reads no clock or zone).
pub trait LocalZone {
    /// Offset from UTC, in seconds, at `unix_secs`.
    fn offset_at(&self, unix_secs: i64) -> i32;
}

/// UTC as the local zone (what `TZ=UTC` gives).
#[derive(Clone, Copy, Debug, Default)]
pub struct Utc;

impl LocalZone for Utc {
    fn offset_at(&self, _: i64) -> i32 {
        0
    }
}

/// (year, month, day, hour, minute, second) of a unix time.
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's days-to-civil
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Python `"%0Nd" % int(scale * (t - int(t)))`.
fn fraction(t: f64, scale: f64, width: usize) -> String {
    let f = (scale * (t - t.trunc())).trunc() as i64;
    if f < 0 {
        format!("-{:0w$}", -f, w = width.saturating_sub(1))
    } else {
        format!("{:0w$}", f, w = width)
    }
}

/// Python's `foolscap.util.format_time(when, mode)`.
pub fn format_time(when: f64, mode: TimeMode, zone: &dyn LocalZone) -> String {
    if mode == TimeMode::Epoch {
        return format!("{:.3}", when);
    }
    if !when.is_finite() || when.abs() > 1e15 {
        // Python raises (OverflowError/ValueError) here; print the number
        return format!("{}", when);
    }
    let secs = when.floor() as i64;
    let off = match mode {
        TimeMode::Utc => 0,
        _ => zone.offset_at(secs),
    };
    let (y, mo, d, h, mi, s) = civil(secs + off as i64);
    match mode {
        TimeMode::ShortLocal => format!("{:02}:{:02}:{:02}.{}", h, mi, s, fraction(when, 1e3, 3)),
        _ => {
            let base = format!(
                "{:04}-{:02}-{:02}_{:02}:{:02}:{:02}.{}",
                y,
                mo,
                d,
                h,
                mi,
                s,
                fraction(when, 1e6, 6)
            );
            if mode == TimeMode::Utc {
                base + "Z"
            } else {
                let sign = if off < 0 { '-' } else { '+' };
                let a = off.unsigned_abs();
                format!("{}{}{:02}{:02}", base, sign, a / 3600, (a % 3600) / 60)
            }
        }
    }
}
