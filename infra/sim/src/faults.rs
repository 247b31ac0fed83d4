//! Faults at the port boundary: a wrapper around any [`ClaimStore`] that, from its own
//! seeded stream, throttles reads and writes, reports contention, or commits and then
//! loses the answer (the crash after commit that makes the caller retry). Failure counters
//! and locks are faulted the same way (throttled: nothing written; lost: written, then the
//! answer lost), each fault saying which write it hit so the model can replay the tries.
//! Audit records pass through untouched: nothing reads them back.
//!
//! The same wrapper faults review decisions ([`ReviewStore`]) on a stream of its own, and
//! [`FaultyCashback`] and [`FaultyChallenges`] do the same around the cashback and challenge
//! stores, and [`FaultyPasscodes`] around the passcodes and invitation guesses of the
//! participant store.

use loyalty_domain::zone::Zones;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::cashback::{
    CashbackStore, Decision, MinimumOrder, Order, OrderId, PartnerId, PartnerTerms,
    Refusal as CashbackRefusal,
};
use loyalty_domain::challenge::{
    Challenge, ChallengeId, ChallengeStore, Progress, StepCommit, StepRefusal,
};
use loyalty_domain::claim::{
    BatchInfo, ClaimAttempt, ClaimStore, FailedAttempt, FailureCounts, Refusal,
};
use loyalty_domain::fraud::Guesser;
use loyalty_domain::fraud::Subject;
use loyalty_domain::ids::{ParticipantId, RegionId};
use loyalty_domain::ledger::Entry;
use loyalty_domain::participant::{
    Adoption, Guess, GuessRefusal, ImportRow, Invitation, InvitationCode, Membership, Outlet,
    Page as ParticipantPage, ParticipantError, ParticipantStore, PhoneChange, Profile,
    ProfileFacts, Registration, StandingChange,
};
use loyalty_domain::passcode::{Issue, Limiter, Passcodes, Proof, StoredPasscode};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::review::{
    Committed, Decided, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::InfraError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The batch read failed with a retryable error.
    ThrottledRead,
    /// The claim write was throttled before it reached the table: nothing written.
    ThrottledWrite,
    /// The write was refused as `TransactionConflict`: nothing written, try again.
    Contended,
    /// The write committed and the answer was lost: the caller sees a retryable error.
    CrashAfterCommit,
    /// Recording a failed attempt was throttled: nothing counted.
    ThrottledFailure,
    /// A failed attempt was counted and the answer lost.
    FailureLost,
    /// Locking the participant (or the outlet) was throttled: nothing locked.
    ThrottledLock { outlet: bool },
    /// The participant (or the outlet) was locked and the answer lost.
    LockLost { outlet: bool },
    /// A review decision was refused with `TransactionConflict`: nothing written.
    ReviewConflict,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::ThrottledRead => "throttled_read",
            Fault::ThrottledWrite => "throttled_write",
            Fault::Contended => "contended",
            Fault::CrashAfterCommit => "crash_after_commit",
            Fault::ThrottledFailure => "throttled_failure_count",
            Fault::FailureLost => "failure_count_answer_lost",
            Fault::ThrottledLock { .. } => "throttled_lock",
            Fault::LockLost { .. } => "lock_answer_lost",
            Fault::ReviewConflict => "review_conflict",
        }
    }

    /// A fault in `fail`: after the claim was refused, counting it or locking.
    pub fn counts_or_locks(self) -> bool {
        matches!(
            self,
            Fault::ThrottledFailure
                | Fault::FailureLost
                | Fault::ThrottledLock { .. }
                | Fault::LockLost { .. }
        )
    }
}

/// Probabilities per port call.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    pub throttled_read: f64,
    pub throttled_write: f64,
    pub contended: f64,
    pub crash_after_commit: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            throttled_read: 0.02,
            throttled_write: 0.03,
            contended: 0.05,
            crash_after_commit: 0.05,
        }
    }
}

impl FaultRates {
    pub fn none() -> Self {
        Self {
            throttled_read: 0.0,
            throttled_write: 0.0,
            contended: 0.0,
            crash_after_commit: 0.0,
        }
    }
}

/// The seeded dice of one fault wrapper: each wrapper rolls on its own stream of the run's
/// seed, so adding a wrapper leaves the other wrappers' faults where they were.
struct Injector {
    rates: FaultRates,
    rng: Mutex<ChaCha8Rng>,
    injected: Mutex<Vec<Fault>>,
}

impl Injector {
    fn new(seed: u64, stream: u64, rates: FaultRates) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self {
            rates,
            rng: Mutex::new(rng),
            injected: Mutex::new(Vec::new()),
        }
    }

    fn take_injected(&self) -> Vec<Fault> {
        std::mem::take(&mut *self.injected.lock().expect("faults"))
    }

    fn roll(&self, p: f64, fault: Fault) -> bool {
        let hit = p > 0.0 && self.rng.lock().expect("fault rng").random_bool(p);
        if hit {
            self.injected.lock().expect("faults").push(fault);
        }
        hit
    }
}

pub struct FaultyClaims<S> {
    inner: S,
    faults: Injector,
    /// Review decisions roll on their own stream, so adding them left every claim's faults
    /// where they were.
    review_faults: Injector,
}

impl<S> FaultyClaims<S> {
    pub fn new(inner: S, seed: u64, rates: FaultRates) -> Self {
        Self {
            inner,
            faults: Injector::new(seed, 1, rates),
            review_faults: Injector::new(seed, 4, rates),
        }
    }

    /// The review faults injected since the last call, in order.
    pub fn take_review_faults(&self) -> Vec<Fault> {
        self.review_faults.take_injected()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected since the last call, in order.
    pub fn take_injected(&self) -> Vec<Fault> {
        self.faults.take_injected()
    }

    fn roll(&self, p: f64, fault: Fault) -> bool {
        self.faults.roll(p, fault)
    }
}

fn throttled(operation: &'static str) -> InfraError {
    InfraError::retryable(
        operation,
        "ThrottlingException: rate of requests exceeds the allowed throughput (injected)",
    )
}

impl<S: ClaimStore> ClaimStore for FaultyClaims<S> {
    /// No fault of its own: a cached settings read, and a roll here would shift every seed's
    /// fault stream.
    async fn zones(&self) -> Result<Zones, InfraError> {
        self.inner.zones().await
    }

    /// Never faulted: rolling here would shift every later fault of a seed.
    async fn profile(
        &self,
        participant: &ParticipantId,
    ) -> Result<Option<ProfileFacts>, InfraError> {
        self.inner.profile(participant).await
    }

    async fn batch(&self, number: u32) -> Result<Option<BatchInfo>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read batch"));
        }
        self.inner.batch(number).await
    }

    async fn try_claim(&self, attempt: &ClaimAttempt) -> Result<Result<(), Refusal>, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("claim transaction"));
        }
        if self.roll(self.faults.rates.contended, Fault::Contended) {
            return Ok(Err(Refusal::Contended));
        }
        let result = self.inner.try_claim(attempt).await;
        if matches!(result, Ok(Ok(())))
            && self.roll(
                self.faults.rates.crash_after_commit,
                Fault::CrashAfterCommit,
            )
        {
            return Err(InfraError::retryable(
                "claim transaction",
                "connection reset after the commit (injected)",
            ));
        }
        result
    }

    async fn record_failure(&self, failure: &FailedAttempt) -> Result<FailureCounts, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledFailure) {
            return Err(throttled("count failure"));
        }
        let counts = self.inner.record_failure(failure).await?;
        if self.roll(self.faults.rates.crash_after_commit, Fault::FailureLost) {
            return Err(InfraError::retryable(
                "count failure",
                "connection reset after the write (injected)",
            ));
        }
        Ok(counts)
    }

    async fn record_attempt(&self, attempt: &FailedAttempt) -> Result<(), InfraError> {
        self.inner.record_attempt(attempt).await
    }

    async fn lock(&self, subject: &Subject, until: i64) -> Result<(), InfraError> {
        let outlet = matches!(subject, Subject::Outlet(_));
        if self.roll(
            self.faults.rates.throttled_write,
            Fault::ThrottledLock { outlet },
        ) {
            return Err(throttled("lock"));
        }
        self.inner.lock(subject, until).await?;
        if self.roll(
            self.faults.rates.crash_after_commit,
            Fault::LockLost { outlet },
        ) {
            return Err(InfraError::retryable(
                "lock",
                "connection reset after the write (injected)",
            ));
        }
        Ok(())
    }
}

/// Review decisions: a throttled read of the flagged entry, a throttled decision (nothing
/// written), a decision refused with `TransactionConflict` (nothing written), and a decision
/// committed whose answer is lost (the reviewer's retry finds it decided).
impl<S: ReviewStore> ReviewStore for FaultyClaims<S> {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        let f = &self.review_faults;
        if f.roll(f.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read review"));
        }
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
        let f = &self.review_faults;
        if f.roll(f.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("decide review"));
        }
        if f.roll(f.rates.contended, Fault::ReviewConflict) {
            return Err(InfraError::retryable(
                "decide review",
                "TransactionConflict: cancelled by a concurrent transaction (injected)",
            ));
        }
        let committed = self.inner.commit(decided).await?;
        if committed == Committed::Ok && f.roll(f.rates.crash_after_commit, Fault::CrashAfterCommit)
        {
            return Err(InfraError::retryable(
                "decide review",
                "connection reset after the commit (injected)",
            ));
        }
        Ok(committed)
    }
}

/// The same faults around the cashback store: throttled reads (terms, order, balance),
/// throttled commits (nothing written), and commits whose answer is lost (the caller
/// retries and must get the first result: the event marker's refusal carries it).
pub struct FaultyCashback<S> {
    inner: S,
    faults: Injector,
}

impl<S> FaultyCashback<S> {
    pub fn new(inner: S, seed: u64, rates: FaultRates) -> Self {
        Self {
            inner,
            faults: Injector::new(seed, 3, rates),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected since the last call, in order.
    pub fn take_injected(&self) -> Vec<Fault> {
        self.faults.take_injected()
    }

    fn roll(&self, p: f64, fault: Fault) -> bool {
        self.faults.roll(p, fault)
    }
}

impl<S: CashbackStore> CashbackStore for FaultyCashback<S> {
    async fn terms(
        &self,
        partner: &PartnerId,
        region: &RegionId,
        now: DateTime<Utc>,
    ) -> Result<(Option<PartnerTerms>, Option<MinimumOrder>), InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read partner terms"));
        }
        self.inner.terms(partner, region, now).await
    }

    async fn zones(&self, now: DateTime<Utc>) -> Result<Zones, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read time zones"));
        }
        self.inner.zones(now).await
    }

    async fn order(&self, partner: &PartnerId, id: &OrderId) -> Result<Option<Order>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read order"));
        }
        self.inner.order(partner, id).await
    }

    async fn available(&self, participant: &ParticipantId) -> Result<u64, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read balance"));
        }
        self.inner.available(participant).await
    }

    async fn counts_deliveries(&self, now: DateTime<Utc>) -> Result<bool, InfraError> {
        self.inner.counts_deliveries(now).await
    }

    async fn commit(
        &self,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<Result<(), CashbackRefusal>, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("cashback transaction"));
        }
        let result = self.inner.commit(decision, now).await;
        if matches!(result, Ok(Ok(())))
            && self.roll(
                self.faults.rates.crash_after_commit,
                Fault::CrashAfterCommit,
            )
        {
            return Err(InfraError::retryable(
                "cashback transaction",
                "connection reset after the commit (injected)",
            ));
        }
        result
    }
}

/// The same faults around the challenge store: throttled reads (the challenges, progress),
/// throttled steps (nothing written), steps refused as `TransactionConflict`
/// ([`StepRefusal::Contended`]: nothing written, the use case reads again), and steps
/// committed whose answer is lost. The challenge of each step written is kept: when a
/// recording fails after some of its steps were written (their answers lost with it), the
/// caller retries the same source, and the model must then see it already counted there.
pub struct FaultyChallenges<S> {
    inner: S,
    faults: Injector,
    written: Mutex<Vec<ChallengeId>>,
}

impl<S> FaultyChallenges<S> {
    pub fn new(inner: S, seed: u64, rates: FaultRates) -> Self {
        Self {
            inner,
            faults: Injector::new(seed, 5, rates),
            written: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected since the last call, in order.
    pub fn take_injected(&self) -> Vec<Fault> {
        self.faults.take_injected()
    }

    /// The challenges of the steps written since the last call, in order.
    pub fn take_written(&self) -> Vec<ChallengeId> {
        std::mem::take(&mut *self.written.lock().expect("written steps"))
    }

    fn roll(&self, p: f64, fault: Fault) -> bool {
        self.faults.roll(p, fault)
    }
}

impl<S: ChallengeStore> ChallengeStore for FaultyChallenges<S> {
    async fn challenges(&self) -> Result<Vec<Challenge>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read challenges"));
        }
        self.inner.challenges().await
    }

    async fn put_challenge(&self, c: &Challenge, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.inner.put_challenge(c, now).await
    }

    async fn progress(
        &self,
        participant: &ParticipantId,
        challenge: &ChallengeId,
    ) -> Result<Option<Progress>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read progress"));
        }
        self.inner.progress(participant, challenge).await
    }

    async fn progresses(
        &self,
        participant: &ParticipantId,
    ) -> Result<Vec<(ChallengeId, Progress)>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("read progresses"));
        }
        self.inner.progresses(participant).await
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<Result<(), StepRefusal>, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("progress transaction"));
        }
        if self.roll(self.faults.rates.contended, Fault::Contended) {
            return Ok(Err(StepRefusal::Contended));
        }
        let result = self.inner.commit_step(step).await;
        if matches!(result, Ok(Ok(()))) {
            self.written
                .lock()
                .expect("written steps")
                .push(step.challenge.clone());
        }
        if matches!(result, Ok(Ok(())))
            && self.roll(
                self.faults.rates.crash_after_commit,
                Fault::CrashAfterCommit,
            )
        {
            return Err(InfraError::retryable(
                "progress transaction",
                "connection reset after the commit (injected)",
            ));
        }
        result
    }
}

/// What the store under [`FaultyPasscodes`] did, whatever answer reached the caller: the
/// model learns from it what a lost answer hid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A passcode was stored for this phone (replacing any earlier one).
    Issued {
        phone: PhoneNumber,
        challenge: String,
        expires_at: i64,
    },
    /// The store counted a try at the passcode with this challenge and answered it.
    Tried { challenge: String },
    /// The passcode with this challenge was consumed and this proof recorded.
    Proved { challenge: String, proof: Proof },
}

/// The same faults around the passcodes of the participant store: a request throttled
/// (nothing counted or stored) or stored with its answer lost (counted, no SMS sent); a try
/// throttled (nothing counted) or counted with its answer lost; a proof throttled (the
/// passcode stays, its try counted) or recorded with its answer lost. Invitation guesses are
/// throttled before they are counted. Registrations, phone changes and adoptions pass
/// through: their proof is the write's own condition, and a fault there only answers 503.
pub struct FaultyPasscodes<S> {
    inner: S,
    faults: Injector,
    stored: Mutex<Vec<Stored>>,
}

impl<S> FaultyPasscodes<S> {
    pub fn new(inner: S, seed: u64, rates: FaultRates) -> Self {
        Self {
            inner,
            faults: Injector::new(seed, 6, rates),
            stored: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected since the last call, in order.
    pub fn take_injected(&self) -> Vec<Fault> {
        self.faults.take_injected()
    }

    /// What the store did since the last call, in order.
    pub fn take_stored(&self) -> Vec<Stored> {
        std::mem::take(&mut *self.stored.lock().expect("stored"))
    }

    fn roll(&self, p: f64, fault: Fault) -> bool {
        self.faults.roll(p, fault)
    }

    fn keep(&self, s: Stored) {
        self.stored.lock().expect("stored").push(s);
    }

    fn lost(&self, operation: &'static str) -> Result<(), InfraError> {
        if self.roll(
            self.faults.rates.crash_after_commit,
            Fault::CrashAfterCommit,
        ) {
            return Err(InfraError::retryable(
                operation,
                "connection reset after the write (injected)",
            ));
        }
        Ok(())
    }
}

impl<S: Passcodes> Passcodes for FaultyPasscodes<S> {
    async fn issue(&self, issue: &Issue) -> Result<Result<(), Vec<Limiter>>, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("issue passcode"));
        }
        let result = self.inner.issue(issue).await?;
        if result.is_ok() {
            let p = &issue.passcode;
            self.keep(Stored::Issued {
                phone: p.phone.clone(),
                challenge: p.challenge.clone(),
                expires_at: p.expires_at,
            });
            self.lost("issue passcode")?;
        }
        Ok(result)
    }

    async fn try_passcode(
        &self,
        phone: &PhoneNumber,
        max_tries: u32,
        now: i64,
    ) -> Result<Option<StoredPasscode>, InfraError> {
        if self.roll(self.faults.rates.throttled_read, Fault::ThrottledRead) {
            return Err(throttled("try passcode"));
        }
        let found = self.inner.try_passcode(phone, max_tries, now).await?;
        if let Some(p) = &found {
            self.keep(Stored::Tried {
                challenge: p.challenge.clone(),
            });
            self.lost("try passcode")?;
        }
        Ok(found)
    }

    async fn prove(&self, challenge: &str, proof: &Proof) -> Result<bool, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledWrite) {
            return Err(throttled("prove phone"));
        }
        let proved = self.inner.prove(challenge, proof).await?;
        if proved {
            self.keep(Stored::Proved {
                challenge: challenge.to_string(),
                proof: proof.clone(),
            });
            self.lost("prove phone")?;
        }
        Ok(proved)
    }
}

impl<S: ParticipantStore> ParticipantStore for FaultyPasscodes<S> {
    async fn put_invitation(&self, invitation: &Invitation) -> Result<bool, InfraError> {
        self.inner.put_invitation(invitation).await
    }

    async fn invitation(&self, code: &InvitationCode) -> Result<Option<Invitation>, InfraError> {
        self.inner.invitation(code).await
    }

    async fn outlet(
        &self,
        id: &loyalty_domain::ids::OutletId,
    ) -> Result<Option<Outlet>, InfraError> {
        self.inner.outlet(id).await
    }

    async fn profile(&self, id: &ParticipantId) -> Result<Option<Profile>, InfraError> {
        self.inner.profile(id).await
    }

    async fn register(&self, registration: &Registration) -> Result<(), ParticipantError> {
        self.inner.register(registration).await
    }

    async fn save_profile(&self, profile: &Profile) -> Result<(), ParticipantError> {
        self.inner.save_profile(profile).await
    }

    async fn members(
        &self,
        outlet: &loyalty_domain::ids::OutletId,
    ) -> Result<Vec<Membership>, InfraError> {
        self.inner.members(outlet).await
    }

    async fn zone_outlets(
        &self,
        zone: &ParticipantId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ParticipantPage<Outlet>, ParticipantError> {
        self.inner.zone_outlets(zone, cursor, limit).await
    }

    async fn phone_owners(
        &self,
        phones: &[&PhoneNumber],
    ) -> Result<HashMap<String, ParticipantId>, InfraError> {
        self.inner.phone_owners(phones).await
    }

    async fn write_import(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<(), ParticipantError> {
        self.inner.write_import(rows, now).await
    }

    async fn change_phone(&self, change: &PhoneChange) -> Result<(), ParticipantError> {
        self.inner.change_phone(change).await
    }

    async fn has_proof(
        &self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        now: i64,
    ) -> Result<bool, InfraError> {
        self.inner.has_proof(subject, phone, now).await
    }

    async fn adopt(&self, adoption: &Adoption) -> Result<(), ParticipantError> {
        self.inner.adopt(adoption).await
    }

    async fn set_standing(
        &self,
        id: &ParticipantId,
        change: &StandingChange,
    ) -> Result<(), ParticipantError> {
        self.inner.set_standing(id, change).await
    }

    async fn count_guess(&self, guess: &Guess) -> Result<Result<(), GuessRefusal>, InfraError> {
        if self.roll(self.faults.rates.throttled_write, Fault::ThrottledFailure) {
            return Err(throttled("count guess"));
        }
        self.inner.count_guess(guess).await
    }

    async fn forgive_guess(&self, guess: &Guess) -> Result<(), InfraError> {
        self.inner.forgive_guess(guess).await
    }

    async fn lock_guesser(&self, guesser: &Guesser, until: i64) -> Result<(), InfraError> {
        self.inner.lock_guesser(guesser, until).await
    }
}
