//! Earning rules and tiers in ProgrammeTable ([`EarningSettings`], budgets through the
//! ledger); action limits and sell-in credits ([`SellInStore`]).
//!
//! ProgrammeTable: `RULES`/`RULE#<id>` (the rule as JSON), `TIERS`/`TIERS`, and the time
//! zones ([`ZoneSettings`]) `ZONES`/`PROGRAMME` and `ZONES`/`REGION#<id>` (`zone`: the IANA
//! name), read together with one Query.
//! ActivityTable: `LIMIT#<participant>`/`RULE#<rule>#<EVER|period>` counters (`used`);
//! `SELLIN#<entry id>`/`LINE` sell-in line markers (`fingerprint`), kept forever.
//! A sell-in credit also checks its participant's standing in ParticipantsTable
//! ([`standing_check`]): a line of a blocked or unknown participant writes nothing.
//!
//! An action's transaction is [`super::actions`]'s.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{KeysAndAttributes, Put};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::earning::{MonthlyEarned, Rule, RuleId, Tier, Tiers};
use loyalty_domain::ids::{EntryId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Budgets, Entry, Funded, ProgrammeAccount, ProgrammeBalance};
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::sellin::SellInStore;
use loyalty_domain::settings::EarningSettings;
use loyalty_domain::zone::{Zone, ZoneSettings, Zones};
use loyalty_domain::{InfraError, Points};

use crate::dynamo::{classify, key, query_all, s, ItemExt};
use crate::stores::ledger::{append_items, DynamoLedger, LedgerRefusal, OutboxRecord};
use crate::stores::profiles::standing_check;
use crate::tx::Tx;

pub use crate::stores::zones::read_zones;
use crate::stores::zones::{ZONES_PK, ZONE_REGION};

#[derive(Debug, Clone)]
pub struct EarningTables {
    pub programme: String,
    pub activity: String,
    pub ledger: String,
    pub outbox: String,
    /// Where profiles live: actions and sell-in lines credit only a registered participant
    /// in good standing.
    pub participants: String,
}

/// BatchGetItem's limit.
const MAX_BATCH_GET_KEYS: usize = 100;

pub use loyalty_domain::sellin::SellInCredit;

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
        read_rules(&self.client, &self.tables.programme).await
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

    /// The points the participant earned per month, from their balance item.
    pub async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        Ok(self.ledger().balance_and_months(participant).await?.1)
    }

    fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(self.client.clone(), &self.tables.ledger)
    }

    /// Appends one sell-in line's entry (its id is the line's identity) with the line's
    /// marker: `fingerprint` is the line's content. The marker has no TTL and is keyed by
    /// the line, not by the participant, so exactly-once never rests on the outbox record
    /// (which expires after 7 days): a line re-imported with the same content is
    /// `AlreadyImported`, with other content (another participant included) `Changed`, and
    /// nothing is written either way; a retried import completes what it had not. A line of
    /// a participant who is not registered and active is `ParticipantNotActive` (after the
    /// other two, so a replay answers as before) and writes nothing.
    pub async fn credit_sell_in(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        let mut tx: Tx<SellInRefusal> = Tx::new();
        tx.put(
            Put::builder()
                .table_name(&self.tables.activity)
                .set_item(Some(HashMap::from([
                    ("pk".to_string(), s(line_pk(&entry.id))),
                    ("sk".to_string(), s("LINE")),
                    ("fingerprint".to_string(), s(fingerprint)),
                    ("entry_id".to_string(), s(entry.id.as_str())),
                    ("participant_id".to_string(), s(entry.participant.as_str())),
                    ("imported_at".to_string(), s(entry.created_at.to_rfc3339())),
                ])))
                .condition_expression("attribute_not_exists(pk) OR fingerprint = :fp")
                .expression_attribute_values(":fp", s(fingerprint)),
            SellInRefusal::LineChanged,
        )?;
        tx.check(
            standing_check(&self.tables.participants, &entry.participant),
            SellInRefusal::ParticipantNotActive,
        )?;
        tx.append(append_items(
            &self.tables.ledger,
            entry,
            Some(points_credited(&self.tables.outbox, entry, rule)),
        )?);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let refused = match tx
                .clone()
                .commit_reporting_conflicts(&self.client, "credit sell-in")
                .await?
            {
                Ok(()) => return Ok(SellInCredit::Credited),
                Err(refused) => refused,
            };
            let entry_exists = refused.contains(&SellInRefusal::Ledger(LedgerRefusal::EntryExists));
            // The outbox record without this participant's entry: a line credited to another
            // participant before line markers existed (and less than 7 days ago).
            let moved = !entry_exists
                && refused.contains(&SellInRefusal::Ledger(LedgerRefusal::OutboxExists));
            if refused.contains(&SellInRefusal::LineChanged) || moved {
                return Ok(SellInCredit::Changed);
            }
            if entry_exists {
                return Ok(SellInCredit::AlreadyImported);
            }
            if refused.contains(&SellInRefusal::ParticipantNotActive) {
                return Ok(SellInCredit::ParticipantNotActive);
            }
            if !refused.is_conflict() || attempt == CONFLICT_ATTEMPTS {
                return Err(InfraError::retryable("credit sell-in", refused.describe()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
        }
        unreachable!("the loop returns on its last attempt")
    }
}

impl EarningStore {
    /// Of the lines given as (entry id, fingerprint), the positions of those imported before
    /// with another fingerprint: read before an import writes anything, so that it can be
    /// refused as a whole.
    pub async fn changed_lines(
        &self,
        lines: &[(EntryId, String)],
    ) -> Result<Vec<usize>, InfraError> {
        let table = &self.tables.activity;
        let mut stored: HashMap<String, String> = HashMap::new();
        // One import never names a line twice, but a repeated key would fail the read.
        let pks: std::collections::BTreeSet<String> =
            lines.iter().map(|(id, _)| line_pk(id)).collect();
        let pks: Vec<String> = pks.into_iter().collect();
        for chunk in pks.chunks(MAX_BATCH_GET_KEYS) {
            let keys = chunk.iter().map(|pk| key(pk.as_str(), "LINE")).collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| InfraError::permanent("build batch get", e.to_string()))?,
            );
            while let Some(wanted) = request.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(table, wanted)
                    .send()
                    .await
                    .map_err(|e| classify("read sell-in lines", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(table))
                    .into_iter()
                    .flatten()
                {
                    stored.insert(
                        item.string("pk")?.to_string(),
                        item.string("fingerprint")?.to_string(),
                    );
                }
                request = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(lines
            .iter()
            .enumerate()
            .filter(|(_, (id, fingerprint))| {
                stored
                    .get(&line_pk(id))
                    .is_some_and(|stored| stored != fingerprint)
            })
            .map(|(i, _)| i)
            .collect())
    }
}

/// The sell-in port: each call is the store's own method, translated.
impl SellInStore for EarningStore {
    async fn changed_lines(&self, lines: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
        EarningStore::changed_lines(self, lines).await
    }

    async fn tiers(&self) -> Result<Tiers, InfraError> {
        EarningStore::tiers(self).await
    }

    async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        EarningStore::earned_months(self, participant).await
    }

    async fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        self.credit_sell_in(entry, rule, fingerprint).await
    }
}

/// The settings port: each call is the store's own method (budgets the ledger's), translated.
impl EarningSettings for EarningStore {
    async fn rules(&self) -> Result<Vec<Rule>, InfraError> {
        EarningStore::rules(self).await
    }

    async fn rule(&self, id: &RuleId) -> Result<Option<Rule>, InfraError> {
        EarningStore::rule(self, id).await
    }

    async fn put_rule(&self, rule: &Rule, now: DateTime<Utc>) -> Result<(), InfraError> {
        EarningStore::put_rule(self, rule, now).await
    }

    async fn tiers(&self) -> Result<Tiers, InfraError> {
        EarningStore::tiers(self).await
    }

    async fn put_tiers(&self, tiers: &Tiers, now: DateTime<Utc>) -> Result<(), InfraError> {
        EarningStore::put_tiers(self, tiers, now).await
    }

    async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        EarningStore::earned_months(self, participant).await
    }
}

/// Zones: one item each, translated.
impl ZoneSettings for EarningStore {
    async fn zones(&self) -> Result<Zones, InfraError> {
        read_zones(&self.client, &self.tables.programme).await
    }

    async fn put_programme_zone(&self, zone: Zone, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.put_zone("PROGRAMME".into(), zone, now).await
    }

    async fn put_region_zone(
        &self,
        region: &RegionId,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.put_zone(format!("{ZONE_REGION}{region}"), zone, now)
            .await
    }
}

impl EarningStore {
    async fn put_zone(&self, sk: String, zone: Zone, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(key(ZONES_PK, sk)))
            .item("zone", s(zone.name()))
            .item("updated_at", s(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify("put time zone", e))?;
        Ok(())
    }
}

/// Budgets are the ledger's, translated.
impl Budgets for EarningStore {
    async fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Funded, InfraError> {
        self.ledger()
            .fund_budget(account, amount, funding_id, now)
            .await
    }

    async fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> Result<ProgrammeBalance, InfraError> {
        self.ledger().programme_balance(account).await
    }
}

fn line_pk(entry: &EntryId) -> String {
    format!("SELLIN#{entry}")
}

/// What a refused sell-in credit means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SellInRefusal {
    /// The line's marker holds another fingerprint.
    LineChanged,
    /// The participant has no profile or is blocked.
    ParticipantNotActive,
    Ledger(LedgerRefusal),
}

impl From<LedgerRefusal> for SellInRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
    }
}

/// Every earning rule.
pub async fn read_rules(client: &Client, programme_table: &str) -> Result<Vec<Rule>, InfraError> {
    let query = client
        .query()
        .table_name(programme_table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("RULES"));
    query_all(query, "read rules")
        .await?
        .iter()
        .map(|item| decode(item.string("rule")?, "decode rule"))
        .collect()
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

pub fn points_credited<'a>(outbox: &'a str, entry: &Entry, rule: &RuleId) -> OutboxRecord<'a> {
    let event = OutboxEvent::PointsCredited {
        participant_id: entry.participant.clone(),
        entry_id: entry.id.clone(),
        rule_id: rule.clone(),
        points: entry.amount,
    };
    OutboxRecord::new(outbox, event, entry.created_at)
}
