//! Passcodes on ParticipantsTable, beside the profiles whose registration consumes their
//! proofs in the same transaction. Every item carries `ttl`, so DynamoDB deletes it once it
//! can no longer matter:
//!
//! | item | attributes |
//! |---|---|
//! | `PASSCODE#e164`/`PASSCODE` | `digest` (HMAC of phone, code and challenge), `challenge`, `expires_at`, `tries` |
//! | `PASSCODES#P#e164#window` or `PASSCODES#C#subject#window`/`COUNTER` | `requests` in the window |
//! | `PROOF#subject`/`PHONE#e164` | `expires_at` |
//!
//! A try is one conditional `ADD tries :one` (`tries < :max AND expires_at > :now`), so
//! concurrent tries never count past the limit; a right code deletes the passcode on its
//! challenge (`challenge = :c`) in the transaction that writes the proof, so it proves once.

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, Update};
use loyalty_domain::passcode::{Issue, Limiter, Passcodes, Proof, StoredPasscode};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::InfraError;

use super::participants::{proof_key, DynamoParticipantStore};
use crate::dynamo::{classify, key, n, s, Item, ItemExt};
use crate::tx::Tx;

/// Commits of a proof before giving up under contention.
const PROVE_ATTEMPTS: u64 = 5;

/// How long an expired passcode item stays before TTL deletes it (only for support reads).
const RETENTION_SECS: i64 = 3600;

fn passcode_key(phone: &PhoneNumber) -> Item {
    key(format!("PASSCODE#{}", phone.as_e164()), "PASSCODE")
}

fn counter_key(limiter: &Limiter, window_start: i64) -> Item {
    key(
        format!("PASSCODES#{}#{window_start}", limiter.key()),
        "COUNTER",
    )
}

fn decode(phone: &PhoneNumber, item: &Item) -> Result<StoredPasscode, InfraError> {
    Ok(StoredPasscode {
        phone: phone.clone(),
        digest: item.string("digest")?.to_string(),
        challenge: item.string("challenge")?.to_string(),
        expires_at: item.signed("expires_at")?,
    })
}

/// Which condition of a request failed: the counter of the n-th limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Full(usize);

/// The passcode was consumed or replaced before this proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gone;

impl Passcodes for DynamoParticipantStore {
    async fn issue(&self, issue: &Issue) -> Result<Result<(), Vec<Limiter>>, InfraError> {
        let mut tx = Tx::new();
        for (i, (limiter, limit, window)) in issue.limits.iter().enumerate() {
            let count = Update::builder()
                .table_name(&self.table)
                .set_key(Some(counter_key(limiter, window.start)))
                .update_expression("ADD requests :one SET #ttl = :ttl")
                .condition_expression("attribute_not_exists(requests) OR requests < :limit")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(*limit))
                .expression_attribute_values(":ttl", n(window.end + RETENTION_SECS));
            tx.update(count, Full(i))?;
        }
        let p = &issue.passcode;
        let mut item = passcode_key(&p.phone);
        item.insert("digest".into(), s(&p.digest));
        item.insert("challenge".into(), s(&p.challenge));
        item.insert("expires_at".into(), n(p.expires_at));
        item.insert("tries".into(), n(0));
        item.insert("ttl".into(), n(p.expires_at + RETENTION_SECS));
        // A new passcode replaces the phone's earlier one, tries and all.
        tx.put_always(Put::builder().table_name(&self.table).set_item(Some(item)))?;
        match tx.commit(&self.client, "issue passcode").await? {
            Ok(()) => Ok(Ok(())),
            Err(refused) => Ok(Err(refused
                .tags()
                .map(|Full(i)| issue.limits[*i].0.clone())
                .collect())),
        }
    }

    async fn try_passcode(
        &self,
        phone: &PhoneNumber,
        max_tries: u32,
        now: i64,
    ) -> Result<Option<StoredPasscode>, InfraError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(passcode_key(phone)))
            .update_expression("ADD tries :one")
            .condition_expression("attribute_exists(pk) AND expires_at > :now AND tries < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":max", n(max_tries))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => decode(phone, &item).map(Some),
                None => Err(InfraError::permanent(
                    "try passcode",
                    "no attributes returned",
                )),
            },
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
                _ => Err(classify("try passcode", err)),
            },
        }
    }

    async fn prove(&self, challenge: &str, proof: &Proof) -> Result<bool, InfraError> {
        // Concurrent right tries meet on the passcode item: DynamoDB cancels all but one with
        // `TransactionConflict`. Trying again finds the winner's delete (`Gone`) or wins.
        for attempt in 1..=PROVE_ATTEMPTS {
            let mut tx = Tx::new();
            let consume = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(passcode_key(&proof.phone)))
                .condition_expression("challenge = :c")
                .expression_attribute_values(":c", s(challenge));
            tx.delete(consume, Gone)?;
            let mut item = proof_key(&proof.subject, &proof.phone);
            item.insert("expires_at".into(), n(proof.expires_at));
            item.insert("ttl".into(), n(proof.expires_at + RETENTION_SECS));
            tx.put_always(Put::builder().table_name(&self.table).set_item(Some(item)))?;
            match tx
                .commit_reporting_conflicts(&self.client, "prove phone")
                .await?
            {
                Ok(()) => return Ok(true),
                Err(refused) if refused.contains(&Gone) => return Ok(false),
                Err(_) => tokio::time::sleep(Duration::from_millis(5 * attempt)).await,
            }
        }
        Err(InfraError::retryable(
            "prove phone",
            "too much contention on the passcode",
        ))
    }
}
