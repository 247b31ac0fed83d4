//! Time: small ticks, and jumps to just before a midnight or a month's end, so that the
//! next ticks cross the boundary (validity dates, velocity and failure windows, the
//! per-month earned counters).

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use loyalty_domain::ports::{Clock, FixedClock};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOp {
    Tick(Duration),
    /// To `secs` seconds before the next midnight.
    BeforeMidnight {
        secs: i64,
    },
    /// To `secs` seconds before the next month begins.
    BeforeMonthEnd {
        secs: i64,
    },
}

impl ClockOp {
    pub fn tick(rng: &mut ChaCha8Rng) -> ClockOp {
        ClockOp::Tick(Duration::seconds(rng.random_range(1..=600)))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ClockOp::Tick(_) => "clock_tick",
            ClockOp::BeforeMidnight { .. } => "clock_to_midnight",
            ClockOp::BeforeMonthEnd { .. } => "clock_to_month_end",
        }
    }

    /// Moves the clock forward (never back).
    pub fn apply(&self, clock: &FixedClock) {
        let now = clock.now();
        let target = match *self {
            ClockOp::Tick(by) => now + by,
            ClockOp::BeforeMidnight { secs } => {
                midnight(now.date_naive() + Duration::days(1)) - Duration::seconds(secs)
            }
            ClockOp::BeforeMonthEnd { secs } => {
                let d = now.date_naive();
                let next = if d.month() == 12 {
                    NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
                }
                .expect("a date");
                midnight(next) - Duration::seconds(secs)
            }
        };
        if target > now {
            clock.advance(target - now);
        } else {
            clock.advance(Duration::seconds(1));
        }
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

impl fmt::Display for ClockOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockOp::Tick(by) => write!(f, "clock +{}s", by.num_seconds()),
            ClockOp::BeforeMidnight { secs } => write!(f, "clock to {secs}s before midnight"),
            ClockOp::BeforeMonthEnd { secs } => write!(f, "clock to {secs}s before month end"),
        }
    }
}
