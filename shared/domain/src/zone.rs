//! Time zones: where calendar periods are counted.
//!
//! The programme has an IANA zone and each region may have its own. Limits per day, week
//! and month, rule validity bounds given as local dates, the monthly cashback cap (and the
//! month a delivered order awaits release in), the day a delivered order counts on for
//! challenges, a pack code's last valid day (and whether a batch order's is already past, in
//! the batch's region) and a claimed credit's expiry date are counted in the participant's
//! region zone ([`Zones::for_region`]), so a participant in Omsk does not start a new month
//! at 06:00 local time. Everything stored stays a UTC instant or a local date; a zone only
//! says where the local midnights fall.
//!
//! Not calendar periods, and so left in UTC: claims' velocity windows (clock hours and
//! fixed windows of seconds). The months tiers count points in stay UTC too: they are
//! stored as counters per month on each balance, and counting them locally would change
//! the meaning of the counters already written (see the README's "Time zones").

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::RegionId;
use crate::{Classified, InfraError, Kind};

/// An IANA time zone, e.g. `Asia/Omsk`; serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone(Tz);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IANA time zone name (e.g. Asia/Omsk, America/Bogota, UTC)")]
pub struct InvalidZone(pub String);

impl Classified for InvalidZone {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        "invalid_time_zone"
    }
}

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    /// Exact IANA names only (case as in the database), so a stored name reads back as the
    /// same zone whichever tz database version reads it.
    pub fn parse(raw: &str) -> Result<Zone, InvalidZone> {
        raw.parse::<Tz>()
            .map(Zone)
            .map_err(|_| InvalidZone(raw.chars().take(64).collect()))
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The local calendar date at `at`.
    pub fn date_of(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.0).date_naive()
    }

    /// The local date-time at `at`.
    pub fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.0).naive_local()
    }

    /// The instant `day` starts here: its local midnight, or, where a DST change skips
    /// midnight, the first local instant of that day.
    pub fn start_of(&self, day: NaiveDate) -> DateTime<Utc> {
        self.instant(day.and_time(NaiveTime::MIN))
    }

    /// The instant of a local date-time. A time an ambiguous hour repeats is its first
    /// occurrence; a time a DST gap skips is the instant the gap ends (so a window never
    /// starts or ends at an instant that does not exist locally).
    pub fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                // The first instant whose local time reaches `local` is the gap's end. Offsets
                // are within a day of UTC, so the answer lies between these bounds.
                let (mut before, mut after) = (
                    local.and_utc().timestamp() - 86_400,
                    local.and_utc().timestamp() + 86_400,
                );
                let at = |secs| DateTime::from_timestamp(secs, 0).expect("within range");
                while after - before > 1 {
                    let mid = before + (after - before) / 2;
                    if self.local(at(mid)) >= local {
                        after = mid;
                    } else {
                        before = mid;
                    }
                }
                at(after)
            }
        }
    }
}

impl Default for Zone {
    fn default() -> Self {
        Zone::UTC
    }
}

impl TryFrom<String> for Zone {
    type Error = InvalidZone;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Zone::parse(&value)
    }
}

impl From<Zone> for String {
    fn from(value: Zone) -> String {
        value.name().to_string()
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The zones an admin configured: the programme's, and any region's own. A region without
/// one counts in the programme zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zones {
    pub programme: Zone,
    pub regions: BTreeMap<RegionId, Zone>,
}

impl Zones {
    /// Every period counted in one zone.
    pub fn single(zone: Zone) -> Zones {
        Zones {
            programme: zone,
            regions: BTreeMap::new(),
        }
    }

    /// Whether every region counts in the programme zone.
    pub fn uniform(&self) -> bool {
        self.regions.values().all(|z| *z == self.programme)
    }

    /// The zone a participant of `region` counts periods in; no region (or one without a
    /// zone of its own) is the programme zone.
    pub fn for_region(&self, region: Option<&RegionId>) -> Zone {
        region
            .and_then(|r| self.regions.get(r))
            .copied()
            .unwrap_or(self.programme)
    }
}

/// Where admins' zone settings go (`PUT /admin/programme`, `PUT /admin/regions/{region}`,
/// `GET /admin/regions`). Functions read them through their own cached settings (an
/// action's [`crate::action::Programme`], cashback's `CashbackStore::zones`).
pub trait ZoneSettings: Send + Sync {
    /// The zones as stored; a programme that never set its zone counts in UTC.
    fn zones(&self) -> impl Future<Output = Result<Zones, InfraError>> + Send;

    fn put_programme_zone(
        &self,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    fn put_region_zone(
        &self,
        region: &RegionId,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// A shared store is a store.
impl<T: ZoneSettings + ?Sized> ZoneSettings for std::sync::Arc<T> {
    fn zones(&self) -> impl Future<Output = Result<Zones, InfraError>> + Send {
        (**self).zones()
    }
    fn put_programme_zone(
        &self,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send {
        (**self).put_programme_zone(zone, now)
    }
    fn put_region_zone(
        &self,
        region: &RegionId,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send {
        (**self).put_region_zone(region, zone, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn zones_parse_iana_names_and_refuse_anything_else() {
        assert_eq!(Zone::parse("Asia/Omsk").unwrap().name(), "Asia/Omsk");
        assert_eq!(Zone::parse("UTC").unwrap(), Zone::UTC);
        for bad in ["", "Asia/Nowhere", "asia/omsk", "+06:00", "Asia/Omsk "] {
            let err = Zone::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_time_zone", "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Zone::parse("America/Bogota").unwrap()).unwrap(),
            "\"America/Bogota\""
        );
        assert!(serde_json::from_str::<Zone>("\"Mars/Olympus\"").is_err());
    }

    #[test]
    fn the_tz_data_knows_almaty_moved_to_utc_plus_5_in_2024() {
        let almaty = Zone::parse("Asia/Almaty").unwrap();
        assert_eq!(
            almaty.local(utc("2026-11-30T19:00:00Z")).to_string(),
            "2026-12-01 00:00:00"
        );
    }

    #[test]
    fn a_region_without_its_own_zone_counts_in_the_programme_zone() {
        let north = RegionId::parse("north").unwrap();
        let south = RegionId::parse("south").unwrap();
        let zones = Zones {
            programme: Zone::parse("Asia/Omsk").unwrap(),
            regions: BTreeMap::from([(north.clone(), Zone::parse("America/Bogota").unwrap())]),
        };
        assert_eq!(zones.for_region(Some(&north)).name(), "America/Bogota");
        assert_eq!(zones.for_region(Some(&south)).name(), "Asia/Omsk");
        assert_eq!(zones.for_region(None).name(), "Asia/Omsk");
    }

    #[test]
    fn a_day_starts_at_local_midnight_even_on_a_dst_day() {
        let ny = Zone::parse("America/New_York").unwrap();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(ny.start_of(day("2026-12-01")), utc("2026-12-01T05:00:00Z"));
        assert_eq!(ny.start_of(day("2026-07-01")), utc("2026-07-01T04:00:00Z"));
        // Santiago skips from 00:00 to 01:00 when DST starts: the day starts at 01:00 local.
        let santiago = Zone::parse("America/Santiago").unwrap();
        assert_eq!(
            santiago.start_of(day("2026-09-06")),
            utc("2026-09-06T04:00:00Z")
        );
    }
}
