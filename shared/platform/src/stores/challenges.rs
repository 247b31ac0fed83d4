//! Challenges in ProgrammeTable and participants' progress in ActivityTable.
//!
//! ProgrammeTable: `CHALLENGES`/`CHALLENGE#<id>` (the challenge as JSON).
//! ActivityTable, one partition per participant so `GET /me/challenges` is one query:
//! `PROGRESS#<participant>`/`CHALLENGE#<id>` (`units`, `completed`) and
//! `PROGRESS#<participant>`/`SOURCE#<challenge>#<reference>` (a source counted once).
//!
//! [`ChallengeStore`] over DynamoDB; [`loyalty_domain::challenge::record_progress`] decides.
//! A step ([`StepCommit`]) is one transaction, its refusals read by tag ([`crate::tx`]):
//! source marker (must be new), the participant's standing (a check of their profile in
//! ParticipantsTable, [`standing_check`]: a blocked participant earns no bonus and counts no
//! progress), progress (conditional on the units read, so concurrent
//! sources never lose an update), and, when the step crosses the target, the bonus entry's
//! ledger items ([`append_items`], programme side included) with its `ChallengeCompleted`
//! outbox record. The bonus entry id is one per challenge and participant, so even a bug in
//! the progress arithmetic could not grant it twice.

use aws_sdk_dynamodb::types::{AttributeValue, Put};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::challenge::{
    Challenge, ChallengeId, ChallengeStore, Progress, StepCommit, StepRefusal,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::InfraError;

use crate::dynamo::{classify, key, n, query_all, s, Item, ItemExt};
use crate::stores::ledger::{
    append_items, gather_budget, Gathered, LedgerRefusal, OutboxRecord, GATHERS,
};
use crate::stores::profiles::standing_check;
use crate::tx::Tx;

/// What a refused progress transaction means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProgressRefusal {
    /// The source marker exists: this source was counted before.
    SourceCounted,
    /// No profile, or a blocked one.
    ParticipantNotActive,
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
    /// Where profiles live: every step checks its participant's standing.
    pub participants: String,
}

#[derive(Clone)]
pub struct DynamoChallenges {
    client: Client,
    tables: ChallengeTables,
}

/// A challenge whose budget cannot cover its bonus counted nothing from this source (the
/// bonus, the progress and the source's marker are one write): recording the source again
/// after a top-up counts it.
pub fn log_out_of_budget(challenges: &[ChallengeId]) {
    for id in challenges {
        tracing::warn!(
            challenge = %id,
            code = "budget_exhausted",
            "the challenge's budget cannot cover its bonus: progress not counted"
        );
    }
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

impl DynamoChallenges {
    pub fn new(client: Client, tables: ChallengeTables) -> Self {
        Self { client, tables }
    }

    async fn write_challenge(&self, c: &Challenge, now: DateTime<Utc>) -> Result<(), InfraError> {
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

    async fn read_challenges(&self) -> Result<Vec<Challenge>, InfraError> {
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

    async fn read_progresses(
        &self,
        participant: &ParticipantId,
    ) -> Result<Vec<(ChallengeId, Progress)>, InfraError> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.activity)
            .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
            .expression_attribute_values(":pk", s(progress_pk(participant)))
            .expression_attribute_values(":c", s("CHALLENGE#"));
        query_all(query, "read progress")
            .await?
            .iter()
            .map(|item| {
                let raw = item.string("sk")?.trim_start_matches("CHALLENGE#");
                let id = ChallengeId::parse(raw)
                    .map_err(|e| InfraError::permanent("decode progress", e.to_string()))?;
                Ok((id, progress_from_item(item)?))
            })
            .collect()
    }

    fn transaction(&self, step: &StepCommit) -> Result<Tx<ProgressRefusal>, InfraError> {
        let source = &step.source;
        let pk = progress_pk(&source.participant);
        let marker = Put::builder()
            .table_name(&self.tables.activity)
            .set_item(Some(key(&pk, source.marker_key(&step.challenge))))
            .item("units", n(source.units))
            .item("recorded_at", s(source.at.to_rfc3339()))
            .condition_expression("attribute_not_exists(pk)");
        let progress = Put::builder()
            .table_name(&self.tables.activity)
            .set_item(Some(key(&pk, format!("CHALLENGE#{}", step.challenge))))
            .item("units", n(step.next.units))
            .item("completed", AttributeValue::Bool(step.next.completed))
            .item("updated_at", s(source.at.to_rfc3339()));
        let progress = match step.read {
            None => progress.condition_expression("attribute_not_exists(pk)"),
            Some(p) => progress
                .condition_expression("units = :read")
                .expression_attribute_values(":read", n(p.units)),
        };
        let mut tx = Tx::new();
        tx.put(marker, ProgressRefusal::SourceCounted)?;
        tx.check(
            standing_check(&self.tables.participants, &source.participant),
            ProgressRefusal::ParticipantNotActive,
        )?;
        tx.put(progress, ProgressRefusal::ProgressMoved)?;
        if let Some(entry) = &step.bonus {
            tx.append(append_items(
                &self.tables.ledger,
                entry,
                Some(OutboxRecord::new(
                    &self.tables.outbox,
                    OutboxEvent::ChallengeCompleted {
                        participant_id: entry.participant.clone(),
                        entry_id: entry.id.clone(),
                        challenge_id: step.challenge.clone(),
                        points: entry.amount,
                    },
                    source.at,
                )),
            )?);
        }
        Ok(tx)
    }
}

impl ChallengeStore for DynamoChallenges {
    async fn challenges(&self) -> Result<Vec<Challenge>, InfraError> {
        self.read_challenges().await
    }

    async fn put_challenge(&self, c: &Challenge, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.write_challenge(c, now).await
    }

    async fn progress(
        &self,
        participant: &ParticipantId,
        challenge: &ChallengeId,
    ) -> Result<Option<Progress>, InfraError> {
        self.read_progress(participant, challenge).await
    }

    async fn progresses(
        &self,
        participant: &ParticipantId,
    ) -> Result<Vec<(ChallengeId, Progress)>, InfraError> {
        self.read_progresses(participant).await
    }

    async fn backoff(&self, attempt: usize) {
        tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<Result<(), StepRefusal>, InfraError> {
        let mut gathers = 0;
        let refused = loop {
            let refused = match self
                .transaction(step)?
                .commit_reporting_conflicts(&self.client, "record progress")
                .await?
            {
                Ok(()) => return Ok(Ok(())),
                Err(refused) => refused,
            };
            // Budgets are spread over shards, a storage detail: the port refuses only when
            // the challenge's whole budget cannot cover the bonus, so a dry shard is
            // refilled from the others before the refusal is believed.
            let budget = refused.contains(&ProgressRefusal::Ledger(LedgerRefusal::BudgetExhausted));
            match &step.bonus {
                Some(bonus)
                    if budget
                        && !refused.contains(&ProgressRefusal::SourceCounted)
                        && !refused.contains(&ProgressRefusal::ParticipantNotActive)
                        && !refused.contains(&ProgressRefusal::ProgressMoved)
                        && gathers < GATHERS
                        && gather_budget(&self.client, &self.tables.ledger, bonus).await?
                            == Gathered::Ready =>
                {
                    gathers += 1;
                }
                _ => break refused,
            }
        };
        // The port's precedence: the marker, the standing, the progress, the budget.
        Ok(Err(if refused.contains(&ProgressRefusal::SourceCounted) {
            StepRefusal::SourceCounted
        } else if refused.contains(&ProgressRefusal::ParticipantNotActive) {
            StepRefusal::ParticipantNotActive
        } else if refused.contains(&ProgressRefusal::ProgressMoved) {
            StepRefusal::ProgressMoved
        } else if refused.contains(&ProgressRefusal::Ledger(LedgerRefusal::BudgetExhausted)) {
            StepRefusal::BudgetExhausted
        } else if refused.is_conflict() {
            StepRefusal::Contended
        } else {
            return Err(InfraError::permanent(
                "record progress",
                format!("unexpected refusal: {}", refused.describe()),
            ));
        }))
    }
}
