//! Time: small ticks, and jumps to just before a midnight or a month's end, in UTC or in one
//! of the regions' zones ([`crate::world::zones`]), so that the next ticks cross the boundary
//! (validity dates, velocity and failure windows, the per-month earned counters in UTC; rule
//! limits and cashback months in the regions' zones).

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate};
use loyalty_domain::ports::{Clock, FixedClock};
use loyalty_domain::zone::Zone;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOp {
    Tick(Duration),
    /// To `secs` seconds before the next midnight in `zone`.
    BeforeMidnight {
        secs: i64,
        zone: Zone,
    },
    /// To `secs` seconds before the next month begins in `zone`.
    BeforeMonthEnd {
        secs: i64,
        zone: Zone,
    },
}

/// UTC and the regions' zones. The zone of a jump is read from its `secs`, a draw already
/// made, so a seed's random stream (and every recorded replay) stays as it was.
fn zone_for(secs: i64) -> Zone {
    let zones = crate::world::zones();
    let regional: Vec<Zone> = std::iter::once(zones.programme)
        .chain(zones.regions.values().copied())
        .collect();
    match secs as usize % (regional.len() + 1) {
        0 => Zone::UTC,
        i => regional[i - 1],
    }
}

impl ClockOp {
    pub fn tick(rng: &mut ChaCha8Rng) -> ClockOp {
        ClockOp::Tick(Duration::seconds(rng.random_range(1..=600)))
    }

    pub fn before_midnight(secs: i64) -> ClockOp {
        ClockOp::BeforeMidnight {
            secs,
            zone: zone_for(secs),
        }
    }

    pub fn before_month_end(secs: i64) -> ClockOp {
        ClockOp::BeforeMonthEnd {
            secs,
            zone: zone_for(secs),
        }
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
            ClockOp::BeforeMidnight { secs, zone } => {
                zone.start_of(zone.date_of(now) + Duration::days(1)) - Duration::seconds(secs)
            }
            ClockOp::BeforeMonthEnd { secs, zone } => {
                let d = zone.date_of(now);
                let next = if d.month() == 12 {
                    NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
                }
                .expect("a date");
                zone.start_of(next) - Duration::seconds(secs)
            }
        };
        if target > now {
            clock.advance(target - now);
        } else {
            clock.advance(Duration::seconds(1));
        }
    }
}

impl fmt::Display for ClockOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockOp::Tick(by) => write!(f, "clock +{}s", by.num_seconds()),
            ClockOp::BeforeMidnight { secs, zone } => {
                write!(f, "clock to {secs}s before midnight in {zone}")
            }
            ClockOp::BeforeMonthEnd { secs, zone } => {
                write!(f, "clock to {secs}s before month end in {zone}")
            }
        }
    }
}
