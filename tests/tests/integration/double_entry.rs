//! Double entry on the emulator, beyond what every feature's `assert_ledger_consistent`
//! already checks: the upgrade of a deployment whose entries predate programme accounts.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{programme_shard, Entry, EntryKind, ProgrammeAccount};
use loyalty_domain::Points;
use loyalty_platform::stores::ledger::{
    append_items, gather_budget, programme_pk, DynamoLedger, Gathered, LedgerRefusal,
};
use loyalty_tests::TestStack;

use crate::ledger_check::assert_ledger_consistent;

fn entry(id: &str, kind: EntryKind, amount: u64, second: u32) -> Entry {
    Entry {
        id: EntryId::parse(id).unwrap(),
        participant: ParticipantId::parse("p-1").unwrap(),
        outlet: None,
        kind,
        amount: Points(amount),
        source: "rule survey-q4".into(),
        created_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, second).unwrap(),
        expires_on: None,
    }
}

/// Writes `e` as the code before double entry did: the entry and the balance, no programme
/// side and no `counter_account` on the entry.
async fn append_as_before_the_upgrade(stack: &TestStack, e: &Entry) {
    let table = stack.table_name("LedgerTable");
    append_items(table, e, None)
        .unwrap()
        .commit(&stack.dynamodb(), "append")
        .await
        .unwrap()
        .unwrap();
    let client = stack.dynamodb();
    client
        .update_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S(format!("ACCOUNT#{}", e.participant)),
        )
        .key("sk", AttributeValue::S(format!("ENTRY#{}", e.id)))
        .update_expression("REMOVE counter_account")
        .send()
        .await
        .unwrap();
    if let Some(t) = e.transfer() {
        client
            .update_item()
            .table_name(table)
            .key(
                "pk",
                AttributeValue::S(programme_pk(&t.account, programme_shard(&e.id))),
            )
            .key("sk", AttributeValue::S("BALANCE".into()))
            .update_expression("ADD programme_balance :undo")
            .expression_attribute_values(":undo", AttributeValue::N((-t.change).to_string()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_backfill_gives_entries_from_before_the_upgrade_their_programme_side_once() {
    let stack = TestStack::for_function("AccrualFunction").await;
    let ledger = DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable"));
    append_as_before_the_upgrade(&stack, &entry("action-old-1", EntryKind::Accrual, 300, 1)).await;
    append_as_before_the_upgrade(
        &stack,
        &entry("redeem-old-1", EntryKind::Redemption, 100, 2),
    )
    .await;
    append_as_before_the_upgrade(&stack, &entry("hold-old-1", EntryKind::HoldPlaced, 50, 3)).await;
    // After the upgrade, new entries write both sides.
    append_items(
        stack.table_name("LedgerTable"),
        &entry("action-new-1", EntryKind::Accrual, 40, 4),
        None,
    )
    .unwrap()
    .commit(&stack.dynamodb(), "append")
    .await
    .unwrap()
    .unwrap();

    let members = ledger.all_member_points().await.unwrap();
    let programme: i64 = ledger
        .all_programme_balances()
        .await
        .unwrap()
        .values()
        .map(|b| b.balance)
        .sum();
    assert_eq!(
        (members, members + programme),
        (240, 200),
        "before the backfill only the new entry is balanced"
    );

    assert_eq!(ledger.backfill_programme_side().await.unwrap(), 3);
    assert_eq!(ledger.backfill_programme_side().await.unwrap(), 0);
    let rule = ProgrammeAccount::Rule(loyalty_domain::earning::Slug::parse("survey-q4").unwrap());
    assert_eq!(ledger.programme_balance(&rule).await.unwrap().balance, -340);
    assert_eq!(
        ledger
            .programme_balance(&ProgrammeAccount::Redemptions)
            .await
            .unwrap()
            .balance,
        100
    );
    assert_ledger_consistent(&stack, &[ParticipantId::parse("p-1").unwrap()]).await;
}

#[tokio::test]
async fn a_credit_the_budget_covers_is_paid_even_when_its_own_shard_ran_dry() {
    let stack = TestStack::for_function("AccrualFunction").await;
    let (client, table) = (stack.dynamodb(), stack.table_name("LedgerTable"));
    let ledger = DynamoLedger::new(client.clone(), table);
    let rule = ProgrammeAccount::Rule(loyalty_domain::earning::Slug::parse("survey-q4").unwrap());
    // 48 points: 3 on each of the 16 shards, so no shard alone covers a credit of 40.
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
    ledger
        .fund_budget(&rule, Points(48), "t:1", now)
        .await
        .unwrap();
    let credit = entry("action-big-1", EntryKind::Accrual, 40, 1);
    let append = |e: &Entry| {
        append_items(table, e, None)
            .unwrap()
            .commit(&client, "append")
    };

    let refused = append(&credit).await.unwrap().unwrap_err();
    assert!(refused.contains(&LedgerRefusal::BudgetExhausted));
    assert_eq!(
        gather_budget(&client, table, &credit).await.unwrap(),
        Gathered::Ready
    );
    append(&credit)
        .await
        .unwrap()
        .expect("paid after gathering");
    let after = ledger.programme_balance(&rule).await.unwrap();
    assert_eq!((after.balance, after.funded), (8, Some(48)));
    assert!(after.shards.iter().all(|&s| s >= 0), "{:?}", after.shards);

    // 8 points are left in the whole account: a second credit of 10 is refused for good.
    let second = entry("action-big-2", EntryKind::Accrual, 10, 2);
    assert!(append(&second).await.unwrap().is_err());
    assert_eq!(
        gather_budget(&client, table, &second).await.unwrap(),
        Gathered::Exhausted
    );
    assert_eq!(ledger.programme_balance(&rule).await.unwrap().balance, 8);
    assert_ledger_consistent(&stack, &[ParticipantId::parse("p-1").unwrap()]).await;
}
