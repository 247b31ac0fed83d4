//! The claims feature in the simulator: its operations, its reference model, and how a
//! request runs through the real use case `loyalty_domain::claim::claim` with retries.
//!
//! The model predicts every answer from first principles (who holds which code, locks,
//! failure and velocity counters, validity dates, regions) before the request runs; the
//! simulator compares the answer, then the checker compares the store with the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use futures::executor::block_on;
use loyalty_domain::claim::{
    claim, BatchInfo, ClaimError, ClaimPolicy, ClaimReceipt, ClaimStatus, Claimed,
};
use loyalty_domain::code::{Code, CodeError, ALPHABET};
use loyalty_domain::fraud::{FraudPolicy, Subject};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{entry_ids, Balance, EntryKind};
use loyalty_domain::review::Decision;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryClaims;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::faults::{Fault, FaultyClaims};
use crate::world::{self, Actor, World};

/// Attempts of one request before the caller gives up (each is a full call of the use case).
const MAX_TRIES: usize = 8;

/// The policy of the simulation: low limits, so that flags and locks happen often.
pub fn policy() -> ClaimPolicy {
    ClaimPolicy {
        fraud: FraudPolicy {
            max_failures_per_participant: 3,
            max_failures_per_outlet: 8,
            failure_window_secs: 30 * 60,
            lock_secs: 20 * 60,
            max_claims_per_hour: 4,
            flag_foreign_region: true,
        },
        ..ClaimPolicy::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOp {
    /// A new batch is issued (as the batch worker would).
    IssueBatch,
    /// Someone claims a code nobody has claimed yet (it may have expired).
    Fresh,
    /// The owner of a code claims it again (a second device, a double tap).
    OwnAgain,
    /// Someone claims a code someone else holds (a stolen or shared code).
    Stolen,
    /// A well-formed code that was never issued, or of a batch that does not exist.
    Unknown,
    /// A code with one character mistyped: the check character must catch it.
    Mistyped,
    /// The last request delivered again, later.
    Redeliver,
}

impl ClaimOp {
    pub fn kind(self) -> &'static str {
        match self {
            ClaimOp::IssueBatch => "issue_batch",
            ClaimOp::Fresh => "claim_fresh",
            ClaimOp::OwnAgain => "claim_own_again",
            ClaimOp::Stolen => "claim_stolen",
            ClaimOp::Unknown => "claim_unknown",
            ClaimOp::Mistyped => "claim_mistyped",
            ClaimOp::Redeliver => "redeliver",
        }
    }
}

/// What the app would know of the claimant's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The last balance this app saw (none for a first claim).
    Cached,
    /// Nothing: a cold function.
    Cold,
    /// An old version: another function instance moved the balance since.
    Stale,
}

/// One claim request, as the handler would receive it.
#[derive(Debug, Clone)]
pub struct Request {
    pub op: ClaimOp,
    pub actor: usize,
    pub text: String,
    pub known: Known,
}

/// What the model says the answer must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    BadInput,
    Unknown,
    Locked {
        until: i64,
    },
    Replay(ClaimReceipt),
    AlreadyClaimed,
    Expired,
    /// The claimant is blocked: refused before anything is counted or written.
    NotActive,
    Commit {
        status: ClaimStatus,
        kind: EntryKind,
        points: Points,
        balance: Balance,
    },
}

/// The answer after retries.
#[derive(Debug, Clone)]
pub enum Actual {
    BadInput(CodeError),
    Answer(Result<Claimed, ClaimError>),
    /// Every try failed with a retryable error.
    GaveUp,
}

impl Actual {
    pub fn label(&self) -> &'static str {
        match self {
            Actual::BadInput(_) => "bad_input",
            Actual::GaveUp => "gave_up",
            Actual::Answer(Ok(c)) if c.replayed => "replayed",
            Actual::Answer(Ok(c)) => match c.receipt.status {
                ClaimStatus::Accepted => "accepted",
                ClaimStatus::PendingReview => "pending_review",
            },
            Actual::Answer(Err(e)) => match e {
                ClaimError::ParticipantNotActive => "participant_not_active",
                ClaimError::UnknownCode => "unknown",
                ClaimError::Expired => "expired",
                ClaimError::AlreadyClaimed => "already_claimed",
                ClaimError::Locked { .. } => "locked",
                ClaimError::TooMuchContention => "contention",
                ClaimError::Infra(_) => "infra_error",
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct CodeModel {
    pub batch: u32,
    pub owner: Option<(ParticipantId, ClaimReceipt)>,
}

/// The reference model: what the store must hold.
#[derive(Debug, Default)]
pub struct Model {
    pub batches: BTreeMap<u32, BatchInfo>,
    pub codes: BTreeMap<Code, CodeModel>,
    pub balances: BTreeMap<ParticipantId, Balance>,
    pub outlet_totals: BTreeMap<OutletId, Balance>,
    pub velocity: BTreeMap<(ParticipantId, i64), u64>,
    pub failures: BTreeMap<(String, i64), u64>,
    pub locks: BTreeMap<String, i64>,
    /// Entry id → the participant credited, one per claimed code.
    pub entry_owner: BTreeMap<String, ParticipantId>,
    pub commits: u64,
    pub points_available: u64,
    pub points_pending: u64,
    /// Flagged claims awaiting a decision, in the order they were held.
    pub held: Vec<Held>,
    /// Decided reviews by the reviewed entry id.
    pub decided: BTreeMap<String, (Held, Decision)>,
    /// Decisions committed (each wrote one entry and one outbox record).
    pub decisions: u64,
    /// Participants an admin has blocked (the profiles' standing).
    pub blocked: BTreeSet<ParticipantId>,
}

/// A claim held for review, as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub participant: ParticipantId,
    pub outlet: Option<OutletId>,
    pub entry: EntryId,
    pub points: Points,
}

/// The claims feature's state in one simulation.
pub struct Claims {
    pub policy: ClaimPolicy,
    pub model: Model,
    /// Issued, unclaimed and not known to be expired.
    unclaimed: Vec<Code>,
    /// Issued, unclaimed, past their date.
    expired: Vec<Code>,
    claimed: Vec<Code>,
    /// Where the current request's code sits in `unclaimed`, to remove it in O(1).
    picked: Option<usize>,
    /// The earliest date on which a code in `unclaimed` expires.
    next_expiry: Option<chrono::NaiveDate>,
    next_batch: u32,
    /// The app's balance cache, as the handler keeps it.
    cache: BTreeMap<ParticipantId, Balance>,
    last: Option<Request>,
}

impl Claims {
    pub fn new(policy: ClaimPolicy) -> Self {
        Self {
            policy,
            model: Model::default(),
            unclaimed: Vec::new(),
            expired: Vec::new(),
            claimed: Vec::new(),
            picked: None,
            next_expiry: None,
            next_batch: 1,
            cache: BTreeMap::new(),
            last: None,
        }
    }

    /// Issues a batch of 50–300 codes valid for 5–60 days from `now`, in the store and
    /// the model alike.
    pub fn issue_batch(
        &mut self,
        rng: &mut ChaCha8Rng,
        store: &MemoryClaims,
        now: DateTime<Utc>,
    ) -> String {
        let number = self.next_batch;
        self.next_batch += 1;
        let batch = BatchInfo {
            number,
            sku: format!("SKU-{}", rng.random_range(1..=9)),
            product_type: "Cola 0.5 l".into(),
            points: Points(rng.random_range(1..=20) * 5),
            region: world::region(rng),
            valid_until: now.date_naive() + Duration::days(rng.random_range(5..=60)),
        };
        let count = rng.random_range(50..=300);
        let seed: [u8; 32] = rng.random();
        let codes = Code::chunk(&seed, number, 0, count);
        store.add_batch(batch.clone());
        store.issue(&batch, &codes);
        for code in &codes {
            self.model.codes.insert(
                *code,
                CodeModel {
                    batch: number,
                    owner: None,
                },
            );
        }
        self.unclaimed.extend(codes);
        self.next_expiry = Some(match self.next_expiry {
            Some(d) => d.min(batch.valid_until),
            None => batch.valid_until,
        });
        let described = format!(
            "issue batch {number}: {count} codes × {} points, {}, valid until {}",
            batch.points.get(),
            batch.region,
            batch.valid_until
        );
        self.model.batches.insert(number, batch);
        described
    }

    /// Builds the request an operation sends; `None` when the operation has nothing to
    /// act on yet (then the simulator draws again).
    pub fn request(&mut self, op: ClaimOp, rng: &mut ChaCha8Rng, world: &World) -> Option<Request> {
        self.picked = None;
        let known = match rng.random_range(0..100) {
            0..=84 => Known::Cached,
            85..=94 => Known::Cold,
            _ => Known::Stale,
        };
        let (actor, text) = match op {
            ClaimOp::IssueBatch => return None,
            ClaimOp::Fresh => {
                let code = if !self.expired.is_empty() && rng.random_bool(0.05) {
                    self.expired[rng.random_range(0..self.expired.len())]
                } else if self.unclaimed.is_empty() {
                    return None;
                } else {
                    let i = rng.random_range(0..self.unclaimed.len());
                    self.picked = Some(i);
                    self.unclaimed[i]
                };
                (world.pick(rng), typed(rng, &code))
            }
            ClaimOp::OwnAgain | ClaimOp::Stolen => {
                if self.claimed.is_empty() {
                    return None;
                }
                let code = self.claimed[rng.random_range(0..self.claimed.len())];
                let owner = self.model.codes[&code]
                    .owner
                    .as_ref()
                    .map(|(p, _)| p.clone())
                    .expect("claimed codes have owners");
                let actor = if op == ClaimOp::OwnAgain {
                    world.actors.iter().position(|a| a.participant == owner)?
                } else {
                    let a = world.pick(rng);
                    if world.actors[a].participant == owner {
                        (a + 1) % world.actors.len()
                    } else {
                        a
                    }
                };
                (actor, typed(rng, &code))
            }
            ClaimOp::Unknown => {
                let batch = if rng.random_bool(0.5) && !self.model.batches.is_empty() {
                    rng.random_range(1..self.next_batch)
                } else {
                    // A batch number far beyond any issued one.
                    rng.random_range(7_000..7_484)
                };
                let code = Code::generate(rng, batch);
                (world.pick(rng), typed(rng, &code))
            }
            ClaimOp::Mistyped => {
                let pool = if self.claimed.is_empty() {
                    &self.unclaimed
                } else {
                    &self.claimed
                };
                if pool.is_empty() {
                    return None;
                }
                let code = pool[rng.random_range(0..pool.len())];
                (world.pick(rng), mistyped(rng, &code))
            }
            ClaimOp::Redeliver => {
                let mut again = self.last.clone()?;
                again.op = ClaimOp::Redeliver;
                again.known = known;
                return Some(again);
            }
        };
        Some(Request {
            op,
            actor,
            text,
            known,
        })
    }

    /// What the model says `request` must answer at `now`.
    pub fn predict(&self, actor: &Actor, request: &Request, now: DateTime<Utc>) -> Expected {
        let Ok(code) = Code::parse(&request.text) else {
            return Expected::BadInput;
        };
        if request.op == ClaimOp::Mistyped {
            // A single substitution is always caught; if it parsed, say so loudly.
            return Expected::BadInput;
        }
        // The standing outranks everything the store checks, a known batch or not.
        if self.model.blocked.contains(&actor.participant) {
            return Expected::NotActive;
        }
        let Some(batch) = self.model.batches.get(&code.batch_number()) else {
            return Expected::Unknown;
        };
        let t = now.timestamp();
        let mut subjects = vec![Subject::Participant(actor.participant.clone())];
        if let Some(o) = &actor.outlet {
            subjects.push(Subject::Outlet(o.clone()));
        }
        for s in &subjects {
            if let Some(&until) = self.model.locks.get(&s.key()) {
                if until > t {
                    return Expected::Locked { until };
                }
            }
        }
        let Some(state) = self.model.codes.get(&code) else {
            return Expected::Unknown;
        };
        if let Some((owner, receipt)) = &state.owner {
            return if *owner == actor.participant {
                Expected::Replay(receipt.clone())
            } else {
                Expected::AlreadyClaimed
            };
        }
        // A code is valid through its last day in the claimant's region zone.
        if batch.valid_until < actor.zone().date_of(now) {
            return Expected::Expired;
        }
        let fraud = &self.policy.fraud;
        let foreign = fraud.flag_foreign_region && actor.region != batch.region;
        let hits = self
            .model
            .velocity
            .get(&(actor.participant.clone(), fraud.velocity_window(now).start));
        let fast = hits.is_some_and(|&h| h >= fraud.max_claims_per_hour);
        let (status, kind) = if foreign || fast {
            (ClaimStatus::PendingReview, EntryKind::CodeClaimUnderReview)
        } else {
            (ClaimStatus::Accepted, EntryKind::CodeClaim)
        };
        let balance = self
            .model
            .balances
            .get(&actor.participant)
            .copied()
            .unwrap_or_default()
            .apply(kind, batch.points)
            .expect("a credit");
        Expected::Commit {
            status,
            kind,
            points: batch.points,
            balance,
        }
    }

    /// Runs `request` through the real use case, retrying what a client retries.
    pub fn execute(
        &mut self,
        store: &FaultyClaims<MemoryClaims>,
        actor: &Actor,
        request: &Request,
        now: DateTime<Utc>,
        tries: &mut Vec<Vec<Fault>>,
    ) -> Actual {
        self.last = Some(request.clone());
        let code = match Code::parse(&request.text) {
            Ok(code) => code,
            Err(e) => return Actual::BadInput(e),
        };
        let cached = self.cache.get(&actor.participant).copied();
        let known = match request.known {
            Known::Cached => cached,
            Known::Cold => None,
            // An older balance than the cache's: a version below the cache's never matches
            // the stored one. (A version above it might: review decisions move balances
            // behind the app's back, and would pair that version with the wrong content.)
            Known::Stale => Some(match cached {
                Some(b) => Balance {
                    version: b.version.saturating_sub(1),
                    ..b
                },
                None => Balance::default(),
            }),
        };
        for _ in 0..MAX_TRIES {
            let result = block_on(claim(
                store,
                &self.policy,
                actor.claimant(),
                code,
                known,
                now,
            ));
            tries.push(store.take_injected());
            match result {
                Err(ClaimError::Infra(e)) if e.retryable => continue,
                Err(ClaimError::TooMuchContention) => continue,
                Ok(claimed) => {
                    // A replay carries the balance of its first commit: newer than the cache
                    // when that commit's answer was lost (the app learns it from the replay).
                    let newer = cached.is_none_or(|c| claimed.receipt.balance.version > c.version);
                    if !claimed.replayed || newer {
                        self.cache
                            .insert(actor.participant.clone(), claimed.receipt.balance);
                    }
                    return Actual::Answer(Ok(claimed));
                }
                Err(e) => return Actual::Answer(Err(e)),
            }
        }
        Actual::GaveUp
    }

    /// Compares the answer with the prediction and moves the model. `crashed` says whether
    /// a commit's answer was lost on the way (then the retry's replay is the right answer).
    pub fn settle(
        &mut self,
        actor: &Actor,
        request: &Request,
        expected: Expected,
        actual: &Actual,
        tries: &[Vec<Fault>],
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let crashed = tries
            .iter()
            .flatten()
            .any(|f| *f == Fault::CrashAfterCommit);
        // Tries that failed after counting a failure or setting a lock left those writes
        // behind: replay them on the model, then the last try is answered from there.
        let mut expected = expected;
        let earlier = tries.len().saturating_sub(1);
        if tries[..earlier]
            .iter()
            .flatten()
            .any(|f| f.counts_or_locks())
        {
            for t in &tries[..earlier] {
                self.failed_try(actor, t, now);
            }
            expected = self.predict(actor, request, now);
        }
        let mismatch = || format!("expected {expected:?}, got {actual:?}");
        if let Actual::GaveUp = actual {
            // Injected faults make one try fail about one time in twenty: eight failures in
            // a row are a request that can never succeed, not bad luck.
            return Err(format!(
                "liveness: all {MAX_TRIES} tries failed with retryable errors; expected {expected:?}"
            ));
        }
        match (&expected, actual) {
            (Expected::BadInput, Actual::BadInput(_))
            | (Expected::NotActive, Actual::Answer(Err(ClaimError::ParticipantNotActive))) => {
                Ok(())
            }
            (Expected::Unknown, Actual::Answer(Err(ClaimError::UnknownCode)))
            | (Expected::AlreadyClaimed, Actual::Answer(Err(ClaimError::AlreadyClaimed)))
            | (Expected::Expired, Actual::Answer(Err(ClaimError::Expired))) => {
                self.failure(actor, now);
                Ok(())
            }
            (
                Expected::Locked { until },
                Actual::Answer(Err(ClaimError::Locked { retry_after_secs })),
            ) => {
                let want = (until - now.timestamp()).max(1) as u64;
                if *retry_after_secs == want {
                    Ok(())
                } else {
                    Err(mismatch())
                }
            }
            (Expected::Replay(receipt), Actual::Answer(Ok(c))) => {
                if c.replayed && c.receipt == *receipt {
                    Ok(())
                } else {
                    Err(mismatch())
                }
            }
            (
                Expected::Commit {
                    status,
                    points,
                    balance,
                    ..
                },
                Actual::Answer(Ok(c)),
            ) => {
                let code = Code::parse(&request.text).map_err(|e| e.to_string())?;
                let r = &c.receipt;
                let right = c.replayed == crashed
                    && r.status == *status
                    && r.points == *points
                    && r.balance == *balance
                    && r.claimed_at == now
                    && r.entry_id == entry_ids::code_claim(code.canonical());
                if !right {
                    return Err(format!(
                        "{} (a commit's answer was {}lost)",
                        mismatch(),
                        if crashed { "" } else { "not " }
                    ));
                }
                self.commit(actor, code, r.clone(), now);
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }

    fn commit(&mut self, actor: &Actor, code: Code, receipt: ClaimReceipt, now: DateTime<Utc>) {
        let m = &mut self.model;
        let p = &actor.participant;
        let kind = match receipt.status {
            ClaimStatus::Accepted => EntryKind::CodeClaim,
            ClaimStatus::PendingReview => EntryKind::CodeClaimUnderReview,
        };
        let window = self.policy.fraud.velocity_window(now).start;
        *m.velocity.entry((p.clone(), window)).or_default() += 1;
        let balance = m.balances.entry(p.clone()).or_default();
        *balance = balance.apply(kind, receipt.points).expect("a credit");
        if let Some(o) = &actor.outlet {
            let totals = m.outlet_totals.entry(o.clone()).or_default();
            *totals = totals.apply(kind, receipt.points).expect("a credit");
        }
        match kind {
            EntryKind::CodeClaim => m.points_available += receipt.points.get(),
            _ => m.points_pending += receipt.points.get(),
        }
        m.commits += 1;
        if kind == EntryKind::CodeClaimUnderReview {
            m.held.push(Held {
                participant: p.clone(),
                outlet: actor.outlet.clone(),
                entry: receipt.entry_id.clone(),
                points: receipt.points,
            });
        }
        m.entry_owner
            .insert(receipt.entry_id.as_str().to_string(), p.clone());
        m.codes.get_mut(&code).expect("issued").owner = Some((p.clone(), receipt));
        let at = match self.picked.take() {
            Some(i) if self.unclaimed.get(i) == Some(&code) => Some(i),
            _ => self.unclaimed.iter().position(|c| *c == code),
        };
        if let Some(i) = at {
            self.unclaimed.swap_remove(i);
        }
        self.claimed.push(code);
    }

    /// A failed attempt: counted for the claimant and their outlet, locking whoever
    /// reaches their limit (what `claim`'s `fail` does through the port).
    fn failure(&mut self, actor: &Actor, now: DateTime<Utc>) {
        self.failed_try(actor, &[], now);
    }

    /// What a try that ended in `fail` wrote, when `faults` (that try's) cut it short: a
    /// throttled count writes nothing; a lost count counts; a lock throttled or lost ends the
    /// try at that subject (participant first, then outlet), a lost one having locked it.
    /// A try with no such fault wrote nothing, or ran `fail` to its end.
    fn failed_try(&mut self, actor: &Actor, faults: &[Fault], now: DateTime<Utc>) {
        if faults.contains(&Fault::ThrottledFailure) {
            return;
        }
        let reached_fail = faults.is_empty() || faults.iter().any(|f| f.counts_or_locks());
        if !reached_fail {
            return;
        }
        let fraud = &self.policy.fraud;
        let window = fraud.failure_window(now).start;
        let mut subjects = vec![Subject::Participant(actor.participant.clone())];
        if let Some(o) = &actor.outlet {
            subjects.push(Subject::Outlet(o.clone()));
        }
        let counted: Vec<(Subject, u64)> = subjects
            .into_iter()
            .map(|s| {
                let n = self.model.failures.entry((s.key(), window)).or_default();
                *n += 1;
                (s, *n)
            })
            .collect();
        if faults.contains(&Fault::FailureLost) {
            return;
        }
        for (s, n) in counted {
            let Some(until) = fraud.lock_until(&s, n, now) else {
                continue;
            };
            let outlet = matches!(s, Subject::Outlet(_));
            if faults.contains(&Fault::ThrottledLock { outlet }) {
                return;
            }
            self.model.locks.insert(s.key(), until);
            if faults.contains(&Fault::LockLost { outlet }) {
                return;
            }
        }
    }

    /// Moves codes past their date out of the pool of fresh codes (a few fresh claims
    /// still pick them, to see them refused).
    /// A credit just committed expires `credit_validity_days` after the claimant's date in
    /// their region zone (the world's zones are UTC+6 and UTC−5, so a claim near a UTC
    /// midnight dates its expiry a day apart from the UTC date). A replay is left out: a
    /// review may have decided its entry since.
    pub fn check_expiry(
        &self,
        store: &MemoryClaims,
        actor: &Actor,
        actual: &Actual,
    ) -> Result<(), String> {
        let Actual::Answer(Ok(c)) = actual else {
            return Ok(());
        };
        if c.replayed {
            return Ok(());
        }
        let r = &c.receipt;
        let want =
            actor.zone().date_of(r.claimed_at) + Duration::days(self.policy.credit_validity_days);
        let found = store
            .entries(&actor.participant)
            .into_iter()
            .find(|e| e.id == r.entry_id)
            .map(|e| e.expires_on);
        if found == Some(Some(want)) {
            Ok(())
        } else {
            Err(format!(
                "credit expiry: entry {} expires on {found:?}; the model says {want} (claimed at {} in {})",
                r.entry_id,
                r.claimed_at.to_rfc3339(),
                actor.zone()
            ))
        }
    }

    pub fn prune_expired(&mut self, today: chrono::NaiveDate) {
        if self.next_expiry.is_none_or(|d| d >= today) {
            return;
        }
        let batches = &self.model.batches;
        let codes = &self.model.codes;
        let (live, dead): (Vec<Code>, Vec<Code>) = self
            .unclaimed
            .iter()
            .partition(|c| batches[&codes[*c].batch].valid_until >= today);
        self.next_expiry = live
            .iter()
            .map(|c| batches[&codes[c].batch].valid_until)
            .min();
        self.unclaimed = live;
        self.expired.extend(dead);
        self.picked = None;
    }

    pub fn unclaimed(&self) -> usize {
        self.unclaimed.len()
    }
}

/// How a person enters a valid code: printed form, sloppy lower case, or the QR link.
fn typed(rng: &mut ChaCha8Rng, code: &Code) -> String {
    match rng.random_range(0..10) {
        0..=5 => code.display(),
        6..=7 => code.canonical().to_lowercase(),
        _ => code.qr_payload("https://club.example.com"),
    }
}

/// One character replaced by another symbol of the alphabet (never its look-alike).
fn mistyped(rng: &mut ChaCha8Rng, code: &Code) -> String {
    let mut chars: Vec<u8> = code.canonical().bytes().collect();
    let i = rng.random_range(0..chars.len());
    let mut replacement = chars[i];
    while replacement == chars[i] {
        replacement = ALPHABET[rng.random_range(0..ALPHABET.len())];
    }
    chars[i] = replacement;
    String::from_utf8(chars).expect("ASCII")
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole codes are fine here: simulated codes are worth nothing.
        write!(
            f,
            "{} by actor {} of {:?} (balance {:?})",
            self.op.kind(),
            self.actor,
            self.text,
            self.known
        )
    }
}
