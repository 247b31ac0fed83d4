//! The programme side of the ledger in memory, shared by [`super::MemoryActions`] and
//! [`super::MemoryCashback`]: what [`crate::stores::ledger::programme_items`] and
//! [`crate::stores::ledger::DynamoLedger::fund_budget`] write on the
//! `PROGRAMME#<account>#<shard>` items.
//!
//! Each entry's [`Entry::transfer`] lands on the shard [`programme_shard`] of its account. A
//! shard that was funded carries a budget and may not go below zero: a credit to a member it
//! cannot cover is refused ([`ProgrammeShards::covers`]), exactly as the DynamoDB condition
//! `attribute_not_exists(budget) OR programme_balance >= :needed_budget` refuses it.

use std::collections::{BTreeMap, BTreeSet};

use loyalty_domain::ledger::{
    programme_shard, shard_of, Entry, ProgrammeAccount, Transfer, PROGRAMME_SHARDS,
};
use loyalty_domain::Points;

use crate::stores::ledger::{Funded, ProgrammeBalance};

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
}
