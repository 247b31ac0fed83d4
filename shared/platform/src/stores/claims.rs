//! The claim transaction: one `TransactWriteItems` per successful claim.
//!
//! Items: code update, profile check (profile exists, is active and holds the region and
//! outlet the claim assumed: [`crate::stores::profiles`]), participant lock check, outlet lock check (optional), velocity
//! counter, ledger entry, balance, outlet totals (optional), outbox record, audit record.
//! A refusal is read by its tag (`ClaimRefusal`, see [`crate::tx`]), never by position.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::builders::ConditionCheckBuilder;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, Utc};
use loyalty_domain::claim::{
    BatchInfo, ClaimAttempt, ClaimReceipt, ClaimStatus, ClaimStore, CodeState, FailedAttempt,
    FailureCounts, Refusal,
};
use loyalty_domain::fraud::{AttemptOutcome, Subject};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{programme_shard, Balance};
use loyalty_domain::participant::{ProfileFacts, ProfileRefusal};
use loyalty_domain::zone::Zones;
use loyalty_domain::{InfraError, Points};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use loyalty_domain::outbox::{CodeClaimed, OutboxEvent};

use crate::dynamo::{classify, key, n, s, Item, ItemExt};
use crate::stores::codes::CodesStore;
use crate::stores::earning::read_zones;
use crate::stores::ledger::{
    balance_from_item, balance_update, entry_item, programme_update, queue_for_review, OutboxRecord,
};
use crate::stores::profiles::{profile_check, profile_facts, profile_key, profile_refusal};
use crate::tx::{Refused, Tx};

/// Audit records are kept for 400 days, counters only as long as their window needs.
const AUDIT_TTL_SECS: i64 = 400 * 24 * 3600;
/// Unknown batch numbers are remembered briefly, so probing them costs no reads; a new
/// batch becomes claimable within this time.
const NEGATIVE_BATCH_TTL: Duration = Duration::from_secs(60);
/// The time zones (which date a code's validity in) are read at most this often: a zone
/// an admin changes reaches claims within it.
const ZONES_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ClaimTables {
    pub codes: String,
    pub ledger: String,
    pub fraud: String,
    pub outbox: String,
    /// Where profiles live: a claim checks its claimant's standing in the same transaction.
    pub participants: String,
    /// Where the time zones live (`ZONES` items, written by accrual's admin routes).
    pub programme: String,
}

/// The DynamoDB claim store. Batch metadata is immutable, so it is cached for the life of
/// the warm function.
pub struct DynamoClaims {
    client: Client,
    codes: CodesStore,
    tables: ClaimTables,
    batches: Mutex<HashMap<u32, (Option<BatchInfo>, Instant)>>,
    zones: Mutex<Option<(Zones, Instant)>>,
}

impl DynamoClaims {
    pub fn new(client: Client, tables: ClaimTables) -> Self {
        let codes = CodesStore::new(client.clone(), tables.codes.clone());
        Self {
            client,
            codes,
            tables,
            batches: Mutex::new(HashMap::new()),
            zones: Mutex::new(None),
        }
    }

    fn claim_items(&self, a: &ClaimAttempt) -> Result<Tx<ClaimRefusal>, InfraError> {
        let t = &self.tables;
        let participant = &a.claimant.participant;
        let now = a.now.timestamp();
        let mut tx = Tx::new();

        tx.update(
            Update::builder()
                .table_name(&t.codes)
                .set_key(Some(key(format!("CODE#{}", a.code.canonical()), "CODE")))
                .update_expression(
                    "SET #st = :claimed, claimed_by = :p, claimed_at = :now, receipt = :receipt",
                )
                .condition_expression("#st = :issued AND valid_until >= :today")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":claimed", s("claimed"))
                .expression_attribute_values(":issued", s("issued"))
                .expression_attribute_values(":p", s(participant.as_str()))
                .expression_attribute_values(":now", s(a.now.to_rfc3339()))
                .expression_attribute_values(":today", s(a.today.to_string()))
                .expression_attribute_values(
                    ":receipt",
                    s(StoredReceipt::from(&a.receipt).to_json()),
                ),
            ClaimRefusal::Code,
        )?;

        // Earning is for registered participants in good standing, judged by the region and
        // outlet of their profile; checking in the transaction keeps a claim one round trip
        // and races no block.
        tx.check(
            profile_check(&t.participants, participant, &a.claimant.facts()),
            ClaimRefusal::Profile,
        )?;
        tx.check(
            lock_check(&t.fraud, &Subject::Participant(participant.clone()), now),
            ClaimRefusal::Locked,
        )?;
        if let Some(outlet) = &a.claimant.outlet {
            tx.check(
                lock_check(&t.fraud, &Subject::Outlet(outlet.clone()), now),
                ClaimRefusal::Locked,
            )?;
        }

        let velocity = Update::builder()
            .table_name(&t.fraud)
            .set_key(Some(key(
                format!("VELOCITY#P#{participant}#{}", a.velocity_window.start),
                "COUNTER",
            )))
            .update_expression("ADD hits :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(a.velocity_window.end + 3600));
        match a.velocity_limit {
            Some(limit) => tx.update(
                velocity
                    .condition_expression("attribute_not_exists(hits) OR hits < :limit")
                    .expression_attribute_values(":limit", n(limit)),
                ClaimRefusal::VelocityExceeded,
            )?,
            None => tx.update_always(velocity)?,
        };

        let entry = loyalty_domain::ledger::Entry {
            id: a.receipt.entry_id.clone(),
            participant: participant.clone(),
            outlet: a.claimant.outlet.clone(),
            kind: a.kind,
            amount: a.batch.points,
            source: format!(
                "batch {} · {} {}",
                a.batch.number, a.batch.sku, a.batch.product_type
            ),
            created_at: a.now,
            expires_on: Some(a.credit_expires_on),
        };
        let mut entry_item = entry_item(&entry);
        if !a.flags.is_empty() {
            queue_for_review(&mut entry_item, &entry, a.flags.iter().map(|f| f.as_str()));
        }
        tx.put(
            Put::builder()
                .table_name(&t.ledger)
                .set_item(Some(entry_item))
                .condition_expression("attribute_not_exists(pk)"),
            ClaimRefusal::EntryExists,
        )?;

        let delta = entry.delta();
        let balance = balance_update(
            &t.ledger,
            key(format!("ACCOUNT#{participant}"), "BALANCE"),
            &delta,
            a.now,
        );
        // Optimistic concurrency on the balance: the receipt states the balance after this
        // claim, which is only true if nothing else moved it in between.
        let balance = match a.expected_balance {
            None => balance.condition_expression("attribute_not_exists(version)"),
            Some(b) => balance
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(b.version)),
        };
        tx.update(balance, ClaimRefusal::BalanceMoved)?;
        if let Some(outlet) = &a.claimant.outlet {
            tx.update_always(balance_update(
                &t.ledger,
                key(format!("OUTLET#{outlet}"), "TOTALS"),
                &delta,
                a.now,
            ))?;
        }
        // Double entry: a claim is paid from the codes account, which has no budget, so its
        // side carries no condition (see `programme_items`).
        if let Some(side) = entry.transfer() {
            tx.update_always(programme_update(
                &t.ledger,
                &side.account,
                programme_shard(&entry.id),
                side.change,
                a.now,
            ))?;
        }

        let claimed = CodeClaimed {
            participant_id: participant.clone(),
            entry_id: entry.id.clone(),
            points: a.batch.points,
            sku: a.batch.sku.clone(),
            product_type: a.batch.product_type.clone(),
            available: a.receipt.balance.available,
        };
        // A flagged claim's points wait for review; the participant hears that, not "credited".
        let event = if a.flags.is_empty() {
            OutboxEvent::CodeAccepted(claimed)
        } else {
            OutboxEvent::CodeUnderReview(claimed)
        };
        let outbox = OutboxRecord::new(&t.outbox, event, a.now);
        tx.put(outbox.put(a.now), ClaimRefusal::OutboxExists)?;

        let outcome = if a.flags.is_empty() {
            AttemptOutcome::Accepted
        } else {
            AttemptOutcome::Flagged
        };
        let audit = audit_item(
            participant,
            a.claimant.outlet.as_ref().map(|o| o.as_str()),
            &loyalty_domain::redact::tail(a.code.canonical()),
            outcome,
            a.now,
        );
        tx.put_always(Put::builder().table_name(&t.fraud).set_item(Some(audit)))?;
        // From the whole content, not from the code and participant: two claims of one
        // code (two cold functions, a double tap) differ in time and audit record, and a
        // shared token would refuse the second with `IdempotentParameterMismatch` instead
        // of answering it. The SDK's resend of this very request keeps its token.
        tx.content_token();
        Ok(tx)
    }

    /// Picks the refusal that decides the outcome, by the tags of the failed conditions.
    fn refusal(
        &self,
        a: &ClaimAttempt,
        refused: &Refused<ClaimRefusal>,
    ) -> Result<Refusal, InfraError> {
        if refused.contains(&ClaimRefusal::Profile) {
            return Ok(
                match profile_refusal(refused.get(&ClaimRefusal::Profile))? {
                    ProfileRefusal::NotActive => Refusal::ParticipantNotActive,
                    ProfileRefusal::Differs(facts) => Refusal::ProfileDiffers(facts),
                },
            );
        }
        if refused.contains(&ClaimRefusal::Locked) {
            // The participant's lock is added first, so it is the one read when both failed.
            let until = refused
                .get(&ClaimRefusal::Locked)
                .and_then(|item| item.get("locked_until"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(a.now.timestamp() + 60);
            return Ok(Refusal::Locked { until });
        }
        if refused.contains(&ClaimRefusal::Code) {
            let old = refused
                .get(&ClaimRefusal::Code)
                .cloned()
                .unwrap_or_default();
            return Ok(Refusal::Code(code_state(&old, a.today)?));
        }
        if refused.contains(&ClaimRefusal::VelocityExceeded) {
            return Ok(Refusal::VelocityExceeded);
        }
        if refused.contains(&ClaimRefusal::BalanceMoved) {
            let old = refused
                .get(&ClaimRefusal::BalanceMoved)
                .cloned()
                .unwrap_or_default();
            return Ok(Refusal::BalanceMoved(balance_from_item(&old)?));
        }
        if refused.is_conflict() {
            return Ok(Refusal::Contended);
        }
        Err(InfraError::permanent(
            "claim transaction",
            format!("unexpected refusal: {}", refused.describe()),
        ))
    }
}

/// What a refused claim transaction means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimRefusal {
    /// The claimant has no profile, is blocked, or their profile's region or outlet is not
    /// the assumed one: the profile item tells which.
    Profile,
    /// The code is not issued and valid (claimed, expired or missing): its item tells which.
    Code,
    /// The participant or the outlet is locked out; the lock item holds `locked_until`.
    Locked,
    VelocityExceeded,
    /// The ledger entry exists.
    EntryExists,
    /// The balance is not the version the receipt was computed from; its item is the balance.
    BalanceMoved,
    /// The outbox record exists.
    OutboxExists,
}

fn code_state(old: &Item, today: NaiveDate) -> Result<CodeState, InfraError> {
    if old.is_empty() {
        return Ok(CodeState::Missing);
    }
    if old.opt_string("status") == Some("claimed") {
        let participant = ParticipantId::parse(old.string("claimed_by")?)
            .map_err(|e| InfraError::permanent("decode code", e.to_string()))?;
        let receipt = StoredReceipt::from_json(old.string("receipt")?)?;
        return Ok(CodeState::ClaimedBy {
            participant,
            receipt,
        });
    }
    match old
        .opt_string("valid_until")
        .and_then(|d| d.parse::<NaiveDate>().ok())
    {
        Some(until) if until < today => Ok(CodeState::Expired),
        // Issued, unexpired, yet the condition failed: only a corrupt item gets here.
        _ => Err(InfraError::permanent(
            "decode code",
            "code condition failed on an issued, valid code",
        )),
    }
}

fn lock_check(table: &str, subject: &Subject, now: i64) -> ConditionCheckBuilder {
    ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(format!("LOCK#{}", subject.key()), "LOCK")))
        .condition_expression("attribute_not_exists(pk) OR locked_until <= :now")
        .expression_attribute_values(":now", n(now))
}

fn audit_item(
    participant: &ParticipantId,
    outlet: Option<&str>,
    code_hint: &str,
    outcome: AttemptOutcome,
    now: DateTime<Utc>,
) -> Item {
    // The sort key must be unique per attempt without containing the code.
    let nonce = uuid_like(participant.as_str(), now);
    let mut item = HashMap::from([
        ("pk".to_string(), s(format!("ATTEMPTS#{participant}"))),
        (
            "sk".to_string(),
            s(format!(
                "{}#{nonce}",
                now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )),
        ),
        ("outcome".to_string(), s(outcome.as_str())),
        ("code_hint".to_string(), s(code_hint)),
        ("at".to_string(), s(now.to_rfc3339())),
        ("ttl".to_string(), n(now.timestamp() + AUDIT_TTL_SECS)),
    ]);
    if let Some(o) = outlet {
        item.insert("outlet_id".into(), s(o));
    }
    item
}

fn uuid_like(seed: &str, now: DateTime<Utc>) -> String {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update(now.timestamp_nanos_opt().unwrap_or_default().to_be_bytes());
    h.update(rand_bytes());
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rand_bytes() -> [u8; 8] {
    // Distinguishes attempts in the same nanosecond; not a secret.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_be_bytes()
}

impl ClaimStore for DynamoClaims {
    async fn zones(&self) -> Result<Zones, InfraError> {
        if let Some((zones, at)) = &*self.zones.lock().expect("zones cache") {
            if at.elapsed() < ZONES_TTL {
                return Ok(zones.clone());
            }
        }
        let zones = read_zones(&self.client, &self.tables.programme).await?;
        *self.zones.lock().expect("zones cache") = Some((zones.clone(), Instant::now()));
        Ok(zones)
    }

    async fn profile(
        &self,
        participant: &ParticipantId,
    ) -> Result<Option<ProfileFacts>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.participants)
            .set_key(Some(profile_key(participant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("read profile", e))?;
        match out.item {
            Some(item) => profile_facts(&item),
            None => Ok(None),
        }
    }

    async fn batch(&self, number: u32) -> Result<Option<BatchInfo>, InfraError> {
        if let Some((cached, at)) = self.batches.lock().expect("batch cache").get(&number) {
            if cached.is_some() || at.elapsed() < NEGATIVE_BATCH_TTL {
                return Ok(cached.clone());
            }
        }
        let found = self.codes.get_batch(number).await?.map(|b| BatchInfo {
            number: b.number,
            sku: b.spec.sku,
            product_type: b.spec.product_type,
            points: b.spec.points_per_pack,
            region: b.spec.region,
            valid_until: b.spec.valid_until,
        });
        self.batches
            .lock()
            .expect("batch cache")
            .insert(number, (found.clone(), Instant::now()));
        Ok(found)
    }

    async fn try_claim(&self, attempt: &ClaimAttempt) -> Result<Result<(), Refusal>, InfraError> {
        // A conflict, or the same token still in flight, is `Refusal::Contended`: the domain
        // retries it.
        match self
            .claim_items(attempt)?
            .commit_reporting_conflicts(&self.client, "claim transaction")
            .await?
        {
            Ok(()) => Ok(Ok(())),
            Err(refused) => Ok(Err(self.refusal(attempt, &refused)?)),
        }
    }

    async fn record_failure(&self, f: &FailedAttempt) -> Result<FailureCounts, InfraError> {
        let subject = Subject::Participant(f.claimant.participant.clone());
        let participant = self.count_failure(&subject, f);
        let outlet = async {
            match &f.claimant.outlet {
                Some(o) => self
                    .count_failure(&Subject::Outlet(o.clone()), f)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (participant, outlet, audit) =
            futures::join!(participant, outlet, self.record_attempt(f));
        audit?;
        Ok(FailureCounts {
            participant: participant?,
            outlet: outlet?,
        })
    }

    async fn record_attempt(&self, f: &FailedAttempt) -> Result<(), InfraError> {
        let item = audit_item(
            &f.claimant.participant,
            f.claimant.outlet.as_ref().map(|o| o.as_str()),
            &f.code_hint,
            f.outcome,
            f.now,
        );
        self.client
            .put_item()
            .table_name(&self.tables.fraud)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("audit attempt", e))?;
        Ok(())
    }

    async fn lock(&self, subject: &Subject, until: i64) -> Result<(), InfraError> {
        let mut item = key(format!("LOCK#{}", subject.key()), "LOCK");
        item.insert("locked_until".into(), n(until));
        item.insert("ttl".into(), n(until + 24 * 3600));
        self.client
            .put_item()
            .table_name(&self.tables.fraud)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("lock claims", e))?;
        tracing::warn!(subject = %subject.key(), until, "claims locked after repeated failures");
        Ok(())
    }
}

impl DynamoClaims {
    async fn count_failure(&self, subject: &Subject, f: &FailedAttempt) -> Result<u64, InfraError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.fraud)
            .set_key(Some(key(
                format!("FAILS#{}#{}", subject.key(), f.window.start),
                "COUNTER",
            )))
            .update_expression("ADD failures :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(f.window.end + 3600))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| classify("count failure", e))?;
        out.attributes.unwrap_or_default().number("failures")
    }
}

/// The receipt as stored on a claimed code, so a retried claim returns the first answer.
#[derive(Serialize, Deserialize)]
struct StoredReceipt {
    entry_id: String,
    status: String,
    points: u64,
    batch: u32,
    sku: String,
    product_type: String,
    balance: Balance,
    claimed_at: DateTime<Utc>,
}

impl From<&ClaimReceipt> for StoredReceipt {
    fn from(r: &ClaimReceipt) -> Self {
        Self {
            entry_id: r.entry_id.to_string(),
            status: r.status.as_str().to_string(),
            points: r.points.get(),
            batch: r.batch,
            sku: r.sku.clone(),
            product_type: r.product_type.clone(),
            balance: r.balance,
            claimed_at: r.claimed_at,
        }
    }
}

impl StoredReceipt {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("receipt serialises")
    }

    fn from_json(raw: &str) -> Result<ClaimReceipt, InfraError> {
        let bad = |e: String| InfraError::permanent("decode receipt", e);
        let r: StoredReceipt = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        Ok(ClaimReceipt {
            entry_id: EntryId::parse(&r.entry_id).map_err(|e| bad(e.to_string()))?,
            status: ClaimStatus::parse(&r.status)
                .ok_or_else(|| bad(format!("status {}", r.status)))?,
            points: Points(r.points),
            batch: r.batch,
            sku: r.sku,
            product_type: r.product_type,
            balance: r.balance,
            claimed_at: r.claimed_at,
        })
    }
}
