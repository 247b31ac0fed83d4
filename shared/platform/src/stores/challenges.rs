//! Challenges in ProgrammeTable and participants' progress in ActivityTable.
//!
//! ProgrammeTable: `CHALLENGES`/`CHALLENGE#<id>` (the challenge as JSON).
//! ActivityTable, one partition per participant so `GET /me/challenges` is one query:
//! `PROGRESS#<participant>`/`CHALLENGE#<id>` (`units`, `completed`) and
//! `PROGRESS#<participant>`/`SOURCE#<challenge>#<reference>` (a source counted once).
//!
//! Recording a source is one transaction per matching challenge, its refusals read by tag
//! ([`crate::tx`]): source marker (must be new), progress (conditional on the units read, so concurrent
//! sources never lose an update), and, when this step crosses the target, the bonus entry's
//! ledger items. The bonus entry id is one per challenge and participant, so even a bug in
//! the progress arithmetic could not grant it twice.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::challenge::{
    Challenge, ChallengeId, Progress, ProgressError, ProgressOutcome, ProgressSource,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::{Entry, EntryKind};
use loyalty_domain::InfraError;

use loyalty_domain::outbox::OutboxEvent;

use crate::dynamo::{classify, key, n, query_all, s, Item, ItemExt};
use crate::stores::ledger::{append_items, LedgerRefusal, OutboxRecord};
use crate::tx::Tx;

/// What a refused progress transaction means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProgressRefusal {
    /// The source marker exists: this source was counted before.
    SourceCounted,
    /// The progress is no longer what was read: another source counted meanwhile.
    ProgressMoved,
    /// The bonus entry's ledger items.
    Ledger(LedgerRefusal),
}

impl From<LedgerRefusal> for ProgressRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
    }
}

#[derive(Debug, Clone)]
pub struct ChallengeTables {
    pub programme: String,
    pub activity: String,
    pub ledger: String,
    pub outbox: String,
}

/// Sources for one participant arriving together retry on the progress condition.
const ATTEMPTS: usize = 8;

#[derive(Clone)]
pub struct ChallengeStore {
    client: Client,
    tables: ChallengeTables,
}

fn progress_pk(participant: &ParticipantId) -> String {
    format!("PROGRESS#{participant}")
}

fn progress_from_item(item: &Item) -> Result<Progress, InfraError> {
    Ok(Progress {
        units: item.opt_number("units")?.unwrap_or(0),
        completed: item
            .get("completed")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

impl ChallengeStore {
    pub fn new(client: Client, tables: ChallengeTables) -> Self {
        Self { client, tables }
    }

    pub async fn put_challenge(&self, c: &Challenge, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(key("CHALLENGES", format!("CHALLENGE#{}", c.id))))
            .item(
                "challenge",
                s(serde_json::to_string(c).expect("challenges serialise")),
            )
            .item("updated_at", s(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify("put challenge", e))?;
        Ok(())
    }

    pub async fn challenges(&self) -> Result<Vec<Challenge>, InfraError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.programme)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("CHALLENGES"));
        query_all(query, "read challenges")
            .await?
            .iter()
            .map(|item| {
                serde_json::from_str(item.string("challenge")?)
                    .map_err(|e| InfraError::permanent("decode challenge", e.to_string()))
            })
            .collect()
    }

    /// Every challenge with the participant's progress in it (zero where they have none).
    pub async fn progress_of(
        &self,
        participant: &ParticipantId,
    ) -> Result<Vec<(Challenge, Progress)>, InfraError> {
        let challenges = self.challenges().await?;
        let query = self
            .client
            .query()
            .table_name(&self.tables.activity)
            .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
            .expression_attribute_values(":pk", s(progress_pk(participant)))
            .expression_attribute_values(":c", s("CHALLENGE#"));
        let mut progress: HashMap<String, Progress> = HashMap::new();
        for item in query_all(query, "read progress").await? {
            let id = item
                .string("sk")?
                .trim_start_matches("CHALLENGE#")
                .to_string();
            progress.insert(id, progress_from_item(&item)?);
        }
        Ok(challenges
            .into_iter()
            .map(|c| {
                let p = progress.get(c.id.as_str()).copied().unwrap_or_default();
                (c, p)
            })
            .collect())
    }

    async fn read_progress(
        &self,
        participant: &ParticipantId,
        challenge: &ChallengeId,
    ) -> Result<Option<Progress>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.activity)
            .set_key(Some(key(
                progress_pk(participant),
                format!("CHALLENGE#{challenge}"),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("read progress", e))?;
        out.item.as_ref().map(progress_from_item).transpose()
    }

    /// Records `source`'s units towards every challenge it counts for, and grants a
    /// challenge's bonus in the same transaction as the progress that completes it.
    /// A source recorded again changes nothing; call this again freely after a failure.
    /// A challenge whose budget cannot cover the bonus a source would complete is skipped
    /// (nothing written, `budget_exhausted` logged); the others still count the source.
    pub async fn record_progress(
        &self,
        source: &ProgressSource,
    ) -> Result<Vec<ProgressOutcome>, ProgressError> {
        let mut outcomes = Vec::new();
        for challenge in self.challenges().await? {
            if challenge.counts(&source.supplier, source.date) {
                match self.record_one(&challenge, source).await {
                    Ok(outcome) => outcomes.push(outcome),
                    // Nothing was written (the bonus, the progress and the source's marker
                    // share one transaction), so recording this source again after a top-up
                    // counts it and grants the bonus.
                    Err(ProgressError::BudgetExhausted(id)) => tracing::warn!(
                        challenge = %id,
                        code = "budget_exhausted",
                        "the challenge's budget cannot cover its bonus: progress not counted"
                    ),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(outcomes)
    }

    async fn record_one(
        &self,
        challenge: &Challenge,
        source: &ProgressSource,
    ) -> Result<ProgressOutcome, ProgressError> {
        let pk = progress_pk(&source.participant);
        for attempt in 1..=ATTEMPTS {
            let current = self
                .read_progress(&source.participant, &challenge.id)
                .await?;
            let step = current.unwrap_or_default().add(source.units, challenge);
            let marker = Put::builder()
                .table_name(&self.tables.activity)
                .set_item(Some(key(&pk, source.marker_key(&challenge.id))))
                .item("units", n(source.units))
                .item("recorded_at", s(source.at.to_rfc3339()))
                .condition_expression("attribute_not_exists(pk)");
            let mut progress = Put::builder()
                .table_name(&self.tables.activity)
                .set_item(Some(key(&pk, format!("CHALLENGE#{}", challenge.id))))
                .item("units", n(step.next.units))
                .item(
                    "completed",
                    aws_sdk_dynamodb::types::AttributeValue::Bool(step.next.completed),
                )
                .item("updated_at", s(source.at.to_rfc3339()));
            progress = match current {
                None => progress.condition_expression("attribute_not_exists(pk)"),
                Some(p) => progress
                    .condition_expression("units = :read")
                    .expression_attribute_values(":read", n(p.units)),
            };
            let mut tx = Tx::new();
            tx.put(marker, ProgressRefusal::SourceCounted)?;
            tx.put(progress, ProgressRefusal::ProgressMoved)?;
            let bonus = step.completes.then(|| Entry {
                id: challenge.bonus_entry_id(&source.participant),
                participant: source.participant.clone(),
                outlet: None,
                kind: EntryKind::Accrual,
                amount: challenge.bonus,
                source: format!("challenge {}", challenge.id),
                created_at: source.at,
                expires_on: None,
            });
            if let Some(entry) = &bonus {
                tx.append(append_items(
                    &self.tables.ledger,
                    entry,
                    Some(OutboxRecord::new(
                        &self.tables.outbox,
                        OutboxEvent::ChallengeCompleted {
                            participant_id: source.participant.clone(),
                            entry_id: entry.id.clone(),
                            challenge_id: challenge.id.clone(),
                            points: entry.amount,
                        },
                        source.at,
                    )),
                )?);
            }
            let refused = match tx
                .commit_reporting_conflicts(&self.client, "record progress")
                .await?
            {
                Ok(()) => {
                    return Ok(ProgressOutcome {
                        challenge: challenge.id.clone(),
                        progress: step.next,
                        bonus: bonus.map(|e| e.id),
                        already_counted: false,
                    })
                }
                Err(refused) => refused,
            };
            if refused.contains(&ProgressRefusal::SourceCounted) {
                return Ok(ProgressOutcome {
                    challenge: challenge.id.clone(),
                    progress: current.unwrap_or_default(),
                    bonus: None,
                    already_counted: true,
                });
            }
            if refused.contains(&ProgressRefusal::Ledger(LedgerRefusal::BudgetExhausted)) {
                return Err(ProgressError::BudgetExhausted(challenge.id.clone()));
            }
            let raced = refused.contains(&ProgressRefusal::ProgressMoved) || refused.is_conflict();
            if !raced || attempt == ATTEMPTS {
                return Err(InfraError::retryable("record progress", refused.describe()).into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }
}
