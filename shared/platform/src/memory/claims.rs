//! The claim store in memory: [`MemoryClaims`] implements [`ClaimStore`] with the semantics
//! of [`crate::stores::claims::DynamoClaims`], without its AWS types.
//!
//! What it copies from the DynamoDB transaction, item by item:
//!
//! | DynamoDB item (in transaction order)         | here                                   |
//! |----------------------------------------------|----------------------------------------|
//! | code: `status = issued AND valid_until >= today` | [`ClaimsWorld::codes`]              |
//! | profile check: exists, active, the assumed region and outlet | [`ClaimsWorld::profiles`] |
//! | lock checks: `locked_until <= now` (participant, then outlet) | [`ClaimsWorld::locks`] |
//! | velocity counter: `hits < limit` (when a limit is given), `ADD hits 1` | [`ClaimsWorld::velocity`] |
//! | ledger entry: `attribute_not_exists(pk)`      | [`ClaimsWorld::entries`]               |
//! | balance: `attribute_not_exists(version)` or `version = expected`, `ADD` delta | [`ClaimsWorld::balances`] |
//! | outlet totals: `ADD` delta                    | [`ClaimsWorld::outlet_totals`]         |
//! | programme account shard: `ADD` the entry's transfer | [`ClaimsWorld::programme`]       |
//! | outbox record: `attribute_not_exists(pk)`     | [`ClaimsWorld::outbox`]                |
//! | audit record                                  | [`ClaimsWorld::audit`]                 |
//!
//! Every condition is evaluated before anything is written, so a refused claim writes
//! nothing, and the refusal reported is the one `DynamoClaims` reports when several
//! conditions fail at once: the participant's standing, a lock, then the code, then velocity, then the balance. A failed
//! entry or outbox condition (which only corrupt data can cause) is a permanent
//! [`InfraError`], as it is there.
//!
//! One difference on purpose: `DynamoClaims` remembers an unknown batch number for a
//! minute (so probing costs no reads), and the time zones for a minute; here a batch is
//! claimable as soon as it is added, and zones count as soon as they are set.
//!
//! The claims it flags are decided through its [`ReviewStore`], with the conditions of
//! `DynamoLedger::commit_decision` (still queued, decision entry new, pending covering it).
//! `PlantedBug::RejectionCredits` exists only to prove the simulator catches a bad decision.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_domain::claim::{
    BatchInfo, ClaimAttempt, ClaimReceipt, ClaimStore, CodeState, FailedAttempt, FailureCounts,
    Refusal,
};
use loyalty_domain::code::Code;
use loyalty_domain::earning::month_key;
use loyalty_domain::fraud::{AttemptOutcome, FlagReason, Subject};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{programme_shard, Balance, Delta, Entry, ProgrammeAccount};
use loyalty_domain::outbox::Envelope;
use loyalty_domain::participant::{ProfileFacts, ProfileRefusal};
use loyalty_domain::review::{
    Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::zone::Zones;
use loyalty_domain::InfraError;

use crate::memory::participants::ProfileChecks;

/// A code as the codes table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub batch: u32,
    pub valid_until: NaiveDate,
    pub status: CodeStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeStatus {
    Issued,
    /// Claimed, with the first answer, which a replay returns again.
    Claimed {
        by: ParticipantId,
        at: DateTime<Utc>,
        receipt: ClaimReceipt,
    },
}

/// A balance (or outlet totals) item as stored: signed counters moved by `ADD`, like
/// DynamoDB numbers, so a bug that drives a bucket below zero is visible rather than
/// impossible to represent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredBalance {
    pub available: i64,
    pub pending: i64,
    pub held: i64,
    pub lifetime_earned: i64,
    pub spent: i64,
    pub expired: i64,
    pub version: u64,
    /// `earned_<yyyymm>`: points earned per calendar month.
    pub earned_by_month: BTreeMap<u32, i64>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl StoredBalance {
    pub(crate) fn add(&mut self, d: &Delta, at: DateTime<Utc>) {
        self.available += d.available;
        self.pending += d.pending;
        self.held += d.held;
        self.lifetime_earned += d.lifetime_earned;
        self.spent += d.spent;
        self.expired += d.expired;
        self.version += 1;
        if d.lifetime_earned != 0 {
            *self.earned_by_month.entry(month_key(at)).or_default() += d.lifetime_earned;
        }
        self.updated_at = Some(at);
    }

    /// The balance as the domain sees it; a negative counter cannot be read, as a negative
    /// number cannot be decoded from the DynamoDB item either.
    pub fn to_balance(&self) -> Result<Balance, InfraError> {
        let get = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| {
                InfraError::permanent("decode balance", format!("{name} is negative: {v}"))
            })
        };
        Ok(Balance {
            available: get("available", self.available)?,
            pending: get("pending", self.pending)?,
            held: get("held", self.held)?,
            lifetime_earned: get("lifetime_earned", self.lifetime_earned)?,
            spent: get("spent", self.spent)?,
            expired: get("expired", self.expired)?,
            version: self.version,
        })
    }

    /// The buckets and counters that must never be negative, by name.
    pub fn negative_fields(&self) -> Vec<(&'static str, i64)> {
        [
            ("available", self.available),
            ("pending", self.pending),
            ("held", self.held),
            ("lifetime_earned", self.lifetime_earned),
            ("spent", self.spent),
            ("expired", self.expired),
        ]
        .into_iter()
        .filter(|(_, v)| *v < 0)
        .collect()
    }
}

/// A notification written in the same commit as the claim it announces.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: String,
    pub payload: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// One audit record of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub participant: ParticipantId,
    pub outlet: Option<OutletId>,
    pub code_hint: String,
    pub outcome: AttemptOutcome,
    pub at: DateTime<Utc>,
}

/// Everything the store holds. Tests and the simulator read it through
/// [`MemoryClaims::inspect`]; only the port writes it.
#[derive(Debug, Default)]
pub struct ClaimsWorld {
    /// Registered participants (the profile items of ParticipantsTable).
    pub profiles: ProfileChecks,
    pub batches: BTreeMap<u32, BatchInfo>,
    /// By canonical code.
    pub codes: BTreeMap<String, CodeRecord>,
    /// Each participant's entries in the order they were appended.
    pub entries: BTreeMap<ParticipantId, Vec<Entry>>,
    /// Where each entry is in [`ClaimsWorld::entries`]: the entry conditions look an id up
    /// rather than scan an account (simulated accounts grow to thousands of entries).
    entry_index: BTreeMap<EntryId, (ParticipantId, usize)>,
    /// The review queue: entries awaiting review and why.
    pub reviews: BTreeMap<String, Vec<FlagReason>>,
    pub balances: BTreeMap<ParticipantId, StoredBalance>,
    pub outlet_totals: BTreeMap<OutletId, StoredBalance>,
    /// Programme account shards (the other side of every entry), as `programme_balance`.
    pub programme: BTreeMap<(ProgrammeAccount, u32), i64>,
    /// Claims per participant per velocity window (by window start).
    pub velocity: BTreeMap<(ParticipantId, i64), u64>,
    /// Failures per subject key ([`Subject::key`]) per failure window (by window start).
    pub failures: BTreeMap<(String, i64), u64>,
    /// `locked_until` per subject key.
    pub locks: BTreeMap<String, i64>,
    /// By event id.
    pub outbox: BTreeMap<String, OutboxEvent>,
    pub audit: Vec<AuditRecord>,
    /// The time zones (on DynamoDB accrual's `ZONES` items in ProgrammeTable).
    pub zones: Zones,
}

/// Deliberate bugs, so that tests can prove the contract suite and the simulator's
/// checkers catch them. Never set outside such tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// A commit moves the balance by the entry's delta twice.
    CreditTwice,
    /// The code condition is skipped: a claimed code can be claimed again (by anyone).
    ReclaimableCodes,
    /// A commit credits the participant but not the programme account on the other side.
    OneSided,
    /// A rejected review credits the held points as an approval would.
    RejectionCredits,
    /// The profile check is skipped: a blocked participant's claims commit and their held
    /// claims can be approved.
    IgnoreStanding,
}

/// The in-memory claim store. Cheap to create: one per test, or one per simulation run.
#[derive(Debug, Default)]
pub struct MemoryClaims {
    world: Mutex<ClaimsWorld>,
    bug: Option<PlantedBug>,
}

impl MemoryClaims {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with a deliberate bug; see [`PlantedBug`].
    pub fn with_planted_bug(bug: PlantedBug) -> Self {
        Self {
            world: Mutex::default(),
            bug: Some(bug),
        }
    }

    fn world(&self) -> MutexGuard<'_, ClaimsWorld> {
        // A panic while holding the lock (a failed assertion in a test) must not hide the
        // world from the checks that report it.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    // --- Seeding, as the batch worker would -------------------------------------------

    /// Sets the time zones (what accrual's admin routes write).
    pub fn set_zones(&self, zones: Zones) {
        self.world().zones = zones;
    }

    /// Creates a batch (what `CodesStore::create_batch` records).
    pub fn add_batch(&self, batch: BatchInfo) {
        self.world().batches.insert(batch.number, batch);
    }

    /// Issues codes of `batch`, valid until the batch's date (what `CodesStore::put_codes`
    /// writes). Issuing a claimed code again resets it, as the batch write would.
    pub fn issue(&self, batch: &BatchInfo, codes: &[Code]) {
        let mut w = self.world();
        for code in codes {
            w.codes.insert(
                code.canonical().to_string(),
                CodeRecord {
                    batch: batch.number,
                    valid_until: batch.valid_until,
                    status: CodeStatus::Issued,
                },
            );
        }
    }

    /// Registers `participant`, active, in the region and outlet of `facts` (what
    /// registration writes to ParticipantsTable).
    pub fn register(&self, participant: &ParticipantId, facts: ProfileFacts) {
        self.world().profiles.register(participant, facts);
    }

    /// Blocks or unblocks a registered participant (the admin's standing change).
    pub fn set_active(&self, participant: &ParticipantId, active: bool) {
        self.world().profiles.set_active(participant, active);
    }

    // --- Inspection --------------------------------------------------------------------

    /// Reads the whole world under the lock, without copying it.
    pub fn inspect<R>(&self, f: impl FnOnce(&ClaimsWorld) -> R) -> R {
        f(&self.world())
    }

    pub fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.world()
            .entries
            .get(participant)
            .cloned()
            .unwrap_or_default()
    }

    /// `None` for an account that has never had an entry.
    pub fn balance(&self, participant: &ParticipantId) -> Option<StoredBalance> {
        self.world().balances.get(participant).cloned()
    }

    pub fn outlet_totals(&self, outlet: &OutletId) -> Option<StoredBalance> {
        self.world().outlet_totals.get(outlet).cloned()
    }

    /// Outbox records in event-id order.
    pub fn outbox(&self) -> Vec<OutboxEvent> {
        self.world().outbox.values().cloned().collect()
    }

    pub fn audit(&self) -> Vec<AuditRecord> {
        self.world().audit.clone()
    }

    pub fn code(&self, code: &Code) -> Option<CodeRecord> {
        self.world().codes.get(code.canonical()).cloned()
    }

    /// Failures counted for `subject` in the window starting at `window_start`.
    pub fn failures(&self, subject: &Subject, window_start: i64) -> u64 {
        self.world()
            .failures
            .get(&(subject.key(), window_start))
            .copied()
            .unwrap_or(0)
    }

    pub fn locked_until(&self, subject: &Subject) -> Option<i64> {
        self.world().locks.get(&subject.key()).copied()
    }

    /// Everyone with a balance, in id order.
    pub fn participants(&self) -> Vec<ParticipantId> {
        self.world().balances.keys().cloned().collect()
    }
}

/// The entry a claim appends: the same fields `DynamoClaims` writes.
fn claim_entry(a: &ClaimAttempt) -> Entry {
    Entry {
        id: a.receipt.entry_id.clone(),
        participant: a.claimant.participant.clone(),
        outlet: a.claimant.outlet.clone(),
        kind: a.kind,
        amount: a.batch.points,
        source: format!(
            "batch {} · {} {}",
            a.batch.number, a.batch.sku, a.batch.product_type
        ),
        created_at: a.now,
        expires_on: Some(a.credit_expires_on),
    }
}

fn outbox_payload(a: &ClaimAttempt, entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "type": if a.flags.is_empty() { "code_accepted" } else { "code_under_review" },
        "participant_id": a.claimant.participant.as_str(),
        "entry_id": entry.id.as_str(),
        "points": a.batch.points.get(),
        "sku": a.batch.sku,
        "product_type": a.batch.product_type,
        "available": a.receipt.balance.available,
        "occurred_at": a.now.to_rfc3339(),
    })
}

fn audit(f: &FailedAttempt) -> AuditRecord {
    AuditRecord {
        participant: f.claimant.participant.clone(),
        outlet: f.claimant.outlet.clone(),
        code_hint: f.code_hint.clone(),
        outcome: f.outcome,
        at: f.now,
    }
}

impl ClaimsWorld {
    /// The refusal `DynamoClaims` would report, or `None` when every condition holds.
    fn refusal(
        &self,
        a: &ClaimAttempt,
        bug: Option<PlantedBug>,
    ) -> Result<Option<Refusal>, InfraError> {
        let now = a.now.timestamp();
        let participant = &a.claimant.participant;

        match self.profiles.check(participant, &a.claimant.facts()) {
            Ok(()) => {}
            Err(ProfileRefusal::NotActive) if bug == Some(PlantedBug::IgnoreStanding) => {}
            Err(ProfileRefusal::NotActive) => return Ok(Some(Refusal::ParticipantNotActive)),
            Err(ProfileRefusal::Differs(facts)) => return Ok(Some(Refusal::ProfileDiffers(facts))),
        }

        let mut subjects = vec![Subject::Participant(participant.clone())];
        if let Some(outlet) = &a.claimant.outlet {
            subjects.push(Subject::Outlet(outlet.clone()));
        }
        for subject in &subjects {
            if let Some(&until) = self.locks.get(&subject.key()) {
                if until > now {
                    return Ok(Some(Refusal::Locked { until }));
                }
            }
        }

        let today = a.today;
        let code = self.codes.get(a.code.canonical());
        let code_holds = match code {
            Some(CodeRecord {
                status: CodeStatus::Issued,
                valid_until,
                ..
            }) => *valid_until >= today,
            _ => bug == Some(PlantedBug::ReclaimableCodes) && code.is_some(),
        };
        if !code_holds {
            let state = match code {
                None => CodeState::Missing,
                Some(CodeRecord {
                    status: CodeStatus::Claimed { by, receipt, .. },
                    ..
                }) => CodeState::ClaimedBy {
                    participant: by.clone(),
                    receipt: receipt.clone(),
                },
                Some(CodeRecord { valid_until, .. }) if *valid_until < today => CodeState::Expired,
                Some(_) => {
                    return Err(InfraError::permanent(
                        "decode code",
                        "code condition failed on an issued, valid code",
                    ))
                }
            };
            return Ok(Some(Refusal::Code(state)));
        }

        if let Some(limit) = a.velocity_limit {
            // `attribute_not_exists(hits) OR hits < :limit`: a window without a counter
            // passes whatever the limit (even 0).
            let hits = self
                .velocity
                .get(&(participant.clone(), a.velocity_window.start));
            if hits.is_some_and(|&hits| hits >= limit) {
                return Ok(Some(Refusal::VelocityExceeded));
            }
        }

        let stored = self.balances.get(participant);
        let balance_holds = match (a.expected_balance, stored) {
            (None, stored) => stored.is_none(),
            (Some(expected), Some(stored)) => stored.version == expected.version,
            (Some(_), None) => false,
        };
        if !balance_holds {
            let current = match stored {
                Some(b) => b.to_balance()?,
                None => Balance::default(),
            };
            return Ok(Some(Refusal::BalanceMoved(current)));
        }

        let reclaimable = bug == Some(PlantedBug::ReclaimableCodes);
        let entry_exists = self.entry(participant, &a.receipt.entry_id).is_some();
        let outbox_exists = self
            .outbox
            .contains_key(&format!("code_accepted-{}", a.receipt.entry_id));
        if !reclaimable && (entry_exists || outbox_exists) {
            return Err(InfraError::permanent(
                "claim transaction",
                format!(
                    "unexpected cancellation reasons: entry exists {entry_exists}, outbox record exists {outbox_exists}"
                ),
            ));
        }
        Ok(None)
    }

    fn commit(&mut self, a: &ClaimAttempt, bug: Option<PlantedBug>) {
        let participant = &a.claimant.participant;
        self.codes.insert(
            a.code.canonical().to_string(),
            CodeRecord {
                batch: a.batch.number,
                valid_until: self
                    .codes
                    .get(a.code.canonical())
                    .map(|c| c.valid_until)
                    .unwrap_or(a.batch.valid_until),
                status: CodeStatus::Claimed {
                    by: participant.clone(),
                    at: a.now,
                    receipt: a.receipt.clone(),
                },
            },
        );
        *self
            .velocity
            .entry((participant.clone(), a.velocity_window.start))
            .or_default() += 1;

        let entry = claim_entry(a);
        let delta = entry.delta();
        if !a.flags.is_empty() {
            self.reviews
                .insert(entry.id.as_str().to_string(), a.flags.clone());
        }
        let balance = self.balances.entry(participant.clone()).or_default();
        balance.add(&delta, a.now);
        if bug == Some(PlantedBug::CreditTwice) {
            balance.add(&delta, a.now);
        }
        if let Some(outlet) = &a.claimant.outlet {
            self.outlet_totals
                .entry(outlet.clone())
                .or_default()
                .add(&delta, a.now);
        }
        if let Some(side) = entry
            .transfer()
            .filter(|_| bug != Some(PlantedBug::OneSided))
        {
            *self
                .programme
                .entry((side.account, programme_shard(&entry.id)))
                .or_default() += side.change;
        }
        let event_id = format!("code_accepted-{}", entry.id);
        self.outbox.insert(
            event_id.clone(),
            OutboxEvent {
                event_id,
                payload: outbox_payload(a, &entry),
                at: a.now,
            },
        );
        self.push_entry(entry);
        self.audit.push(AuditRecord {
            participant: participant.clone(),
            outlet: a.claimant.outlet.clone(),
            code_hint: loyalty_domain::redact::tail(a.code.canonical()),
            outcome: if a.flags.is_empty() {
                AttemptOutcome::Accepted
            } else {
                AttemptOutcome::Flagged
            },
            at: a.now,
        });
    }

    fn count_failure(&mut self, subject: &Subject, f: &FailedAttempt) -> u64 {
        let n = self
            .failures
            .entry((subject.key(), f.window.start))
            .or_default();
        *n += 1;
        *n
    }
}

impl ClaimStore for MemoryClaims {
    async fn zones(&self) -> Result<Zones, InfraError> {
        Ok(self.world().zones.clone())
    }

    async fn profile(
        &self,
        participant: &ParticipantId,
    ) -> Result<Option<ProfileFacts>, InfraError> {
        Ok(self.world().profiles.facts(participant))
    }

    async fn batch(&self, number: u32) -> Result<Option<BatchInfo>, InfraError> {
        Ok(self.world().batches.get(&number).cloned())
    }

    async fn try_claim(&self, attempt: &ClaimAttempt) -> Result<Result<(), Refusal>, InfraError> {
        let mut w = self.world();
        if let Some(refusal) = w.refusal(attempt, self.bug)? {
            return Ok(Err(refusal));
        }
        w.commit(attempt, self.bug);
        Ok(Ok(()))
    }

    async fn record_failure(&self, f: &FailedAttempt) -> Result<FailureCounts, InfraError> {
        let mut w = self.world();
        let participant = w.count_failure(&Subject::Participant(f.claimant.participant.clone()), f);
        let outlet = f
            .claimant
            .outlet
            .as_ref()
            .map(|o| w.count_failure(&Subject::Outlet(o.clone()), f));
        w.audit.push(audit(f));
        Ok(FailureCounts {
            participant,
            outlet,
        })
    }

    async fn record_attempt(&self, f: &FailedAttempt) -> Result<(), InfraError> {
        self.world().audit.push(audit(f));
        Ok(())
    }

    async fn lock(&self, subject: &Subject, until: i64) -> Result<(), InfraError> {
        self.world().locks.insert(subject.key(), until);
        Ok(())
    }
}

const REVIEW_CURSOR_PREFIX: &str = "memory-claims-review:";

impl ClaimsWorld {
    /// The entry `id` of `participant`'s account.
    fn entry(&self, participant: &ParticipantId, id: &EntryId) -> Option<&Entry> {
        let (owner, at) = self.entry_index.get(id)?;
        (owner == participant)
            .then(|| self.entries.get(participant)?.get(*at))
            .flatten()
    }

    fn push_entry(&mut self, entry: Entry) {
        let entries = self.entries.entry(entry.participant.clone()).or_default();
        self.entry_index
            .insert(entry.id.clone(), (entry.participant.clone(), entries.len()));
        entries.push(entry);
    }

    /// [`DynamoLedger::commit_decision`](crate::stores::ledger::DynamoLedger::commit_decision):
    /// the entry must still be queued (`attribute_exists(gsi1pk)`), the decision entry new, the
    /// pending bucket must cover a rejection; all checked before anything is written.
    fn decide(&mut self, d: &Decided, bug: Option<PlantedBug>) -> Result<Committed, InfraError> {
        if !self.reviews.contains_key(d.id.entry.as_str()) {
            return Ok(Committed::AlreadyDecided);
        }
        if d.decision == Decision::Approve
            && !self.profiles.is_active(&d.id.participant)
            && bug != Some(PlantedBug::IgnoreStanding)
        {
            return Ok(Committed::ParticipantNotActive);
        }
        let mut entry = d.entry.clone();
        if bug == Some(PlantedBug::RejectionCredits) {
            entry.kind = loyalty_domain::ledger::EntryKind::ReviewApproved;
        }
        let d = &Decided { entry, ..d.clone() };
        let participant = &d.entry.participant;
        if self.entry(participant, &d.entry.id).is_some() {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (EntryExists)",
            ));
        }
        let delta = d.entry.delta();
        let balance = self.balances.entry(participant.clone()).or_default();
        if balance.pending + delta.pending < 0 || balance.available + delta.available < 0 {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (InsufficientBalance)",
            ));
        }
        self.reviews.remove(d.id.entry.as_str());
        balance.add(&delta, d.at);
        if let Some(outlet) = &d.entry.outlet {
            self.outlet_totals
                .entry(outlet.clone())
                .or_default()
                .add(&delta, d.at);
        }
        if let Some(side) = d.entry.transfer() {
            *self
                .programme
                .entry((side.account, programme_shard(&d.entry.id)))
                .or_default() += side.change;
        }
        let envelope = Envelope::new(d.event.clone(), d.at);
        let payload: serde_json::Value =
            serde_json::from_str(&envelope.to_json()).expect("an envelope is JSON");
        self.outbox.insert(
            envelope.event_id.clone(),
            OutboxEvent {
                event_id: envelope.event_id,
                payload,
                at: d.at,
            },
        );
        self.push_entry(d.entry.clone());
        Ok(Committed::Ok)
    }
}

/// Review decisions on the claims this store flagged, as `DynamoLedger` decides them on the
/// ledger table: the queue is [`ClaimsWorld::reviews`], ordered like the DynamoDB index
/// (claimed at, then entry id).
impl ReviewStore for MemoryClaims {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        Ok(self.world().entry(&id.participant, &id.entry).cloned())
    }

    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingReview>, ReviewError> {
        let after = match cursor {
            None => None,
            Some(c) => {
                let rest = c
                    .strip_prefix(REVIEW_CURSOR_PREFIX)
                    .ok_or(ReviewError::InvalidCursor)?;
                let (at, entry) = rest.rsplit_once('#').ok_or(ReviewError::InvalidCursor)?;
                Some((at.to_string(), entry.to_string()))
            }
        };
        let w = self.world();
        let mut queued: Vec<((String, String), PendingReview)> = w
            .entries
            .values()
            .flatten()
            .filter_map(|e| {
                let reasons = w.reviews.get(e.id.as_str())?;
                Some((
                    (e.created_at.to_rfc3339(), e.id.as_str().to_string()),
                    PendingReview {
                        id: ReviewId::of(&e.participant, &e.id),
                        entry: e.clone(),
                        reasons: reasons.iter().map(|r| r.as_str().to_string()).collect(),
                    },
                ))
            })
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .collect();
        queued.sort_by(|a, b| a.0.cmp(&b.0));
        let more = queued.len() > limit;
        queued.truncate(limit);
        let next_cursor = more
            .then(|| queued.last())
            .flatten()
            .map(|((at, entry), _)| format!("{REVIEW_CURSOR_PREFIX}{at}#{entry}"));
        Ok(Page {
            items: queued.into_iter().map(|(_, p)| p).collect(),
            next_cursor,
        })
    }

    async fn commit(&self, decided: &Decided) -> Result<Committed, InfraError> {
        self.world().decide(decided, self.bug)
    }
}
