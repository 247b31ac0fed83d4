//! The ledger in memory: [`MemoryLedger`], the wallet's [`LedgerReader`] over entries
//! appended as [`crate::stores::ledger::append_items`] appends them; and the programme side
//! of the ledger, shared by [`super::MemoryActions`] and
//! [`super::MemoryCashback`]: what [`crate::stores::ledger::programme_items`] and
//! [`crate::stores::ledger::DynamoLedger::fund_budget`] write on the
//! `PROGRAMME#<account>#<shard>` items.
//!
//! Each entry's [`Entry::transfer`] lands on the shard [`programme_shard`] of its account. A
//! shard that was funded carries a budget and may not go below zero: a credit to a member it
//! cannot cover is refused ([`ProgrammeShards::covers`]), exactly as the DynamoDB condition
//! `attribute_not_exists(budget) OR programme_balance >= :needed_budget` refuses it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use loyalty_domain::earning::{month_key, Tiers};
use loyalty_domain::ids::{OutletId, ParticipantId};
use loyalty_domain::ledger::{
    gather_plan, programme_shard, shard_of, Account, Balance, Entry, HistoryError, LedgerError,
    LedgerReader, ProgrammeAccount, Transfer, PROGRAMME_SHARDS,
};
use loyalty_domain::participant::Page;
use loyalty_domain::{InfraError, Points};

use crate::dynamo::{decode_cursor, encode_cursor, s};
use crate::stores::ledger::{account_pk, Funded, Gathered, ProgrammeBalance};

/// The wallet's reads in memory. Entries are kept per account by the key of the DynamoDB
/// `by_time` index (`<created_at>#<entry id>`), and cursors are that index's cursors
/// ([`encode_cursor`] of `pk`, `sk`, `lsi1sk`), so a cursor of another account or a tampered
/// one is refused here exactly as there. A page cut by the limit carries a cursor only if
/// more entries follow, as the emulator does.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    world: Mutex<LedgerWorld>,
}

#[derive(Debug, Default)]
pub struct LedgerWorld {
    pub entries: BTreeMap<ParticipantId, BTreeMap<String, Entry>>,
    pub accounts: BTreeMap<ParticipantId, Account>,
    pub outlets: BTreeMap<OutletId, Balance>,
    pub tiers: Option<Tiers>,
}

fn time_key(entry: &Entry) -> String {
    format!("{}#{}", entry.created_at.to_rfc3339(), entry.id)
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `entry` as `append_items` does: the entry, the balance (a debit must be
    /// covered), the month it was earned in, the outlet's totals. An outlet total that would
    /// go below zero is refused too: DynamoDB would write it, but no reader could decode it,
    /// so a test that seeds one is wrong. Nothing is written when it is refused.
    pub fn append(&self, entry: Entry) -> Result<(), LedgerError> {
        let mut w = self.world.lock().unwrap();
        let account = w
            .accounts
            .get(&entry.participant)
            .cloned()
            .unwrap_or_default();
        let balance = account.balance.apply(entry.kind, entry.amount)?;
        let outlet = match &entry.outlet {
            None => None,
            Some(o) => Some((
                o.clone(),
                w.outlets
                    .get(o)
                    .copied()
                    .unwrap_or_default()
                    .apply(entry.kind, entry.amount)?,
            )),
        };
        let mut earned_by_month = account.earned_by_month;
        let earned = entry.delta().lifetime_earned;
        if earned != 0 {
            *earned_by_month
                .entry(month_key(entry.created_at))
                .or_default() += earned;
        }
        w.accounts.insert(
            entry.participant.clone(),
            Account {
                balance,
                earned_by_month,
            },
        );
        if let Some((o, totals)) = outlet {
            w.outlets.insert(o, totals);
        }
        w.entries
            .entry(entry.participant.clone())
            .or_default()
            .insert(time_key(&entry), entry);
        Ok(())
    }

    /// The programme's tiers, as `PUT /admin/tiers` stores them.
    pub fn set_tiers(&self, tiers: Tiers) {
        self.world.lock().unwrap().tiers = Some(tiers);
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&LedgerWorld) -> R) -> R {
        f(&self.world.lock().unwrap())
    }
}

impl LedgerReader for MemoryLedger {
    async fn account(&self, participant: &ParticipantId) -> Result<Account, InfraError> {
        Ok(self.inspect(|w| w.accounts.get(participant).cloned().unwrap_or_default()))
    }

    async fn history(
        &self,
        participant: &ParticipantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>, HistoryError> {
        let pk = account_pk(participant);
        let before = match cursor {
            None => None,
            Some(c) => {
                let key = decode_cursor(c, &pk, &["pk", "sk", "lsi1sk"])
                    .ok_or(HistoryError::InvalidCursor)?;
                let at = key["lsi1sk"]
                    .as_s()
                    .map_err(|_| HistoryError::InvalidCursor)?;
                Some(at.clone())
            }
        };
        Ok(self.inspect(|w| {
            let mut newest_first = w
                .entries
                .get(participant)
                .into_iter()
                .flat_map(|entries| entries.iter().rev())
                .filter(|(at, _)| before.as_ref().is_none_or(|b| *at < b));
            let items: Vec<Entry> = newest_first
                .by_ref()
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect();
            let next_cursor = match (items.last(), newest_first.next()) {
                (Some(last), Some(_)) => Some(encode_cursor(
                    &[
                        ("pk".to_string(), s(&pk)),
                        ("sk".to_string(), s(format!("ENTRY#{}", last.id))),
                        ("lsi1sk".to_string(), s(time_key(last))),
                    ]
                    .into_iter()
                    .collect(),
                )),
                _ => None,
            };
            Page { items, next_cursor }
        }))
    }

    async fn outlet_totals(&self, outlet: &OutletId) -> Result<Balance, InfraError> {
        Ok(self.inspect(|w| w.outlets.get(outlet).copied().unwrap_or_default()))
    }

    async fn tiers(&self) -> Result<Option<Tiers>, InfraError> {
        Ok(self.inspect(|w| w.tiers.clone()))
    }
}

/// Programme account shards, as the ledger table's `PROGRAMME#` items hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammeShards {
    /// `programme_balance` per (account, shard).
    pub balances: BTreeMap<(ProgrammeAccount, u32), i64>,
    /// `budget` per (account, shard): present once the account was funded.
    pub budgets: BTreeMap<(ProgrammeAccount, u32), i64>,
    /// Funding records (account, funding id): a retried funding moves nothing.
    pub fundings: BTreeSet<(ProgrammeAccount, String)>,
}

impl ProgrammeShards {
    /// Whether the programme side of `entry` may be written: a debit of a budgeted shard
    /// must be covered by it; anything else always may.
    pub fn covers(&self, entry: &Entry) -> bool {
        entry
            .transfers()
            .into_iter()
            .all(|Transfer { account, change }| {
                let shard = (account, programme_shard(&entry.id));
                change >= 0
                    || !self.budgets.contains_key(&shard)
                    || self.balances.get(&shard).copied().unwrap_or(0) >= -change
            })
    }

    /// Whether the programme side of `entry` may be written, after gathering what its dry
    /// shard lacks from the account's others, as the DynamoDB adapters do on a refusal.
    pub fn cover(&mut self, entry: &Entry) -> bool {
        self.covers(entry) || self.gather(entry) == Gathered::Ready
    }

    /// What [`crate::stores::ledger::gather_budget`] does after a refusal: moves what
    /// `entry`'s shard lacks from the account's other shards, by the same plan.
    pub fn gather(&mut self, entry: &Entry) -> Gathered {
        let Some(Transfer { account, change }) =
            entry.transfers().into_iter().find(|t| t.change < 0)
        else {
            return Gathered::Ready;
        };
        let home = programme_shard(&entry.id);
        let shards = self.balance(&account).shards;
        let Some(plan) = gather_plan(&shards, home, -change) else {
            return Gathered::Exhausted;
        };
        for (donor, take) in plan {
            *self.balances.entry((account.clone(), donor)).or_default() -= take;
            *self.balances.entry((account.clone(), home)).or_default() += take;
        }
        Gathered::Ready
    }

    /// Writes the programme side of `entry` (checked with [`Self::covers`] first): its
    /// transfer, and the settlement an approved held accrual makes.
    pub fn apply(&mut self, entry: &Entry) {
        for Transfer { account, change } in entry.transfers() {
            *self
                .balances
                .entry((account, programme_shard(&entry.id)))
                .or_default() += change;
        }
    }

    /// Gives `account` a budget or tops it up, from [`ProgrammeAccount::Issuer`], spread over
    /// its shards as `DynamoLedger::fund_budget` spreads it.
    pub fn fund(&mut self, account: &ProgrammeAccount, amount: Points, funding_id: &str) -> Funded {
        if !self
            .fundings
            .insert((account.clone(), funding_id.to_string()))
        {
            return Funded::AlreadyFunded;
        }
        let total = amount.get() as i64;
        let shards = PROGRAMME_SHARDS as i64;
        for shard in 0..PROGRAMME_SHARDS {
            let share = total / shards + i64::from((shard as i64) < total % shards);
            let key = (account.clone(), shard);
            *self.balances.entry(key.clone()).or_default() += share;
            *self.budgets.entry(key).or_default() += share;
        }
        *self
            .balances
            .entry((ProgrammeAccount::Issuer, shard_of(funding_id)))
            .or_default() -= total;
        Funded::Funded
    }

    /// One account's balance, as `DynamoLedger::programme_balance` reads it.
    pub fn balance(&self, account: &ProgrammeAccount) -> ProgrammeBalance {
        let mut b = ProgrammeBalance {
            shards: vec![0; PROGRAMME_SHARDS as usize],
            ..Default::default()
        };
        for shard in 0..PROGRAMME_SHARDS {
            let key = (account.clone(), shard);
            let v = self.balances.get(&key).copied().unwrap_or(0);
            b.shards[shard as usize] = v;
            b.balance += v;
            if let Some(funded) = self.budgets.get(&key) {
                *b.funded.get_or_insert(0) += funded;
            }
        }
        b
    }

    /// Every account that has a shard, with its balance.
    pub fn all(&self) -> BTreeMap<ProgrammeAccount, ProgrammeBalance> {
        let accounts: BTreeSet<&ProgrammeAccount> = self.balances.keys().map(|(a, _)| a).collect();
        accounts
            .into_iter()
            .map(|a| (a.clone(), self.balance(a)))
            .collect()
    }

    /// The sum over every programme account: minus the sum over every member account.
    pub fn sum(&self) -> i64 {
        self.balances.values().sum()
    }

    /// Budgeted shards below zero, and budgeted accounts that paid out more than they were
    /// funded: `(account, shard or None for the account, value)`. Empty while budgets hold.
    pub fn overdrawn(&self) -> Vec<(ProgrammeAccount, Option<u32>, i64)> {
        let mut found = Vec::new();
        // Funding gives every shard of an account a budget, so these are all its shards.
        let mut accounts: BTreeMap<&ProgrammeAccount, i64> = BTreeMap::new();
        for key in self.budgets.keys() {
            let v = self.balances.get(key).copied().unwrap_or(0);
            if v < 0 {
                found.push((key.0.clone(), Some(key.1), v));
            }
            *accounts.entry(&key.0).or_default() += v;
        }
        for (account, balance) in accounts {
            // Paid out (funded - balance) may not exceed what was funded.
            if balance < 0 {
                found.push((account.clone(), None, balance));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use loyalty_domain::earning::Slug;
    use loyalty_domain::ids::{EntryId, ParticipantId};
    use loyalty_domain::ledger::EntryKind;

    fn accrual(id: &str, points: u64) -> Entry {
        Entry {
            id: EntryId::parse(id).unwrap(),
            participant: ParticipantId::parse("p-1").unwrap(),
            outlet: None,
            kind: EntryKind::Accrual,
            amount: Points(points),
            source: "rule r-1: x".into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_on: None,
        }
    }

    #[test]
    fn an_unbudgeted_account_issues_and_a_budgeted_shard_refuses_overdraw() {
        let mut s = ProgrammeShards::default();
        let e = accrual("action-1", 100);
        assert!(s.covers(&e));
        s.apply(&e);
        assert_eq!(s.sum(), -100);
        let rule = ProgrammeAccount::Rule(Slug::parse("r-1").unwrap());
        assert_eq!(s.fund(&rule, Points(160), "f-1"), Funded::Funded);
        assert_eq!(s.fund(&rule, Points(160), "f-1"), Funded::AlreadyFunded);
        assert_eq!(s.balance(&rule).funded, Some(160));
        assert_eq!(
            s.sum(),
            -100,
            "funding moves points between programme accounts"
        );
        // Each shard holds 10 (after the unbudgeted -100 on one shard, that one is negative).
        let small = accrual("action-2", 5);
        let shard = programme_shard(&small.id);
        let has = s.balances[&(rule.clone(), shard)];
        assert_eq!(s.covers(&small), has >= 5);
        assert!(!s.covers(&accrual("action-3", 11)));
    }

    #[test]
    fn gathering_pays_a_credit_the_budget_covers_and_refuses_one_it_does_not() {
        let mut s = ProgrammeShards::default();
        let rule = ProgrammeAccount::Rule(Slug::parse("r-1").unwrap());
        s.fund(&rule, Points(48), "f-1");
        let big = accrual("action-1", 40);
        assert!(!s.covers(&big), "3 points a shard");
        assert_eq!(s.gather(&big), Gathered::Ready);
        assert!(s.covers(&big));
        s.apply(&big);
        assert_eq!(s.balance(&rule).balance, 8);
        assert!(s.balance(&rule).shards.iter().all(|&b| b >= 0));
        assert_eq!(s.gather(&accrual("action-2", 9)), Gathered::Exhausted);
        assert_eq!(
            s.balance(&rule).balance,
            8,
            "a refused gathering moves nothing"
        );
    }
}
