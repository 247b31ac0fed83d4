//! Cashback on partner marketplace orders, and the signed webhooks that report them.
//!
//! # Signatures
//!
//! A partner signs each request with its own secret:
//!
//! ```text
//! X-Loyalty-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
//! ```
//!
//! The timestamp must be within five minutes of our clock, in either direction, so a captured
//! request cannot be replayed later and a skewed clock is tolerated. Several `v1=` values may
//! be sent (during a secret rotation); one matching is enough. Comparison is constant-time.
//!
//! # Cashback
//!
//! Order amounts are integer minor units (cents, kopecks). The cashback in points is
//! `floor(amount × rate_bp / (10 000 × minor_units_per_point))`, computed in one step so that
//! rounding happens once. With the default 100 minor units per point, a 5% rate (500 bp) on an
//! order of 5 000.00 (500 000 minor units) earns 250 points. Only orders placed in the `app`
//! channel earn, and only at or above the minimum order of the order's region (a default
//! applies to regions without one). A participant earns at most the monthly cap per calendar
//! month (in the order's region zone, by the month in which the order was reported): an order
//! that would exceed it earns only the remaining room.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::earning::SupplierId;
use crate::ids::{EntryId, ParticipantId, RegionId};
use crate::zone::Zone;
use crate::{Classified, InfraError, Kind, Points};

pub mod order;
pub use order::{
    apply, decide, decide_release, release, Applied, CashbackSettings, CashbackStore, Decision,
    EventResult, Known, Order, OrderWrite, Queue, QueueMove, Refusal, ReleaseOutcome, Stamp, State,
    Step, Terms,
};

/// How far a signature's timestamp may be from our clock, either way.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
pub const SIGNATURE_HEADER: &str = "x-loyalty-signature";

macro_rules! key_safe_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, CashbackError> {
                let ok = !raw.is_empty()
                    && raw.len() <= 64
                    && raw
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
                ok.then(|| Self(raw.to_string()))
                    .ok_or(CashbackError::InvalidId($what))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = CashbackError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

// No ':' in these (unlike other ids): they are joined with ':' into entry ids.
key_safe_id!(
    /// A partner marketplace.
    PartnerId, "partner id"
);
key_safe_id!(
    /// A partner's order number.
    OrderId, "order id"
);
key_safe_id!(
    /// A partner's event id: the unit of webhook idempotency.
    EventId, "event id"
);

/// Why a webhook or a cashback setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CashbackError {
    #[error("unknown partner")]
    UnknownPartner,
    #[error("the request signature is missing or does not match")]
    BadSignature,
    #[error("the signature timestamp is more than five minutes from our clock")]
    StaleSignature,
    #[error("{0} must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'")]
    InvalidId(&'static str),
    #[error("a rate must be 0 to 10000 basis points")]
    InvalidRate,
    #[error("a partner needs a name of 1 to 100 characters")]
    InvalidName,
    #[error("an amount must be a whole number of minor units up to {max}")]
    InvalidAmount { max: u64 },
    #[error("the order is not known (yet): send its created event first")]
    UnknownOrder,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for CashbackError {
    fn kind(&self) -> Kind {
        match self {
            CashbackError::UnknownPartner
            | CashbackError::BadSignature
            | CashbackError::StaleSignature => Kind::Unauthenticated,
            CashbackError::InvalidId(_)
            | CashbackError::InvalidRate
            | CashbackError::InvalidName
            | CashbackError::InvalidAmount { .. } => Kind::BadInput,
            CashbackError::UnknownOrder => Kind::Conflict,
            CashbackError::Infra(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CashbackError::UnknownPartner => "unknown_partner",
            CashbackError::BadSignature => "invalid_signature",
            CashbackError::StaleSignature => "stale_signature",
            CashbackError::InvalidId(_) => "invalid_id",
            CashbackError::InvalidRate => "invalid_rate",
            CashbackError::InvalidName => "invalid_name",
            CashbackError::InvalidAmount { .. } => "invalid_amount",
            CashbackError::UnknownOrder => "unknown_order",
            CashbackError::Infra(e) => e.code(),
        }
    }
}

/// A partner's webhook secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Where partners' webhook secrets come from (the environment locally, SSM in AWS).
pub trait PartnerSecrets: Send + Sync {
    fn secret(
        &self,
        partner: &PartnerId,
    ) -> impl std::future::Future<Output = Result<Option<Secret>, InfraError>> + Send;
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &Secret, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value for `body` at `timestamp`: what a partner sends.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Checks a signature header against the raw body. The timestamp is checked first and the
/// MAC only for a fresh request, so a stale one is refused as stale whatever its MAC.
pub fn verify(
    secret: &Secret,
    header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), CashbackError> {
    let header = header.ok_or(CashbackError::BadSignature)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.extend(decode_hex(v)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(CashbackError::BadSignature)?;
    if (now.timestamp() - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(CashbackError::StaleSignature);
    }
    let expected = mac(secret, timestamp, body);
    // `verify_slice` compares in constant time.
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(CashbackError::BadSignature)
    }
}

/// The only channel that earns cashback.
pub const APP_CHANNEL: &str = "app";

/// One line of an order, for challenges ("buy X units from supplier Y").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub supplier_id: SupplierId,
    pub units: u64,
}

/// A new order, as reported by its created event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub participant_id: ParticipantId,
    /// The delivery region; it decides the minimum order.
    pub region: RegionId,
    pub channel: String,
    pub category: String,
    /// The order total in minor units.
    pub amount_minor: u64,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderChange {
    Created(NewOrder),
    Delivered,
    Cancelled,
    Returned,
}

impl OrderChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderChange::Created(_) => "created",
            OrderChange::Delivered => "delivered",
            OrderChange::Cancelled => "cancelled",
            OrderChange::Returned => "returned",
        }
    }
}

/// A webhook body: `{"event_id", "order_id", "occurred_at", "type", ...}`; a created event
/// also carries the order (see [`NewOrder`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub event_id: EventId,
    pub order_id: OrderId,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: OrderChange,
}

/// A partner's cashback rates, in basis points of the order amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerTerms {
    pub name: String,
    pub default_rate_bp: u32,
    #[serde(default)]
    pub category_rates_bp: BTreeMap<String, u32>,
    pub active: bool,
}

impl PartnerTerms {
    pub const MAX_RATE_BP: u32 = 10_000;

    pub fn validate(self) -> Result<PartnerTerms, CashbackError> {
        let name_len = self.name.trim().chars().count();
        if name_len == 0 || name_len > 100 {
            return Err(CashbackError::InvalidName);
        }
        let rates_ok = std::iter::once(&self.default_rate_bp)
            .chain(self.category_rates_bp.values())
            .all(|r| *r <= Self::MAX_RATE_BP);
        if !rates_ok {
            return Err(CashbackError::InvalidRate);
        }
        Ok(self)
    }

    pub fn rate_bp(&self, category: &str) -> u32 {
        self.category_rates_bp
            .get(category)
            .copied()
            .unwrap_or(self.default_rate_bp)
    }
}

/// A region's minimum order, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinimumOrder(u64);

impl MinimumOrder {
    /// A billion major units: far beyond any order, far from overflow.
    pub const MAX: u64 = 100_000_000_000;

    pub fn parse(amount_minor: u64) -> Result<Self, CashbackError> {
        if amount_minor > Self::MAX {
            return Err(CashbackError::InvalidAmount { max: Self::MAX });
        }
        Ok(Self(amount_minor))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// Programme-wide cashback settings, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CashbackPolicy {
    pub minor_units_per_point: u64,
    pub monthly_cap: Points,
    pub default_minimum_order: MinimumOrder,
}

impl Default for CashbackPolicy {
    fn default() -> Self {
        Self {
            minor_units_per_point: 100,
            monthly_cap: Points(3_000),
            default_minimum_order: MinimumOrder(400_000),
        }
    }
}

/// Why an order earns nothing. Not an error: the webhook is acknowledged and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    PartnerNotConfigured,
    PartnerInactive,
    NotAppChannel,
    BelowMinimumOrder,
    /// The rate and amount round down to zero points.
    NothingToEarn,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::PartnerNotConfigured => "partner_not_configured",
            Ineligible::PartnerInactive => "partner_inactive",
            Ineligible::NotAppChannel => "not_app_channel",
            Ineligible::BelowMinimumOrder => "below_minimum_order",
            Ineligible::NothingToEarn => "nothing_to_earn",
        }
    }
}

/// The cashback an order earns before the monthly cap.
pub fn cashback(
    policy: &CashbackPolicy,
    terms: Option<&PartnerTerms>,
    order: &NewOrder,
    region_minimum: Option<MinimumOrder>,
) -> Result<Points, Ineligible> {
    let terms = terms.ok_or(Ineligible::PartnerNotConfigured)?;
    if !terms.active {
        return Err(Ineligible::PartnerInactive);
    }
    if order.channel != APP_CHANNEL {
        return Err(Ineligible::NotAppChannel);
    }
    let minimum = region_minimum.unwrap_or(policy.default_minimum_order);
    if order.amount_minor < minimum.get() {
        return Err(Ineligible::BelowMinimumOrder);
    }
    let numerator = order.amount_minor as u128 * terms.rate_bp(&order.category) as u128;
    let denominator = 10_000u128 * policy.minor_units_per_point.max(1) as u128;
    let points = (numerator / denominator).min(Points::MAX_MOVEMENT as u128) as u64;
    if points == 0 {
        return Err(Ineligible::NothingToEarn);
    }
    Ok(Points(points))
}

/// What may still be credited this month, given what the month has used so far.
pub fn within_cap(cashback: Points, used_this_month: u64, cap: Points) -> Points {
    Points(
        cashback
            .get()
            .min(cap.get().saturating_sub(used_this_month)),
    )
}

/// `YYYY-MM`: the calendar month an instant falls in, in `zone` (the order's region zone:
/// its monthly cap and its release month turn at the region's local midnight).
pub fn month_of(at: DateTime<Utc>, zone: Zone) -> String {
    let day = zone.date_of(at);
    format!("{:04}-{:02}", day.year(), day.month())
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Credited to pending, awaiting delivery.
    Pending,
    /// Delivered: settlement releases it on the monthly processing day.
    Eligible,
    Released,
    /// Cancelled or returned before release: the pending credit was reversed.
    Reversed,
    /// Returned after release: clawed back (partly, if the balance could not cover it).
    ClawedBack,
    /// Earned nothing (see [`Ineligible`] or a full monthly cap); followed for challenges only.
    NoCashback,
    /// Earned nothing and was cancelled or returned.
    Closed,
}

impl OrderStatus {
    /// Delivered orders count towards challenges, whatever cashback they earned.
    pub fn counts_for_challenges_once_delivered(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::NoCashback)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Eligible => "eligible",
            OrderStatus::Released => "released",
            OrderStatus::Reversed => "reversed",
            OrderStatus::ClawedBack => "clawed_back",
            OrderStatus::NoCashback => "no_cashback",
            OrderStatus::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<OrderStatus> {
        [
            OrderStatus::Pending,
            OrderStatus::Eligible,
            OrderStatus::Released,
            OrderStatus::Reversed,
            OrderStatus::ClawedBack,
            OrderStatus::NoCashback,
            OrderStatus::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// Deterministic ledger entry ids: one per order and movement, so a retry appends nothing.
pub mod entry_ids {
    use super::*;

    fn id(partner: &PartnerId, order: &OrderId, movement: &str) -> EntryId {
        EntryId::parse(&format!("cashback:{partner}:{order}:{movement}"))
            .expect("partner and order ids are id-safe and short")
    }

    pub fn pending(partner: &PartnerId, order: &OrderId) -> EntryId {
        id(partner, order, "pending")
    }
    pub fn released(partner: &PartnerId, order: &OrderId) -> EntryId {
        id(partner, order, "released")
    }
    pub fn reversed(partner: &PartnerId, order: &OrderId) -> EntryId {
        id(partner, order, "reversed")
    }
    pub fn clawback(partner: &PartnerId, order: &OrderId) -> EntryId {
        id(partner, order, "clawback")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn secret() -> Secret {
        Secret::new(b"demo-secret".to_vec())
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let body = br#"{"event_id":"e1"}"#;
        let header = sign(&secret(), now().timestamp(), body);
        assert_eq!(verify(&secret(), Some(&header), body, now()), Ok(()));
    }

    #[test]
    fn a_changed_body_or_another_secret_fails_verification() {
        let body = br#"{"event_id":"e1"}"#;
        let header = sign(&secret(), now().timestamp(), body);
        assert_eq!(
            verify(&secret(), Some(&header), br#"{"event_id":"e2"}"#, now()),
            Err(CashbackError::BadSignature)
        );
        assert_eq!(
            verify(&Secret::new(b"other".to_vec()), Some(&header), body, now()),
            Err(CashbackError::BadSignature)
        );
    }

    #[test]
    fn a_missing_or_garbled_header_is_a_bad_signature() {
        for header in [None, Some(""), Some("t=abc,v1=00"), Some("v1=zz")] {
            assert_eq!(
                verify(&secret(), header, b"{}", now()),
                Err(CashbackError::BadSignature),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_timestamp_more_than_five_minutes_old_or_ahead_is_stale() {
        let body = b"{}";
        for offset in [-301, 301] {
            let header = sign(&secret(), now().timestamp() + offset, body);
            assert_eq!(
                verify(&secret(), Some(&header), body, now()),
                Err(CashbackError::StaleSignature),
                "{offset}"
            );
        }
        for offset in [-300, 300] {
            let header = sign(&secret(), now().timestamp() + offset, body);
            assert_eq!(verify(&secret(), Some(&header), body, now()), Ok(()));
        }
    }

    #[test]
    fn one_matching_signature_among_several_is_enough_during_rotation() {
        let body = b"{}";
        let t = now().timestamp();
        let old = sign(&Secret::new(b"old".to_vec()), t, body);
        let new = sign(&secret(), t, body);
        let header = format!("{old},{}", new.split_once(',').unwrap().1);
        assert_eq!(verify(&secret(), Some(&header), body, now()), Ok(()));
    }

    fn terms() -> PartnerTerms {
        PartnerTerms {
            name: "Demo".into(),
            default_rate_bp: 500,
            category_rates_bp: BTreeMap::from([("drinks".to_string(), 1_000)]),
            active: true,
        }
    }

    fn order(amount_minor: u64, channel: &str, category: &str) -> NewOrder {
        NewOrder {
            participant_id: ParticipantId::parse("p1").unwrap(),
            region: RegionId::parse("almaty").unwrap(),
            channel: channel.into(),
            category: category.into(),
            amount_minor,
            lines: vec![],
        }
    }

    #[test]
    fn cashback_is_the_category_rate_of_the_amount_in_whole_points_rounded_down() {
        let policy = CashbackPolicy::default();
        assert_eq!(
            cashback(
                &policy,
                Some(&terms()),
                &order(500_000, "app", "snacks"),
                None
            ),
            Ok(Points(250))
        );
        assert_eq!(
            cashback(
                &policy,
                Some(&terms()),
                &order(500_000, "app", "drinks"),
                None
            ),
            Ok(Points(500))
        );
        assert_eq!(
            cashback(
                &policy,
                Some(&terms()),
                &order(401_999, "app", "snacks"),
                None
            ),
            Ok(Points(200))
        );
    }

    #[test]
    fn only_app_orders_of_an_active_configured_partner_earn() {
        let policy = CashbackPolicy::default();
        let o = order(500_000, "web", "snacks");
        assert_eq!(
            cashback(&policy, Some(&terms()), &o, None),
            Err(Ineligible::NotAppChannel)
        );
        let inactive = PartnerTerms {
            active: false,
            ..terms()
        };
        let o = order(500_000, "app", "snacks");
        assert_eq!(
            cashback(&policy, Some(&inactive), &o, None),
            Err(Ineligible::PartnerInactive)
        );
        assert_eq!(
            cashback(&policy, None, &o, None),
            Err(Ineligible::PartnerNotConfigured)
        );
    }

    #[test]
    fn an_order_below_its_regions_minimum_or_the_default_earns_nothing() {
        let policy = CashbackPolicy::default();
        let city = Some(MinimumOrder::parse(1_000_000).unwrap());
        assert_eq!(
            cashback(&policy, Some(&terms()), &order(999_999, "app", "x"), city),
            Err(Ineligible::BelowMinimumOrder)
        );
        assert!(cashback(&policy, Some(&terms()), &order(1_000_000, "app", "x"), city).is_ok());
        assert_eq!(
            cashback(&policy, Some(&terms()), &order(399_999, "app", "x"), None),
            Err(Ineligible::BelowMinimumOrder)
        );
        assert!(cashback(&policy, Some(&terms()), &order(400_000, "app", "x"), None).is_ok());
    }

    #[test]
    fn a_rate_that_rounds_to_zero_points_earns_nothing() {
        let policy = CashbackPolicy::default();
        let tiny = PartnerTerms {
            default_rate_bp: 1,
            ..terms()
        };
        assert_eq!(
            cashback(&policy, Some(&tiny), &order(500_000, "app", "x"), None),
            Err(Ineligible::NothingToEarn)
        );
    }

    #[test]
    fn the_monthly_cap_credits_only_the_remaining_room() {
        let cap = Points(3_000);
        assert_eq!(within_cap(Points(250), 0, cap), Points(250));
        assert_eq!(within_cap(Points(250), 2_900, cap), Points(100));
        assert_eq!(within_cap(Points(250), 3_000, cap), Points(0));
        assert_eq!(within_cap(Points(250), 5_000, cap), Points(0));
    }

    #[test]
    fn rates_above_one_hundred_percent_and_empty_names_are_refused() {
        let too_high = PartnerTerms {
            category_rates_bp: BTreeMap::from([("x".to_string(), 10_001)]),
            ..terms()
        };
        assert_eq!(too_high.validate(), Err(CashbackError::InvalidRate));
        let unnamed = PartnerTerms {
            name: " ".into(),
            ..terms()
        };
        assert_eq!(unnamed.validate(), Err(CashbackError::InvalidName));
    }

    #[test]
    fn months_are_calendar_months_in_the_zone() {
        assert_eq!(month_of(now(), Zone::UTC), "2026-11");
        let new_year = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let eve = new_year - chrono::Duration::seconds(1);
        assert_eq!(month_of(eve, Zone::UTC), "2026-12");
        // 23:59:59 UTC on 31 December is already January in Omsk (UTC+6), and 00:00 UTC on
        // 1 January still December in Bogota (UTC−5).
        assert_eq!(month_of(eve, Zone::parse("Asia/Omsk").unwrap()), "2027-01");
        assert_eq!(
            month_of(new_year, Zone::parse("America/Bogota").unwrap()),
            "2026-12"
        );
    }

    #[test]
    fn order_events_parse_by_type_and_created_carries_the_order() {
        let created: OrderEvent = serde_json::from_str(
            r#"{"event_id":"e1","order_id":"o1","occurred_at":"2026-11-22T12:00:00Z","type":"created",
                "participant_id":"p1","region":"almaty","channel":"app","category":"drinks","amount_minor":500000,
                "lines":[{"supplier_id":"s1","units":3}]}"#,
        )
        .unwrap();
        assert!(matches!(created.change, OrderChange::Created(ref o) if o.lines.len() == 1));
        let delivered: OrderEvent = serde_json::from_str(
            r#"{"event_id":"e2","order_id":"o1","occurred_at":"2026-11-22T12:00:00Z","type":"delivered"}"#,
        )
        .unwrap();
        assert_eq!(delivered.change, OrderChange::Delivered);
        assert!(serde_json::from_str::<OrderEvent>(
            r#"{"event_id":"e#","order_id":"o1","occurred_at":"2026-11-22T12:00:00Z","type":"delivered"}"#
        )
        .is_err());
    }
}
