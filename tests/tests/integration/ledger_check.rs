//! The ledger invariant, checked after every test that moves points: each stored balance
//! equals the replay of its account's entries, and each outlet's totals equal the sum of the
//! deltas of its members' entries. Callers pass every participant whose points moved.
//! Double entry: the points of all member accounts plus the balances of all programme
//! accounts (summed over their shards) are zero, over the whole table.

use std::collections::HashMap;

use loyalty_domain::ids::{OutletId, ParticipantId};
use loyalty_domain::ledger::{Balance, Delta};
use loyalty_platform::stores::ledger::DynamoLedger;
use loyalty_tests::TestStack;

pub async fn assert_ledger_consistent(stack: &TestStack, participants: &[ParticipantId]) {
    let ledger = DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable"));
    let mut outlet_sums: HashMap<OutletId, (Delta, u64)> = HashMap::new();
    for p in participants {
        let entries = ledger.all_entries(p).await.expect("entries");
        let stored = ledger.balance(p).await.expect("balance");
        let replayed = Balance::replay(&entries).expect("entries replay without overdraft");
        assert_eq!(
            stored,
            replayed,
            "balance of {p} differs from its {} entries",
            entries.len()
        );
        for e in &entries {
            if let Some(o) = &e.outlet {
                let (sum, count) = outlet_sums.entry(o.clone()).or_default();
                let d = e.delta();
                sum.available += d.available;
                sum.pending += d.pending;
                sum.held += d.held;
                sum.lifetime_earned += d.lifetime_earned;
                sum.spent += d.spent;
                sum.expired += d.expired;
                *count += 1;
            }
        }
    }
    let members = ledger.all_member_points().await.expect("member accounts");
    let programme = ledger
        .all_programme_balances()
        .await
        .expect("programme accounts");
    let programme_sum: i64 = programme.values().map(|b| b.balance).sum();
    assert_eq!(
        members + programme_sum,
        0,
        "member accounts ({members}) and programme accounts ({programme:?}) do not sum to zero"
    );
    for (account, b) in &programme {
        if let Some(funded) = b.funded {
            assert!(
                b.shards.iter().all(|s| *s >= 0),
                "budget of {account} (funded {funded}) is overdrawn: {:?}",
                b.shards
            );
        }
    }
    for (outlet, (sum, count)) in outlet_sums {
        let totals = ledger.outlet_totals(&outlet).await.expect("outlet totals");
        let as_delta = Delta {
            available: totals.available as i64,
            pending: totals.pending as i64,
            held: totals.held as i64,
            lifetime_earned: totals.lifetime_earned as i64,
            spent: totals.spent as i64,
            expired: totals.expired as i64,
        };
        // Callers pass every participant who touched an outlet, so the counts must agree too.
        assert_eq!(
            totals.version, count,
            "outlet {outlet} has entries from participants not checked"
        );
        assert_eq!(
            as_delta, sum,
            "totals of outlet {outlet} differ from its members' entries"
        );
    }
}
