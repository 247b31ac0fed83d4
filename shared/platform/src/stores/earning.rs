//! Earning rules and tiers in ProgrammeTable; action limits and sell-in credits.
//!
//! ProgrammeTable: `RULES`/`RULE#<id>` (the rule as JSON), `TIERS`/`TIERS`.
//! ActivityTable: `LIMIT#<participant>`/`RULE#<rule>#<EVER|period>` counters (`used`).
//!
//! An action's transaction: the idempotency record (optional), the limit counters (0 to 2),
//! then the ledger items of [`append_items`]. A refusal is read by its tag
//! ([`crate::tx`]): a used-up limit, the key or the entry taken by a concurrent request.

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::Update;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::earning::{
    earned_trailing_12_months, AccrualError, LimitCounter, LimitScope, Rule, RuleId, Tier, Tiers,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::Entry;
use loyalty_domain::InfraError;

use loyalty_domain::outbox::OutboxEvent;

use crate::dynamo::{classify, key, n, query_all, s, ItemExt};
use crate::idempotency::KeyTaken;
use crate::stores::ledger::{append_items, DynamoLedger, LedgerRefusal, OutboxRecord};
use crate::tx::Tx;

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
            .map_err(|e| classify("put rule", e))?;
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
            .map_err(|e| classify("read rule", e))?;
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
            .map_err(|e| classify("put tiers", e))?;
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

    fn counter_update(
        &self,
        participant: &ParticipantId,
        rule: &RuleId,
        counter: &LimitCounter,
    ) -> UpdateBuilder {
        let update = Update::builder()
            .table_name(&self.tables.activity)
            .set_key(Some(key(
                format!("LIMIT#{participant}"),
                format!("RULE#{rule}#{}", counter.key),
            )))
            .condition_expression("attribute_not_exists(used) OR used < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(counter.max));
        match counter.expires_at {
            // A period counter is read only during its period; keep it a day longer for audits.
            Some(end) => update
                .update_expression("ADD used :one SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(end.timestamp() + 24 * 3600)),
            None => update.update_expression("ADD used :one"),
        }
    }

    /// Appends an action's entry, counting it against the rule's limits in the same
    /// transaction, with the idempotency record of the answer when there is one.
    pub async fn accrue_action(
        &self,
        rule: &Rule,
        entry: &Entry,
        idempotency: Option<Tx<KeyTaken>>,
    ) -> Result<Written, AccrualError> {
        let counters = rule.counters(entry.created_at);
        let mut tx = Tx::new();
        if let Some(record) = idempotency {
            tx.append(record);
        }
        for c in &counters {
            tx.update(
                self.counter_update(&entry.participant, &rule.id, c),
                EarningRefusal::Limit(c.scope),
            )?;
        }
        tx.append(append_items(
            &self.tables.ledger,
            entry,
            Some(points_credited(&self.tables.outbox, entry, &rule.id)),
        )?);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let refused = match tx
                .clone()
                .commit_reporting_conflicts(&self.client, "accrue action")
                .await?
            {
                Ok(()) => return Ok(Written::Appended),
                Err(refused) => refused,
            };
            if refused.contains(&EarningRefusal::KeyTaken) {
                return Ok(Written::KeyTaken);
            }
            for c in &counters {
                if refused.contains(&EarningRefusal::Limit(c.scope)) {
                    return Err(match c.scope {
                        LimitScope::Participant => AccrualError::ParticipantLimit(rule.id.clone()),
                        LimitScope::Period => AccrualError::PeriodLimit(rule.id.clone()),
                    });
                }
            }
            if refused.contains(&EarningRefusal::Ledger(LedgerRefusal::BudgetExhausted)) {
                return Err(AccrualError::BudgetExhausted(rule.id.clone()));
            }
            // The entry id comes from the key, so an existing entry means the same key.
            if refused.contains(&EarningRefusal::Ledger(LedgerRefusal::EntryExists)) {
                return Ok(Written::KeyTaken);
            }
            if !refused.is_conflict() || attempt == CONFLICT_ATTEMPTS {
                return Err(InfraError::retryable("accrue action", refused.describe()).into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Appends one sell-in line's entry. Returns false when the line was imported before
    /// (its entry id exists), which makes a retried import complete what it had not.
    pub async fn credit_sell_in(&self, entry: &Entry, rule: &RuleId) -> Result<bool, InfraError> {
        let tx = append_items(
            &self.tables.ledger,
            entry,
            Some(points_credited(&self.tables.outbox, entry, rule)),
        )?;
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let refused = match tx
                .clone()
                .commit_reporting_conflicts(&self.client, "credit sell-in")
                .await?
            {
                Ok(()) => return Ok(true),
                Err(refused) => refused,
            };
            if refused.contains(&LedgerRefusal::EntryExists) {
                return Ok(false);
            }
            if !refused.is_conflict() || attempt == CONFLICT_ATTEMPTS {
                return Err(InfraError::retryable("credit sell-in", refused.describe()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// What a refused accrual means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EarningRefusal {
    /// The idempotency record exists: the same key was answered concurrently.
    KeyTaken,
    /// A limit counter of this scope is used up.
    Limit(LimitScope),
    Ledger(LedgerRefusal),
}

impl From<KeyTaken> for EarningRefusal {
    fn from(_: KeyTaken) -> Self {
        Self::KeyTaken
    }
}

impl From<LedgerRefusal> for EarningRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
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
        .map_err(|e| classify("read tiers", e))?;
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
