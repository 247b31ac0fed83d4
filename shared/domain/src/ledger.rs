//! The points ledger: append-only entries, and balances derived from them.
//!
//! Every change to a participant's points is an [`Entry`]. An entry's kind alone decides how
//! it moves points between the buckets of a [`Balance`] ([`EntryKind::effect`]), so no
//! caller can combine a kind with an inconsistent movement. The stored balance is a
//! projection that the adapter updates by the entry's [`Delta`] in the same transaction that
//! appends the entry; [`Balance::replay`] recomputes it from the entries, and the tests check
//! that the two agree.
//!
//! Kinds that later features will use (cashback, till holds, expiry) are defined here now so
//! that the stored format does not change when they arrive.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EntryId, OutletId, ParticipantId};
use crate::Points;

/// Where points sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Spendable.
    Available,
    /// Earned but not yet spendable: claims under review, cashback awaiting delivery.
    Pending,
    /// Reserved by a till hold until it is captured, voided or expires.
    Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A pack code claimed and accepted.
    CodeClaim,
    /// A pack code claimed but flagged by a fraud rule: pending until reviewed.
    CodeClaimUnderReview,
    /// A reviewer approved a flagged claim.
    ReviewApproved,
    /// A reviewer rejected a flagged claim.
    ReviewRejected,
    /// Cashback for a partner order, pending until the order is delivered and settled.
    CashbackPending,
    /// Settlement released delivered cashback.
    CashbackReleased,
    /// The order was cancelled or returned before release.
    CashbackReversed,
    /// An order was returned after its cashback was released.
    Clawback,
    /// A till reserved points.
    HoldPlaced,
    /// The till completed the purchase.
    HoldCaptured,
    /// The till cancelled, or the hold expired.
    HoldVoided,
    /// Points spent in the catalogue or paid out.
    Redemption,
    /// Credits past their expiry date, oldest first.
    Expiry,
    /// An action or a sell-in purchase earned points.
    Accrual,
    /// An action whose rule's budget could not cover it, held for review (the rule says
    /// `over_budget: hold`): pending until a reviewer approves it within the budget.
    AccrualUnderReview,
}

/// How an entry moves points between buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Credit(Bucket),
    Debit(Bucket),
    Transfer { from: Bucket, to: Bucket },
}

/// What an entry kind does: its movement, and which lifetime counters it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    pub movement: Movement,
    /// Points become earned when they first become available (a release, not a pending credit).
    pub earned: Sign,
    pub spent: Sign,
    pub expired: Sign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Zero,
    Plus,
    Minus,
}

impl Sign {
    fn apply(self, amount: i64) -> i64 {
        match self {
            Sign::Zero => 0,
            Sign::Plus => amount,
            Sign::Minus => -amount,
        }
    }
}

impl EntryKind {
    pub fn effect(self) -> Effect {
        use Bucket::*;
        use Sign::*;
        let (movement, earned, spent, expired) = match self {
            EntryKind::CodeClaim | EntryKind::Accrual => {
                (Movement::Credit(Available), Plus, Zero, Zero)
            }
            EntryKind::CodeClaimUnderReview
            | EntryKind::CashbackPending
            | EntryKind::AccrualUnderReview => (Movement::Credit(Pending), Zero, Zero, Zero),
            EntryKind::ReviewApproved | EntryKind::CashbackReleased => (
                Movement::Transfer {
                    from: Pending,
                    to: Available,
                },
                Plus,
                Zero,
                Zero,
            ),
            EntryKind::ReviewRejected | EntryKind::CashbackReversed => {
                (Movement::Debit(Pending), Zero, Zero, Zero)
            }
            EntryKind::Clawback => (Movement::Debit(Available), Minus, Zero, Zero),
            EntryKind::HoldPlaced => (
                Movement::Transfer {
                    from: Available,
                    to: Held,
                },
                Zero,
                Zero,
                Zero,
            ),
            EntryKind::HoldCaptured => (Movement::Debit(Held), Zero, Plus, Zero),
            EntryKind::HoldVoided => (
                Movement::Transfer {
                    from: Held,
                    to: Available,
                },
                Zero,
                Zero,
                Zero,
            ),
            EntryKind::Redemption => (Movement::Debit(Available), Zero, Plus, Zero),
            EntryKind::Expiry => (Movement::Debit(Available), Zero, Zero, Plus),
        };
        Effect {
            movement,
            earned,
            spent,
            expired,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::CodeClaim => "code_claim",
            EntryKind::CodeClaimUnderReview => "code_claim_under_review",
            EntryKind::ReviewApproved => "review_approved",
            EntryKind::ReviewRejected => "review_rejected",
            EntryKind::CashbackPending => "cashback_pending",
            EntryKind::CashbackReleased => "cashback_released",
            EntryKind::CashbackReversed => "cashback_reversed",
            EntryKind::Clawback => "clawback",
            EntryKind::HoldPlaced => "hold_placed",
            EntryKind::HoldCaptured => "hold_captured",
            EntryKind::HoldVoided => "hold_voided",
            EntryKind::Redemption => "redemption",
            EntryKind::Expiry => "expiry",
            EntryKind::Accrual => "accrual",
            EntryKind::AccrualUnderReview => "accrual_under_review",
        }
    }

    /// The kinds a reviewer decides: credits held for review.
    pub fn is_under_review(self) -> bool {
        matches!(
            self,
            EntryKind::CodeClaimUnderReview | EntryKind::AccrualUnderReview
        )
    }

    pub const ALL: [EntryKind; 15] = [
        EntryKind::CodeClaim,
        EntryKind::CodeClaimUnderReview,
        EntryKind::ReviewApproved,
        EntryKind::ReviewRejected,
        EntryKind::CashbackPending,
        EntryKind::CashbackReleased,
        EntryKind::CashbackReversed,
        EntryKind::Clawback,
        EntryKind::HoldPlaced,
        EntryKind::HoldCaptured,
        EntryKind::HoldVoided,
        EntryKind::Redemption,
        EntryKind::Expiry,
        EntryKind::Accrual,
        EntryKind::AccrualUnderReview,
    ];

    pub fn parse(raw: &str) -> Option<EntryKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Which bucket must hold at least the entry's amount before it may be appended.
    pub fn debits(self) -> Option<Bucket> {
        match self.effect().movement {
            Movement::Debit(b) | Movement::Transfer { from: b, .. } => Some(b),
            Movement::Credit(_) => None,
        }
    }
}

/// One immutable ledger line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Derived from the source (e.g. `claim-<code>`), so a retried operation appends nothing new.
    pub id: EntryId,
    pub participant: ParticipantId,
    pub outlet: Option<OutletId>,
    pub kind: EntryKind,
    pub amount: Points,
    /// What caused it, for people: a batch and SKU, an order id, a review id.
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// For credits that can expire.
    pub expires_on: Option<NaiveDate>,
}

impl Entry {
    pub fn delta(&self) -> Delta {
        Delta::of(self.kind, self.amount)
    }

    /// The other side of this entry: the programme account it moves points to or from, and
    /// by how much (signed, as the programme account sees it). `None` for moves inside the
    /// member's account (pending to available, available to held and back).
    ///
    /// The programme account is derived from the entry itself ([`ProgrammeAccount::of`]), so
    /// no feature can append an entry and forget its counter side.
    pub fn transfer(&self) -> Option<Transfer> {
        let change = -self.delta().total();
        (change != 0).then(|| Transfer {
            account: ProgrammeAccount::of(self),
            change,
        })
    }

    /// Every programme account this entry moves: its [`Entry::transfer`], and for the
    /// approval of a held accrual (a `review_approved` entry whose source names the rule,
    /// see [`entry_ids::review_decision`]) the settlement the approval makes: the rule's
    /// account pays the points (within its budget) and the `reviews` account, which fronted
    /// them while they were held, is repaid. The settlement's two sides sum to zero, so the
    /// members' and programme accounts still do.
    pub fn transfers(&self) -> Vec<Transfer> {
        let mut all: Vec<Transfer> = self.transfer().into_iter().collect();
        if self.kind == EntryKind::ReviewApproved {
            if let Some(rule) = rule_of_source(&self.source) {
                let points = self.amount.get() as i64;
                all.push(Transfer {
                    account: ProgrammeAccount::Rule(rule),
                    change: -points,
                });
                all.push(Transfer {
                    account: ProgrammeAccount::Reviews,
                    change: points,
                });
            }
        }
        all
    }
}

/// The id after `prefix` in a source such as `rule <id>` or `rule <id>: <reference>`.
fn id_of_source(source: &str, prefix: &str) -> Option<crate::earning::Slug> {
    source
        .strip_prefix(prefix)
        .map(|rest| rest.split(':').next().unwrap_or(rest).trim())
        .and_then(|id| crate::earning::Slug::parse(id).ok())
}

/// The rule an action's entry source (`rule <id>[: <reference>]`) names.
pub fn rule_of_source(source: &str) -> Option<crate::earning::RuleId> {
    id_of_source(source, "rule ")
}

/// The programme side of an entry: `account` changes by `change`, and the member's account
/// by `-change`, so the two always sum to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub account: ProgrammeAccount,
    pub change: i64,
}

/// An account of the programme, the counterparty of every movement of a member's points.
///
/// Credits to a member debit one of these; debits from a member (a rejected review, a
/// reversal, a clawback, a redemption, an expiry) credit one. The sum of all member accounts
/// and all programme accounts is zero after every append. An account without a budget may go
/// negative (it issues points); an account with a budget is funded from [`ProgrammeAccount::Issuer`]
/// and may not go below zero.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProgrammeAccount {
    /// Pack codes (claims, including those flagged for review).
    Codes,
    /// An earning rule's action accruals.
    Rule(crate::earning::RuleId),
    /// Sell-in purchases (all sell-in rules).
    SellIn,
    /// A challenge's prize fund.
    Challenge(crate::challenge::ChallengeId),
    /// A partner's cashback fund: pending cashback debits it; reversals and clawbacks refund it.
    PartnerFund(crate::cashback::PartnerId),
    /// Points a reviewer rejected.
    Reviews,
    /// Points spent: redemptions and captured till holds.
    Redemptions,
    /// Points that expired.
    Expiry,
    /// Where budgets come from: funding a budget moves points from here to the budget.
    Issuer,
    /// An entry whose origin its id and source do not name (none of today's features).
    Unattributed,
}

impl ProgrammeAccount {
    /// The programme account on the other side of `entry`, from its kind, its deterministic
    /// id and its source. The formats read here are pinned by tests next to each feature's id
    /// and source builders; an entry they do not match still balances, against
    /// [`ProgrammeAccount::Unattributed`].
    pub fn of(entry: &Entry) -> ProgrammeAccount {
        use EntryKind::*;
        match entry.kind {
            CodeClaim | CodeClaimUnderReview => ProgrammeAccount::Codes,
            // A held accrual is fronted by `reviews` until it is decided: its rule's budget
            // could not cover it, and pays only on approval (see `Entry::transfers`).
            ReviewRejected | ReviewApproved | AccrualUnderReview => ProgrammeAccount::Reviews,
            CashbackPending | CashbackReleased | CashbackReversed | Clawback => entry
                .id
                .as_str()
                .strip_prefix("cashback:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|p| crate::cashback::PartnerId::parse(p).ok())
                .map(ProgrammeAccount::PartnerFund)
                .unwrap_or(ProgrammeAccount::Unattributed),
            HoldPlaced | HoldCaptured | HoldVoided | Redemption => ProgrammeAccount::Redemptions,
            Expiry => ProgrammeAccount::Expiry,
            Accrual => {
                let word = |prefix: &str| id_of_source(&entry.source, prefix);
                if entry.id.as_str().starts_with("sellin-") {
                    ProgrammeAccount::SellIn
                } else if let Some(rule) = word("rule ") {
                    ProgrammeAccount::Rule(rule)
                } else if let Some(challenge) = word("challenge ") {
                    ProgrammeAccount::Challenge(challenge)
                } else {
                    ProgrammeAccount::Unattributed
                }
            }
        }
    }

    /// The stored name: `codes`, `rule:<id>`, `partner:<id>`, ... ; [`ProgrammeAccount::parse`]
    /// reads it back.
    pub fn key(&self) -> String {
        match self {
            ProgrammeAccount::Codes => "codes".into(),
            ProgrammeAccount::Rule(id) => format!("rule:{}", id.as_str()),
            ProgrammeAccount::SellIn => "sell_in".into(),
            ProgrammeAccount::Challenge(id) => format!("challenge:{}", id.as_str()),
            ProgrammeAccount::PartnerFund(id) => format!("partner:{id}"),
            ProgrammeAccount::Reviews => "reviews".into(),
            ProgrammeAccount::Redemptions => "redemptions".into(),
            ProgrammeAccount::Expiry => "expiry".into(),
            ProgrammeAccount::Issuer => "issuer".into(),
            ProgrammeAccount::Unattributed => "unattributed".into(),
        }
    }

    pub fn parse(raw: &str) -> Option<ProgrammeAccount> {
        use crate::earning::Slug;
        Some(match raw.split_once(':') {
            Some(("rule", id)) => ProgrammeAccount::Rule(Slug::parse(id).ok()?),
            Some(("challenge", id)) => ProgrammeAccount::Challenge(Slug::parse(id).ok()?),
            Some(("partner", id)) => {
                ProgrammeAccount::PartnerFund(crate::cashback::PartnerId::parse(id).ok()?)
            }
            Some(_) => return None,
            None => match raw {
                "codes" => ProgrammeAccount::Codes,
                "sell_in" => ProgrammeAccount::SellIn,
                "reviews" => ProgrammeAccount::Reviews,
                "redemptions" => ProgrammeAccount::Redemptions,
                "expiry" => ProgrammeAccount::Expiry,
                "issuer" => ProgrammeAccount::Issuer,
                "unattributed" => ProgrammeAccount::Unattributed,
                _ => return None,
            },
        })
    }

    /// Whether an admin may give this account a budget.
    pub fn may_have_budget(&self) -> bool {
        matches!(
            self,
            ProgrammeAccount::Rule(_)
                | ProgrammeAccount::Challenge(_)
                | ProgrammeAccount::PartnerFund(_)
        )
    }
}

impl std::fmt::Display for ProgrammeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// A programme account's balance: the sum of its shards, and its budget when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgrammeBalance {
    /// Negative for an account that issues points; what is left for an account with a budget.
    pub balance: i64,
    /// Everything ever funded, for an account with a budget.
    pub funded: Option<i64>,
    /// Each shard's balance, by shard number.
    pub shards: Vec<i64>,
}

/// A programme account as an admin reads it (`GET` and `POST` on a budget's path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetView {
    pub account: String,
    /// Everything ever funded; null for an account without a budget, which only issues.
    pub funded: Option<i64>,
    /// What is left to pay out; null without a budget.
    pub remaining: Option<i64>,
    /// Points paid out net of refunds (reversals and clawbacks pay a partner's fund back).
    pub paid_out: i64,
}

impl ProgrammeBalance {
    pub fn view(&self, account: &ProgrammeAccount) -> BudgetView {
        BudgetView {
            account: account.key(),
            funded: self.funded,
            remaining: self.funded.map(|_| self.balance),
            paid_out: self.funded.unwrap_or(0) - self.balance,
        }
    }
}

/// How a budget funding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funded {
    Funded,
    /// A funding with this id was written before; nothing moved this time.
    AlreadyFunded,
}

/// How many items a programme account is spread over. A transactional write costs 2 WCU per
/// item up to 1 KB and one partition takes about 1,000 WCU a second, so one item takes about
/// 500 transactional writes a second; 16 shards take 8,000 credits a second from one account.
/// See docs/architecture.md, "Double entry".
pub const PROGRAMME_SHARDS: u32 = 16;

/// The shard an entry's programme side lands on: a hash of the entry id, so a retry of the
/// same entry lands on the same shard.
pub fn programme_shard(entry: &EntryId) -> u32 {
    shard_of(entry.as_str())
}

/// The shard for any stable key (an entry id, a funding id).
pub fn shard_of(key: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % PROGRAMME_SHARDS
}

/// How to cover a budgeted debit of `needed` points from shard `home` when that shard alone
/// falls short: `(donor shard, points)` moves into `home`, largest donors first (ties to the
/// lower shard), so that `home` then holds at least `needed`. `None` when the account as a
/// whole cannot cover it, so the refusal stands. An empty plan means `home` covers it already.
///
/// A budget is spread over shards (so no single item takes every write of a busy
/// promotion); without gathering, a credit that the budget covers could be refused because
/// its own shard ran dry. Moves between shards of one account leave every sum unchanged.
pub fn gather_plan(shards: &[i64], home: u32, needed: i64) -> Option<Vec<(u32, i64)>> {
    let held = shards.get(home as usize).copied().unwrap_or(0);
    let mut short = needed - held;
    if short <= 0 {
        return Some(Vec::new());
    }
    let mut donors: Vec<(u32, i64)> = shards
        .iter()
        .enumerate()
        .map(|(shard, &balance)| (shard as u32, balance))
        .filter(|&(shard, balance)| shard != home && balance > 0)
        .collect();
    donors.sort_by_key(|&(shard, balance)| (std::cmp::Reverse(balance), shard));
    let mut plan = Vec::new();
    for (shard, balance) in donors {
        if short == 0 {
            break;
        }
        let take = balance.min(short);
        plan.push((shard, take));
        short -= take;
    }
    (short == 0).then_some(plan)
}

/// The signed change an entry makes to a balance. The adapter applies exactly this with
/// DynamoDB `ADD`, in the same transaction as the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    pub available: i64,
    pub pending: i64,
    pub held: i64,
    pub lifetime_earned: i64,
    pub spent: i64,
    pub expired: i64,
}

impl Delta {
    pub fn of(kind: EntryKind, amount: Points) -> Delta {
        let a = amount.get() as i64;
        let effect = kind.effect();
        let mut d = Delta {
            lifetime_earned: effect.earned.apply(a),
            spent: effect.spent.apply(a),
            expired: effect.expired.apply(a),
            ..Delta::default()
        };
        match effect.movement {
            Movement::Credit(to) => *d.bucket_mut(to) += a,
            Movement::Debit(from) => *d.bucket_mut(from) -= a,
            Movement::Transfer { from, to } => {
                *d.bucket_mut(from) -= a;
                *d.bucket_mut(to) += a;
            }
        }
        d
    }

    fn bucket_mut(&mut self, bucket: Bucket) -> &mut i64 {
        match bucket {
            Bucket::Available => &mut self.available,
            Bucket::Pending => &mut self.pending,
            Bucket::Held => &mut self.held,
        }
    }

    /// The change to the member's points across all buckets; what a programme account mirrors.
    pub fn total(&self) -> i64 {
        self.available + self.pending + self.held
    }

    /// The non-zero fields by their stored attribute names.
    pub fn fields(&self) -> Vec<(&'static str, i64)> {
        [
            ("available", self.available),
            ("pending", self.pending),
            ("held", self.held),
            ("lifetime_earned", self.lifetime_earned),
            ("spent", self.spent),
            ("expired", self.expired),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .collect()
    }
}

/// A participant's (or an outlet's) balance, as stored and as derived from entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    pub available: u64,
    pub pending: u64,
    pub held: u64,
    pub lifetime_earned: u64,
    pub spent: u64,
    pub expired: u64,
    /// How many entries have been applied. Conditional writes use it for optimistic
    /// concurrency, and it makes a missing entry visible.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("the {bucket:?} bucket holds {has} points, {needed} are needed")]
    Insufficient {
        bucket: Bucket,
        has: u64,
        needed: u64,
    },
}

impl crate::Classified for LedgerError {
    fn kind(&self) -> crate::Kind {
        crate::Kind::Unprocessable
    }
    fn code(&self) -> &'static str {
        "insufficient_points"
    }
}

impl Balance {
    fn bucket(&self, bucket: Bucket) -> u64 {
        match bucket {
            Bucket::Available => self.available,
            Bucket::Pending => self.pending,
            Bucket::Held => self.held,
        }
    }

    /// The balance after `entry`, or why the entry may not be appended. A bucket never
    /// goes negative; lifetime counters never go negative either.
    pub fn apply(&self, kind: EntryKind, amount: Points) -> Result<Balance, LedgerError> {
        if let Some(bucket) = kind.debits() {
            let has = self.bucket(bucket);
            if has < amount.get() {
                return Err(LedgerError::Insufficient {
                    bucket,
                    has,
                    needed: amount.get(),
                });
            }
        }
        let d = Delta::of(kind, amount);
        // Debits were checked above and a clawback never exceeds what was earned (it is a
        // debit of available points, which were all earned), so no counter can go negative.
        let add = |v: u64, by: i64| -> u64 {
            u64::try_from(v as i64 + by).expect("ledger counters never go negative")
        };
        Ok(Balance {
            available: add(self.available, d.available),
            pending: add(self.pending, d.pending),
            held: add(self.held, d.held),
            lifetime_earned: add(self.lifetime_earned, d.lifetime_earned),
            spent: add(self.spent, d.spent),
            expired: add(self.expired, d.expired),
            version: self.version + 1,
        })
    }

    /// Recomputes a balance from entries in the order they were appended.
    pub fn replay<'a>(
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<Balance, LedgerError> {
        entries
            .into_iter()
            .try_fold(Balance::default(), |b, e| b.apply(e.kind, e.amount))
    }
}

/// Deterministic ids, so that a retried operation maps onto the entry it already wrote.
pub mod entry_ids {
    use crate::ids::EntryId;

    /// A hash of the code rather than the code: entry ids travel into histories, outbox
    /// events and logs, where a whole code must never appear.
    pub fn code_claim(canonical_code: &str) -> EntryId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(canonical_code.as_bytes());
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        EntryId::parse(&format!("claim-{hex}")).expect("hex is id-safe")
    }

    /// The decision on a held entry. The decision's source is `review of <held id>`; an
    /// approval of a held accrual's is `rule <rule id>: review of <held id>`, which names the
    /// account that pays on approval ([`super::Entry::transfers`]).
    pub fn review_decision(reviewed: &EntryId) -> EntryId {
        EntryId::parse(&format!("review-{}", reviewed.as_str())).expect("entry ids are id-safe")
    }
}

// ---------------------------------------------------------------- the wallet's read port

/// A participant's account as the wallet shows it: the balance, and the points earned in
/// each calendar month (for the tier over the trailing 12 months).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub balance: Balance,
    pub earned_by_month: crate::earning::MonthlyEarned,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the cursor is not valid for this listing")]
    InvalidCursor,
    #[error(transparent)]
    Infra(#[from] crate::InfraError),
}

impl crate::Classified for HistoryError {
    fn kind(&self) -> crate::Kind {
        match self {
            HistoryError::InvalidCursor => crate::Kind::BadInput,
            HistoryError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            HistoryError::InvalidCursor => "invalid_cursor",
            HistoryError::Infra(e) => e.code(),
        }
    }
}

/// Funding and reading programme accounts' budgets: what an admin top-up needs (a partner's
/// cashback fund). Funding moves points from [`ProgrammeAccount::Issuer`] to the account,
/// spread over its shards, once per `funding_id` (a retry funds nothing twice).
pub trait Budgets: Send + Sync {
    fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Funded, crate::InfraError>> + Send;

    /// The account's balance (the sum of its shards) and what was ever funded.
    fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> impl std::future::Future<Output = Result<ProgrammeBalance, crate::InfraError>> + Send;
}

/// A shared store is a store: one memory ledger behind several ports of a function.
impl<T: Budgets + ?Sized> Budgets for std::sync::Arc<T> {
    fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Funded, crate::InfraError>> + Send {
        (**self).fund_budget(account, amount, funding_id, now)
    }

    fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> impl std::future::Future<Output = Result<ProgrammeBalance, crate::InfraError>> + Send {
        (**self).programme_balance(account)
    }
}

/// What the wallet reads, and nothing it writes: balances, history and outlet totals from
/// the ledger, and the programme's tiers. Reads only, so an adapter is a translator.
pub trait LedgerReader: Send + Sync {
    /// A participant's account; an account without entries is all zeros.
    fn account(
        &self,
        participant: &ParticipantId,
    ) -> impl std::future::Future<Output = Result<Account, crate::InfraError>> + Send;

    /// Entries newest first (by `created_at`, then entry id), at most `limit` of them; a
    /// `next_cursor` resumes after the last one, for this participant only.
    fn history(
        &self,
        participant: &ParticipantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<crate::participant::Page<Entry>, HistoryError>> + Send;

    /// An outlet's totals over its members' entries; all zeros without any.
    fn outlet_totals(
        &self,
        outlet: &OutletId,
    ) -> impl std::future::Future<Output = Result<Balance, crate::InfraError>> + Send;

    /// The programme's tiers, or `None` where this deployment has none configured (the
    /// balance then shows no tier).
    fn tiers(
        &self,
    ) -> impl std::future::Future<Output = Result<Option<crate::earning::Tiers>, crate::InfraError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_claim_makes_points_available_and_earned() {
        let b = Balance::default()
            .apply(EntryKind::CodeClaim, Points(50))
            .unwrap();
        assert_eq!((b.available, b.lifetime_earned, b.version), (50, 50, 1));
    }

    #[test]
    fn a_flagged_claim_is_pending_and_not_yet_earned_until_approved() {
        let b = Balance::default()
            .apply(EntryKind::CodeClaimUnderReview, Points(50))
            .unwrap();
        assert_eq!((b.available, b.pending, b.lifetime_earned), (0, 50, 0));
        let approved = b.apply(EntryKind::ReviewApproved, Points(50)).unwrap();
        assert_eq!(
            (
                approved.available,
                approved.pending,
                approved.lifetime_earned
            ),
            (50, 0, 50)
        );
        let rejected = b.apply(EntryKind::ReviewRejected, Points(50)).unwrap();
        assert_eq!(
            (
                rejected.available,
                rejected.pending,
                rejected.lifetime_earned
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_debit_larger_than_its_bucket_is_refused() {
        let b = Balance::default()
            .apply(EntryKind::CodeClaim, Points(10))
            .unwrap();
        assert_eq!(
            b.apply(EntryKind::Redemption, Points(11)),
            Err(LedgerError::Insufficient {
                bucket: Bucket::Available,
                has: 10,
                needed: 11
            })
        );
    }

    #[test]
    fn a_hold_moves_points_to_held_and_a_capture_spends_them() {
        let b = Balance::default()
            .apply(EntryKind::CodeClaim, Points(100))
            .unwrap();
        let held = b.apply(EntryKind::HoldPlaced, Points(70)).unwrap();
        assert_eq!((held.available, held.held), (30, 70));
        let captured = held.apply(EntryKind::HoldCaptured, Points(70)).unwrap();
        assert_eq!(
            (captured.available, captured.held, captured.spent),
            (30, 0, 70)
        );
        let voided = held.apply(EntryKind::HoldVoided, Points(70)).unwrap();
        assert_eq!((voided.available, voided.held, voided.spent), (100, 0, 0));
    }

    #[test]
    fn every_kind_round_trips_through_its_stored_name() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
    }

    fn entry(id: &str, kind: EntryKind, amount: u64, source: &str) -> Entry {
        Entry {
            id: EntryId::parse(id).unwrap(),
            participant: ParticipantId::parse("p-1").unwrap(),
            outlet: None,
            kind,
            amount: Points(amount),
            source: source.into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_on: None,
        }
    }

    /// Pins the id and source formats [`ProgrammeAccount::of`] reads, built by each feature's
    /// own builders where it has them.
    #[test]
    fn every_feature_entry_names_its_programme_account() {
        use crate::cashback::{entry_ids as cb, OrderId, PartnerId};
        use crate::earning::Slug;
        let partner = PartnerId::parse("shopco").unwrap();
        let order = OrderId::parse("o-1").unwrap();
        for (id, kind) in [
            (cb::pending(&partner, &order), EntryKind::CashbackPending),
            (cb::reversed(&partner, &order), EntryKind::CashbackReversed),
            (cb::clawback(&partner, &order), EntryKind::Clawback),
        ] {
            let e = entry(id.as_str(), kind, 5, "shopco order o-1");
            assert_eq!(
                ProgrammeAccount::of(&e),
                ProgrammeAccount::PartnerFund(partner.clone())
            );
        }
        let rule = entry(
            "action-ab",
            EntryKind::Accrual,
            5,
            "rule refer-a-friend: inv 7",
        );
        assert_eq!(
            ProgrammeAccount::of(&rule),
            ProgrammeAccount::Rule(Slug::parse("refer-a-friend").unwrap())
        );
        let bare = entry("action-ab", EntryKind::Accrual, 5, "rule refer-a-friend");
        assert_eq!(ProgrammeAccount::of(&bare), ProgrammeAccount::of(&rule));
        let challenge = entry(
            "challenge-x-p-1",
            EntryKind::Accrual,
            5,
            "challenge summer-10",
        );
        assert_eq!(
            ProgrammeAccount::of(&challenge),
            ProgrammeAccount::Challenge(Slug::parse("summer-10").unwrap())
        );
        let sell_in = entry("sellin-ab", EntryKind::Accrual, 5, "sell-in INV-1 COLA x2");
        assert_eq!(ProgrammeAccount::of(&sell_in), ProgrammeAccount::SellIn);
        let claim = entry_ids::code_claim("ABCD-EFGH");
        let claim = entry(
            claim.as_str(),
            EntryKind::CodeClaim,
            5,
            "batch 1 · COLA can",
        );
        assert_eq!(ProgrammeAccount::of(&claim), ProgrammeAccount::Codes);
        // A credit held over budget is fronted by `reviews`; its approval pays the rule.
        let held = entry(
            "action-cd",
            EntryKind::AccrualUnderReview,
            5,
            "rule refer-a-friend",
        );
        assert_eq!(ProgrammeAccount::of(&held), ProgrammeAccount::Reviews);
        let approval = entry(
            entry_ids::review_decision(&held.id).as_str(),
            EntryKind::ReviewApproved,
            5,
            "rule refer-a-friend: review of action-cd",
        );
        assert_eq!(
            approval.transfers(),
            vec![
                Transfer {
                    account: ProgrammeAccount::Rule(Slug::parse("refer-a-friend").unwrap()),
                    change: -5
                },
                Transfer {
                    account: ProgrammeAccount::Reviews,
                    change: 5
                }
            ]
        );
        let claim_approval = entry(
            "review-claim-x",
            EntryKind::ReviewApproved,
            5,
            "review of claim-x",
        );
        assert!(claim_approval.transfers().is_empty());
    }

    #[test]
    fn every_account_round_trips_through_its_stored_name() {
        use crate::earning::Slug;
        for a in [
            ProgrammeAccount::Codes,
            ProgrammeAccount::Rule(Slug::parse("r-1").unwrap()),
            ProgrammeAccount::SellIn,
            ProgrammeAccount::Challenge(Slug::parse("c-1").unwrap()),
            ProgrammeAccount::PartnerFund(crate::cashback::PartnerId::parse("shopco").unwrap()),
            ProgrammeAccount::Reviews,
            ProgrammeAccount::Redemptions,
            ProgrammeAccount::Expiry,
            ProgrammeAccount::Issuer,
            ProgrammeAccount::Unattributed,
        ] {
            assert_eq!(ProgrammeAccount::parse(&a.key()), Some(a));
        }
    }

    #[test]
    fn moves_inside_a_members_account_have_no_programme_side() {
        for kind in [
            EntryKind::ReviewApproved,
            EntryKind::CashbackReleased,
            EntryKind::HoldPlaced,
            EntryKind::HoldVoided,
        ] {
            assert_eq!(entry("x", kind, 5, "").transfer(), None, "{kind:?}");
        }
        let t = entry("x", EntryKind::Redemption, 5, "catalogue").transfer();
        assert_eq!(
            t,
            Some(Transfer {
                account: ProgrammeAccount::Redemptions,
                change: 5
            })
        );
    }

    #[test]
    fn a_shard_is_stable_and_in_range() {
        let id = EntryId::parse("claim-0123").unwrap();
        assert_eq!(programme_shard(&id), programme_shard(&id));
        assert!(programme_shard(&id) < PROGRAMME_SHARDS);
    }

    #[test]
    fn a_short_shard_draws_from_the_largest_other_shards_first() {
        let mut shards = vec![0i64; PROGRAMME_SHARDS as usize];
        shards[0] = 3;
        shards[1] = 5;
        shards[2] = 9;
        shards[3] = 9;
        assert_eq!(gather_plan(&shards, 0, 2), Some(vec![]));
        assert_eq!(gather_plan(&shards, 0, 15), Some(vec![(2, 9), (3, 3)]));
        assert_eq!(gather_plan(&shards, 0, 27), None);
        assert_eq!(
            gather_plan(&shards, 0, 26),
            Some(vec![(2, 9), (3, 9), (1, 5)])
        );
    }

    fn any_kind() -> impl Strategy<Value = EntryKind> {
        proptest::sample::select(EntryKind::ALL.to_vec())
    }

    proptest! {
        /// Whatever the shards hold, gathering covers a debit exactly when the account does,
        /// moves only what donors hold, and leaves the account's total unchanged.
        #[test]
        fn gathering_covers_a_debit_exactly_when_the_whole_account_does(
            shards in proptest::collection::vec(-50i64..200, PROGRAMME_SHARDS as usize),
            home in 0..PROGRAMME_SHARDS,
            needed in 1i64..800,
        ) {
            let positive: i64 = shards.iter()
                .enumerate()
                .filter(|&(s, &b)| s as u32 != home && b > 0)
                .map(|(_, &b)| b)
                .sum();
            let covered = shards[home as usize] + positive >= needed;
            match gather_plan(&shards, home, needed) {
                None => prop_assert!(!covered),
                Some(plan) => {
                    prop_assert!(covered);
                    let mut after = shards.clone();
                    for (donor, take) in &plan {
                        prop_assert!(*donor != home && *take > 0 && *take <= shards[*donor as usize]);
                        after[*donor as usize] -= take;
                        after[home as usize] += take;
                    }
                    prop_assert!(after[home as usize] >= needed);
                    prop_assert_eq!(after.iter().sum::<i64>(), shards.iter().sum::<i64>());
                }
            }
        }

        /// A seeded simulation of random operations: after every step the balance equals
        /// the sum of the deltas of the entries accepted so far, no bucket is negative,
        /// and refused operations change nothing.
        #[test]
        fn the_balance_always_equals_the_sum_of_accepted_entries(
            ops in proptest::collection::vec((any_kind(), 1u64..500), 1..200)
        ) {
            let mut balance = Balance::default();
            let mut sums = Delta::default();
            for (kind, amount) in ops {
                match balance.apply(kind, Points(amount)) {
                    Ok(next) => {
                        let d = Delta::of(kind, Points(amount));
                        sums.available += d.available;
                        sums.pending += d.pending;
                        sums.held += d.held;
                        sums.lifetime_earned += d.lifetime_earned;
                        sums.spent += d.spent;
                        sums.expired += d.expired;
                        balance = next;
                    }
                    Err(LedgerError::Insufficient { has, needed, .. }) => prop_assert!(has < needed),
                }
                prop_assert_eq!(balance.available as i64, sums.available);
                prop_assert_eq!(balance.pending as i64, sums.pending);
                prop_assert_eq!(balance.held as i64, sums.held);
                prop_assert_eq!(balance.lifetime_earned as i64, sums.lifetime_earned);
                prop_assert_eq!(balance.spent as i64, sums.spent);
                prop_assert_eq!(balance.expired as i64, sums.expired);
            }
        }

        /// Double entry: for any sequence of entries from any sources, after every accepted
        /// entry the member accounts plus the programme accounts sum to zero.
        #[test]
        fn member_and_programme_accounts_always_sum_to_zero(
            ops in proptest::collection::vec(
                (any_kind(), 1u64..500, 0usize..3, proptest::sample::select(vec![
                    ("cashback:shopco:o-1:pending", ""),
                    ("action-1", "rule r-1: ref"),
                    ("challenge-c-p", "challenge c-1"),
                    ("sellin-1", "sell-in"),
                    ("claim-1", "batch 1"),
                    ("odd", "anything"),
                ])),
                1..200,
            )
        ) {
            let mut members = [Balance::default(); 3];
            let mut programme: std::collections::HashMap<ProgrammeAccount, i64> =
                Default::default();
            for (kind, amount, who, (id, source)) in ops {
                let e = entry(id, kind, amount, source);
                if let Ok(next) = members[who].apply(kind, Points(amount)) {
                    members[who] = next;
                    if let Some(t) = e.transfer() {
                        *programme.entry(t.account).or_default() += t.change;
                    }
                }
                let member_sum: i64 = members
                    .iter()
                    .map(|b| (b.available + b.pending + b.held) as i64)
                    .sum();
                prop_assert_eq!(member_sum + programme.values().sum::<i64>(), 0);
            }
        }
    }
}
