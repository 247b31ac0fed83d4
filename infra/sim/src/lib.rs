//! A deterministic simulator of Loyalty Engine, in the spirit of TigerBeetle's VOPR.
//!
//! One seed decides everything: the world (participants, outlets, batches, codes), every
//! operation, every fault. The real domain use cases run over the memory adapters
//! (`loyalty_platform::memory`) behind a fault-injecting wrapper ([`faults`]), with a
//! `FixedClock` moved only by clock operations. A reference model ([`claims::Model`])
//! predicts every answer before the request runs, and the [`checker`] compares store and
//! model after every step. The same seed always replays the same run: no wall clock, no
//! threads, no hash-ordered iteration (every map is a `BTreeMap`, futures are polled with
//! `block_on` on this thread).
//!
//! Adding a feature: give it a module like [`claims`] (its operations, a request builder,
//! `predict`, `execute`, `settle`), a variant in [`Operation`] with weights in
//! [`Operation::generate`], and its invariants in [`checker`].

pub mod actions;
pub mod cashback;
pub mod challenges;
pub mod checker;
pub mod claims;
pub mod clock;
pub mod faults;
pub mod identity;
pub mod reviews;
pub mod sellin;
pub mod standing;
pub mod world;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_domain::ports::{Clock, FixedClock};
use loyalty_platform::memory::claims::PlantedBug;
use loyalty_platform::memory::{MemoryCashback, MemoryClaims};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::actions::{ActionOp, Actions};
use crate::cashback::{Cashback, CashbackOp};
use crate::checker::{CashbackChecker, Checker};
use crate::claims::{ClaimOp, Claims};
use crate::clock::ClockOp;
use crate::faults::{Fault, FaultRates, FaultyCashback, FaultyClaims};
use crate::world::World;

/// How many operations a failure report shows.
const HISTORY: usize = 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub ops: u64,
    pub faults: FaultRates,
    /// A deliberate bug in the memory store, to prove the checks catch it.
    pub planted_bug: Option<PlantedBug>,
    /// A deliberate bug in the memory cashback store.
    pub cashback_bug: Option<loyalty_platform::memory::cashback::PlantedBug>,
    /// A deliberate bug in the memory challenge store.
    pub challenges_bug: Option<loyalty_platform::memory::challenges::ChallengesBug>,
    /// A deliberate bug in the memory participant store (passcodes, proofs, guesses).
    pub participants_bug: Option<loyalty_platform::memory::participants::PlantedBug>,
    pub participants: usize,
    pub outlets: usize,
    /// Steps between checks of the whole store from scratch (at least 1).
    pub full_check_every: u64,
}

impl Config {
    pub fn new(seed: u64, ops: u64) -> Self {
        Self {
            seed,
            ops,
            faults: FaultRates::default(),
            planted_bug: None,
            cashback_bug: None,
            challenges_bug: None,
            participants_bug: None,
            participants: 12,
            outlets: 3,
            full_check_every: 5_000,
        }
    }
}

/// The simulation starts here (the time of the sample events).
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// One step of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Clock(ClockOp),
    Claims(ClaimOp),
    Cashback(CashbackOp),
    Actions(ActionOp),
    SellIn(sellin::SellInOp),
    Review(reviews::ReviewOp),
    Challenges(challenges::ChallengeOp),
    Standing(standing::StandingOp),
    Identity(identity::IdentityOp),
}

impl Operation {
    /// Draws the next operation; weights are per 12,500: clock and claims in the first
    /// 10,000, partner cashback in the rest.
    pub fn generate(rng: &mut ChaCha8Rng) -> Operation {
        use ClaimOp::*;
        match rng.random_range(0..12_500u32) {
            10_000.. => Operation::Cashback(CashbackOp::generate(rng)),
            0..2_000 => Operation::Clock(ClockOp::tick(rng)),
            2_000..2_150 => Operation::Clock(ClockOp::before_midnight(rng.random_range(1..=120))),
            2_150..2_155 => Operation::Clock(ClockOp::before_month_end(rng.random_range(1..=120))),
            2_155..2_215 => Operation::Claims(IssueBatch),
            2_215..6_215 => Operation::Claims(Fresh),
            6_215..7_015 => Operation::Claims(OwnAgain),
            7_015..8_015 => Operation::Claims(Stolen),
            8_015..8_615 => Operation::Claims(Unknown),
            8_615..9_215 => Operation::Claims(Mistyped),
            _ => Operation::Claims(Redeliver),
        }
    }

    /// Draws an action operation, from the actions' own random stream (so that adding
    /// actions left every claim sequence of a seed as it was); weights per 1,000.
    pub fn generate_action(rng: &mut ChaCha8Rng) -> Option<Operation> {
        let op = match rng.random_range(0..1_000) {
            0..60 => ActionOp::Fresh,
            60..90 => ActionOp::Replay,
            90..100 => ActionOp::Reuse,
            100..108 => ActionOp::Elsewhere,
            108..120 => ActionOp::Exhaust,
            120..121 => ActionOp::TopUp,
            121..133 => ActionOp::Review,
            _ => return None,
        };
        Some(Operation::Actions(op))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Clock(c) => c.kind(),
            Operation::Claims(c) => c.kind(),
            Operation::Cashback(c) => c.kind(),
            Operation::Actions(a) => a.kind(),
            Operation::SellIn(s) => s.kind(),
            Operation::Review(r) => r.kind(),
            Operation::Challenges(c) => c.kind(),
            Operation::Standing(s) => s.kind(),
            Operation::Identity(i) => i.kind(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub seed: u64,
    pub ops: u64,
    pub ops_by_kind: BTreeMap<&'static str, u64>,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    pub claims_committed: u64,
    /// Review decisions committed on held claims.
    pub review_decisions: u64,
    pub points_available: u64,
    pub points_pending: u64,
    pub participants_with_points: usize,
    pub outbox_records: usize,
    pub audit_records: usize,
    pub batches: usize,
    pub codes_issued: usize,
    pub locks_set: usize,
    pub cashback_orders: usize,
    pub cashback_events: usize,
    pub cashback_entries: usize,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
}

/// A violated invariant or a wrong answer, with what it takes to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub violation: String,
    /// The last operations, the failing one last.
    pub history: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation FAILED at step {} of seed {}:\n  {}\n\nthe last {} operations:",
            self.step,
            self.seed,
            self.violation,
            self.history.len()
        )?;
        for line in &self.history {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "\nreplay exactly: ./dev sim --seed {} --ops {}",
            self.seed,
            self.step + 1
        )
    }
}

struct Sim {
    config: Config,
    rng: ChaCha8Rng,
    world: World,
    clock: FixedClock,
    store: FaultyClaims<MemoryClaims>,
    claims: Claims,
    actions: Actions,
    /// The actions' own random stream.
    action_rng: ChaCha8Rng,
    /// Reports by reviewers, services and participants of any rule: their own stream.
    reporter_rng: ChaCha8Rng,
    sell_in: sellin::SellIn,
    /// Sell-in's own random stream.
    sell_in_rng: ChaCha8Rng,
    /// Review decisions' own random stream.
    review_rng: ChaCha8Rng,
    challenges: challenges::Challenges,
    /// Challenges' own random stream.
    challenge_rng: ChaCha8Rng,
    standing: standing::Standing,
    /// Blocks' and unblocks' own random stream.
    standing_rng: ChaCha8Rng,
    identity: identity::Identity,
    /// Passcodes', registrations' and invitation guesses' own random stream.
    identity_rng: ChaCha8Rng,
    checker: Checker,
    cashback_store: FaultyCashback<MemoryCashback>,
    cashback: Cashback,
    cashback_checker: CashbackChecker,
    history: VecDeque<String>,
    ops_by_kind: BTreeMap<&'static str, u64>,
    outcomes: BTreeMap<&'static str, u64>,
    faults: BTreeMap<&'static str, u64>,
}

/// Runs a simulation. The same `config` always gives the same result.
pub fn run(config: &Config) -> Result<Summary, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let world = World::generate(&mut rng, config.participants, config.outlets);
    let mut challenge_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xC4A1_1E46_E000_0001);
    let challenges = challenges::Challenges::new(
        config.seed,
        config.faults,
        config.challenges_bug,
        &mut challenge_rng,
        start(),
    );
    let inner = match config.planted_bug {
        Some(bug) => MemoryClaims::with_planted_bug(bug),
        None => MemoryClaims::new(),
    };
    // Every simulated participant is registered and active: only they may claim.
    for actor in &world.actors {
        inner.register(&actor.participant, actor.facts());
    }
    inner.set_zones(world::zones());
    let mut sim = Sim {
        store: FaultyClaims::new(inner, config.seed, config.faults),
        config: config.clone(),
        rng,
        world,
        clock: FixedClock::at(start()),
        claims: Claims::new(claims::policy()),
        actions: Actions::new(config.seed),
        action_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0xAC71_0A5E_ED00_0001),
        reporter_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x2E90_27E2_0000_0001),
        sell_in: sellin::SellIn::new(),
        sell_in_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5E11_1A00_0000_0001),
        review_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x2E71_E700_0000_0001),
        challenges,
        challenge_rng,
        standing: standing::Standing::default(),
        standing_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x57A4_D146_0000_0001),
        identity: identity::Identity::new(
            config.seed,
            config.faults,
            config.participants_bug,
            start(),
        ),
        identity_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x1DE7_1717_0000_0001),
        checker: Checker::default(),
        cashback_store: FaultyCashback::new(
            match config.cashback_bug {
                Some(bug) => MemoryCashback::with_planted_bug(bug),
                None => MemoryCashback::new(),
            },
            config.seed,
            config.faults,
        ),
        cashback: Cashback::new(),
        cashback_checker: CashbackChecker::default(),
        history: VecDeque::with_capacity(HISTORY + 1),
        ops_by_kind: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        faults: BTreeMap::new(),
    };
    for actor in &sim.world.actors {
        sim.actions
            .store
            .inner()
            .register(&actor.participant, actor.facts());
        sim.cashback_store
            .inner()
            .register(&actor.participant, actor.facts());
        sim.challenges
            .store
            .inner()
            .ledger()
            .register(&actor.participant, actor.facts());
    }
    sim.sell_in.register(&sim.world);
    sim.cashback.configure(sim.cashback_store.inner());
    sim.cashback.fund(sim.cashback_store.inner());
    for _ in 0..4 {
        let now = sim.clock.now();
        sim.claims.issue_batch(&mut sim.rng, sim.store.inner(), now);
    }
    for step in 0..config.ops {
        sim.step(step)?;
    }
    let last = config.ops.saturating_sub(1);
    sim.check_everything(last)?;
    Ok(sim.summary())
}

impl Sim {
    fn stores(&self) -> standing::Stores<'_> {
        standing::Stores {
            claims: self.store.inner(),
            actions: self.actions.store.inner(),
            cashback: self.cashback_store.inner(),
            sell_in: &self.sell_in.store,
            challenges: self.challenges.store.inner(),
        }
    }

    fn step(&mut self, step: u64) -> Result<(), Failure> {
        let op = Operation::generate(&mut self.rng);
        self.one(step, op)?;
        if let Some(op) = Operation::generate_action(&mut self.action_rng) {
            self.one(step, op)?;
        }
        if self.reporter_rng.random_range(0..1_000) < 30 {
            self.one(step, Operation::Actions(ActionOp::Reporter))?;
        }
        if let Some(op) = sellin::SellInOp::generate(&mut self.sell_in_rng) {
            self.one(step, Operation::SellIn(op))?;
        }
        if let Some(op) = reviews::ReviewOp::generate(&mut self.review_rng) {
            self.one(step, Operation::Review(op))?;
        }
        if let Some(op) = challenges::ChallengeOp::generate(&mut self.challenge_rng) {
            self.one(step, Operation::Challenges(op))?;
        }
        if let Some(op) = standing::StandingOp::generate(&mut self.standing_rng) {
            self.one(step, Operation::Standing(op))?;
        }
        if let Some(op) = identity::IdentityOp::generate(&mut self.identity_rng) {
            self.one(step, Operation::Identity(op))?;
        }
        // (`is_multiple_of` is newer than the workspace's rust-version.)
        if step % self.config.full_check_every == self.config.full_check_every - 1 {
            self.check_everything(step)?;
        }
        Ok(())
    }

    fn one(&mut self, step: u64, op: Operation) -> Result<(), Failure> {
        let (description, result) = self.apply(op);
        *self.ops_by_kind.entry(op.kind()).or_default() += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history
            .push_back(format!("step {step}: {description}"));
        // Whatever ran, a blocked participant has earned nothing since the block. Identity
        // operations write no earning store (and the check counts every entry of the blocked).
        let earns = !matches!(op, Operation::Identity(_));
        let result = result.and_then(|()| match earns {
            true => self.standing.check(&self.world, &self.stores()),
            false => Ok(()),
        });
        result.map_err(|violation| self.failure(step, violation))
    }

    fn apply(&mut self, op: Operation) -> (String, Result<(), String>) {
        let now = self.clock.now();
        match op {
            Operation::Clock(c) => {
                c.apply(&self.clock);
                let then = self.clock.now();
                if then.date_naive() != now.date_naive() {
                    self.claims.prune_expired(then.date_naive());
                }
                (format!("{c} → {}", then.to_rfc3339()), Ok(()))
            }
            Operation::Cashback(op) => self.apply_cashback(op, now),
            Operation::Standing(op) => {
                let stores = standing::Stores {
                    claims: self.store.inner(),
                    actions: self.actions.store.inner(),
                    cashback: self.cashback_store.inner(),
                    sell_in: &self.sell_in.store,
                    challenges: self.challenges.store.inner(),
                };
                let Some(c) = self
                    .standing
                    .apply(op, &mut self.standing_rng, &self.world, &stores)
                else {
                    return (format!("{op}: nobody to act on"), Ok(()));
                };
                let (claims, actions, cashback) = (
                    &mut self.claims.model.blocked,
                    &mut self.actions.model.blocked,
                    &mut self.cashback.model.blocked,
                );
                let (lines, sources) = (
                    &mut self.sell_in.blocked,
                    &mut self.challenges.model.blocked,
                );
                if c.blocked {
                    claims.insert(c.participant.clone());
                    actions.insert(c.actor);
                    cashback.insert(c.participant.clone());
                    lines.insert(c.participant.clone());
                    sources.insert(c.participant.clone());
                } else {
                    claims.remove(&c.participant);
                    actions.remove(&c.actor);
                    cashback.remove(&c.participant);
                    lines.remove(&c.participant);
                    sources.remove(&c.participant);
                }
                *self.outcomes.entry(op.kind()).or_default() += 1;
                (format!("{op} {}", c.participant), Ok(()))
            }
            Operation::Review(op) => self.apply_review(op, now),
            Operation::Identity(op) => {
                let (described, labels, faults, result) =
                    self.identity.apply(op, &mut self.identity_rng, now);
                for label in labels {
                    *self.outcomes.entry(label).or_default() += 1;
                }
                for f in &faults {
                    *self.faults.entry(f.as_str()).or_default() += 1;
                }
                (format!("{described}{}", described_faults(&faults)), result)
            }
            Operation::Challenges(op) => {
                let (described, label, faults, result) =
                    self.challenges
                        .apply(op, &mut self.challenge_rng, &self.world, now);
                *self.outcomes.entry(label).or_default() += 1;
                for f in &faults {
                    *self.faults.entry(f.as_str()).or_default() += 1;
                }
                (format!("{described}{}", described_faults(&faults)), result)
            }
            Operation::SellIn(op) => {
                let (described, label, result) =
                    self.sell_in
                        .apply(op, &mut self.sell_in_rng, &self.world, now);
                *self.outcomes.entry(label).or_default() += 1;
                (described, result)
            }
            Operation::Actions(ActionOp::Review) => {
                let (described, label, result) =
                    self.actions.review(&mut self.action_rng, &self.world, now);
                *self.outcomes.entry(label).or_default() += 1;
                (described, result)
            }
            Operation::Actions(ActionOp::TopUp) => {
                let (described, label, result) = self.actions.top_up(&mut self.action_rng);
                *self.outcomes.entry(label).or_default() += 1;
                (described, result)
            }
            Operation::Actions(ActionOp::Elsewhere) => (
                self.actions
                    .credit_elsewhere(&mut self.action_rng, &self.world, now),
                self.actions.check_double_entry(),
            ),
            Operation::Actions(op) => {
                let rng = match op {
                    ActionOp::Reporter => &mut self.reporter_rng,
                    _ => &mut self.action_rng,
                };
                let Some(request) = self.actions.request(op, rng, &self.world) else {
                    return (format!("{}: nothing to act on yet", op.kind()), Ok(()));
                };
                let expected = self.actions.predict(&self.world, &request, now);
                let actual = self.actions.execute(&self.world, &request, now);
                *self.outcomes.entry(actual.label()).or_default() += 1;
                let described = format!("{request} at {}: {}", now.to_rfc3339(), actual.label());
                let result = self
                    .actions
                    .settle(&self.world, &request, expected, &actual, now)
                    .and_then(|()| self.actions.check_step(&self.world, request.actor));
                (described, result)
            }
            Operation::Claims(ClaimOp::IssueBatch) => (
                self.claims
                    .issue_batch(&mut self.rng, self.store.inner(), now),
                Ok(()),
            ),
            Operation::Claims(op) => {
                let Some(request) = self.claims.request(op, &mut self.rng, &self.world) else {
                    return (format!("{}: nothing to act on yet", op.kind()), Ok(()));
                };
                let actor = &self.world.actors[request.actor];
                let expected = self.claims.predict(actor, &request, now);
                let mut tries = Vec::new();
                let actual = self
                    .claims
                    .execute(&self.store, actor, &request, now, &mut tries);
                let faults: Vec<Fault> = tries.iter().flatten().copied().collect();
                for f in &faults {
                    *self.faults.entry(f.as_str()).or_default() += 1;
                }
                *self.outcomes.entry(actual.label()).or_default() += 1;
                let described = format!(
                    "{request} at {}: {}{}",
                    now.to_rfc3339(),
                    actual.label(),
                    if faults.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (faults: {})",
                            faults
                                .iter()
                                .map(|f| f.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
                let result = self
                    .claims
                    .settle(actor, &request, expected, &actual, &tries, now)
                    .and_then(|()| self.claims.check_expiry(self.store.inner(), actor, &actual))
                    .and_then(|()| {
                        self.checker.check_step(
                            self.store.inner(),
                            &self.claims.model,
                            &actor.participant,
                            actor.outlet.as_ref(),
                            self.claims.policy.fraud.failure_window(now).start,
                        )
                    });
                (described, result)
            }
        }
    }

    fn apply_cashback(
        &mut self,
        op: CashbackOp,
        now: DateTime<Utc>,
    ) -> (String, Result<(), String>) {
        let Some(action) = self.cashback.request(op, &mut self.rng, &self.world, now) else {
            return (format!("{}: nothing to act on yet", op.kind()), Ok(()));
        };
        let expected = self.cashback.predict(&action, now);
        let participant = self.cashback.participant_of(&action);
        let mut faults = Vec::new();
        let actual = self
            .cashback
            .execute(&self.cashback_store, &action, now, &mut faults);
        let crashed = faults.contains(&Fault::CrashAfterCommit);
        for f in &faults {
            *self.faults.entry(f.as_str()).or_default() += 1;
        }
        *self.outcomes.entry(actual.label()).or_default() += 1;
        let described = format!(
            "{}: {action} at {}: {}{}",
            op.kind(),
            now.to_rfc3339(),
            actual.label(),
            if faults.is_empty() {
                String::new()
            } else {
                format!(
                    " (faults: {})",
                    faults
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let participant = participant.or_else(|| self.cashback.participant_of(&action));
        let order = Cashback::order_of(&action);
        let result = self
            .cashback
            .settle(&action, expected, &actual, crashed, now)
            .and_then(|()| {
                self.cashback_checker.check_step(
                    self.cashback_store.inner(),
                    &self.cashback.model,
                    participant.as_ref(),
                    order.as_ref(),
                )
            });
        (described, result)
    }

    fn apply_review(
        &mut self,
        op: reviews::ReviewOp,
        now: DateTime<Utc>,
    ) -> (String, Result<(), String>) {
        let Some(request) = reviews::request(op, &mut self.review_rng, &self.claims.model) else {
            return (format!("{}: nothing to act on yet", op.kind()), Ok(()));
        };
        let expected = reviews::predict(&self.claims.model, &request);
        let mut faults = Vec::new();
        let actual = reviews::execute(&self.store, &request, now, &mut faults);
        for f in &faults {
            *self.faults.entry(f.as_str()).or_default() += 1;
        }
        *self.outcomes.entry(actual.label()).or_default() += 1;
        let described = format!(
            "{request} at {}: {}{}",
            now.to_rfc3339(),
            actual.label(),
            described_faults(&faults)
        );
        let window = self.claims.policy.fraud.failure_window(now).start;
        let result =
            reviews::settle(&mut self.claims.model, &request, expected, actual).and_then(|()| {
                let Some(held) = &request.held else {
                    return Ok(());
                };
                self.checker.check_step(
                    self.store.inner(),
                    &self.claims.model,
                    &held.participant,
                    held.outlet.as_ref(),
                    window,
                )
            });
        (described, result)
    }

    fn check_everything(&mut self, step: u64) -> Result<(), Failure> {
        self.checker
            .check_everything(self.store.inner(), &self.claims.model)
            .and_then(|()| {
                self.cashback_checker
                    .check_everything(self.cashback_store.inner(), &self.cashback.model)
            })
            .and_then(|()| self.actions.check_everything(&self.world))
            .and_then(|()| self.sell_in.check_everything(&self.world))
            .and_then(|()| self.challenges.check_everything(&self.world))
            .map_err(|v| self.failure(step, format!("full check: {v}")))
    }

    fn failure(&self, step: u64, violation: String) -> Failure {
        Failure {
            seed: self.config.seed,
            step,
            violation,
            history: self.history.iter().cloned().collect(),
        }
    }

    fn summary(&self) -> Summary {
        let m = &self.claims.model;
        let (outbox, audit) = self
            .store
            .inner()
            .inspect(|w| (w.outbox.len(), w.audit.len()));
        Summary {
            seed: self.config.seed,
            ops: self.config.ops,
            ops_by_kind: self.ops_by_kind.clone(),
            outcomes: self.outcomes.clone(),
            faults: {
                let mut faults = self.faults.clone();
                for (k, v) in self.actions.store.injected.lock().expect("faults").iter() {
                    *faults.entry(k).or_default() += v;
                }
                faults
            },
            claims_committed: m.commits,
            review_decisions: m.decisions,
            points_available: m.points_available,
            points_pending: m.points_pending,
            participants_with_points: m.balances.len(),
            outbox_records: outbox,
            audit_records: audit,
            batches: m.batches.len(),
            codes_issued: m.codes.len(),
            locks_set: m.locks.len(),
            cashback_orders: self.cashback.model.orders.len(),
            cashback_events: self.cashback.model.events.len(),
            cashback_entries: self.cashback.model.entries,
            started: start(),
            ended: self.clock.now(),
        }
    }
}

/// `" (faults: a, b)"`, or nothing without faults.
fn described_faults(faults: &[Fault]) -> String {
    if faults.is_empty() {
        return String::new();
    }
    let names: Vec<_> = faults.iter().map(|f| f.as_str()).collect();
    format!(" (faults: {})", names.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} operations, every invariant held",
            self.seed, self.ops
        )?;
        writeln!(
            f,
            "simulated time: {} → {} ({} days)",
            self.started.to_rfc3339(),
            self.ended.to_rfc3339(),
            (self.ended - self.started).num_days()
        )?;
        let table = |f: &mut fmt::Formatter<'_>, title: &str, rows: &BTreeMap<&str, u64>| {
            writeln!(f, "{title}:")?;
            for (k, v) in rows {
                writeln!(f, "  {k:<22} {v:>8}")?;
            }
            Ok(())
        };
        table(f, "operations", &self.ops_by_kind)?;
        table(f, "answers", &self.outcomes)?;
        table(f, "faults injected", &self.faults)?;
        writeln!(f, "totals:")?;
        writeln!(f, "  claims committed       {:>8}", self.claims_committed)?;
        writeln!(f, "  review decisions       {:>8}", self.review_decisions)?;
        writeln!(f, "  points available       {:>8}", self.points_available)?;
        writeln!(f, "  points pending review  {:>8}", self.points_pending)?;
        writeln!(
            f,
            "  participants credited  {:>8}",
            self.participants_with_points
        )?;
        writeln!(f, "  outbox records         {:>8}", self.outbox_records)?;
        writeln!(f, "  audit records          {:>8}", self.audit_records)?;
        writeln!(
            f,
            "  batches / codes        {:>8} / {}",
            self.batches, self.codes_issued
        )?;
        writeln!(f, "  subjects ever locked   {:>8}", self.locks_set)?;
        writeln!(f, "  cashback orders        {:>8}", self.cashback_orders)?;
        writeln!(f, "  cashback events        {:>8}", self.cashback_events)?;
        write!(f, "  cashback entries       {:>8}", self.cashback_entries)
    }
}
