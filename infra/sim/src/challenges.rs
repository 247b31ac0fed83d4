//! Challenges in the simulator: an admin puts challenges (a supplier, a target, a bonus, a
//! date window; every other one with a budget, topped up mid-run under new and replayed
//! funding ids), sources of units arrive for participants as sell-in lines and delivered
//! partner orders produce them, the same source is delivered again, sources count for no
//! challenge (another supplier, a date outside every window), two sources of one
//! participant race from the same read of their progress, and participants read their
//! progress.
//!
//! Sources run through the real use case [`record_progress`] over [`MemoryChallenges`]
//! behind [`FaultyChallenges`]; the caller retries a source after an error, as the
//! functions' callers do (a redelivered webhook, a retried import). A model predicts every
//! answer per (participant, challenge): the units counted (each source once), completion,
//! the bonus and whether the whole budget covers it. After every step the participant's
//! progress is the model's and the sum of the units of the sources whose markers exist, no
//! bonus is granted twice, every budget holds what the model says with every top-up counted
//! once, and member and programme accounts sum to zero.
//!
//! The bonuses land in a ledger of their own, not the one the actions simulation uses:
//! sharing it would make the actions model follow every bonus (balances, the tier each
//! bonus earns towards, entry counts), for no check the challenge model does not make
//! here; the double-entry and budget checks are the same ([`check_programme`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::executor::block_on;
use loyalty_domain::cashback::{OrderId, PartnerId};
use loyalty_domain::challenge::{
    progress_of, record_progress, step_of, Challenge, ChallengeId, ChallengeStore, Progress,
    ProgressError, ProgressOutcome, ProgressSource, Recorded, StepCommit, StepRefusal,
};
use loyalty_domain::earning::{entry_ids, LineIdentity, Sku, Slug, SupplierId};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{programme_shard, ProgrammeAccount, PROGRAMME_SHARDS};
use loyalty_domain::Points;
use loyalty_platform::memory::challenges::ChallengesBug;
use loyalty_platform::memory::MemoryChallenges;
use loyalty_platform::stores::ledger::Funded;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::{budget_left, check_programme, draw_budget};
use crate::faults::{Fault, FaultRates, FaultyChallenges};
use crate::world::World;

/// Suppliers challenges are put for.
const SUPPLIERS: [&str; 2] = ["acme", "fizz"];
/// A supplier no challenge is for.
const NO_CHALLENGE: &str = "globex";
/// Tries of one source by its caller after errors (lost answers, throttling).
const MAX_TRIES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOp {
    /// An admin puts a new challenge (every other one with a budget).
    Put,
    /// An admin tops up a budgeted challenge, or sends an earlier top-up again.
    TopUp,
    /// A new source for a challenge's supplier, dated recently.
    Source,
    /// A source delivered before, again.
    Redeliver,
    /// A source of a supplier no challenge is for, or dated outside every window.
    Outside,
    /// Two sources of one participant in one challenge stepped from the same read.
    Raced,
    /// A participant reads their progress.
    Read,
}

impl ChallengeOp {
    pub fn kind(&self) -> &'static str {
        match self {
            ChallengeOp::Put => "challenge put",
            ChallengeOp::TopUp => "challenge top-up",
            ChallengeOp::Source => "challenge source",
            ChallengeOp::Redeliver => "challenge source again",
            ChallengeOp::Outside => "challenge source outside",
            ChallengeOp::Raced => "challenge sources raced",
            ChallengeOp::Read => "challenge progress read",
        }
    }

    /// Weights per 4,000 steps: a new challenge every 4,000 steps (some 75 simulated days;
    /// each is open for 20 to 90), so one to three are open at any time and a long run
    /// does not pile up challenges every source is checked against.
    pub fn generate(rng: &mut ChaCha8Rng) -> Option<ChallengeOp> {
        Some(match rng.random_range(0..4_000) {
            0..1 => ChallengeOp::Put,
            1..9 => ChallengeOp::TopUp,
            9..169 => ChallengeOp::Source,
            169..229 => ChallengeOp::Redeliver,
            229..259 => ChallengeOp::Outside,
            259..291 => ChallengeOp::Raced,
            291..319 => ChallengeOp::Read,
            _ => return None,
        })
    }
}

impl fmt::Display for ChallengeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// A challenge the model follows.
#[derive(Debug, Clone)]
struct Tracked {
    challenge: Challenge,
    /// Funding ids that moved points (empty: no budget), and their total.
    fundings: Vec<String>,
    funded: u64,
}

#[derive(Debug, Default)]
pub struct Model {
    challenges: BTreeMap<ChallengeId, Tracked>,
    progress: BTreeMap<(ParticipantId, ChallengeId), Progress>,
    /// The references counted per (participant, challenge).
    counted: BTreeMap<(ParticipantId, ChallengeId), BTreeSet<String>>,
    /// Bonuses granted.
    bonuses: BTreeSet<(ParticipantId, ChallengeId)>,
    /// Bonus points per participant.
    balances: BTreeMap<ParticipantId, i64>,
    /// (challenge, shard) → what is left of a budgeted challenge's shard.
    budgets: BTreeMap<(ChallengeId, u32), i64>,
    /// Participants an admin blocked: their sources count nowhere, bonuses included.
    pub blocked: BTreeSet<ParticipantId>,
}

impl Model {
    /// What the store must answer to `step`, by the port's precedence.
    fn expect_step(&self, step: &StepCommit) -> Result<(), StepRefusal> {
        let key = (step.source.participant.clone(), step.challenge.clone());
        if self
            .counted
            .get(&key)
            .is_some_and(|refs| refs.contains(&step.source.reference))
        {
            return Err(StepRefusal::SourceCounted);
        }
        if self.blocked.contains(&step.source.participant) {
            return Err(StepRefusal::ParticipantNotActive);
        }
        let units = self.progress.get(&key).map(|p| p.units);
        if units != step.read.map(|p| p.units) {
            return Err(StepRefusal::ProgressMoved);
        }
        if let Some(bonus) = &step.bonus {
            // The store gathers a dry shard from the others: only the whole budget decides.
            let left = budget_left(&self.budgets, |s| (step.challenge.clone(), s));
            if left.is_some_and(|left| left < bonus.amount.get() as i64) {
                return Err(StepRefusal::BudgetExhausted);
            }
        }
        Ok(())
    }

    /// Moves the model by a step the store wrote.
    fn apply_step(&mut self, step: &StepCommit) -> Result<(), String> {
        let key = (step.source.participant.clone(), step.challenge.clone());
        self.counted
            .entry(key.clone())
            .or_default()
            .insert(step.source.reference.clone());
        self.progress.insert(key.clone(), step.next);
        if let Some(bonus) = &step.bonus {
            self.bonuses.insert(key);
            *self.balances.entry(bonus.participant.clone()).or_default() +=
                bonus.amount.get() as i64;
            if budget_left(&self.budgets, |s| (step.challenge.clone(), s)).is_some() {
                draw_budget(
                    &mut self.budgets,
                    |s| (step.challenge.clone(), s),
                    programme_shard(&bonus.id),
                    bonus.amount.get() as i64,
                )?;
            }
        }
        Ok(())
    }

    /// What recording `source` must answer, and the steps it writes.
    fn predict(&self, source: &ProgressSource) -> (Recorded, Vec<StepCommit>) {
        let mut recorded = Recorded::default();
        let mut steps = Vec::new();
        for (id, t) in &self.challenges {
            if !t.challenge.counts(&source.supplier, source.date) {
                continue;
            }
            let read = self
                .progress
                .get(&(source.participant.clone(), id.clone()))
                .copied();
            let step = step_of(&t.challenge, source, read);
            match self.expect_step(&step) {
                Ok(()) => {
                    recorded.outcomes.push(ProgressOutcome {
                        challenge: id.clone(),
                        progress: step.next,
                        bonus: step.bonus.as_ref().map(|e| e.id.clone()),
                        already_counted: false,
                    });
                    steps.push(step);
                }
                Err(StepRefusal::SourceCounted) => recorded.outcomes.push(ProgressOutcome {
                    challenge: id.clone(),
                    progress: read.unwrap_or_default(),
                    bonus: None,
                    already_counted: true,
                }),
                Err(StepRefusal::ParticipantNotActive) => {
                    recorded.not_active = true;
                    break;
                }
                Err(_) => recorded.out_of_budget.push(id.clone()),
            }
        }
        (recorded, steps)
    }
}

/// The simulation's challenges: the store, the sources sent so far and the model.
pub struct Challenges {
    pub store: FaultyChallenges<MemoryChallenges>,
    pub model: Model,
    /// Every source sent, for redeliveries.
    sources: Vec<ProgressSource>,
    /// Every source's units by reference (a reference always names the same units).
    units: BTreeMap<String, u64>,
    next_challenge: u64,
    next_source: u64,
}

impl Challenges {
    /// Two challenges to start with, one of them budgeted.
    pub fn new(
        seed: u64,
        rates: FaultRates,
        bug: Option<ChallengesBug>,
        rng: &mut ChaCha8Rng,
        now: DateTime<Utc>,
    ) -> Self {
        let inner = match bug {
            Some(bug) => MemoryChallenges::with_planted_bug(bug),
            None => MemoryChallenges::new(),
        };
        let mut challenges = Self {
            store: FaultyChallenges::new(inner, seed, rates),
            model: Model::default(),
            sources: Vec::new(),
            units: BTreeMap::new(),
            next_challenge: 0,
            next_source: 0,
        };
        for _ in 0..2 {
            challenges.put(rng, now);
        }
        challenges
    }

    /// Runs one operation and checks the answer and the invariants; returns the description
    /// for the history, the answer's label and the faults injected.
    pub fn apply(
        &mut self,
        op: ChallengeOp,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> (String, &'static str, Vec<Fault>, Result<(), String>) {
        let (described, label, result) = match op {
            ChallengeOp::Put => {
                let described = self.put(rng, now);
                let id = challenge_id(self.next_challenge - 1);
                (described, "challenge put", self.check_ledger([&id]))
            }
            ChallengeOp::TopUp => self.top_up(rng),
            ChallengeOp::Read => self.read(rng, world),
            ChallengeOp::Raced => self.race(rng, world, now),
            ChallengeOp::Source | ChallengeOp::Outside | ChallengeOp::Redeliver => {
                let Some(source) = self.source(op, rng, world, now) else {
                    return (format!("{op}: nothing yet"), "nothing yet", vec![], Ok(()));
                };
                self.deliver(op, &source)
            }
        };
        (described, label, self.store.take_injected(), result)
    }

    fn put(&mut self, rng: &mut ChaCha8Rng, now: DateTime<Utc>) -> String {
        let n = self.next_challenge;
        self.next_challenge += 1;
        let starts_on = now.date_naive() - Days::new(rng.random_range(0..5));
        let challenge = Challenge {
            id: challenge_id(n),
            title: format!("Simulated challenge {n}"),
            supplier: supplier(SUPPLIERS[rng.random_range(0..SUPPLIERS.len())]),
            target_units: rng.random_range(15..=45),
            bonus: Points(rng.random_range(100..=300)),
            starts_on,
            ends_on: starts_on + Days::new(rng.random_range(20..=90)),
        };
        block_on(self.store.inner().put_challenge(&challenge, now)).expect("memory never fails");
        let mut tracked = Tracked {
            challenge: challenge.clone(),
            fundings: Vec::new(),
            funded: 0,
        };
        let budget = if n % 2 == 1 {
            // One to three bonuses' worth: it runs dry before every participant completes.
            let amount = challenge.bonus.get() * rng.random_range(1..=3) + rng.random_range(0..16);
            let id = format!("ch-sim-{n}-funding-0");
            self.store
                .inner()
                .ledger()
                .fund_budget(&account(&challenge.id), Points(amount), &id);
            self.fund_model(&challenge.id, amount);
            tracked.fundings.push(id);
            tracked.funded = amount;
            format!(", budget {amount}")
        } else {
            String::new()
        };
        let described = format!(
            "put {} ({} from {}, {} units for {} points, {} to {}{budget})",
            challenge.id,
            challenge.title,
            challenge.supplier,
            challenge.target_units,
            challenge.bonus.get(),
            challenge.starts_on,
            challenge.ends_on
        );
        self.model.challenges.insert(challenge.id.clone(), tracked);
        described
    }

    /// `amount` spread over the shards as `fund_budget` spreads it.
    fn fund_model(&mut self, id: &ChallengeId, amount: u64) {
        let shards = i64::from(PROGRAMME_SHARDS);
        let total = amount as i64;
        for shard in 0..PROGRAMME_SHARDS {
            let share = total / shards + i64::from(i64::from(shard) < total % shards);
            *self.model.budgets.entry((id.clone(), shard)).or_default() += share;
        }
    }

    /// A budgeted challenge topped up under a new funding id, or under an earlier one again
    /// (a retry after a lost answer): only new ids move points.
    fn top_up(&mut self, rng: &mut ChaCha8Rng) -> (String, &'static str, Result<(), String>) {
        let budgeted: Vec<ChallengeId> = self
            .model
            .challenges
            .iter()
            .filter(|(_, t)| !t.fundings.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        let id = budgeted[rng.random_range(0..budgeted.len())].clone();
        let tracked = &self.model.challenges[&id];
        let again = rng.random_bool(0.3);
        let (funding, amount) = if again {
            let ids = &tracked.fundings;
            (ids[rng.random_range(0..ids.len())].clone(), 16 * 20)
        } else {
            (
                format!("{id}-funding-{}", tracked.fundings.len()),
                tracked.challenge.bonus.get() * rng.random_range(1..=2) + rng.random_range(0..16),
            )
        };
        let funded =
            self.store
                .inner()
                .ledger()
                .fund_budget(&account(&id), Points(amount), &funding);
        let described = format!("top up {id} by {amount} under {funding}: {funded:?}");
        let want = if again {
            Funded::AlreadyFunded
        } else {
            Funded::Funded
        };
        if funded != want {
            return (
                described,
                "challenge top-up wrong",
                Err(format!("expected {want:?}")),
            );
        }
        if !again {
            self.fund_model(&id, amount);
            let tracked = self.model.challenges.get_mut(&id).expect("tracked");
            tracked.fundings.push(funding);
            tracked.funded += amount;
        }
        let label = if again {
            "challenge top-up replayed"
        } else {
            "challenge topped up"
        };
        (described, label, self.check_ledger([&id]))
    }

    /// A new source (a sell-in line or a delivered order) for `actor`.
    fn new_source(
        &mut self,
        world: &World,
        actor: usize,
        supplier: SupplierId,
        date: NaiveDate,
        units: u64,
        now: DateTime<Utc>,
    ) -> ProgressSource {
        let n = self.next_source;
        self.next_source += 1;
        let participant = world.actors[actor].participant.clone();
        // The references the real callers use: a sell-in line's entry id, or a delivered
        // order's per supplier.
        let reference = if n % 2 == 1 {
            ProgressSource::order_reference(
                &PartnerId::parse("shop-sim").expect("partner"),
                &OrderId::parse(&format!("ch-order-{n}")).expect("order"),
                &supplier,
            )
        } else {
            let line = LineIdentity {
                invoice: format!("INV-CH-{n}"),
                outlet: world.actors[actor]
                    .outlet
                    .clone()
                    .unwrap_or_else(|| OutletId::parse("o-sim-0").expect("outlet")),
                sku: Sku::parse("COLA-330").expect("sku"),
                date,
            };
            entry_ids::sell_in(&line).as_str().to_string()
        };
        self.units.insert(reference.clone(), units);
        let source = ProgressSource {
            participant,
            supplier,
            units,
            date,
            reference,
            at: now,
        };
        self.sources.push(source.clone());
        source
    }

    fn source(
        &mut self,
        op: ChallengeOp,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> Option<ProgressSource> {
        let actor = world.pick(rng);
        let units = rng.random_range(1..=12);
        let today = now.date_naive();
        match op {
            ChallengeOp::Source => {
                let supplier = supplier(SUPPLIERS[rng.random_range(0..SUPPLIERS.len())]);
                let date = today - Days::new(rng.random_range(0..4));
                Some(self.new_source(world, actor, supplier, date, units, now))
            }
            ChallengeOp::Outside => {
                let (supplier, date) = if rng.random_bool(0.5) {
                    (supplier(NO_CHALLENGE), today)
                } else {
                    // Before the first challenge started (the first start four days
                    // before the simulation's at the earliest).
                    (
                        supplier(SUPPLIERS[0]),
                        crate::start().date_naive() - Days::new(30),
                    )
                };
                Some(self.new_source(world, actor, supplier, date, units, now))
            }
            _ => {
                if self.sources.is_empty() {
                    return None;
                }
                // Mostly recent sources (a retried import, a redelivered webhook), sometimes
                // any (a late duplicate).
                let len = self.sources.len();
                let i = if rng.random_bool(0.8) {
                    len - 1 - rng.random_range(0..len.min(30))
                } else {
                    rng.random_range(0..len)
                };
                Some(ProgressSource {
                    at: now,
                    ..self.sources[i].clone()
                })
            }
        }
    }

    /// Records `source` through the use case, retrying after errors as its caller does, and
    /// compares the answer with the model's. A step committed with its answer lost must be
    /// answered as counted before by the retry, with the progress it wrote and no bonus.
    fn deliver(
        &mut self,
        op: ChallengeOp,
        source: &ProgressSource,
    ) -> (String, &'static str, Result<(), String>) {
        let (expected, steps) = self.model.predict(source);
        let described = format!(
            "{op}: {} units of {} on {} for {} ({})",
            source.units, source.supplier, source.date, source.participant, source.reference
        );
        let (actual, lost) = match self.record(source) {
            Ok(a) => a,
            Err(e) => return (described, "infra error", Err(e)),
        };
        let seen = Recorded {
            outcomes: expected
                .outcomes
                .iter()
                .map(|o| {
                    if !o.already_counted && lost.contains(&o.challenge) {
                        ProgressOutcome {
                            bonus: None,
                            already_counted: true,
                            ..o.clone()
                        }
                    } else {
                        o.clone()
                    }
                })
                .collect(),
            out_of_budget: expected.out_of_budget.clone(),
            not_active: expected.not_active,
        };
        let label = label(&expected);
        let described = format!("{described}: {label}");
        if actual != seen {
            return (
                described,
                label,
                Err(format!("expected {seen:?}, got {actual:?}")),
            );
        }
        for step in &steps {
            if let Err(e) = self.model.apply_step(step) {
                return (described, label, Err(e));
            }
        }
        let touched: Vec<&ChallengeId> = expected
            .outcomes
            .iter()
            .map(|o| &o.challenge)
            .chain(&expected.out_of_budget)
            .collect();
        let result = self
            .check_participant(&source.participant, touched.iter().copied())
            .and_then(|()| self.check_ledger(touched.iter().copied()));
        (described, label, result)
    }

    /// The answer of the try that succeeded, and the challenges of the steps written by
    /// tries that failed (their answers were lost).
    fn record(&self, source: &ProgressSource) -> Result<(Recorded, Vec<ChallengeId>), String> {
        let mut lost = Vec::new();
        for _ in 0..MAX_TRIES {
            let result = block_on(record_progress(&self.store, source));
            let written = self.store.take_written();
            match result {
                Ok(recorded) => return Ok((recorded, lost)),
                Err(ProgressError::Infra(_)) => lost.extend(written),
                Err(e) => return Err(format!("recording failed: {e}")),
            }
        }
        Err(format!("recording failed {MAX_TRIES} times"))
    }

    /// Two new sources of one participant in one challenge, both stepped from the same read
    /// of the progress (or a source and its own redelivery): the first is written, the
    /// second refused as moved progress (or, for the same source, as counted: the marker
    /// outranks the progress) and recorded again through the use case, which reads again.
    fn race(
        &mut self,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> (String, &'static str, Result<(), String>) {
        let ids: Vec<&ChallengeId> = self.model.challenges.keys().collect();
        let c = self.model.challenges[ids[rng.random_range(0..ids.len())]]
            .challenge
            .clone();
        let actor = world.pick(rng);
        let span = (c.ends_on - c.starts_on).num_days() as u64;
        let date = c.starts_on + Days::new(rng.random_range(0..=span));
        let first = self.new_source(
            world,
            actor,
            c.supplier.clone(),
            date,
            rng.random_range(1..=12),
            now,
        );
        let second = if rng.random_bool(0.3) {
            first.clone()
        } else {
            self.new_source(
                world,
                actor,
                c.supplier.clone(),
                date,
                rng.random_range(1..=12),
                now,
            )
        };
        let participant = first.participant.clone();
        let read =
            block_on(self.store.inner().progress(&participant, &c.id)).expect("memory never fails");
        let steps = [step_of(&c, &first, read), step_of(&c, &second, read)];
        let mut described = format!(
            "{} and {} for {participant} in {} from the same read {read:?}",
            first.reference, second.reference, c.id
        );
        let mut answers = Vec::new();
        for step in &steps {
            let expected = self.model.expect_step(step);
            let actual = block_on(self.store.inner().commit_step(step));
            if actual != Ok(expected) {
                return (
                    described,
                    "challenge race wrong",
                    Err(format!(
                        "step of {} from {read:?}: expected {expected:?}, got {actual:?}",
                        step.source.reference
                    )),
                );
            }
            if expected.is_ok() {
                if let Err(e) = self.model.apply_step(step) {
                    return (described, "challenge race wrong", Err(e));
                }
            }
            answers.push(expected);
        }
        let label = match answers[1] {
            Err(StepRefusal::ProgressMoved) => "challenge race: progress moved",
            Err(StepRefusal::SourceCounted) => "challenge race: source counted",
            Err(StepRefusal::BudgetExhausted) => "challenge race: out of budget",
            Err(StepRefusal::ParticipantNotActive) => "challenge race: participant blocked",
            _ => "challenge race: second written",
        };
        described = format!("{described}: {answers:?}");
        if let Err(e) = self
            .check_participant(&participant, [&c.id])
            .and_then(|()| self.check_ledger([&c.id]))
        {
            return (described, label, Err(e));
        }
        if answers[1] == Err(StepRefusal::ProgressMoved) {
            let (again, _, result) = self.deliver(ChallengeOp::Raced, &second);
            return (
                format!("{described}; the loser again: {again}"),
                label,
                result,
            );
        }
        (described, label, Ok(()))
    }

    /// `progress_of` lists every challenge with the model's progress (zero where none).
    fn read(
        &self,
        rng: &mut ChaCha8Rng,
        world: &World,
    ) -> (String, &'static str, Result<(), String>) {
        let participant = world.actors[world.pick(rng)].participant.clone();
        let described = format!("progress of {participant}");
        let mut listed = None;
        for _ in 0..MAX_TRIES {
            if let Ok(l) = block_on(progress_of(&self.store, &participant)) {
                listed = Some(l);
                break;
            }
        }
        let Some(listed) = listed else {
            return (described, "infra error", Err("progress unreadable".into()));
        };
        let got: Vec<(ChallengeId, Progress)> =
            listed.into_iter().map(|(c, p)| (c.id, p)).collect();
        let want: Vec<(ChallengeId, Progress)> = self
            .model
            .challenges
            .keys()
            .map(|id| {
                let p = self
                    .model
                    .progress
                    .get(&(participant.clone(), id.clone()))
                    .copied()
                    .unwrap_or_default();
                (id.clone(), p)
            })
            .collect();
        let result = if got == want {
            Ok(())
        } else {
            Err(format!(
                "progress of {participant}: {got:?}, the model says {want:?}"
            ))
        };
        (described, "challenge progress read", result)
    }

    /// One participant in the given challenges: their progress is the model's and the sum
    /// of the units of the sources whose markers exist (so no source counts twice), the
    /// markers are the sources the model counted, and the bonus is granted at most once (one
    /// bonus entry, exactly when the model says the challenge was completed); their balance
    /// is the sum of the bonuses the model granted them. Only the challenges a step touched
    /// are checked after it, so that a step costs the same however many challenges exist.
    fn check_participant<'a>(
        &self,
        p: &ParticipantId,
        challenges: impl IntoIterator<Item = &'a ChallengeId>,
    ) -> Result<(), String> {
        let challenges: Vec<&ChallengeId> = challenges.into_iter().collect();
        self.store.inner().inspect(|w| {
            for id in &challenges {
                let key = (p.clone(), (*id).clone());
                let stored = w.progress.get(&key).copied();
                let want = self.model.progress.get(&key).copied();
                if stored != want {
                    return Err(format!(
                        "{p} in {id}: progress {stored:?}, the model says {want:?}"
                    ));
                }
                let prefix = format!("SOURCE#{id}#");
                let (mut units, mut markers) = (0, 0);
                for (_, marker) in w
                    .markers
                    .range((p.clone(), prefix.clone())..)
                    .take_while(|(q, m)| q == p && m.starts_with(&prefix))
                {
                    units += self
                        .units
                        .get(&marker[prefix.len()..])
                        .ok_or_else(|| format!("{p}: marker {marker} names no source sent"))?;
                    markers += 1;
                }
                if stored.map(|s| s.units).unwrap_or(0) != units {
                    return Err(format!(
                        "{p} in {id}: progress {stored:?}, but its counted sources sum to {units} units (a source counted twice?)"
                    ));
                }
                let counted = self.model.counted.get(&key).map_or(0, BTreeSet::len);
                if markers != counted {
                    return Err(format!(
                        "{p} in {id}: {markers} sources marked, the model counted {counted}"
                    ));
                }
            }
            Ok(())
        })?;
        let ledger = self.store.inner().ledger();
        ledger.inspect(|w| {
            // `-` sorts before every character an id may hold: the first possible id.
            let entries: Vec<_> = w
                .entries
                .range((p.clone(), EntryId::parse("-").expect("id"))..)
                .take_while(|((q, _), _)| q == p)
                .map(|(_, e)| e)
                .collect();
            for id in &challenges {
                let source = format!("challenge {id}");
                let n = entries.iter().filter(|e| e.source == source).count();
                let granted = self.model.bonuses.contains(&(p.clone(), (*id).clone()));
                if n != usize::from(granted) {
                    return Err(format!(
                        "{p} in {id}: {n} bonus entries, the model granted {}",
                        u8::from(granted)
                    ));
                }
            }
            let balance = w.balances.get(p).map(|b| b.available).unwrap_or(0);
            let want = self.model.balances.get(p).copied().unwrap_or(0);
            if balance != want {
                return Err(format!(
                    "{p}: balance {balance}, the model's bonuses sum to {want}"
                ));
            }
            Ok(())
        })
    }

    /// Double entry and budgets: member and programme accounts sum to zero and no budgeted
    /// shard is below zero; each given challenge's budget shards hold what the model says is
    /// left, and its budget was funded by exactly the top-ups the model counted, once each.
    fn check_ledger<'a>(
        &self,
        challenges: impl IntoIterator<Item = &'a ChallengeId>,
    ) -> Result<(), String> {
        self.store.inner().ledger().inspect(|w| {
            let members: i64 = w
                .balances
                .values()
                .map(|b| b.available + b.pending + b.held)
                .sum();
            check_programme("challenges", members, &w.accounts)?;
            for id in challenges {
                let t = &self.model.challenges[id];
                if t.fundings.is_empty() {
                    continue;
                }
                let stored = w.accounts.balance(&account(id));
                if stored.funded != Some(t.funded as i64) {
                    return Err(format!(
                        "budget of {id}: funded {:?}, the model counted {} (a top-up counted twice or lost?)",
                        stored.funded, t.funded
                    ));
                }
                for (shard, stored) in stored.shards.iter().enumerate() {
                    let left = self.model.budgets.get(&(id.clone(), shard as u32));
                    if left != Some(stored) {
                        return Err(format!(
                            "budget of {id} shard {shard}: stored {stored}, the model says {left:?}"
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    /// Everything, from scratch: every participant in every challenge, and no marker or
    /// bonus beyond them.
    pub fn check_everything(&self, world: &World) -> Result<(), String> {
        for actor in &world.actors {
            self.check_participant(&actor.participant, self.model.challenges.keys())?;
        }
        let markers = self.store.inner().inspect(|w| w.markers.len());
        let counted: usize = self.model.counted.values().map(BTreeSet::len).sum();
        if markers != counted {
            return Err(format!(
                "{markers} source markers stored, the model counted {counted}"
            ));
        }
        let entries = self.store.inner().ledger().inspect(|w| w.entries.len());
        if entries != self.model.bonuses.len() {
            return Err(format!(
                "{entries} bonus entries, the model granted {}",
                self.model.bonuses.len()
            ));
        }
        self.check_ledger(self.model.challenges.keys())
    }
}

/// The label of an answer: what the source did that is rarest.
fn label(recorded: &Recorded) -> &'static str {
    if recorded.completed().next().is_some() {
        "challenge completed"
    } else if recorded.not_active {
        "challenge source of a blocked participant"
    } else if !recorded.out_of_budget.is_empty() {
        "challenge out of budget"
    } else if recorded.outcomes.iter().any(|o| o.already_counted) {
        "source already counted"
    } else if !recorded.outcomes.is_empty() {
        "challenge progress"
    } else {
        "source counts for no challenge"
    }
}

fn supplier(id: &str) -> SupplierId {
    Slug::parse(id).expect("supplier")
}

fn challenge_id(n: u64) -> ChallengeId {
    Slug::parse(&format!("ch-sim-{n}")).expect("slug")
}

fn account(id: &ChallengeId) -> ProgrammeAccount {
    ProgrammeAccount::Challenge(id.clone())
}
