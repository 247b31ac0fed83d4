//! Challenges: "buy X units from supplier Y between two dates, earn a bonus".
//!
//! Progress is counted per participant from sources that name a supplier and a number of
//! units (sell-in lines, delivered partner orders). Each source counts once; the bonus is
//! granted exactly once, in the same write as the progress that completes the challenge.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::cashback::{OrderId, PartnerId};
use crate::earning::{Slug, SupplierId};
use crate::ids::{EntryId, ParticipantId};
use crate::{Classified, InfraError, Kind, Points};

pub type ChallengeId = Slug;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: ChallengeId,
    pub title: String,
    pub supplier: SupplierId,
    pub target_units: u64,
    pub bonus: Points,
    /// Inclusive dates of the purchases that count.
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub title: String,
    pub supplier_id: String,
    pub target_units: u64,
    pub bonus_points: u64,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the title must be 1 to 120 characters")]
    Title,
    #[error("supplier_id: {0}")]
    Supplier(crate::earning::InvalidSlug),
    #[error("target_units must be from 1 to 1000000")]
    Target,
    #[error("bonus_points must be from 1 to {max}")]
    Bonus { max: u64 },
    #[error("ends_on must not be before starts_on")]
    Dates,
}

impl Classified for ChallengeError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        "invalid_challenge"
    }
}

impl Challenge {
    pub fn parse(id: ChallengeId, req: ChallengeRequest) -> Result<Challenge, ChallengeError> {
        let title = req.title.trim();
        if title.is_empty() || title.chars().count() > 120 {
            return Err(ChallengeError::Title);
        }
        let supplier = Slug::parse(&req.supplier_id).map_err(ChallengeError::Supplier)?;
        if !(1..=1_000_000).contains(&req.target_units) {
            return Err(ChallengeError::Target);
        }
        let bonus = Points::parse(req.bonus_points).map_err(|_| ChallengeError::Bonus {
            max: Points::MAX_MOVEMENT,
        })?;
        if req.ends_on < req.starts_on {
            return Err(ChallengeError::Dates);
        }
        Ok(Challenge {
            id,
            title: title.to_string(),
            supplier,
            target_units: req.target_units,
            bonus,
            starts_on: req.starts_on,
            ends_on: req.ends_on,
        })
    }

    /// Whether a purchase from `supplier` on `date` counts towards this challenge.
    pub fn counts(&self, supplier: &SupplierId, date: NaiveDate) -> bool {
        self.supplier == *supplier && (self.starts_on..=self.ends_on).contains(&date)
    }

    /// The bonus entry: one per challenge and participant, whoever completes it first.
    pub fn bonus_entry_id(&self, participant: &ParticipantId) -> EntryId {
        EntryId::parse(&format!("challenge-{}-{}", self.id, participant))
            .expect("slugs and participant ids are id-safe")
    }
}

/// A participant's progress, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    pub units: u64,
    pub completed: bool,
}

/// What adding units does to a participant's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub next: Progress,
    /// True only for the step that crosses the target: it carries the bonus.
    pub completes: bool,
}

impl Progress {
    pub fn add(self, units: u64, challenge: &Challenge) -> Step {
        let next_units = self.units.saturating_add(units);
        let completes = !self.completed && next_units >= challenge.target_units;
        Step {
            next: Progress {
                units: next_units,
                completed: self.completed || completes,
            },
            completes,
        }
    }
}

/// One source of units (a sell-in line, a delivered order) for one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressSource {
    pub participant: ParticipantId,
    pub supplier: SupplierId,
    pub units: u64,
    pub date: NaiveDate,
    /// Stable per source, e.g. the sell-in entry id or [`Self::order_reference`]: a source
    /// recorded twice counts once.
    pub reference: String,
    pub at: DateTime<Utc>,
}

impl ProgressSource {
    /// The reference of a delivered partner order's units from one supplier. No id may
    /// contain `#` (partner and order ids are letters, digits, `-` and `_`; suppliers are
    /// slugs), so the parts are always told apart: joined with `-`, partner `m` with order
    /// `x-1` and partner `m-x` with order `1` were one source and the second never counted.
    pub fn order_reference(partner: &PartnerId, order: &OrderId, supplier: &SupplierId) -> String {
        format!("order#{partner}#{order}#{supplier}")
    }

    /// The key of the marker that says this source was counted towards `challenge`:
    /// challenge ids are slugs (no `#`), so the challenge and the reference are told apart.
    pub fn marker_key(&self, challenge: &ChallengeId) -> String {
        format!("SOURCE#{challenge}#{}", self.reference)
    }
}

/// What recording a source did to one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressOutcome {
    pub challenge: ChallengeId,
    pub progress: Progress,
    /// The bonus entry, when this source completed the challenge.
    pub bonus: Option<EntryId>,
    /// The source had been counted before; nothing changed.
    pub already_counted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("challenge {0} not found")]
    NotFound(ChallengeId),
    #[error("the budget of challenge {0} cannot cover its bonus")]
    BudgetExhausted(ChallengeId),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ProgressError {
    fn kind(&self) -> Kind {
        match self {
            ProgressError::NotFound(_) => Kind::NotFound,
            ProgressError::BudgetExhausted(_) => Kind::Unprocessable,
            ProgressError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ProgressError::NotFound(_) => "challenge_not_found",
            ProgressError::BudgetExhausted(_) => "budget_exhausted",
            ProgressError::Infra(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type OrderParts = (PartnerId, OrderId, SupplierId);

    /// Two (partner, order, supplier) triples cut from the same dashed text at random
    /// places, so that most pairs differ but read alike when joined with dashes.
    fn alike_order_parts() -> impl Strategy<Value = (OrderParts, OrderParts)> {
        prop::collection::vec("[ab]{1,2}", 3..7)
            .prop_flat_map(|tokens| {
                let n = tokens.len();
                (Just(tokens), 1..n - 1, 0..n, 1..n - 1, 0..n)
            })
            .prop_map(|(tokens, i1, x1, i2, x2)| {
                let cut = |i: usize, x: usize| {
                    let j = i + 1 + x % (tokens.len() - 1 - i);
                    (
                        PartnerId::parse(&tokens[..i].join("-")).unwrap(),
                        OrderId::parse(&tokens[i..j].join("-")).unwrap(),
                        Slug::parse(&tokens[j..].join("-")).unwrap(),
                    )
                };
                (cut(i1, x1), cut(i2, x2))
            })
    }

    proptest! {
        #[test]
        fn different_orders_or_suppliers_never_share_a_progress_reference(
            (a, b) in alike_order_parts(),
        ) {
            let reference =
                |(p, o, s): &OrderParts| ProgressSource::order_reference(p, o, s);
            prop_assert_eq!(a == b, reference(&a) == reference(&b));
        }

        #[test]
        fn different_challenges_or_sources_never_share_a_marker(
            c1 in "[a-]{1,5}", r1 in "[a#-]{0,6}",
            c2 in "[a-]{1,5}", r2 in "[a#-]{0,6}",
        ) {
            let (Ok(c1), Ok(c2)) = (Slug::parse(&c1), Slug::parse(&c2)) else {
                return Ok(());
            };
            let marker = |c: &ChallengeId, r: &str| {
                ProgressSource {
                    participant: ParticipantId::parse("p-1").unwrap(),
                    supplier: Slug::parse("acme").unwrap(),
                    units: 1,
                    date: "2026-11-01".parse().unwrap(),
                    reference: r.to_string(),
                    at: DateTime::<Utc>::default(),
                }
                .marker_key(c)
            };
            prop_assert_eq!((&c1, &r1) == (&c2, &r2), marker(&c1, &r1) == marker(&c2, &r2));
        }
    }

    #[test]
    fn orders_that_read_alike_joined_with_dashes_have_different_references() {
        let id = |p: &str, o: &str| {
            ProgressSource::order_reference(
                &PartnerId::parse(p).unwrap(),
                &OrderId::parse(o).unwrap(),
                &Slug::parse("cola-co").unwrap(),
            )
        };
        assert_ne!(id("demo-market", "x-1"), id("demo", "market-x-1"));
    }

    fn challenge() -> Challenge {
        Challenge::parse(
            Slug::parse("acme-100").unwrap(),
            serde_json::from_value(serde_json::json!({
                "title": "Buy 100 Acme units", "supplier_id": "acme", "target_units": 100,
                "bonus_points": 500, "starts_on": "2026-11-01", "ends_on": "2026-11-30"
            }))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn only_purchases_from_the_supplier_within_the_dates_count() {
        let c = challenge();
        let acme = Slug::parse("acme").unwrap();
        let other = Slug::parse("other").unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(c.counts(&acme, d("2026-11-01")));
        assert!(c.counts(&acme, d("2026-11-30")));
        assert!(!c.counts(&acme, d("2026-10-31")));
        assert!(!c.counts(&acme, d("2026-12-01")));
        assert!(!c.counts(&other, d("2026-11-15")));
    }

    #[test]
    fn only_the_step_that_crosses_the_target_completes_the_challenge() {
        let c = challenge();
        let s1 = Progress::default().add(60, &c);
        assert!(!s1.completes);
        let s2 = s1.next.add(40, &c);
        assert!(s2.completes && s2.next.completed);
        let s3 = s2.next.add(10, &c);
        assert!(!s3.completes && s3.next.completed);
        assert_eq!(s3.next.units, 110);
    }

    #[test]
    fn invalid_challenges_are_refused() {
        let base = serde_json::json!({
            "title": "t", "supplier_id": "acme", "target_units": 1,
            "bonus_points": 5, "starts_on": "2026-11-02", "ends_on": "2026-11-01"
        });
        let id = Slug::parse("c").unwrap();
        let parse =
            |v: serde_json::Value| Challenge::parse(id.clone(), serde_json::from_value(v).unwrap());
        assert_eq!(parse(base.clone()), Err(ChallengeError::Dates));
        let mut zero = base.clone();
        zero["ends_on"] = "2026-11-03".into();
        zero["target_units"] = 0.into();
        assert_eq!(parse(zero), Err(ChallengeError::Target));
    }
}
