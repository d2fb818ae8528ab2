//! RFC 3339 time stamps, as every alert writes them, and the kernel's clock.

use std::cell::Cell;

/// Current time as RFC 3339, exactly as `time` formats it (UTC `Z`, fraction without
/// trailing zeros). Date and time of day are formatted once per second per thread: every
/// alert needs a timestamp, and the calendar arithmetic dominated the cost.
pub fn now_rfc3339() -> String {
    thread_local! {
        static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
    }
    let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return rfc3339(time::OffsetDateTime::now_utc());
    };
    let secs = d.as_secs();
    let cached = SECOND
        .try_with(|c| c.get().filter(|(s, _)| *s == secs).map(|(_, p)| p))
        .ok()
        .flatten();
    let prefix = match cached {
        Some(p) => p,
        None => match second_prefix(secs) {
            Some(p) => {
                let _ = SECOND.try_with(|c| c.set(Some((secs, p))));
                p
            }
            None => return rfc3339(time::OffsetDateTime::now_utc()),
        },
    };
    with_fraction(&prefix, d.subsec_nanos())
}

/// `t` in RFC 3339 (UTC `Z`, fraction without trailing zeros).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second; None outside what RFC 3339 can express.
fn second_prefix(secs: u64) -> Option<[u8; 19]> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    let s = t
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    s.as_bytes().get(..19)?.try_into().ok()
}

/// The prefix, `.` and the nanoseconds without trailing zeros (none when 0), then `Z`.
fn with_fraction(prefix: &[u8; 19], nanos: u32) -> String {
    let mut out = [0u8; 30];
    out[..19].copy_from_slice(prefix);
    let mut len = 19;
    if nanos != 0 {
        out[19] = b'.';
        let mut digits = [0u8; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let keep = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out[20..20 + keep].copy_from_slice(&digits[..keep]);
        len = 20 + keep;
    }
    out[len] = b'Z';
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out[..=len].to_vec()).unwrap_or_default()
}

/// `CLOCK_BOOTTIME` in ns: the probes' clock (`bpf_ktime_get_boot_ns`).
pub fn boottime_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Converts `CLOCK_BOOTTIME` nanoseconds (what the probes stamp) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    realtime_minus_boottime_ns: i128,
}

impl BootClock {
    /// The offset between the two clocks as it is now.
    pub fn now() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            realtime_minus_boottime_ns: real - boot,
        }
    }

    /// The wall-clock time of a boot-time stamp, in RFC 3339 ("" when out of range).
    pub fn rfc3339(&self, boottime_ns: u64) -> String {
        let ns = i128::from(boottime_ns) + self.realtime_minus_boottime_ns;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns)
            .ok()
            .map(rfc3339)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn timestamp_matches_time_crate() {
        for secs in [
            0u64,
            1,
            59,
            86_399,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
        ] {
            for nanos in [
                0u32,
                1,
                10,
                999,
                1_000,
                120_000_000,
                123_456_789,
                999_999_999,
            ] {
                let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap())
                    .unwrap()
                    .replace_nanosecond(nanos)
                    .unwrap();
                let prefix = second_prefix(secs).unwrap();
                assert_eq!(with_fraction(&prefix, nanos), t.format(&Rfc3339).unwrap());
                assert_eq!(rfc3339(t), t.format(&Rfc3339).unwrap());
            }
        }
        assert!(now_rfc3339().ends_with('Z'));
    }

    #[test]
    fn boot_clock_formats_now() {
        let s = BootClock::now().rfc3339(boottime_ns());
        let t = time::OffsetDateTime::parse(&s, &Rfc3339).unwrap();
        let skew = (time::OffsetDateTime::now_utc() - t).abs();
        assert!(skew < time::Duration::seconds(5), "{s}");
    }
}
