//! Reported actions in the simulator: random actions, replays with the same
//! Idempotency-Key, a key reused with another body, credits from elsewhere that move the
//! balance under the cached tier basis, and bursts that exhaust a rule's limits.
//!
//! Requests run through the real use case [`report_action`] over [`MemoryActions`], with a
//! tier-basis cache like the function's, and refusals remembered under their key as the
//! function does. A reference model predicts every answer (limits, tiers, the 24-hour life
//! of a key's record) before the request runs; after every step the participant's balance
//! must equal the model's, and the full check verifies that every balance is the sum of its
//! entries (plus credits from elsewhere), that no limit is ever exceeded and that no key
//! credits twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use futures::executor::block_on;
use loyalty_domain::action::{
    report_action, ActionError, ActionReport, ActionStore, KeyedRequest, Reported, TierBasis,
};
use loyalty_domain::earning::{
    earned_trailing_12_months, month_key, with_multiplier, AccrualError, Action, OverBudget,
    Period, PeriodLimit, Reporter, Rule, RuleId, Tier, Tiers, Trigger,
};
use loyalty_domain::ids::{IdempotencyKey, ParticipantId};
use loyalty_domain::ledger::Entry;
use loyalty_domain::ledger::{
    entry_ids, programme_shard, EntryKind, ProgrammeAccount, PROGRAMME_SHARDS,
};
use loyalty_domain::review::{
    self, Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::{Classified, InfraError, Points};
use loyalty_platform::memory::MemoryActions;
use loyalty_platform::stores::ledger::Funded;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::{budget_left, draw_budget};
use crate::world::World;

/// The programme shard of the entry `actor`'s report under `key` appends.
fn shard(world: &World, actor: usize, key: &str) -> u32 {
    programme_shard(&loyalty_domain::earning::entry_ids::action(
        &world.actors[actor].participant,
        key,
    ))
}

const RECORD_SECS: i64 = 24 * 3600;
/// Tries of one request by the client when the answer is lost.
const MAX_TRIES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOp {
    /// An action under a new key.
    Fresh,
    /// A key sent again with the same body.
    Replay,
    /// A key sent again with another rule.
    Reuse,
    /// Another feature credits the participant (the cached tier basis goes stale).
    Elsewhere,
    /// A burst of new keys on the tightly limited rule.
    Exhaust,
    /// An admin tops up a rule's budget (`POST /admin/rules/{id}/budget`), sometimes
    /// sending an earlier top-up's key again.
    TopUp,
    /// A reviewer decides a credit held over budget: approved (paid within the budget, or
    /// refused and still held), rejected, or decided again.
    Review,
    /// A report by a reviewer or a service for a participant, or a self-report, of any rule:
    /// credited only when the rule says that reporter reports it. From its own stream.
    Reporter,
}

impl ActionOp {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionOp::Fresh => "action fresh",
            ActionOp::Replay => "action replay",
            ActionOp::Reuse => "action reused key",
            ActionOp::Elsewhere => "credit elsewhere",
            ActionOp::Exhaust => "action exhaust",
            ActionOp::TopUp => "budget top-up",
            ActionOp::Review => "held action review",
            ActionOp::Reporter => "action by a reporter",
        }
    }
}

/// Budgets of the simulation's rules (by index in [`rules`]): the quiz's runs out during a
/// default run, so over-budget refusals happen; price monitoring's too, and it holds such
/// credits for review.
pub const BUDGETS: [(usize, u64); 2] = [(1, 16 * 400), (4, 16 * 60)];

/// The rule that holds over-budget credits for review.
pub const HOLDING: usize = 4;

/// The rules of the simulation: low limits, so that they are reached often.
pub fn rules() -> Vec<Rule> {
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let rule =
        |id: &str, action, points, per_participant, per_period: Option<(u32, Period)>| Rule {
            id: RuleId::parse(id).expect("rule id"),
            trigger: Trigger::Action(action),
            points: Points(points),
            per_participant,
            per_period: per_period.map(|(max, period)| PeriodLimit { max, period }),
            valid_from: from.into(),
            valid_until: None,
            over_budget: OverBudget::Refuse,
            reported_by: Reporter::Participant,
        };
    let holding = Rule {
        over_budget: OverBudget::Hold,
        ..rule(
            "prices",
            Action::PriceMonitoring,
            30,
            None,
            Some((3, Period::Day)),
        )
    };
    vec![
        rule(
            "survey",
            Action::Survey,
            15,
            Some(2_000),
            Some((3, Period::Day)),
        ),
        rule(
            "quiz",
            Action::QuizPassed,
            25,
            None,
            Some((4, Period::Week)),
        ),
        rule("welcome", Action::WelcomeBonus, 100, Some(1), None),
        rule(
            "audit",
            Action::OutletSelfAudit,
            40,
            Some(40),
            Some((2, Period::Month)),
        ),
        holding,
        // Reported by others, never by the participant (`ActionOp::Reporter`).
        Rule {
            reported_by: Reporter::Service,
            ..rule("first-order", Action::FirstAppOrder, 50, Some(1), None)
        },
        Rule {
            reported_by: Reporter::Reviewer,
            ..rule(
                "training",
                Action::TrainingCompleted,
                60,
                None,
                Some((2, Period::Week)),
            )
        },
    ]
}

/// The rules a participant reports (the first ones); the others come after them, so that
/// the participants' draws of a seed stay as they were.
pub const SELF_REPORTED: usize = 5;

pub fn tiers() -> Tiers {
    Tiers::parse(vec![
        Tier {
            name: "bronze".into(),
            threshold: 0,
            multiplier_percent: 100,
        },
        Tier {
            name: "silver".into(),
            threshold: 400,
            multiplier_percent: 125,
        },
        Tier {
            name: "gold".into(),
            threshold: 1500,
            multiplier_percent: 150,
        },
    ])
    .expect("tiers")
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub actor: usize,
    pub key: String,
    pub rule: usize,
    /// The programme shard the entry of (actor, key) lands on.
    pub shard: u32,
    /// Who reports it: the participant, or for them a reviewer or a service.
    pub reporter: Reporter,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reports rule #{} for actor {} under key {}",
            match self.reporter {
                Reporter::Participant => "the participant",
                Reporter::Reviewer => "a reviewer",
                Reporter::Service => "a service",
            },
            self.rule,
            self.actor,
            self.key
        )
    }
}

/// An answer, as a caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Credited {
        points: u64,
    },
    /// Over budget, held for review: pending.
    Held {
        points: u64,
    },
    /// The stored first answer: its status and body.
    Replay {
        status: u16,
        body: String,
    },
    Refused(&'static str),
}

impl Answer {
    pub fn label(&self) -> &'static str {
        match self {
            Answer::Credited { .. } => "action credited",
            Answer::Held { .. } => "action held for review",
            Answer::Replay { status: 201, .. } => "action replayed",
            Answer::Replay { .. } => "action refusal replayed",
            Answer::Refused(code) => code,
        }
    }
}

/// What a key holds in the model.
#[derive(Debug, Clone)]
struct KeyState {
    rule: usize,
    status: u16,
    body: String,
    stored_at: DateTime<Utc>,
    credited: bool,
}

#[derive(Debug, Default)]
pub struct Model {
    keys: BTreeMap<(usize, String), KeyState>,
    /// (actor, rule) → credits ever.
    ever: BTreeMap<(usize, usize), u32>,
    /// (actor, rule, period key) → credits in that period.
    periods: BTreeMap<(usize, usize, String), u32>,
    /// actor → points (actions and elsewhere) by month.
    months: BTreeMap<usize, BTreeMap<u32, i64>>,
    /// actor → expected balance.
    pub balances: BTreeMap<usize, u64>,
    /// actor → points credited elsewhere.
    pub elsewhere: BTreeMap<usize, u64>,
    /// actor → actions credited.
    pub credited: BTreeMap<usize, u64>,
    /// (rule, shard) → what is left of a budgeted rule's shard.
    pub budgets: BTreeMap<(usize, u32), i64>,
    /// rule → every funding id that moved points, and the total funded.
    pub fundings: BTreeMap<usize, (Vec<String>, u64)>,
    /// actor → points held for review (pending).
    pub pending: BTreeMap<usize, u64>,
    /// Credits held over budget and not decided: (actor, key, rule, points).
    pub held: Vec<(usize, String, usize, u64)>,
    /// Decided held credits by (actor, key): approved or not.
    pub decided: BTreeMap<(usize, String), bool>,
    /// actor → held credits approved (each appended one more entry).
    pub decisions: BTreeMap<usize, u64>,
    /// Actors an admin has blocked (the profiles' standing).
    pub blocked: BTreeSet<usize>,
}

/// [`MemoryActions`] with faults: a write refused as contended (nothing written), or
/// committed with its answer lost (the client retries the same key and must get a replay).
pub struct FaultyActions {
    inner: MemoryActions,
    rng: Mutex<ChaCha8Rng>,
    /// The dice of reports from [`ActionOp::Reporter`], so that adding them left the other
    /// reports' faults where they were; used while `reporting` is set.
    reporter_rng: Mutex<ChaCha8Rng>,
    reporting: std::sync::atomic::AtomicBool,
    pub injected: Mutex<BTreeMap<&'static str, u64>>,
}

impl FaultyActions {
    pub fn new(seed: u64) -> Self {
        Self {
            inner: MemoryActions::new(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xFA_17ED)),
            reporter_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xFA_17EE)),
            reporting: std::sync::atomic::AtomicBool::new(false),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn inner(&self) -> &MemoryActions {
        &self.inner
    }

    /// How many faults of this kind were injected so far.
    fn injected(&self, fault: &'static str) -> u64 {
        self.injected
            .lock()
            .expect("faults")
            .get(fault)
            .copied()
            .unwrap_or(0)
    }

    fn count(&self, fault: &'static str) {
        *self
            .injected
            .lock()
            .expect("faults")
            .entry(fault)
            .or_default() += 1;
    }
}

impl ActionStore for FaultyActions {
    async fn programme(&self) -> Result<loyalty_domain::action::Programme, InfraError> {
        self.inner.programme().await
    }

    async fn try_accrue(
        &self,
        attempt: &loyalty_domain::action::ActionAttempt,
    ) -> Result<Result<(), loyalty_domain::action::ActionRefusal>, InfraError> {
        let dice = match self.reporting.load(std::sync::atomic::Ordering::Relaxed) {
            true => &self.reporter_rng,
            false => &self.rng,
        };
        let draw = dice.lock().expect("rng").random_range(0..1_000);
        if draw < 30 {
            self.count("action contended");
            return Ok(Err(loyalty_domain::action::ActionRefusal::Contended));
        }
        let result = self.inner.try_accrue(attempt).await?;
        if draw < 50 && result.is_ok() {
            self.count("action answer lost");
            return Err(InfraError::retryable(
                "sim",
                "committed, then the answer was lost",
            ));
        }
        Ok(result)
    }

    async fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> Result<Result<(), loyalty_domain::action::StoredAnswer>, InfraError> {
        self.inner.remember(key, status, body, now).await
    }
}

/// Decisions on held credits, with the same faults: a decision refused as contended
/// (`TransactionConflict`, nothing written), or committed with its answer lost (the
/// reviewer's retry finds it decided).
impl ReviewStore for FaultyActions {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        self.inner.entry_under_review(id).await
    }

    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingReview>, ReviewError> {
        self.inner.pending(cursor, limit).await
    }

    async fn commit(&self, decided: &Decided) -> Result<Committed, InfraError> {
        let draw = self.rng.lock().expect("rng").random_range(0..1_000);
        if draw < 30 {
            self.count("review contended");
            return Err(InfraError::retryable(
                "sim",
                "TransactionConflict (injected)",
            ));
        }
        let result = self.inner.commit(decided).await?;
        if draw < 80 && result == Committed::Ok {
            self.count("review answer lost");
            return Err(InfraError::retryable(
                "sim",
                "committed, then the answer was lost",
            ));
        }
        Ok(result)
    }
}

pub struct Actions {
    pub store: FaultyActions,
    pub model: Model,
    rules: Vec<Rule>,
    /// The function's tier-basis cache.
    basis: BTreeMap<ParticipantId, TierBasis>,
    next_key: u64,
    /// Keys used so far, for replays.
    used: Vec<(usize, String)>,
}

impl Actions {
    pub fn new(seed: u64) -> Self {
        let store = FaultyActions::new(seed);
        let rules = rules();
        for r in &rules {
            store.inner().put_rule(r.clone());
        }
        store.inner().put_tiers(tiers());
        store.inner().set_zones(crate::world::zones());
        let mut model = Model::default();
        for (rule, amount) in BUDGETS {
            let account = ProgrammeAccount::Rule(rules[rule].id.clone());
            store
                .inner()
                .fund_budget(&account, Points(amount), "sim-funding");
            let funded = store.inner().programme_balance(&account);
            for (shard, left) in funded.shards.iter().enumerate() {
                model.budgets.insert((rule, shard as u32), *left);
            }
            model
                .fundings
                .insert(rule, (vec!["sim-funding".to_string()], amount));
        }
        Self {
            store,
            model,
            rules,
            basis: BTreeMap::new(),
            next_key: 0,
            used: Vec::new(),
        }
    }

    fn new_key(&mut self) -> String {
        self.next_key += 1;
        format!("sim-key-{:08}", self.next_key)
    }

    /// Draws the request of `op`; none when there is nothing to replay yet.
    pub fn request(
        &mut self,
        op: ActionOp,
        rng: &mut ChaCha8Rng,
        world: &World,
    ) -> Option<Request> {
        match op {
            ActionOp::Fresh => {
                let actor = world.pick(rng);
                let key = self.new_key();
                Some(Request {
                    shard: shard(world, actor, &key),
                    actor,
                    key,
                    rule: rng.random_range(0..SELF_REPORTED),
                    reporter: Reporter::Participant,
                })
            }
            ActionOp::Exhaust => {
                let actor = rng.random_range(0..2);
                let key = self.new_key();
                Some(Request {
                    shard: shard(world, actor, &key),
                    actor,
                    key,
                    rule: 0,
                    reporter: Reporter::Participant,
                })
            }
            ActionOp::Replay | ActionOp::Reuse => {
                if self.used.is_empty() {
                    return None;
                }
                // Mostly recent keys (a client retrying), sometimes any (a late retry).
                let i = if rng.random_bool(0.8) {
                    self.used.len() - 1 - rng.random_range(0..self.used.len().min(30))
                } else {
                    rng.random_range(0..self.used.len())
                };
                let (actor, key) = self.used[i].clone();
                let first = self.model.keys.get(&(actor, key.clone()))?.rule;
                let rule = if op == ActionOp::Replay {
                    first
                } else {
                    (first + 1 + rng.random_range(0..SELF_REPORTED - 1)) % SELF_REPORTED
                };
                Some(Request {
                    shard: shard(world, actor, &key),
                    actor,
                    key,
                    rule,
                    reporter: Reporter::Participant,
                })
            }
            ActionOp::Reporter => {
                // A reviewer or a service reports any rule (credited only for the rules they
                // report); a participant self-reports one that others report. No credit of
                // these is held or drawn from a budget, so the other operations' draws stay.
                let actor = world.pick(rng);
                let key = self.new_key();
                let reporter = [Reporter::Participant, Reporter::Reviewer, Reporter::Service]
                    [rng.random_range(0..3)];
                let rule = match reporter {
                    Reporter::Participant => rng.random_range(SELF_REPORTED..self.rules.len()),
                    _ => rng.random_range(0..self.rules.len()),
                };
                Some(Request {
                    shard: shard(world, actor, &key),
                    actor,
                    key,
                    rule,
                    reporter,
                })
            }
            ActionOp::Elsewhere | ActionOp::TopUp | ActionOp::Review => None,
        }
    }

    fn fingerprint(rule: usize) -> String {
        format!("fingerprint-rule-{rule}")
    }

    /// What the answer must be.
    pub fn predict(&self, world: &World, r: &Request, now: DateTime<Utc>) -> Answer {
        if let Some(k) = self.model.keys.get(&(r.actor, r.key.clone())) {
            if now.timestamp() < k.stored_at.timestamp() + RECORD_SECS {
                return if k.rule == r.rule {
                    Answer::Replay {
                        status: k.status,
                        body: k.body.clone(),
                    }
                } else {
                    Answer::Refused("idempotency_key_reused")
                };
            }
        }
        // The use case checks the reporter before the write.
        if r.reporter != self.rules[r.rule].reported_by {
            return Answer::Refused("reporter_not_allowed");
        }
        // The profile check ranks after a live key, before everything else the write checks.
        if self.model.blocked.contains(&r.actor) {
            return Answer::Refused("participant_not_active");
        }
        if let Some(k) = self.model.keys.get(&(r.actor, r.key.clone())) {
            if k.credited {
                // The entry the key names exists; its answer is gone.
                return Answer::Refused("idempotency_key_expired");
            }
        }
        let rule = &self.rules[r.rule];
        if let Some(max) = rule.per_participant {
            if self
                .model
                .ever
                .get(&(r.actor, r.rule))
                .copied()
                .unwrap_or(0)
                >= max
            {
                return Answer::Refused("participant_limit_reached");
            }
        }
        if let Some(limit) = rule.per_period {
            let period = limit.period.window(now, world.actors[r.actor].zone()).0;
            if self
                .model
                .periods
                .get(&(r.actor, r.rule, period))
                .copied()
                .unwrap_or(0)
                >= limit.max
            {
                return Answer::Refused("period_limit_reached");
            }
        }
        let months = self.model.months.get(&r.actor).cloned().unwrap_or_default();
        let tier = tiers()
            .tier_for(earned_trailing_12_months(&months, now))
            .clone();
        let points = with_multiplier(rule.points, &tier).get();
        // The store gathers a dry shard from the others, so only the whole budget decides.
        if let Some(left) = budget_left(&self.model.budgets, |s| (r.rule, s)) {
            if left < points as i64 {
                return match rule.over_budget {
                    OverBudget::Hold => Answer::Held { points },
                    OverBudget::Refuse => Answer::Refused("budget_exhausted"),
                };
            }
        }
        Answer::Credited { points }
    }

    /// Runs the request through the real use case, as the function does.
    pub fn execute(&mut self, world: &World, r: &Request, now: DateTime<Utc>) -> Answer {
        let participant = world.actors[r.actor].participant.clone();
        let key = KeyedRequest {
            scope: participant.as_str().to_string(),
            key: IdempotencyKey::parse(&r.key).expect("key"),
            fingerprint: Self::fingerprint(r.rule),
        };
        let report = ActionReport {
            participant: participant.clone(),
            reporter: r.reporter,
            outlet: world.actors[r.actor].outlet.clone(),
            profile: world.actors[r.actor].facts(),
            rule: self.rules[r.rule].id.clone(),
            reference: String::new(),
            key: key.clone(),
        };
        let programme = block_on(self.store.programme()).expect("memory never fails");
        // Only `ActionOp::Reporter` draws these: another reporter, or a rule others report.
        let by_reporter_op = r.reporter != Reporter::Participant || r.rule >= SELF_REPORTED;
        self.store
            .reporting
            .store(by_reporter_op, std::sync::atomic::Ordering::Relaxed);
        let mut lost = false;
        for _ in 0..MAX_TRIES {
            let known = self.basis.get(&participant).cloned();
            let answer = match block_on(report_action(&self.store, &programme, &report, known, now))
            {
                Err(ActionError::Infra(_)) => {
                    // The client retries the same request with the same key.
                    lost = true;
                    self.basis.remove(&participant);
                    continue;
                }
                Ok(Reported::Credited { receipt, basis, .. }) => {
                    match basis {
                        Some(b) => self.basis.insert(participant.clone(), b),
                        None => self.basis.remove(&participant),
                    };
                    let points = receipt.points.get();
                    if receipt.held {
                        Answer::Held { points }
                    } else {
                        Answer::Credited { points }
                    }
                }
                Ok(Reported::Replay(stored)) if lost && stored.status == 201 => {
                    // Our own lost commit, answered again: what the first try would have said.
                    let body: serde_json::Value =
                        serde_json::from_str(&stored.body).expect("a stored body is JSON");
                    let points = body["points"].as_u64().expect("points");
                    if body["status"] == "pending_review" {
                        Answer::Held { points }
                    } else {
                        Answer::Credited { points }
                    }
                }
                Ok(Reported::Replay(stored)) => Answer::Replay {
                    status: stored.status,
                    body: stored.body,
                },
                Err(ActionError::Refused(
                    e @ (AccrualError::ParticipantLimit(_) | AccrualError::PeriodLimit(_)),
                )) => {
                    // Remembered under the key, as the function does.
                    match block_on(self.store.remember(&key, 409, e.code().to_string(), now))
                        .expect("memory never fails")
                    {
                        Ok(()) => Answer::Refused(e.code()),
                        Err(stored) => Answer::Replay {
                            status: stored.status,
                            body: stored.body,
                        },
                    }
                }
                Err(e) => Answer::Refused(e.code()),
            };
            return answer;
        }
        Answer::Refused("gave up after lost answers")
    }

    /// Compares the answer with the prediction, then moves the model.
    pub fn settle(
        &mut self,
        world: &World,
        r: &Request,
        expected: Answer,
        actual: &Answer,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let matches = expected == *actual;
        if !matches {
            return Err(format!("{r}: expected {expected:?}, got {actual:?}"));
        }
        let id = (r.actor, r.key.clone());
        if matches!(actual, Answer::Credited { .. } | Answer::Held { .. })
            && r.reporter != self.rules[r.rule].reported_by
        {
            return Err(format!(
                "{r}: credited, but only {:?} may report {}",
                self.rules[r.rule].reported_by, self.rules[r.rule].id
            ));
        }
        // Replays and reuses are the participant's own: other reporters' keys are not sent
        // again (their first check is the reporter, before the key).
        let replayable = r.reporter == Reporter::Participant;
        match actual {
            Answer::Credited { points: p } | Answer::Held { points: p } => {
                let points = *p;
                let rule = &self.rules[r.rule];
                let zone = world.actors[r.actor].zone();
                *self.model.ever.entry((r.actor, r.rule)).or_default() += 1;
                if let Some(limit) = rule.per_period {
                    *self
                        .model
                        .periods
                        .entry((r.actor, r.rule, limit.period.window(now, zone).0))
                        .or_default() += 1;
                }
                *self.model.credited.entry(r.actor).or_default() += 1;
                if let Answer::Held { .. } = actual {
                    // Pending, fronted by `reviews`: nothing earned, the budget untouched.
                    *self.model.pending.entry(r.actor).or_default() += points;
                    self.model
                        .held
                        .push((r.actor, r.key.clone(), r.rule, points));
                } else {
                    self.earn(r.actor, points, now);
                    if budget_left(&self.model.budgets, |s| (r.rule, s)).is_some() {
                        draw_budget(
                            &mut self.model.budgets,
                            |s| (r.rule, s),
                            r.shard,
                            points as i64,
                        )?;
                    }
                }
                let body = self
                    .store
                    .inner()
                    .record(world.actors[r.actor].participant.as_str(), &r.key)
                    .map(|k| k.answer.body)
                    .unwrap_or_default();
                if replayable && !self.model.keys.contains_key(&id) {
                    self.used.push(id.clone());
                }
                self.model.keys.insert(
                    id,
                    KeyState {
                        rule: r.rule,
                        status: 201,
                        body,
                        stored_at: now,
                        credited: true,
                    },
                );
            }
            Answer::Refused(code @ ("participant_limit_reached" | "period_limit_reached")) => {
                if replayable && !self.model.keys.contains_key(&id) {
                    self.used.push(id.clone());
                }
                self.model.keys.insert(
                    id,
                    KeyState {
                        rule: r.rule,
                        status: 409,
                        body: code.to_string(),
                        stored_at: now,
                        credited: false,
                    },
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// `actor` earns `points` now: available, and towards their tier this month.
    fn earn(&mut self, actor: usize, points: u64, now: DateTime<Utc>) {
        *self
            .model
            .months
            .entry(actor)
            .or_default()
            .entry(month_key(now))
            .or_default() += points as i64;
        *self.model.balances.entry(actor).or_default() += points;
    }

    /// A reviewer decides a held credit (or one decided already) through the real use case
    /// over the store's review port. The model predicts the answer: an approval pays from
    /// the rule's shard of the decision entry, or is refused (`budget_exhausted`) and leaves
    /// the credit held; a rejection removes the pending points; a second decision is
    /// `review_already_decided`.
    pub fn review(
        &mut self,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> (String, &'static str, Result<(), String>) {
        let again = !self.model.decided.is_empty() && rng.random_bool(0.2);
        let (actor, key, rule, points) = if again {
            let i = rng.random_range(0..self.model.decided.len());
            let (actor, key) = self.model.decided.keys().nth(i).expect("decided").clone();
            (actor, key, HOLDING, 0)
        } else if self.model.held.is_empty() {
            return (
                "held action review: nothing held".into(),
                "nothing yet",
                Ok(()),
            );
        } else {
            self.model.held[rng.random_range(0..self.model.held.len())].clone()
        };
        let approve = rng.random_bool(0.75);
        let decision = if approve {
            Decision::Approve
        } else {
            Decision::Reject
        };
        let participant = &world.actors[actor].participant;
        let entry = loyalty_domain::earning::entry_ids::action(participant, &key);
        let decision_shard = programme_shard(&entry_ids::review_decision(&entry));
        let expected = if again {
            "review_already_decided"
        } else if !approve {
            "held action rejected"
        } else if self.model.blocked.contains(&actor) {
            // Approval would make a blocked participant's points spendable.
            "participant_not_active"
        } else if budget_left(&self.model.budgets, |s| (rule, s))
            .is_some_and(|left| left < points as i64)
        {
            "budget_exhausted"
        } else {
            "held action approved"
        };
        let id = ReviewId::of(participant, &entry);
        let decided_as = |kind: EntryKind| {
            if kind == EntryKind::ReviewApproved {
                "held action approved"
            } else {
                "held action rejected"
            }
        };
        let lost_before = self.store.injected("review answer lost");
        let mut lost = false;
        let mut actual = "gave up after lost answers";
        for _ in 0..MAX_TRIES {
            actual = match block_on(review::decide(&self.store, &id, decision, "admin-sim", now)) {
                Ok(d) => decided_as(d.entry.kind),
                Err(ReviewError::Infra(_)) => {
                    // Only a lost answer (not a conflict) leaves a decision behind.
                    lost |= self.store.injected("review answer lost") > lost_before;
                    continue;
                }
                Err(ReviewError::AlreadyDecided) if lost => {
                    // Perhaps our own lost commit: the decision on record says.
                    let on_record = self.store.inner().inspect(|w| {
                        let key = (participant.clone(), entry_ids::review_decision(&entry));
                        w.entries.get(&key).map(|e| e.kind)
                    });
                    match on_record {
                        Some(kind) if kind == decision.entry_kind() => decided_as(kind),
                        _ => "review_already_decided",
                    }
                }
                Err(e) => e.code(),
            };
            break;
        }
        let described = format!(
            "{} held action {id} of rule #{rule} ({points} points) at {}: {actual}",
            decision.as_str(),
            now.to_rfc3339()
        );
        if actual != expected {
            return (
                described,
                actual,
                Err(format!("expected {expected}, got {actual}")),
            );
        }
        if matches!(actual, "held action approved" | "held action rejected") {
            *self.model.pending.entry(actor).or_default() -= points;
            self.model
                .held
                .retain(|(a, k, _, _)| !(*a == actor && *k == key));
            self.model.decided.insert((actor, key), approve);
            *self.model.decisions.entry(actor).or_default() += 1;
            if approve {
                self.earn(actor, points, now);
                if let Err(e) = draw_budget(
                    &mut self.model.budgets,
                    |s| (rule, s),
                    decision_shard,
                    points as i64,
                ) {
                    return (described, actual, Err(e));
                }
            }
        }
        let result = self.check_step(world, actor);
        (described, actual, result)
    }

    /// Another feature credits `actor` (a claim, a sell-in line): the balance moves.
    pub fn credit_elsewhere(
        &mut self,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> String {
        let actor = world.pick(rng);
        let points = rng.random_range(10..=200);
        self.store
            .inner()
            .credit_elsewhere(&world.actors[actor].participant, points, now);
        *self.model.balances.entry(actor).or_default() += points;
        *self.model.elsewhere.entry(actor).or_default() += points;
        *self
            .model
            .months
            .entry(actor)
            .or_default()
            .entry(month_key(now))
            .or_default() += points as i64;
        format!("actor {actor} credited {points} elsewhere")
    }

    /// An admin tops up a budgeted rule under a new funding id, or sends an earlier one
    /// again (a retry after a lost answer, or a late duplicate): only new ids move points,
    /// spread over the shards as `fund_budget` spreads them.
    pub fn top_up(&mut self, rng: &mut ChaCha8Rng) -> (String, &'static str, Result<(), String>) {
        let (rule, _) = BUDGETS[rng.random_range(0..BUDGETS.len())];
        let account = ProgrammeAccount::Rule(self.rules[rule].id.clone());
        let (ids, _) = self.model.fundings.get(&rule).cloned().unwrap_or_default();
        let again = !ids.is_empty() && rng.random_bool(0.3);
        let (id, amount) = if again {
            (ids[rng.random_range(0..ids.len())].clone(), 16 * 25)
        } else {
            let id = format!("sim-top-up-{rule}-{}", ids.len());
            // Not always a multiple of the shards: the remainder goes to the first shards.
            (
                id,
                16 * 25 * rng.random_range(1..=2) + rng.random_range(0..16),
            )
        };
        let funded = self
            .store
            .inner()
            .fund_budget(&account, Points(amount), &id);
        let described = format!("top up rule #{rule} by {amount} under {id}: {funded:?}");
        let want = if again {
            Funded::AlreadyFunded
        } else {
            Funded::Funded
        };
        if funded != want {
            return (
                described,
                "budget top-up wrong",
                Err(format!("expected {want:?}")),
            );
        }
        if funded == Funded::Funded {
            let shards = i64::from(PROGRAMME_SHARDS);
            let total = amount as i64;
            for shard in 0..PROGRAMME_SHARDS {
                let share = total / shards + i64::from(i64::from(shard) < total % shards);
                *self.model.budgets.entry((rule, shard)).or_default() += share;
            }
            let (ids, sum) = self.model.fundings.entry(rule).or_default();
            ids.push(id);
            *sum += amount;
        }
        let label = if again {
            "budget top-up replayed"
        } else {
            "budget topped up"
        };
        (described, label, self.check_double_entry())
    }

    /// After every step: member and programme accounts sum to zero, and no budget is
    /// overspent; each budgeted shard holds what the model says is left, and each budget
    /// was funded by exactly the top-ups the model counted (once each).
    pub fn check_double_entry(&self) -> Result<(), String> {
        self.store.inner().inspect(|w| {
            let members: i64 = w
                .balances
                .values()
                .map(|b| b.available + b.pending + b.held)
                .sum();
            crate::checker::check_programme("actions", members, &w.accounts)?;
            for (rule, (_, funded)) in &self.model.fundings {
                let account = ProgrammeAccount::Rule(self.rules[*rule].id.clone());
                let stored = w.accounts.balance(&account).funded;
                if stored != Some(*funded as i64) {
                    return Err(format!(
                        "budget of rule #{rule}: funded {stored:?}, the model counted {funded} (a top-up counted twice or lost?)"
                    ));
                }
            }
            for ((rule, shard), left) in &self.model.budgets {
                let account = ProgrammeAccount::Rule(self.rules[*rule].id.clone());
                let stored = w.accounts.balances.get(&(account, *shard)).copied();
                if stored != Some(*left) {
                    return Err(format!(
                        "budget of rule #{rule} shard {shard}: stored {stored:?}, the model says {left}"
                    ));
                }
            }
            Ok(())
        })
    }

    /// After a step: the actor's balance is the model's.
    pub fn check_step(&self, world: &World, actor: usize) -> Result<(), String> {
        self.check_double_entry()?;
        let stored = self
            .store
            .inner()
            .balance(&world.actors[actor].participant)
            .map(|b| b.available)
            .unwrap_or(0);
        let expected = self.model.balances.get(&actor).copied().unwrap_or(0) as i64;
        if stored != expected {
            return Err(format!(
                "actor {actor}: balance {stored}, the model says {expected}"
            ));
        }
        let pending = self
            .store
            .inner()
            .balance(&world.actors[actor].participant)
            .map(|b| b.pending)
            .unwrap_or(0);
        let held = self.model.pending.get(&actor).copied().unwrap_or(0) as i64;
        if pending != held {
            return Err(format!(
                "actor {actor}: {pending} points pending, the model holds {held}"
            ));
        }
        Ok(())
    }

    /// Every balance is its entries plus credits from elsewhere; no limit is exceeded; no
    /// key credited twice.
    pub fn check_everything(&self, world: &World) -> Result<(), String> {
        for (i, actor) in world.actors.iter().enumerate() {
            let entries = self.store.inner().entries(&actor.participant);
            let sum = |kinds: &[EntryKind]| -> u64 {
                entries
                    .iter()
                    .filter(|e| kinds.contains(&e.kind))
                    .map(|e| e.amount.get())
                    .sum()
            };
            let earned = sum(&[EntryKind::Accrual, EntryKind::ReviewApproved]);
            let held = sum(&[EntryKind::AccrualUnderReview])
                - sum(&[EntryKind::ReviewApproved, EntryKind::ReviewRejected]);
            let elsewhere = self.model.elsewhere.get(&i).copied().unwrap_or(0);
            let (balance, pending) = self
                .store
                .inner()
                .balance(&actor.participant)
                .map(|b| (b.available, b.pending))
                .unwrap_or((0, 0));
            if balance != (earned + elsewhere) as i64 || pending != held as i64 {
                return Err(format!(
                    "actor {i}: balance {balance} (pending {pending}) but entries earned {earned} + elsewhere {elsewhere} (held {held})"
                ));
            }
            // A held credit is decided at most once, and credits only when approved.
            for e in &entries {
                if let Some(held) = e.id.as_str().strip_prefix("review-") {
                    let reviewed = entries.iter().find(|h| h.id.as_str() == held);
                    if !reviewed.is_some_and(|h| {
                        h.kind == EntryKind::AccrualUnderReview && h.amount == e.amount
                    }) {
                        return Err(format!(
                            "actor {i}: decision {} names no held credit of {} points",
                            e.id,
                            e.amount.get()
                        ));
                    }
                }
            }
            let credited = self.model.credited.get(&i).copied().unwrap_or(0)
                + self.model.decisions.get(&i).copied().unwrap_or(0);
            if entries.len() as u64 != credited {
                return Err(format!(
                    "actor {i}: {} entries for {credited} credited keys: a key credited twice?",
                    entries.len()
                ));
            }
            for rule in &self.rules {
                let of_rule: Vec<_> = entries
                    .iter()
                    .filter(|e| e.source == format!("rule {}", rule.id))
                    .collect();
                if let Some(max) = rule.per_participant {
                    if of_rule.len() > max as usize {
                        return Err(format!(
                            "actor {i}: {} credits of {} over its limit {max}",
                            of_rule.len(),
                            rule.id
                        ));
                    }
                }
                if let Some(limit) = rule.per_period {
                    let mut per: BTreeMap<String, u32> = BTreeMap::new();
                    for e in &of_rule {
                        *per.entry(limit.period.window(e.created_at, actor.zone()).0)
                            .or_default() += 1;
                    }
                    if let Some((period, n)) = per.iter().find(|(_, n)| **n > limit.max) {
                        return Err(format!(
                            "actor {i}: {n} credits of {} in {period}, over its limit {}",
                            rule.id, limit.max
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
