//! Earning rules and tiers in ProgrammeTable; action limits and sell-in credits.
//!
//! ProgrammeTable: `RULES`/`RULE#<id>` (the rule as JSON), `TIERS`/`TIERS`.
//! ActivityTable: `LIMIT#<participant>`/`RULE#<rule>#<EVER|period>` counters (`used`).
//!
//! An action's transaction, in this order so cancellation reasons are read by position:
//! idempotency record (optional), limit counters (0 to 2), then the ledger items of
//! [`append_items`]: entry, balance, outlet totals (optional), outbox record.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::earning::{
    earned_trailing_12_months, AccrualError, LimitCounter, LimitScope, Rule, RuleId, Tier, Tiers,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::Entry;
use loyalty_domain::InfraError;

use crate::dynamo::{infra, key, n, query_all, s, ItemExt};
use loyalty_domain::outbox::OutboxEvent;

use crate::stores::ledger::{append_items, DynamoLedger, OutboxRecord};

#[derive(Debug, Clone)]
pub struct EarningTables {
    pub programme: String,
    pub activity: String,
    pub ledger: String,
    pub outbox: String,
}

/// How often a transaction that lost a race on a hot item is tried again.
const CONFLICT_ATTEMPTS: usize = 4;

#[derive(Clone)]
pub struct EarningStore {
    client: Client,
    tables: EarningTables,
}

fn decode<T: serde::de::DeserializeOwned>(raw: &str, what: &'static str) -> Result<T, InfraError> {
    serde_json::from_str(raw).map_err(|e| InfraError::permanent(what, e.to_string()))
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> InfraError {
    InfraError::permanent("build request", e.to_string())
}

fn failed(reasons: &[CancellationReason], i: usize) -> bool {
    reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

fn conflicted(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
}

/// What became of a balance-changing transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Appended,
    /// The idempotency record's condition failed: the same key was answered concurrently.
    KeyTaken,
}

impl EarningStore {
    pub fn new(client: Client, tables: EarningTables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &EarningTables {
        &self.tables
    }

    pub async fn put_rule(&self, rule: &Rule, now: DateTime<Utc>) -> Result<(), InfraError> {
        let json = serde_json::to_string(rule).expect("rules serialise");
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(key("RULES", format!("RULE#{}", rule.id))))
            .item("rule", s(json))
            .item("updated_at", s(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| infra("put rule", e))?;
        Ok(())
    }

    pub async fn rule(&self, id: &RuleId) -> Result<Option<Rule>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.programme)
            .set_key(Some(key("RULES", format!("RULE#{id}"))))
            .send()
            .await
            .map_err(|e| infra("read rule", e))?;
        out.item
            .map(|item| decode(item.string("rule")?, "decode rule"))
            .transpose()
    }

    pub async fn rules(&self) -> Result<Vec<Rule>, InfraError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.programme)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("RULES"));
        query_all(query, "read rules")
            .await?
            .iter()
            .map(|item| decode(item.string("rule")?, "decode rule"))
            .collect()
    }

    pub async fn tiers(&self) -> Result<Tiers, InfraError> {
        read_tiers(&self.client, &self.tables.programme).await
    }

    pub async fn put_tiers(&self, tiers: &Tiers, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(key("TIERS", "TIERS")))
            .item(
                "tiers",
                s(serde_json::to_string(tiers).expect("tiers serialise")),
            )
            .item("updated_at", s(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| infra("put tiers", e))?;
        Ok(())
    }

    /// The participant's tier now, from the points they earned in the trailing 12 months.
    pub async fn tier_of(
        &self,
        tiers: &Tiers,
        participant: &ParticipantId,
        now: DateTime<Utc>,
    ) -> Result<Tier, InfraError> {
        let ledger = DynamoLedger::new(self.client.clone(), &self.tables.ledger);
        let (_, months) = ledger.balance_and_months(participant).await?;
        Ok(tiers
            .tier_for(earned_trailing_12_months(&months, now))
            .clone())
    }

    fn counter_item(
        &self,
        participant: &ParticipantId,
        rule: &RuleId,
        counter: &LimitCounter,
    ) -> Result<TransactWriteItem, InfraError> {
        let mut update = Update::builder()
            .table_name(&self.tables.activity)
            .set_key(Some(key(
                format!("LIMIT#{participant}"),
                format!("RULE#{rule}#{}", counter.key),
            )))
            .condition_expression("attribute_not_exists(used) OR used < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(counter.max));
        update = match counter.expires_at {
            // A period counter is read only during its period; keep it a day longer for audits.
            Some(end) => update
                .update_expression("ADD used :one SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(end.timestamp() + 24 * 3600)),
            None => update.update_expression("ADD used :one"),
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(build_err)?)
            .build())
    }

    /// Appends an action's entry, counting it against the rule's limits in the same
    /// transaction, with the idempotency record of the answer when there is one.
    pub async fn accrue_action(
        &self,
        rule: &Rule,
        entry: &Entry,
        idempotency: Option<TransactWriteItem>,
    ) -> Result<Written, AccrualError> {
        let counters = rule.counters(entry.created_at);
        let offset = usize::from(idempotency.is_some());
        let mut items: Vec<TransactWriteItem> = idempotency.into_iter().collect();
        for c in &counters {
            items.push(self.counter_item(&entry.participant, &rule.id, c)?);
        }
        items.extend(append_items(
            &self.tables.ledger,
            entry,
            Some(points_credited(&self.tables.outbox, entry, &rule.id)),
        )?);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let cancelled = match result {
                Ok(_) => return Ok(Written::Appended),
                Err(err) => match err.into_service_error() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c,
                    other => {
                        return Err(InfraError::retryable("accrue action", other.to_string()).into())
                    }
                },
            };
            let reasons = cancelled.cancellation_reasons();
            if offset == 1 && failed(reasons, 0) {
                return Ok(Written::KeyTaken);
            }
            for (i, c) in counters.iter().enumerate() {
                if failed(reasons, offset + i) {
                    return Err(match c.scope {
                        LimitScope::Participant => AccrualError::ParticipantLimit(rule.id.clone()),
                        LimitScope::Period => AccrualError::PeriodLimit(rule.id.clone()),
                    });
                }
            }
            // The entry id comes from the key, so an existing entry means the same key.
            if failed(reasons, offset + counters.len()) {
                return Ok(Written::KeyTaken);
            }
            if !conflicted(reasons) || attempt == CONFLICT_ATTEMPTS {
                let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
                return Err(InfraError::retryable(
                    "accrue action",
                    format!("cancelled: {codes:?}"),
                )
                .into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Appends one sell-in line's entry. Returns false when the line was imported before
    /// (its entry id exists), which makes a retried import complete what it had not.
    pub async fn credit_sell_in(&self, entry: &Entry, rule: &RuleId) -> Result<bool, InfraError> {
        let items = append_items(
            &self.tables.ledger,
            entry,
            Some(points_credited(&self.tables.outbox, entry, rule)),
        )?;
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let cancelled = match result {
                Ok(_) => return Ok(true),
                Err(err) => match err.into_service_error() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c,
                    other => {
                        return Err(InfraError::retryable("credit sell-in", other.to_string()))
                    }
                },
            };
            let reasons = cancelled.cancellation_reasons();
            if failed(reasons, 0) {
                return Ok(false);
            }
            if !conflicted(reasons) || attempt == CONFLICT_ATTEMPTS {
                let codes: Vec<_> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
                return Err(InfraError::retryable(
                    "credit sell-in",
                    format!("cancelled: {codes:?}"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// The configured tiers, or a single base tier at ×1 when none are configured. Free-standing
/// so that read-only functions (the wallet) need no other table.
pub async fn read_tiers(client: &Client, programme_table: &str) -> Result<Tiers, InfraError> {
    let out = client
        .get_item()
        .table_name(programme_table)
        .set_key(Some(key("TIERS", "TIERS")))
        .send()
        .await
        .map_err(|e| infra("read tiers", e))?;
    match out.item {
        None => Ok(Tiers::default()),
        Some(item) => {
            let tiers: Vec<Tier> = decode(item.string("tiers")?, "decode tiers")?;
            Tiers::parse(tiers).map_err(|e| InfraError::permanent("decode tiers", e.to_string()))
        }
    }
}

fn points_credited<'a>(outbox: &'a str, entry: &Entry, rule: &RuleId) -> OutboxRecord<'a> {
    let event = OutboxEvent::PointsCredited {
        participant_id: entry.participant.clone(),
        entry_id: entry.id.clone(),
        rule_id: rule.clone(),
        points: entry.amount,
    };
    OutboxRecord::new(outbox, event, entry.created_at)
}
