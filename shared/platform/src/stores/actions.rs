//! [`ActionStore`] over DynamoDB: one `TransactWriteItems` per reported action.
//!
//! Items, each conditional one tagged with what its refusal means ([`crate::tx`]):
//!
//! | item | condition | refusal, and what its `ALL_OLD` tells |
//! |---|---|---|
//! | ActivityTable `IDEMPOTENCY#caller#key` (the answer) | `attribute_not_exists(pk) OR ttl <= :now` | `KeyTaken`: the stored answer, replayed without a read |
//! | ParticipantsTable `PARTICIPANT#participant`/`PROFILE` (a check, [`crate::stores::profiles`]) | `attribute_exists(pk) AND (attribute_not_exists(#status) OR #status = :active)` and the assumed `region` and `outlet_id` | `Profile`: no profile or blocked (`ParticipantNotActive`), else the profile's region and outlet (`ProfileDiffers`) |
//! | ActivityTable `LIMIT#participant`/`RULE#rule#EVER` and `#<period>` (0 to 2) | `attribute_not_exists(used) OR used < :max` | `Limit`: the counter's value |
//! | LedgerTable `ACCOUNT#participant`/`ENTRY#id` (on the review queue when held over budget) | `attribute_not_exists(pk)` | `EntryExists`: the key named it more than 24 h ago |
//! | LedgerTable `ACCOUNT#participant`/`BALANCE` | `version = :v` or `attribute_not_exists(version)`; none with a single tier | `BalanceMoved`: the balance, hence the tier basis |
//! | LedgerTable `OUTLET#outlet`/`TOTALS` (with an outlet) | none | — |
//! | LedgerTable `PROGRAMME#rule:<id>#<shard>` (`reviews` for a held credit) | `attribute_not_exists(budget) OR programme_balance >= :points` | `BudgetExhausted`: the rule then refuses, or holds the credit for review |
//! | OutboxTable `points_credited-<entry>` (none for a held credit) | `attribute_not_exists(pk)` | as `EntryExists` |
//!
//! This adapter only translates; [`loyalty_domain::action::report_action`] decides.

use aws_sdk_dynamodb::types::{Put, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::action::{
    ActionAttempt, ActionRefusal, ActionStore, BalanceExpectation, KeyedRequest, Programme,
    StoredAnswer, TierBasis,
};
use loyalty_domain::earning::{LimitCounter, LimitScope, RuleId};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::EntryKind;
use loyalty_domain::participant::ProfileRefusal;
use loyalty_domain::InfraError;

use crate::dynamo::{key, n, Item, ItemExt};
use crate::idempotency::{record_put, StoredRecord};
use crate::stores::earning::{points_credited, read_rules, read_tiers, read_zones, EarningTables};
use crate::stores::ledger::{
    account_pk, balance_from_item, balance_update, entry_item, gather_budget,
    monthly_earned_from_item, outlet_pk, programme_items, queue_for_review, Gathered,
    LedgerRefusal, GATHERS, OVER_BUDGET,
};
use crate::stores::profiles::{profile_check, profile_refusal};
use crate::tx::{Refused, Tx};

/// What a refused action transaction means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionTag {
    KeyTaken,
    /// No profile, blocked, or not the assumed region and outlet: the profile tells which.
    Profile,
    Limit(LimitScope),
    EntryExists,
    OutboxExists,
    BalanceMoved,
    /// The programme side of the entry (the rule's account): its budget cannot cover it.
    Budget,
}

impl From<LedgerRefusal> for ActionTag {
    fn from(r: LedgerRefusal) -> Self {
        match r {
            LedgerRefusal::BudgetExhausted => ActionTag::Budget,
            LedgerRefusal::EntryExists => ActionTag::EntryExists,
            LedgerRefusal::OutboxExists => ActionTag::OutboxExists,
            // The programme side refuses only for a budget; an action debits no member bucket.
            LedgerRefusal::InsufficientBalance => ActionTag::Budget,
        }
    }
}

#[derive(Clone)]
pub struct DynamoActions {
    client: Client,
    tables: EarningTables,
}

/// The key of a limit counter.
pub fn counter_key(participant: &ParticipantId, rule: &RuleId, counter: &LimitCounter) -> Item {
    key(
        format!("LIMIT#{participant}"),
        format!("RULE#{rule}#{}", counter.key),
    )
}

/// The tier basis in a balance item (an absent item is version 0 with nothing earned).
pub fn tier_basis_from_item(item: &Item) -> Result<TierBasis, InfraError> {
    Ok(TierBasis {
        version: balance_from_item(item)?.version,
        months: monthly_earned_from_item(item)?,
    })
}

impl DynamoActions {
    pub fn new(client: Client, tables: EarningTables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &EarningTables {
        &self.tables
    }

    fn transaction(&self, a: &ActionAttempt) -> Result<Tx<ActionTag>, InfraError> {
        let t = &self.tables;
        let entry = &a.entry;
        let mut tx = Tx::new();
        tx.put(
            record_put(
                &t.activity,
                &a.key.scope,
                a.key.key.as_str(),
                &a.key.fingerprint,
                loyalty_domain::action::ActionReceipt::STATUS,
                a.receipt.body().to_string(),
                a.now,
            ),
            ActionTag::KeyTaken,
        )?;
        // Earning is for registered participants in good standing, in their profile's
        // region; checked in the transaction, so it costs no round trip and races no block.
        tx.check(
            profile_check(&self.tables.participants, &entry.participant, &a.profile),
            ActionTag::Profile,
        )?;
        for c in &a.counters {
            let update = Update::builder()
                .table_name(&t.activity)
                .set_key(Some(counter_key(&entry.participant, &a.rule, c)))
                .condition_expression("attribute_not_exists(used) OR used < :max")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":max", n(c.max));
            let update = match c.expires_at {
                // A period counter is read only during its period; kept a day longer for audits.
                Some(end) => update
                    .update_expression("ADD used :one SET #ttl = :ttl")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":ttl", n(end.timestamp() + 24 * 3600)),
                None => update.update_expression("ADD used :one"),
            };
            tx.update(update, ActionTag::Limit(c.scope))?;
        }
        let mut item = entry_item(entry);
        let held = entry.kind == EntryKind::AccrualUnderReview;
        if held {
            queue_for_review(&mut item, entry, [OVER_BUDGET]);
        }
        tx.put(
            Put::builder()
                .table_name(&t.ledger)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)"),
            ActionTag::EntryExists,
        )?;
        let delta = entry.delta();
        let balance = balance_update(
            &t.ledger,
            key(account_pk(&entry.participant), "BALANCE"),
            &delta,
            a.now,
        );
        match a.expected_balance {
            BalanceExpectation::Any => tx.update_always(balance)?,
            BalanceExpectation::Absent => tx.update(
                balance.condition_expression("attribute_not_exists(version)"),
                ActionTag::BalanceMoved,
            )?,
            BalanceExpectation::Version(v) => tx.update(
                balance
                    .condition_expression("version = :expected")
                    .expression_attribute_values(":expected", n(v)),
                ActionTag::BalanceMoved,
            )?,
        };
        if let Some(outlet) = &entry.outlet {
            tx.update_always(balance_update(
                &t.ledger,
                key(outlet_pk(outlet), "TOTALS"),
                &delta,
                a.now,
            ))?;
        }
        // Double entry: the rule's programme account pays for the points (within its budget);
        // `reviews` fronts a held credit, which its decision announces (`claim_reviewed`).
        tx.append(programme_items(&t.ledger, entry)?);
        if !held {
            let outbox = points_credited(&t.outbox, entry, &a.rule);
            tx.put(outbox.put(a.now), ActionTag::OutboxExists)?;
        }
        Ok(tx)
    }

    /// The refusal that decides the outcome, in the port's order of precedence.
    fn refusal(&self, refused: &Refused<ActionTag>) -> Result<ActionRefusal, InfraError> {
        if let Some(old) = refused.get(&ActionTag::KeyTaken) {
            return Ok(ActionRefusal::KeyTaken(stored_answer(old)?));
        }
        if refused.contains(&ActionTag::Profile) {
            return Ok(match profile_refusal(refused.get(&ActionTag::Profile))? {
                ProfileRefusal::NotActive => ActionRefusal::ParticipantNotActive,
                ProfileRefusal::Differs(facts) => ActionRefusal::ProfileDiffers(facts),
            });
        }
        if refused.contains(&ActionTag::EntryExists) || refused.contains(&ActionTag::OutboxExists) {
            return Ok(ActionRefusal::EntryExists);
        }
        for scope in [LimitScope::Participant, LimitScope::Period] {
            if refused.contains(&ActionTag::Limit(scope)) {
                let used = match refused.get(&ActionTag::Limit(scope)) {
                    Some(old) => old.opt_number("used")?.unwrap_or(0),
                    None => 0,
                };
                return Ok(ActionRefusal::Limit { scope, used });
            }
        }
        if refused.contains(&ActionTag::BalanceMoved) {
            let old = refused
                .get(&ActionTag::BalanceMoved)
                .cloned()
                .unwrap_or_default();
            return Ok(ActionRefusal::BalanceMoved(tier_basis_from_item(&old)?));
        }
        if refused.contains(&ActionTag::Budget) {
            return Ok(ActionRefusal::BudgetExhausted);
        }
        if refused.is_conflict() {
            return Ok(ActionRefusal::Contended);
        }
        Err(InfraError::permanent(
            "action transaction",
            format!("unexpected refusal: {}", refused.describe()),
        ))
    }
}

impl ActionStore for DynamoActions {
    async fn programme(&self) -> Result<Programme, InfraError> {
        let (rules, tiers, zones) = tokio::try_join!(
            read_rules(&self.client, &self.tables.programme),
            read_tiers(&self.client, &self.tables.programme),
            read_zones(&self.client, &self.tables.programme)
        )?;
        Ok(Programme {
            rules,
            tiers,
            zones,
        })
    }

    async fn try_accrue(
        &self,
        attempt: &ActionAttempt,
    ) -> Result<Result<(), ActionRefusal>, InfraError> {
        for gathers in 0..=GATHERS {
            let tx = self.transaction(attempt)?;
            let refusal = match tx
                .commit_reporting_conflicts(&self.client, "report action")
                .await?
            {
                Ok(()) => return Ok(Ok(())),
                Err(refused) => self.refusal(&refused)?,
            };
            // Budgets are spread over shards, a storage detail: the port refuses only when
            // the rule's whole budget cannot cover the credit, so a dry shard is refilled
            // from the others before the refusal is believed.
            if refusal == ActionRefusal::BudgetExhausted
                && gathers < GATHERS
                && gather_budget(&self.client, &self.tables.ledger, &attempt.entry).await?
                    == Gathered::Ready
            {
                continue;
            }
            return Ok(Err(refusal));
        }
        unreachable!("the last attempt returns")
    }

    async fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> Result<Result<(), StoredAnswer>, InfraError> {
        let mut tx = Tx::new();
        tx.put(
            record_put(
                &self.tables.activity,
                &key.scope,
                key.key.as_str(),
                &key.fingerprint,
                status,
                body,
                now,
            ),
            ActionTag::KeyTaken,
        )?;
        // One item: its refusal carries the record that holds the key.
        match tx.commit(&self.client, "remember action refusal").await? {
            Ok(()) => Ok(Ok(())),
            Err(refused) => match refused.get(&ActionTag::KeyTaken) {
                Some(old) => Ok(Err(stored_answer(old)?)),
                None => Err(InfraError::retryable(
                    "remember action refusal",
                    refused.describe(),
                )),
            },
        }
    }
}

fn stored_answer(item: &Item) -> Result<StoredAnswer, InfraError> {
    let r = StoredRecord::from_item(item)?;
    Ok(StoredAnswer {
        fingerprint: r.fingerprint,
        status: r.status,
        body: r.body,
        content_type: r.content_type,
    })
}
