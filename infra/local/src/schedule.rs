//! EventBridge schedule expressions: `rate(5 minutes)` and six-field `cron(...)`.
//!
//! Supported cron syntax: `*`, `?`, numbers, month and day names, lists, ranges and
//! steps. `L`, `W` and `#` are refused with a clear error rather than guessed at.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported schedule expression {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Rate(Duration),
    Cron(Cron),
}

/// Allowed values per field; day-of-week uses EventBridge numbering, 1 = Sunday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days_of_month: Option<Vec<u32>>,
    months: Vec<u32>,
    days_of_week: Option<Vec<u32>>,
    years: Option<Vec<u32>>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let fail = |reason: &str| ScheduleError {
            expression: expression.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = expression.trim();
        if let Some(inner) = trimmed
            .strip_prefix("rate(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (amount, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| fail("expected rate(VALUE UNIT)"))?;
            let amount: i64 = amount
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| fail("the rate must be a positive whole number"))?;
            let unit = unit.trim();
            let singular = amount == 1;
            let duration = match unit {
                "minute" if singular => Duration::minutes(1),
                "minutes" if !singular => Duration::minutes(amount),
                "hour" if singular => Duration::hours(1),
                "hours" if !singular => Duration::hours(amount),
                "day" if singular => Duration::days(1),
                "days" if !singular => Duration::days(amount),
                _ => {
                    return Err(fail(
                        "the unit must be minute(s), hour(s) or day(s), singular only for 1",
                    ))
                }
            };
            return Ok(Schedule::Rate(duration));
        }
        if let Some(inner) = trimmed
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            if fields.len() != 6 {
                return Err(fail(
                    "cron needs six fields: minutes hours day-of-month month day-of-week year",
                ));
            }
            let field = |i: usize, min: u32, max: u32, names: &[&str], offset: u32| {
                parse_field(fields[i], min, max, names, offset).map_err(|r| fail(&r))
            };
            let days_of_month = field(2, 1, 31, &[], 0)?;
            let days_of_week = field(4, 1, 7, &DAYS, 1)?;
            if fields[2] == "?" && fields[4] == "?" || fields[2] != "?" && fields[4] != "?" {
                return Err(fail(
                    "exactly one of day-of-month and day-of-week must be ?",
                ));
            }
            return Ok(Schedule::Cron(Cron {
                minutes: field(0, 0, 59, &[], 0)?.ok_or_else(|| fail("minutes cannot be ?"))?,
                hours: field(1, 0, 23, &[], 0)?.ok_or_else(|| fail("hours cannot be ?"))?,
                days_of_month,
                months: field(3, 1, 12, &MONTHS, 1)?.ok_or_else(|| fail("month cannot be ?"))?,
                days_of_week,
                years: field(5, 1970, 2199, &[], 0)?,
            }));
        }
        Err(fail("expected rate(...) or cron(...)"))
    }

    /// The first run strictly after `after`. A rate runs first one period after start, as
    /// EventBridge does.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Rate(period) => Some(after + *period),
            Schedule::Cron(cron) => cron.next_after(after),
        }
    }
}

/// `None` for `?` (or `*` where "any" is meant), else the allowed values.
fn parse_field(
    raw: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
) -> Result<Option<Vec<u32>>, String> {
    if raw == "?" {
        return Ok(None);
    }
    if raw.contains(['L', 'W', '#']) && !names.iter().any(|n| raw.to_uppercase().contains(n)) {
        return Err(format!("{raw}: L, W and # are not supported locally"));
    }
    let value = |text: &str| -> Result<u32, String> {
        let upper = text.to_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + name_offset);
        }
        let n: u32 = text.parse().map_err(|_| {
            format!(
                "{text} is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut values = Vec::new();
    for part in raw.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{part}: bad step"))?,
            ),
            None => (part, 1),
        };
        let (start, end) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15` means from 5 to the end, every 15.
                None if step > 1 => (value(range)?, max),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if start > end {
            return Err(format!("{part}: range runs backwards"));
        }
        values.extend((start..=end).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(Some(values))
}

impl Cron {
    fn matches(&self, t: DateTime<Utc>) -> bool {
        let weekday = t.weekday().num_days_from_sunday() + 1;
        self.minutes.contains(&t.minute())
            && self.hours.contains(&t.hour())
            && self.months.contains(&t.month())
            && self
                .days_of_month
                .as_ref()
                .is_none_or(|d| d.contains(&t.day()))
            && self
                .days_of_week
                .as_ref()
                .is_none_or(|d| d.contains(&weekday))
            && self
                .years
                .as_ref()
                .is_none_or(|y| y.contains(&(t.year() as u32)))
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        // Minute by minute is simple and cheap enough for a local runner: at most a few
        // hundred thousand checks for a yearly schedule.
        let limit = 366 * 24 * 60 * 5;
        (0..limit)
            .map(|i| start + Duration::minutes(i))
            .find(|t| self.matches(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_rate_runs_once_per_period() {
        let five = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(
            five.next_after(at(2026, 1, 1, 0, 0)),
            Some(at(2026, 1, 1, 0, 5))
        );
        assert_eq!(
            Schedule::parse("rate(1 day)").unwrap(),
            Schedule::Rate(Duration::days(1))
        );
    }

    #[test]
    fn a_rate_with_the_wrong_unit_or_number_is_refused() {
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 hours)",
            "rate(2 weeks)",
            "rate(five minutes)",
            "every 5 minutes",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_daily_cron_runs_at_its_time_the_next_day_once_passed() {
        let daily = Schedule::parse("cron(30 2 * * ? *)").unwrap();
        assert_eq!(
            daily.next_after(at(2026, 3, 10, 1, 0)),
            Some(at(2026, 3, 10, 2, 30))
        );
        assert_eq!(
            daily.next_after(at(2026, 3, 10, 2, 30)),
            Some(at(2026, 3, 11, 2, 30))
        );
    }

    #[test]
    fn a_weekday_cron_uses_eventbridge_day_numbering() {
        // 2026-03-13 is a Friday; MON-FRI at 09:00 next runs on Monday the 16th.
        let weekdays = Schedule::parse("cron(0 9 ? * MON-FRI *)").unwrap();
        assert_eq!(
            weekdays.next_after(at(2026, 3, 13, 10, 0)),
            Some(at(2026, 3, 16, 9, 0))
        );
        let sundays = Schedule::parse("cron(0 0 ? * 1 *)").unwrap();
        assert_eq!(
            sundays.next_after(at(2026, 3, 13, 10, 0)),
            Some(at(2026, 3, 15, 0, 0))
        );
    }

    #[test]
    fn steps_and_lists_expand_within_their_field() {
        let quarter = Schedule::parse("cron(0/15 8,17 1 JAN-MAR ? 2026)").unwrap();
        assert_eq!(
            quarter.next_after(at(2026, 1, 1, 8, 14)),
            Some(at(2026, 1, 1, 8, 15))
        );
        assert_eq!(
            quarter.next_after(at(2026, 1, 1, 8, 45)),
            Some(at(2026, 1, 1, 17, 0))
        );
        assert_eq!(quarter.next_after(at(2026, 3, 1, 17, 45)), None);
    }

    #[test]
    fn unsupported_cron_syntax_is_refused_clearly() {
        let err = Schedule::parse("cron(0 0 L * ? *)").unwrap_err();
        assert!(err.reason.contains("not supported"), "{err}");
        assert!(
            Schedule::parse("cron(0 0 * * * *)").is_err(),
            "both day fields set"
        );
        assert!(Schedule::parse("cron(0 0 * *)").is_err());
        assert!(Schedule::parse("cron(61 0 * * ? *)").is_err());
    }
}
