//! The ledger in LedgerTable: entries, the balance projection, outlet totals, the review queue.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::earning::{month_key, MonthlyEarned, Tiers};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{
    gather_plan, programme_shard, shard_of, Account, Balance, Delta, Entry, EntryKind,
    HistoryError, LedgerReader, ProgrammeAccount, Transfer, PROGRAMME_SHARDS,
};
use loyalty_domain::outbox::{Envelope, OutboxEvent};
use loyalty_domain::review::{
    Committed, Decided, Decision, Page as ReviewPage, PendingReview, ReviewError, ReviewId,
    ReviewStore,
};
use loyalty_domain::{InfraError, Points};

use crate::dynamo::{
    batch_get_all, classify, decode_cursor, encode_cursor, key, n, query_all, s, Item, ItemExt,
};
use crate::idempotency::KeyTaken;
use crate::stores::profiles::standing_check;
use crate::tx::Tx;

pub fn account_pk(participant: &ParticipantId) -> String {
    format!("ACCOUNT#{participant}")
}

pub fn outlet_pk(outlet: &OutletId) -> String {
    format!("OUTLET#{outlet}")
}

/// One shard of a programme account's balance: `PROGRAMME#<account>#<shard>`, sk `BALANCE`.
pub fn programme_pk(account: &ProgrammeAccount, shard: u32) -> String {
    format!("PROGRAMME#{account}#{shard:02}")
}

/// The programme side of an entry, or of a budget's funding: `ADD programme_balance`, on the
/// shard `shard` of `account`. The item names its account and shard, so a scan can sum them.
pub fn programme_update(
    table: &str,
    account: &ProgrammeAccount,
    shard: u32,
    change: i64,
    now: DateTime<Utc>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    Update::builder()
        .table_name(table)
        .set_key(Some(key(programme_pk(account, shard), "BALANCE")))
        .update_expression(
            "ADD programme_balance :change, version :one \
             SET programme_account = :account, programme_shard = :shard, updated_at = :now",
        )
        .expression_attribute_values(":change", n(change))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":account", s(account.key()))
        .expression_attribute_values(":shard", n(shard))
        .expression_attribute_values(":now", s(now.to_rfc3339()))
}

/// The programme-account item of `entry`'s transfer (none for moves inside a member's
/// account). A debit of a programme account that has a budget (a `budget` attribute, set
/// when it was funded) must be covered by its shard, tagged [`LedgerRefusal::BudgetExhausted`];
/// an account without a budget issues points and may go negative.
///
/// The approval of a held accrual has two more items ([`Entry::transfers`]): its rule's
/// account pays (with the same budget condition) and `reviews` is repaid.
pub fn programme_items(table: &str, entry: &Entry) -> Result<Tx<LedgerRefusal>, InfraError> {
    let mut tx = Tx::new();
    for Transfer { account, change } in entry.transfers() {
        let update = programme_update(
            table,
            &account,
            programme_shard(&entry.id),
            change,
            entry.created_at,
        );
        if change < 0 {
            tx.update(
                update
                    .condition_expression(
                        "attribute_not_exists(budget) OR programme_balance >= :needed_budget",
                    )
                    .expression_attribute_values(":needed_budget", n(-change)),
                LedgerRefusal::BudgetExhausted,
            )?;
        } else {
            tx.update_always(update)?;
        }
    }
    Ok(tx)
}

/// How many times a credit refused by its dry budget shard is tried again after
/// [`gather_budget`]; more than once only when other credits drain the account meanwhile.
pub const GATHERS: usize = 3;

/// What [`gather_budget`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathered {
    /// The entry's shard holds enough now (or did already): commit the entry again. A
    /// concurrent draw may still take it first, so callers bound their attempts.
    Ready,
    /// The account as a whole cannot cover the entry: the `BudgetExhausted` refusal stands.
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatherRefusal {
    /// A donor shard was drawn meanwhile; the caller's retry reads the shards again.
    DonorMoved,
}

/// After `entry`'s programme side was refused as [`LedgerRefusal::BudgetExhausted`]: reads
/// the account's shards (one consistent `BatchGetItem`) and moves what the entry's shard
/// lacks from the other shards ([`loyalty_domain::ledger::gather_plan`]), in one transaction
/// conditional on each donor still holding what it gives. Moves inside one account change
/// no sum. Steady-state credits never come here: it costs two more round trips, once per
/// shard that runs dry.
pub async fn gather_budget(
    client: &Client,
    table: &str,
    entry: &Entry,
) -> Result<Gathered, InfraError> {
    // An entry debits at most one programme account (an approved held accrual also repays
    // `reviews`, a credit that is never refused).
    let Some(Transfer { account, change }) = entry.transfers().into_iter().find(|t| t.change < 0)
    else {
        return Ok(Gathered::Ready);
    };
    let home = programme_shard(&entry.id);
    let keys = (0..PROGRAMME_SHARDS)
        .map(|shard| key(programme_pk(&account, shard), "BALANCE"))
        .collect();
    let items = batch_get_all(client, table, keys, "read budget shards").await?;
    let shards = programme_balance_from_items(&items).shards;
    let Some(plan) = gather_plan(&shards, home, -change) else {
        return Ok(Gathered::Exhausted);
    };
    if plan.is_empty() {
        return Ok(Gathered::Ready);
    }
    let mut tx = Tx::new();
    let mut gathered = 0;
    for (donor, take) in plan {
        gathered += take;
        tx.update(
            programme_update(table, &account, donor, -take, entry.created_at)
                .condition_expression("programme_balance >= :take")
                .expression_attribute_values(":take", n(take)),
            GatherRefusal::DonorMoved,
        )?;
    }
    tx.update_always(programme_update(
        table,
        &account,
        home,
        gathered,
        entry.created_at,
    ))?;
    // A refusal means a donor was drawn meanwhile: the caller's next attempt either fits
    // or gathers again from what the shards hold then.
    let _ = tx
        .commit_reporting_conflicts(client, "gather budget")
        .await?;
    Ok(Gathered::Ready)
}

pub use loyalty_domain::ledger::{Funded, ProgrammeBalance};

fn programme_balance_from_items<'a>(items: impl IntoIterator<Item = &'a Item>) -> ProgrammeBalance {
    let mut b = ProgrammeBalance {
        shards: vec![0; PROGRAMME_SHARDS as usize],
        ..Default::default()
    };
    for item in items {
        let balance = item.signed("programme_balance").unwrap_or(0);
        let shard = item
            .opt_number("programme_shard")
            .ok()
            .flatten()
            .unwrap_or(0) as usize;
        if let Some(slot) = b.shards.get_mut(shard) {
            *slot += balance;
        }
        b.balance += balance;
        if let Ok(funded) = item.signed("budget") {
            *b.funded.get_or_insert(0) += funded;
        }
    }
    b
}

pub fn entry_item(e: &Entry) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), s(account_pk(&e.participant))),
        ("sk".to_string(), s(format!("ENTRY#{}", e.id))),
        (
            "lsi1sk".to_string(),
            s(format!("{}#{}", e.created_at.to_rfc3339(), e.id)),
        ),
        ("entry_id".to_string(), s(e.id.as_str())),
        ("participant_id".to_string(), s(e.participant.as_str())),
        ("kind".to_string(), s(e.kind.as_str())),
        ("amount".to_string(), n(e.amount.get())),
        ("source".to_string(), s(&e.source)),
        ("created_at".to_string(), s(e.created_at.to_rfc3339())),
        // The programme account on the other side, written with it (`none` for moves inside
        // the member's account). An entry without it predates double entry: the backfill
        // gives it its programme side (see `DynamoLedger::backfill_programme_side`).
        (
            COUNTER_ATTR.to_string(),
            s(e.transfer()
                .map(|t| t.account.key())
                .unwrap_or_else(|| "none".into())),
        ),
    ]);
    if let Some(o) = &e.outlet {
        item.insert("outlet_id".into(), s(o.as_str()));
    }
    if let Some(d) = e.expires_on {
        item.insert("expires_on".into(), s(d.to_string()));
    }
    item
}

const COUNTER_ATTR: &str = "counter_account";

pub fn entry_from_item(item: &Item) -> Result<Entry, InfraError> {
    let bad = |e: String| InfraError::permanent("decode entry", e);
    Ok(Entry {
        id: EntryId::parse(item.string("entry_id")?).map_err(|e| bad(e.to_string()))?,
        participant: ParticipantId::parse(item.string("participant_id")?)
            .map_err(|e| bad(e.to_string()))?,
        outlet: item
            .opt_string("outlet_id")
            .map(OutletId::parse)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        kind: EntryKind::parse(item.string("kind")?).ok_or_else(|| bad("unknown kind".into()))?,
        amount: Points(item.number("amount")?),
        source: item.string("source")?.to_string(),
        created_at: item
            .string("created_at")?
            .parse()
            .map_err(|e: chrono::ParseError| bad(e.to_string()))?,
        expires_on: item
            .opt_string("expires_on")
            .map(str::parse)
            .transpose()
            .map_err(|e: chrono::ParseError| bad(e.to_string()))?,
    })
}

/// A missing balance item is an account with no entries yet.
pub fn balance_from_item(item: &Item) -> Result<Balance, InfraError> {
    let get = |attr: &str| item.opt_number(attr).map(|v| v.unwrap_or(0));
    Ok(Balance {
        available: get("available")?,
        pending: get("pending")?,
        held: get("held")?,
        lifetime_earned: get("lifetime_earned")?,
        spent: get("spent")?,
        expired: get("expired")?,
        version: get("version")?,
    })
}

const EARNED_PREFIX: &str = "earned_";

/// Points earned per calendar month, from a balance item's `earned_<yyyymm>` attributes.
pub fn monthly_earned_from_item(item: &Item) -> Result<MonthlyEarned, InfraError> {
    let mut months = MonthlyEarned::new();
    for attr in item.keys() {
        if let Some(month) = attr
            .strip_prefix(EARNED_PREFIX)
            .and_then(|m| m.parse::<u32>().ok())
        {
            months.insert(month, item.signed(attr)?);
        }
    }
    Ok(months)
}

/// The attribute values for a delta; shared by [`balance_update`] and its callers' conditions.
/// Earned points are also counted per calendar month of `at` (`earned_<yyyymm>`), so that a
/// tier over the trailing 12 months is one read of the balance item.
fn delta_expression(delta: &Delta, at: DateTime<Utc>) -> (String, HashMap<String, AttributeValue>) {
    let mut adds = vec!["version :one".to_string()];
    let mut values = HashMap::from([(":one".to_string(), n(1))]);
    for (field, value) in delta.fields() {
        adds.push(format!("{field} :d_{field}"));
        values.insert(format!(":d_{field}"), n(value));
    }
    if delta.lifetime_earned != 0 {
        adds.push(format!(
            "{EARNED_PREFIX}{} :d_lifetime_earned",
            month_key(at)
        ));
    }
    (
        format!("ADD {} SET updated_at = :now", adds.join(", ")),
        values,
    )
}

/// Moves a balance (or outlet totals) item by `delta` and bumps its version, in the same
/// transaction as the entry that causes it: this is what keeps balance and entries equal.
pub fn balance_update(
    table: &str,
    key: Item,
    delta: &Delta,
    now: DateTime<Utc>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let (expression, mut values) = delta_expression(delta, now);
    values.insert(":now".into(), s(now.to_rfc3339()));
    Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .set_expression_attribute_values(Some(values))
}

/// How a review decision's write ended, when it was not refused.
#[derive(Debug)]
pub enum DecisionWrite {
    Done,
    /// The entry was no longer on the queue: nothing was written.
    AlreadyDecided,
    /// Another request with the same Idempotency-Key wrote its answer first.
    KeyTaken,
    /// An approved held accrual its rule's whole budget cannot cover: nothing was written.
    BudgetRefused,
    /// An approval for a participant with no profile or a blocked one: nothing was written.
    ParticipantNotActive,
}

/// One page of history, newest first.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("the cursor is not valid for this listing")]
    BadCursor,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl loyalty_domain::Classified for PageError {
    fn kind(&self) -> loyalty_domain::Kind {
        match self {
            PageError::BadCursor => loyalty_domain::Kind::BadInput,
            PageError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PageError::BadCursor => "invalid_cursor",
            PageError::Infra(e) => e.code(),
        }
    }
}

pub struct DynamoLedger {
    client: Client,
    table: String,
    /// Where review decisions announce themselves; read-only users of the ledger need none.
    outbox: Option<String>,
    /// Where the programme's tiers are configured, for the wallet; `None`: no tiers.
    programme: Option<String>,
    /// Where profiles live: an approval checks the participant's standing. Review desks
    /// must set it ([`DynamoLedger::with_participants`]); an approval without it fails.
    participants: Option<String>,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            outbox: None,
            programme: None,
            participants: None,
        }
    }

    /// Approvals check the participant's standing against this ParticipantsTable.
    pub fn with_participants(mut self, table: impl Into<String>) -> Self {
        self.participants = Some(table.into());
        self
    }

    /// The wallet shows each balance's tier from the tiers in this table.
    pub fn with_programme(mut self, table: impl Into<String>) -> Self {
        self.programme = Some(table.into());
        self
    }

    pub fn with_outbox(mut self, table: impl Into<String>) -> Self {
        self.outbox = Some(table.into());
        self
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Item, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("read balance", e))?;
        Ok(out.item.unwrap_or_default())
    }

    pub async fn balance(&self, participant: &ParticipantId) -> Result<Balance, InfraError> {
        balance_from_item(&self.get(account_pk(participant), "BALANCE").await?)
    }

    /// The balance and the points earned in each calendar month, for the tier.
    pub async fn balance_and_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<(Balance, MonthlyEarned), InfraError> {
        let item = self.get(account_pk(participant), "BALANCE").await?;
        Ok((balance_from_item(&item)?, monthly_earned_from_item(&item)?))
    }

    pub async fn outlet_totals(&self, outlet: &OutletId) -> Result<Balance, InfraError> {
        balance_from_item(&self.get(outlet_pk(outlet), "TOTALS").await?)
    }

    /// A programme account's balance, summed over its shards (one consistent read each).
    pub async fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> Result<ProgrammeBalance, InfraError> {
        let mut items = Vec::new();
        for shard in 0..PROGRAMME_SHARDS {
            items.push(self.get(programme_pk(account, shard), "BALANCE").await?);
        }
        Ok(programme_balance_from_items(&items))
    }

    /// Every programme account's balance, from a scan of the table: for audits and tests
    /// that check member and programme accounts sum to zero.
    pub async fn all_programme_balances(
        &self,
    ) -> Result<std::collections::BTreeMap<ProgrammeAccount, ProgrammeBalance>, InfraError> {
        let mut by_account: HashMap<String, Vec<Item>> = HashMap::new();
        for item in self.scan_balances("PROGRAMME#").await? {
            if let Some(account) = item.opt_string("programme_account") {
                by_account
                    .entry(account.to_string())
                    .or_default()
                    .push(item);
            }
        }
        by_account
            .into_iter()
            .map(|(raw, items)| {
                let account = ProgrammeAccount::parse(&raw).ok_or_else(|| {
                    InfraError::permanent("read programme accounts", format!("unknown {raw}"))
                })?;
                Ok((account, programme_balance_from_items(&items)))
            })
            .collect()
    }

    /// The sum over every member account (available + pending + held), from a scan: the
    /// other half of the double-entry check.
    pub async fn all_member_points(&self) -> Result<i64, InfraError> {
        let mut sum = 0;
        for item in self.scan_balances("ACCOUNT#").await? {
            let b = balance_from_item(&item)?;
            sum += (b.available + b.pending + b.held) as i64;
        }
        Ok(sum)
    }

    /// Member accounts plus programme accounts: zero in a consistent ledger (double entry).
    /// Two scans, for reconciliation and tests, never for a request.
    pub async fn accounts_sum(&self) -> Result<i64, InfraError> {
        let members = self.all_member_points().await?;
        let programme: i64 = self
            .all_programme_balances()
            .await?
            .values()
            .map(|b| b.balance)
            .sum();
        Ok(members + programme)
    }

    async fn scan_balances(&self, prefix: &str) -> Result<Vec<Item>, InfraError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(pk, :prefix) AND sk = :balance")
                .expression_attribute_values(":prefix", s(prefix))
                .expression_attribute_values(":balance", s("BALANCE"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("scan balances", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(items),
            }
        }
    }

    /// The upgrade of a deployment that predates double entry: every entry without a
    /// `counter_account` gets its programme side, one transaction per entry (the mark on the
    /// entry, on condition it is still unmarked, and the `ADD` to its programme shard), so the
    /// job may run beside live traffic, stop anywhere and run again. Returns how many entries
    /// it marked; a second run returns 0.
    pub async fn backfill_programme_side(&self) -> Result<u64, InfraError> {
        let mut marked = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(sk, :entry) AND attribute_not_exists(#c)")
                .expression_attribute_names("#c", COUNTER_ATTR)
                .expression_attribute_values(":entry", s("ENTRY#"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("scan entries", e))?;
            for item in out.items() {
                let entry = entry_from_item(item)?;
                let mut tx: Tx<BackfillRefusal> = Tx::new();
                tx.update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(
                            account_pk(&entry.participant),
                            format!("ENTRY#{}", entry.id),
                        )))
                        .update_expression("SET #c = :account")
                        .condition_expression("attribute_exists(pk) AND attribute_not_exists(#c)")
                        .expression_attribute_names("#c", COUNTER_ATTR)
                        .expression_attribute_values(
                            ":account",
                            s(entry
                                .transfer()
                                .map(|t| t.account.key())
                                .unwrap_or_else(|| "none".into())),
                        ),
                    BackfillRefusal::Marked,
                )?;
                if let Some(t) = entry.transfer() {
                    tx.update_always(programme_update(
                        &self.table,
                        &t.account,
                        programme_shard(&entry.id),
                        t.change,
                        entry.created_at,
                    ))?;
                }
                match tx.commit(&self.client, "backfill programme side").await? {
                    Ok(()) => marked += 1,
                    // Marked meanwhile (by a concurrent run): its side is written.
                    Err(refused) if refused.contains(&BackfillRefusal::Marked) => {}
                    Err(refused) => {
                        return Err(InfraError::retryable(
                            "backfill programme side",
                            refused.describe(),
                        ))
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => return Ok(marked),
            }
        }
    }

    /// Gives `account` a budget, or tops it up: moves `amount` from
    /// [`ProgrammeAccount::Issuer`] to the account, spread evenly over its shards, in one
    /// transaction with a funding record keyed by `funding_id` (the caller's idempotency
    /// key), so a retried top-up funds nothing twice. From then on, credits paid from the
    /// account are refused once their shard cannot cover them.
    pub async fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Funded, InfraError> {
        let tx = funding_items(&self.table, account, amount, funding_id, now)?;
        match tx.commit(&self.client, "fund budget").await? {
            Ok(()) => Ok(Funded::Funded),
            Err(refused) if refused.contains(&FundingRefusal::Exists) => Ok(Funded::AlreadyFunded),
            Err(refused) => Err(InfraError::retryable("fund budget", refused.describe())),
        }
    }

    /// Every entry of an account, in append order of their timestamps. For audits and
    /// tests that check the balance equals its entries.
    pub async fn all_entries(&self, participant: &ParticipantId) -> Result<Vec<Entry>, InfraError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_time")
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(account_pk(participant)));
        query_all(query, "read entries")
            .await?
            .iter()
            .map(entry_from_item)
            .collect()
    }

    /// Claims awaiting review, oldest first.
    pub async fn pending_reviews(
        &self,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page<PendingReview>, PageError> {
        let start = match cursor {
            Some(c) => Some(
                decode_cursor(c, "REVIEW#PENDING", &["pk", "sk", "gsi1sk"])
                    .ok_or(PageError::BadCursor)?,
            ),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :q")
            .expression_attribute_values(":q", s("REVIEW#PENDING"))
            .limit(limit)
            .set_exclusive_start_key(start.map(|mut k| {
                // The index cursor carries the index keys; `pk` was only our partition check.
                k.insert("gsi1pk".into(), s("REVIEW#PENDING"));
                k
            }))
            .send()
            .await
            .map_err(|e| classify("read reviews", e))?;
        let mut items = Vec::new();
        for item in out.items() {
            let entry = entry_from_item(item)?;
            let reasons = item
                .get("review_reasons")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default();
            items.push(PendingReview {
                id: ReviewId::of(&entry.participant, &entry.id),
                entry,
                reasons,
            });
        }
        // The cursor must name the queue's partition so decode_cursor accepts it back.
        let next_cursor = out.last_evaluated_key().map(|k| {
            let mut k = k.clone();
            k.insert("pk".into(), s("REVIEW#PENDING"));
            k.remove("gsi1pk");
            encode_cursor(&k)
        });
        Ok(Page { items, next_cursor })
    }

    /// The entry a review id names, whatever its kind (the use case checks it).
    async fn reviewed_entry(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        let item = self
            .get(account_pk(&id.participant), &format!("ENTRY#{}", id.entry))
            .await?;
        if item.is_empty() {
            return Ok(None);
        }
        entry_from_item(&item).map(Some)
    }

    /// Commits a review decision ([`loyalty_domain::review::decide`]'s rules): one
    /// transaction takes the entry off the queue, appends the decision entry, moves the
    /// balance and outlet totals, announces it, and writes `answer_record` (the caller's
    /// idempotency record) when given.
    ///
    /// An approved held accrual is paid from its rule's budget in the same transaction;
    /// when the whole budget cannot cover it, nothing is written (`BudgetRefused`).
    pub async fn commit_decision(
        &self,
        decided: &Decided,
        answer_record: Option<Tx<KeyTaken>>,
    ) -> Result<DecisionWrite, InfraError> {
        let id = &decided.id;
        let outbox = self
            .outbox
            .as_deref()
            .map(|table| OutboxRecord::new(table, decided.event.clone(), decided.at));
        let dequeue = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(account_pk(&id.participant), format!("ENTRY#{}", id.entry))))
            .update_expression("REMOVE gsi1pk, gsi1sk SET review_status = :d, reviewed_by = :r, reviewed_at = :now")
            .condition_expression("attribute_exists(gsi1pk)")
            .expression_attribute_values(":d", s(decided.decision.as_str()))
            .expression_attribute_values(":r", s(&decided.reviewer))
            .expression_attribute_values(":now", s(decided.at.to_rfc3339()));
        let mut tx = Tx::new();
        tx.update(dequeue, ReviewRefusal::AlreadyDecided)?;
        if decided.decision == Decision::Approve {
            // Approval makes held points spendable: only for a participant in good
            // standing, checked in the same transaction.
            let participants = self.participants.as_deref().ok_or_else(|| {
                InfraError::permanent("decide review", "no participants table to check")
            })?;
            tx.check(
                standing_check(participants, &decided.id.participant),
                ReviewRefusal::ParticipantNotActive,
            )?;
        }
        tx.append(append_items(&self.table, &decided.entry, outbox)?);
        if let Some(record) = answer_record {
            tx.append(record);
        }
        let mut result = tx.clone().commit(&self.client, "decide review").await?;
        // An approval paid from a rule's budget: a dry shard is refilled from the rule's
        // other shards before the refusal is believed (see `gather_budget`).
        for _ in 0..GATHERS {
            match &result {
                Err(refused)
                    if refused.contains(&ReviewRefusal::Ledger(LedgerRefusal::BudgetExhausted))
                        && !refused.contains(&ReviewRefusal::AlreadyDecided)
                        && !refused.contains(&ReviewRefusal::KeyTaken)
                        && !refused.contains(&ReviewRefusal::ParticipantNotActive)
                        && gather_budget(&self.client, &self.table, &decided.entry).await?
                            == Gathered::Ready =>
                {
                    result = tx.clone().commit(&self.client, "decide review").await?;
                }
                _ => break,
            }
        }
        match result {
            Ok(()) => Ok(DecisionWrite::Done),
            Err(refused) if refused.contains(&ReviewRefusal::KeyTaken) => {
                Ok(DecisionWrite::KeyTaken)
            }
            Err(refused) if refused.contains(&ReviewRefusal::AlreadyDecided) => {
                Ok(DecisionWrite::AlreadyDecided)
            }
            Err(refused) if refused.contains(&ReviewRefusal::ParticipantNotActive) => {
                Ok(DecisionWrite::ParticipantNotActive)
            }
            Err(refused)
                if refused.contains(&ReviewRefusal::Ledger(LedgerRefusal::BudgetExhausted)) =>
            {
                Ok(DecisionWrite::BudgetRefused)
            }
            Err(refused) => Err(InfraError::retryable(
                "decide review",
                format!("cancelled by a concurrent change ({})", refused.describe()),
            )),
        }
    }
}

/// The review port over the ledger table: a translator, the rules are in
/// [`loyalty_domain::review`].
impl ReviewStore for DynamoLedger {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        self.reviewed_entry(id).await
    }

    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ReviewPage<PendingReview>, ReviewError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        match self.pending_reviews(cursor, limit).await {
            Ok(page) => Ok(ReviewPage {
                items: page.items,
                next_cursor: page.next_cursor,
            }),
            Err(PageError::BadCursor) => Err(ReviewError::InvalidCursor),
            Err(PageError::Infra(e)) => Err(ReviewError::Infra(e)),
        }
    }

    async fn commit(&self, decided: &Decided) -> Result<Committed, InfraError> {
        committed(self.commit_decision(decided, None).await?)
    }
}

/// The wallet's read port: each method one read, translated.
impl LedgerReader for DynamoLedger {
    async fn account(&self, participant: &ParticipantId) -> Result<Account, InfraError> {
        let (balance, earned_by_month) = self.balance_and_months(participant).await?;
        Ok(Account {
            balance,
            earned_by_month,
        })
    }

    /// Newest first on the `by_time` index (`lsi1sk` = created at, then entry id).
    async fn history(
        &self,
        participant: &ParticipantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ReviewPage<Entry>, HistoryError> {
        let pk = account_pk(participant);
        let start = match cursor {
            Some(c) => Some(
                decode_cursor(c, &pk, &["pk", "sk", "lsi1sk"])
                    .ok_or(HistoryError::InvalidCursor)?,
            ),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_time")
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&pk))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("read history", e))?;
        let items = out
            .items()
            .iter()
            .map(entry_from_item)
            .collect::<Result<_, _>>()?;
        Ok(ReviewPage {
            items,
            next_cursor: out.last_evaluated_key().map(encode_cursor),
        })
    }

    async fn outlet_totals(&self, outlet: &OutletId) -> Result<Balance, InfraError> {
        DynamoLedger::outlet_totals(self, outlet).await
    }

    async fn tiers(&self) -> Result<Option<Tiers>, InfraError> {
        match &self.programme {
            None => Ok(None),
            Some(table) => crate::stores::earning::read_tiers(&self.client, table)
                .await
                .map(Some),
        }
    }
}

fn committed(write: DecisionWrite) -> Result<Committed, InfraError> {
    match write {
        DecisionWrite::Done => Ok(Committed::Ok),
        DecisionWrite::AlreadyDecided => Ok(Committed::AlreadyDecided),
        DecisionWrite::BudgetRefused => Ok(Committed::BudgetRefused),
        DecisionWrite::ParticipantNotActive => Ok(Committed::ParticipantNotActive),
        DecisionWrite::KeyTaken => Err(InfraError::permanent(
            "decide review",
            "an idempotency record refused a decision that carried none",
        )),
    }
}

/// What a refused review decision means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReviewRefusal {
    /// The entry is no longer on the review queue: someone decided already.
    AlreadyDecided,
    /// The caller's idempotency record exists: the same key was answered concurrently.
    KeyTaken,
    /// An approval's participant has no profile or is blocked.
    ParticipantNotActive,
    Ledger(LedgerRefusal),
}

impl From<LedgerRefusal> for ReviewRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
    }
}

impl From<KeyTaken> for ReviewRefusal {
    fn from(_: KeyTaken) -> Self {
        Self::KeyTaken
    }
}

/// The reason an over-budget accrual waits on the review queue.
pub const OVER_BUDGET: &str = "over_budget";

/// Puts an entry item on the review queue: the sparse index `gsi1` (`REVIEW#PENDING`, by
/// time then entry id) holds only entries awaiting a decision; `commit_decision` removes it.
pub fn queue_for_review<'a>(
    item: &mut Item,
    entry: &Entry,
    reasons: impl IntoIterator<Item = &'a str>,
) {
    item.insert("gsi1pk".into(), s("REVIEW#PENDING"));
    item.insert(
        "gsi1sk".into(),
        s(format!("{}#{}", entry.created_at.to_rfc3339(), entry.id)),
    );
    let reasons = reasons.into_iter().map(s).collect();
    item.insert("review_reasons".into(), AttributeValue::L(reasons));
}

/// What a refused append to the ledger means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerRefusal {
    /// An entry with this (deterministic) id exists: this append happened before.
    EntryExists,
    /// The debited bucket of the balance does not cover the entry.
    InsufficientBalance,
    /// The programme account the entry is paid from has a budget, and its shard does not
    /// cover the entry.
    BudgetExhausted,
    /// The outbox record exists: this announcement was written before.
    OutboxExists,
}

/// The transaction items that append `entry` to the ledger: the entry itself (which must be
/// new, so a retry with the same deterministic id appends nothing), the participant's balance,
/// the outlet's totals when the entry has an outlet, the programme account on the other side
/// ([`programme_items`]: double entry), and optionally an outbox record. A debit carries the
/// condition that its bucket covers it, so no balance ever goes negative; a credit paid from a
/// budget carries the condition that the budget covers it.
///
/// Every feature that moves points builds its transaction from these items plus its own
/// (a webhook event marker, a counter with a cap), so balances stay equal to their entries:
/// it [`Tx::append`]s them to its own `Tx<T>` with `T: From<LedgerRefusal>`, so a refusal of
/// these items reads as [`LedgerRefusal::EntryExists`], `InsufficientBalance` (the debit's
/// condition), `BudgetExhausted` or `OutboxExists`, wherever they sit in the transaction.
pub fn append_items(
    table: &str,
    entry: &Entry,
    outbox: Option<OutboxRecord<'_>>,
) -> Result<Tx<LedgerRefusal>, InfraError> {
    let delta = entry.delta();
    let balance = balance_update(
        table,
        key(account_pk(&entry.participant), "BALANCE"),
        &delta,
        entry.created_at,
    );
    let mut tx = Tx::new();
    tx.put(
        Put::builder()
            .table_name(table)
            .set_item(Some(entry_item(entry)))
            .condition_expression("attribute_not_exists(pk)"),
        LedgerRefusal::EntryExists,
    )?;
    match entry.kind.debits() {
        Some(bucket) => {
            let field = match bucket {
                loyalty_domain::ledger::Bucket::Available => "available",
                loyalty_domain::ledger::Bucket::Pending => "pending",
                loyalty_domain::ledger::Bucket::Held => "held",
            };
            tx.update(
                balance
                    .condition_expression(format!("{field} >= :needed"))
                    .expression_attribute_values(":needed", n(entry.amount.get())),
                LedgerRefusal::InsufficientBalance,
            )?;
        }
        None => {
            tx.update_always(balance)?;
        }
    }
    if let Some(outlet) = &entry.outlet {
        tx.update_always(balance_update(
            table,
            key(outlet_pk(outlet), "TOTALS"),
            &delta,
            entry.created_at,
        ))?;
    }
    tx.append(programme_items(table, entry)?);
    if let Some(record) = outbox {
        tx.put(record.put(entry.created_at), LedgerRefusal::OutboxExists)?;
    }
    Ok(tx)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackfillRefusal {
    /// The entry carries its counter account already.
    Marked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FundingRefusal {
    Exists,
}

/// The items of a budget funding (see [`DynamoLedger::fund_budget`]): the funding record,
/// each shard of `account` (`ADD programme_balance` and `budget` by its share), and the
/// issuer's shard for the funding, so the sum over all accounts stays zero.
fn funding_items(
    table: &str,
    account: &ProgrammeAccount,
    amount: Points,
    funding_id: &str,
    now: DateTime<Utc>,
) -> Result<Tx<FundingRefusal>, InfraError> {
    let total = amount.get() as i64;
    let mut tx = Tx::new();
    tx.put(
        Put::builder()
            .table_name(table)
            .set_item(Some(HashMap::from([
                ("pk".to_string(), s(format!("PROGRAMME#{account}"))),
                ("sk".to_string(), s(format!("FUNDING#{funding_id}"))),
                ("amount".to_string(), n(total)),
                ("created_at".to_string(), s(now.to_rfc3339())),
            ])))
            .condition_expression("attribute_not_exists(pk)"),
        FundingRefusal::Exists,
    )?;
    let shards = PROGRAMME_SHARDS as i64;
    for shard in 0..PROGRAMME_SHARDS {
        // The remainder goes to the first shards, one point each.
        let share = total / shards + i64::from((shard as i64) < total % shards);
        tx.update_always(
            programme_update(table, account, shard, share, now).update_expression(
                "ADD programme_balance :change, budget :change, version :one \
                     SET programme_account = :account, programme_shard = :shard, updated_at = :now",
            ),
        )?;
    }
    tx.update_always(programme_update(
        table,
        &ProgrammeAccount::Issuer,
        shard_of(funding_id),
        -total,
        now,
    ))?;
    Ok(tx)
}

/// A notification-worthy event, written in the same transaction as the change it announces.
pub struct OutboxRecord<'a> {
    pub table: &'a str,
    /// Its `event_id` is deterministic, so a retry writes nothing new.
    pub envelope: Envelope,
}

impl<'a> OutboxRecord<'a> {
    const TTL_SECS: i64 = 7 * 24 * 3600;

    pub fn new(table: &'a str, event: OutboxEvent, occurred_at: DateTime<Utc>) -> Self {
        Self {
            table,
            envelope: Envelope::new(event, occurred_at),
        }
    }

    /// The outbox record's put; its condition (`attribute_not_exists(pk)`) fails when this
    /// event was written before.
    pub fn put(&self, now: DateTime<Utc>) -> PutBuilder {
        let event_id = &self.envelope.event_id;
        Put::builder()
            .table_name(self.table)
            .set_item(Some(HashMap::from([
                ("pk".to_string(), s(format!("OUTBOX#{event_id}"))),
                ("sk".to_string(), s("OUTBOX")),
                ("event_id".to_string(), s(event_id)),
                ("type".to_string(), s(self.envelope.event.kind())),
                ("payload".to_string(), s(self.envelope.to_json())),
                ("ttl".to_string(), n(now.timestamp() + Self::TTL_SECS)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
    }
}
