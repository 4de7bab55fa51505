//! What commands leave behind, the trait code takes to run one, and UTC time stamps.
//!
//! Commands are argv vectors, never shell strings: nothing from input is ever
//! interpreted by a shell.

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands: any [`Executor`](crate::executor::Executor) is one, so code
/// that only needs to run a program (`nginx -t`, `control.sh`) takes this.
pub trait CommandRunner {
    /// Runs `argv[0]` with the rest as arguments and waits for it; a non-zero
    /// exit is in the output, not an error.
    ///
    /// # Errors
    /// [`crate::Error::CommandFailed`] when the program cannot be started
    /// (e.g. not installed), or whatever the executor reports, kind kept.
    fn run(&self, argv: &[String]) -> crate::Result<CommandOutput>;
}

/// A UTC timestamp for file names, `20261125T063000Z`, from a system time.
pub fn utc_stamp(time: std::time::SystemTime) -> String {
    let [year, month, day, hour, minute, second] = utc_civil(time);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

/// A UTC timestamp for reports, `2026-11-25T06:30:00Z`, from a system time.
pub fn utc_rfc3339(time: std::time::SystemTime) -> String {
    let [year, month, day, hour, minute, second] = utc_civil(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Year, month, day, hour, minute, second in UTC; times before 1970 count as 1970.
fn utc_civil(time: std::time::SystemTime) -> [i64; 6] {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |duration| duration.as_secs());
    let days = (seconds / 86_400) as i64;
    let second_of_day = (seconds % 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    [
        year,
        month,
        day,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    ]
}

/// Seconds since 1970 of a UTC civil time (the inverse of the above; Hinnant's
/// `days_from_civil`), for timestamps stored as calendar fields, e.g. in zip files.
pub fn unix_seconds_from_civil(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_564_800 + 3723)),
            "20261125T010203Z"
        );
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        let time = UNIX_EPOCH + Duration::from_secs(1_795_564_800 + 3723);
        assert_eq!(utc_rfc3339(time), "2026-11-25T01:02:03Z");
        assert_eq!(
            unix_seconds_from_civil(2026, 11, 25, 1, 2, 3),
            1_795_564_800 + 3723
        );
        assert_eq!(unix_seconds_from_civil(2000, 2, 29, 0, 0, 0), 951_782_400);
        assert_eq!(unix_seconds_from_civil(1970, 1, 1, 0, 0, 0), 0);
    }
}
