//! Challenges: "buy X units from supplier Y between two dates, earn a bonus".
//!
//! Progress is counted per participant from sources that name a supplier and a number of
//! units (sell-in lines, delivered partner orders). Each source counts once; the bonus is
//! granted exactly once, in the same write as the progress that completes the challenge.
//!
//! [`record_progress`] holds the rules over the [`ChallengeStore`] port: which challenges a
//! source counts for, the step from the progress read, and what each refusal of
//! [`ChallengeStore::commit_step`] means (counted before: answer so; participant not active:
//! count the source nowhere; progress moved: read again and retry; budget exhausted: skip
//! that challenge). The adapters only read and write.
//!
//! A blocked (or unregistered) participant earns nothing, bonuses included: every step
//! checks the participant's standing in its one write, so a source of a blocked participant
//! counts towards no challenge (no marker, no progress, no bonus). Progress recorded before
//! the block is kept; sources after an unblock count on from it, and the source that
//! reaches the target then pays the bonus. Recording a refused source again after an
//! unblock (a re-imported sell-in line) counts it, as after a budget top-up.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::cashback::{Order, OrderId, PartnerId};
use crate::earning::{Slug, SupplierId};
use crate::ids::{EntryId, ParticipantId};
use crate::ledger::{Entry, EntryKind};
use crate::zone::Zone;
use crate::{Classified, InfraError, Kind, Points};

pub type ChallengeId = Slug;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: ChallengeId,
    pub title: String,
    pub supplier: SupplierId,
    pub target_units: u64,
    pub bonus: Points,
    /// Inclusive dates of the purchases that count: local dates, so each region's
    /// challenge opens and closes at its own midnights. A purchase is dated where it
    /// happened (a sell-in line by its own date, a delivered order by
    /// [`ProgressSource::of_order`]), never by the UTC date.
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

    /// The bonus entry, paid from the challenge's programme account (source
    /// `challenge <id>`, see [`crate::ledger::ProgrammeAccount::of`]).
    pub fn bonus_entry(&self, participant: &ParticipantId, at: DateTime<Utc>) -> Entry {
        Entry {
            id: self.bonus_entry_id(participant),
            participant: participant.clone(),
            outlet: None,
            kind: EntryKind::Accrual,
            amount: self.bonus,
            source: format!("challenge {}", self.id),
            created_at: at,
            expires_on: None,
        }
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

    /// A delivered order's sources: one per supplier with units, dated on the day the order
    /// was placed in `zone`, its region's (as its cap month is), so an order placed at 01:00
    /// on 1 December in Omsk counts for a December challenge though it is 30 November in UTC.
    pub fn of_order(order: &Order, zone: Zone, at: DateTime<Utc>) -> Vec<ProgressSource> {
        let mut by_supplier: std::collections::BTreeMap<&SupplierId, u64> = Default::default();
        for line in order.lines.iter().filter(|l| l.units > 0) {
            *by_supplier.entry(&line.supplier_id).or_default() += line.units;
        }
        by_supplier
            .into_iter()
            .map(|(supplier, units)| ProgressSource {
                participant: order.participant.clone(),
                supplier: supplier.clone(),
                units,
                date: zone.date_of(order.ordered_at),
                reference: Self::order_reference(&order.partner, &order.id, supplier),
                at,
            })
            .collect()
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

/// One step of one participant's progress in one challenge: everything the port writes in
/// one atomic operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCommit {
    pub challenge: ChallengeId,
    pub source: ProgressSource,
    /// The progress the step was computed from: `None` when there was none. The write is
    /// refused with [`StepRefusal::ProgressMoved`] unless the progress is still this.
    pub read: Option<Progress>,
    pub next: Progress,
    /// The bonus entry, when this step completes the challenge; written with its
    /// `ChallengeCompleted` outbox event.
    pub bonus: Option<Entry>,
}

/// Why a step was not written; nothing of it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepRefusal {
    /// The source's marker for this challenge exists: it was counted before.
    SourceCounted,
    /// The participant has no profile or is blocked: they earn nothing, so the source
    /// counts for no challenge.
    ParticipantNotActive,
    /// The progress is no longer what was read: another source counted meanwhile.
    ProgressMoved,
    /// The challenge's budget (its programme account's shard) cannot cover the bonus.
    BudgetExhausted,
    /// Another write touched the same items at the same moment.
    Contended,
}

/// The port through which challenges reach storage. When several conditions of
/// [`Self::commit_step`] fail, the refusal is the first of: source counted, participant not
/// active, progress moved, budget exhausted.
pub trait ChallengeStore: Send + Sync {
    /// Every challenge, ordered by id.
    fn challenges(&self) -> impl Future<Output = Result<Vec<Challenge>, InfraError>> + Send;

    /// Adds or replaces a challenge.
    fn put_challenge(
        &self,
        challenge: &Challenge,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The participant's progress in one challenge (a consistent read); `None` before any.
    fn progress(
        &self,
        participant: &ParticipantId,
        challenge: &ChallengeId,
    ) -> impl Future<Output = Result<Option<Progress>, InfraError>> + Send;

    /// The participant's progress in every challenge they have any in.
    fn progresses(
        &self,
        participant: &ParticipantId,
    ) -> impl Future<Output = Result<Vec<(ChallengeId, Progress)>, InfraError>> + Send;

    /// One atomic write: the source's marker (must be new), the participant's standing
    /// (registered and active), the progress (must still be `step.read`) and the bonus entry
    /// with its ledger items and outbox event; all or nothing.
    fn commit_step(
        &self,
        step: &StepCommit,
    ) -> impl Future<Output = Result<Result<(), StepRefusal>, InfraError>> + Send;

    /// Waits before attempt `attempt` (2 and up) of a step whose progress moved. The domain
    /// has no timer, so the pause is the adapter's: DynamoDB spreads racing writers out (the
    /// progress item is hot while a participant's sources arrive together); memory, where
    /// every step is atomic, does not wait.
    fn backoff(&self, attempt: usize) -> impl Future<Output = ()> + Send {
        let _ = attempt;
        std::future::ready(())
    }
}

/// Attempts of one step while other sources of the same participant keep moving the
/// progress; each attempt reads the progress again, so the loser of a race retries from the
/// winner's result.
pub const MAX_ATTEMPTS: usize = 8;

/// Records `source`'s units towards every challenge it counts for, and grants a
/// challenge's bonus in the same write as the progress that completes it. A source recorded
/// again changes nothing; call this again freely after a failure. A challenge whose budget
/// cannot cover the bonus a source would complete is skipped (nothing written,
/// `budget_exhausted` logged by the caller from [`Recorded::out_of_budget`]); the others
/// still count the source, and recording it again after a top-up counts it there too. A
/// participant who is not active counts the source nowhere ([`Recorded::not_active`]).
pub async fn record_progress<S: ChallengeStore>(
    store: &S,
    source: &ProgressSource,
) -> Result<Recorded, ProgressError> {
    let mut recorded = Recorded::default();
    for challenge in store.challenges().await? {
        if !challenge.counts(&source.supplier, source.date) {
            continue;
        }
        match record_one(store, &challenge, source).await {
            Ok(outcome) => recorded.outcomes.push(outcome),
            Err(ProgressError::BudgetExhausted(id)) => recorded.out_of_budget.push(id),
            // The standing is the participant's, not the challenge's: every other challenge
            // would refuse the same way.
            Err(ProgressError::ParticipantNotActive) => {
                recorded.not_active = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(recorded)
}

/// What recording one source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// One per challenge the source counted for (or had counted for before).
    pub outcomes: Vec<ProgressOutcome>,
    /// Challenges skipped because their budget cannot cover the bonus; nothing was written
    /// for them.
    pub out_of_budget: Vec<ChallengeId>,
    /// The participant has no profile or is blocked: the source was counted for no
    /// challenge it had not counted for before (outcomes before the refusal, if any, are
    /// sources counted earlier).
    pub not_active: bool,
}

impl Recorded {
    /// The challenges this source completed now.
    pub fn completed(&self) -> impl Iterator<Item = &ChallengeId> {
        self.outcomes
            .iter()
            .filter(|o| o.bonus.is_some())
            .map(|o| &o.challenge)
    }
}

/// The write that adds `source` to `read` in `challenge`.
pub fn step_of(
    challenge: &Challenge,
    source: &ProgressSource,
    read: Option<Progress>,
) -> StepCommit {
    let step = read.unwrap_or_default().add(source.units, challenge);
    StepCommit {
        challenge: challenge.id.clone(),
        source: source.clone(),
        read,
        next: step.next,
        bonus: step
            .completes
            .then(|| challenge.bonus_entry(&source.participant, source.at)),
    }
}

async fn record_one<S: ChallengeStore>(
    store: &S,
    challenge: &Challenge,
    source: &ProgressSource,
) -> Result<ProgressOutcome, ProgressError> {
    let mut last = StepRefusal::Contended;
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            store.backoff(attempt).await;
        }
        let read = store.progress(&source.participant, &challenge.id).await?;
        let step = step_of(challenge, source, read);
        match store.commit_step(&step).await? {
            Ok(()) => {
                return Ok(ProgressOutcome {
                    challenge: challenge.id.clone(),
                    progress: step.next,
                    bonus: step.bonus.map(|e| e.id),
                    already_counted: false,
                })
            }
            Err(StepRefusal::SourceCounted) => {
                return Ok(ProgressOutcome {
                    challenge: challenge.id.clone(),
                    progress: read.unwrap_or_default(),
                    bonus: None,
                    already_counted: true,
                })
            }
            Err(StepRefusal::BudgetExhausted) => {
                return Err(ProgressError::BudgetExhausted(challenge.id.clone()))
            }
            Err(StepRefusal::ParticipantNotActive) => {
                return Err(ProgressError::ParticipantNotActive)
            }
            Err(refusal @ (StepRefusal::ProgressMoved | StepRefusal::Contended)) => last = refusal,
        }
    }
    Err(InfraError::retryable(
        "record progress",
        format!("still refused after {MAX_ATTEMPTS} attempts: {last:?}"),
    )
    .into())
}

/// Every challenge with the participant's progress in it (zero where they have none), for
/// `GET /me/challenges`.
pub async fn progress_of<S: ChallengeStore>(
    store: &S,
    participant: &ParticipantId,
) -> Result<Vec<(Challenge, Progress)>, InfraError> {
    let challenges = store.challenges().await?;
    let progress: std::collections::BTreeMap<ChallengeId, Progress> =
        store.progresses(participant).await?.into_iter().collect();
    Ok(challenges
        .into_iter()
        .map(|c| {
            let p = progress.get(&c.id).copied().unwrap_or_default();
            (c, p)
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("challenge {0} not found")]
    NotFound(ChallengeId),
    #[error("the budget of challenge {0} cannot cover its bonus")]
    BudgetExhausted(ChallengeId),
    #[error("the participant is not registered and active")]
    ParticipantNotActive,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ProgressError {
    fn kind(&self) -> Kind {
        match self {
            ProgressError::NotFound(_) => Kind::NotFound,
            ProgressError::BudgetExhausted(_) => Kind::Unprocessable,
            ProgressError::ParticipantNotActive => Kind::Forbidden,
            ProgressError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ProgressError::NotFound(_) => "challenge_not_found",
            ProgressError::BudgetExhausted(_) => "budget_exhausted",
            ProgressError::ParticipantNotActive => "participant_not_active",
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

    /// An order of 24 `acme` units placed at `ordered_at`.
    fn order(ordered_at: &str) -> Order {
        use crate::cashback::{OrderLine, OrderStatus};
        Order {
            partner: PartnerId::parse("demo-market").unwrap(),
            id: OrderId::parse("o-1").unwrap(),
            participant: ParticipantId::parse("p-1").unwrap(),
            region: crate::ids::RegionId::parse("north").unwrap(),
            channel: "app".into(),
            category: "beverages".into(),
            amount_minor: 1_000,
            status: OrderStatus::Eligible,
            cashback: Points(0),
            month: String::new(),
            lines: vec![
                OrderLine {
                    supplier_id: Slug::parse("acme").unwrap(),
                    units: 20,
                },
                OrderLine {
                    supplier_id: Slug::parse("acme").unwrap(),
                    units: 4,
                },
                OrderLine {
                    supplier_id: Slug::parse("other").unwrap(),
                    units: 0,
                },
            ],
            ordered_at: ordered_at.parse().unwrap(),
            clawed_back: Points(0),
            outstanding_clawback: Points(0),
        }
    }

    #[test]
    fn an_order_counts_for_the_challenge_of_its_local_day_across_a_month_end() {
        let november = challenge();
        let mut december = challenge();
        december.starts_on = "2026-12-01".parse().unwrap();
        december.ends_on = "2026-12-31".parse().unwrap();
        let counts_for = |order: &Order, zone: &str| {
            let sources =
                ProgressSource::of_order(order, Zone::parse(zone).unwrap(), order.ordered_at);
            assert_eq!(sources.len(), 1, "one source per supplier with units");
            assert_eq!(sources[0].units, 24);
            let s = &sources[0];
            (
                november.counts(&s.supplier, s.date),
                december.counts(&s.supplier, s.date),
            )
        };
        // 19:00 UTC on 30 November is 01:00 on 1 December in Omsk (UTC+6).
        let late = order("2026-11-30T19:00:00Z");
        assert_eq!(counts_for(&late, "Asia/Omsk"), (false, true));
        assert_eq!(counts_for(&late, "UTC"), (true, false));
        // 03:00 UTC on 1 December is 22:00 on 30 November in Bogotá (UTC−5).
        let early = order("2026-12-01T03:00:00Z");
        assert_eq!(counts_for(&early, "America/Bogota"), (true, false));
        assert_eq!(counts_for(&early, "UTC"), (false, true));
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

    /// A tiny store: progress and markers in maps, a budget in points for bonuses, and a
    /// number of commits that another source wins first (it adds one unit meanwhile).
    #[derive(Default)]
    struct Fake {
        challenges: Vec<Challenge>,
        world: std::sync::Mutex<FakeWorld>,
    }

    #[derive(Default)]
    struct FakeWorld {
        progress: std::collections::BTreeMap<ChallengeId, Progress>,
        markers: std::collections::BTreeSet<(ChallengeId, String)>,
        bonuses: Vec<Entry>,
        budget: Option<u64>,
        races: usize,
        commits: usize,
    }

    impl ChallengeStore for Fake {
        async fn challenges(&self) -> Result<Vec<Challenge>, InfraError> {
            Ok(self.challenges.clone())
        }
        async fn put_challenge(&self, _: &Challenge, _: DateTime<Utc>) -> Result<(), InfraError> {
            unreachable!("not used by the use cases")
        }
        async fn progress(
            &self,
            _: &ParticipantId,
            c: &ChallengeId,
        ) -> Result<Option<Progress>, InfraError> {
            Ok(self.world.lock().unwrap().progress.get(c).copied())
        }
        async fn progresses(
            &self,
            _: &ParticipantId,
        ) -> Result<Vec<(ChallengeId, Progress)>, InfraError> {
            let w = self.world.lock().unwrap();
            Ok(w.progress.iter().map(|(c, p)| (c.clone(), *p)).collect())
        }
        async fn commit_step(&self, s: &StepCommit) -> Result<Result<(), StepRefusal>, InfraError> {
            let mut w = self.world.lock().unwrap();
            w.commits += 1;
            if w.races > 0 {
                w.races -= 1;
                w.progress.entry(s.challenge.clone()).or_default().units += 1;
            }
            let marker = (s.challenge.clone(), s.source.reference.clone());
            if w.markers.contains(&marker) {
                return Ok(Err(StepRefusal::SourceCounted));
            }
            if w.progress.get(&s.challenge).copied() != s.read {
                return Ok(Err(StepRefusal::ProgressMoved));
            }
            if let (Some(bonus), Some(budget)) = (&s.bonus, w.budget) {
                if bonus.amount.get() > budget {
                    return Ok(Err(StepRefusal::BudgetExhausted));
                }
            }
            w.markers.insert(marker);
            w.progress.insert(s.challenge.clone(), s.next);
            w.bonuses.extend(s.bonus.clone());
            Ok(Ok(()))
        }
    }

    fn source(reference: &str, units: u64) -> ProgressSource {
        ProgressSource {
            participant: ParticipantId::parse("p-1").unwrap(),
            supplier: Slug::parse("acme").unwrap(),
            units,
            date: "2026-11-10".parse().unwrap(),
            reference: reference.into(),
            at: DateTime::<Utc>::default(),
        }
    }

    fn fake() -> Fake {
        Fake {
            challenges: vec![challenge()],
            ..Fake::default()
        }
    }

    #[tokio::test]
    async fn a_source_counts_once_and_the_step_that_crosses_the_target_carries_the_bonus() {
        let store = fake();
        let first = record_progress(&store, &source("line-1", 60))
            .await
            .unwrap();
        assert_eq!(first.outcomes[0].progress.units, 60);
        assert_eq!(first.completed().count(), 0);
        let again = record_progress(&store, &source("line-1", 60))
            .await
            .unwrap();
        assert!(again.outcomes[0].already_counted);
        let second = record_progress(&store, &source("line-2", 50))
            .await
            .unwrap();
        let c = challenge();
        assert_eq!(
            second.completed().collect::<Vec<_>>(),
            vec![&c.id],
            "110 units cross the target of 100"
        );
        let w = store.world.lock().unwrap();
        assert_eq!(
            w.progress[&c.id],
            Progress {
                units: 110,
                completed: true
            }
        );
        assert_eq!(w.bonuses.len(), 1);
        assert_eq!(
            w.bonuses[0].id,
            c.bonus_entry_id(&ParticipantId::parse("p-1").unwrap())
        );
        assert_eq!(w.bonuses[0].source, "challenge acme-100");
    }

    #[tokio::test]
    async fn a_source_outside_the_challenge_counts_for_nothing_and_writes_nothing() {
        let store = fake();
        let mut late = source("line-1", 500);
        late.date = "2026-12-01".parse().unwrap();
        assert_eq!(
            record_progress(&store, &late).await.unwrap(),
            Recorded::default()
        );
        assert_eq!(store.world.lock().unwrap().commits, 0);
    }

    #[tokio::test]
    async fn progress_that_moved_is_read_again_and_no_unit_is_lost() {
        let store = fake();
        store.world.lock().unwrap().races = 3;
        let recorded = record_progress(&store, &source("line-1", 10))
            .await
            .unwrap();
        assert_eq!(
            recorded.outcomes[0].progress.units, 13,
            "3 racing units + 10"
        );
        assert_eq!(store.world.lock().unwrap().commits, 4);
    }

    #[tokio::test]
    async fn progress_that_keeps_moving_is_a_retryable_failure_after_the_last_attempt() {
        let store = fake();
        store.world.lock().unwrap().races = MAX_ATTEMPTS;
        let err = record_progress(&store, &source("line-1", 10))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProgressError::Infra(e) if e.retryable),
            "{err:?}"
        );
        assert!(store.world.lock().unwrap().markers.is_empty());
    }

    #[tokio::test]
    async fn a_challenge_out_of_budget_is_skipped_and_counts_the_source_after_a_top_up() {
        let store = fake();
        store.world.lock().unwrap().budget = Some(499);
        let recorded = record_progress(&store, &source("line-1", 100))
            .await
            .unwrap();
        assert_eq!(recorded.out_of_budget, vec![challenge().id]);
        assert!(recorded.outcomes.is_empty());
        assert!(
            store.world.lock().unwrap().progress.is_empty(),
            "nothing written"
        );
        store.world.lock().unwrap().budget = Some(500);
        let recorded = record_progress(&store, &source("line-1", 100))
            .await
            .unwrap();
        assert_eq!(recorded.completed().count(), 1);
    }

    #[tokio::test]
    async fn progress_of_lists_every_challenge_with_zero_where_there_is_none() {
        let mut store = fake();
        let mut other = challenge();
        other.id = Slug::parse("other").unwrap();
        other.supplier = Slug::parse("other-supplier").unwrap();
        store.challenges.push(other);
        record_progress(&store, &source("line-1", 7)).await.unwrap();
        let listed = progress_of(&store, &ParticipantId::parse("p-1").unwrap())
            .await
            .unwrap();
        let units: Vec<_> = listed
            .iter()
            .map(|(c, p)| (c.id.as_str(), p.units))
            .collect();
        assert_eq!(units, vec![("acme-100", 7), ("other", 0)]);
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
