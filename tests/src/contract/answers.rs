//! The contract of the [`AnswerStore`] port (answers kept under Idempotency-Keys), run
//! against both adapters: [`MemoryAnswers`] (`tests/tests/memory/`) and [`Idempotency`] on
//! the emulator (`tests/tests/integration/contract.rs`). Each case is an `async fn` over an
//! [`AnswersHarness`]; [`answer_store_contract!`](crate::answer_store_contract) turns every
//! case into a test for one adapter. If the two adapters disagree, the memory one is wrong.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use lambda_http::http::StatusCode;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::idempotency::{record_key_of, Answer, AnswerStore, Idempotency, Keyed};
use loyalty_platform::memory::MemoryAnswers;
use serde_json::json;

use crate::{ApiEvent, TestStack};

/// One adapter of the port, with what the contract needs to observe it, read through the
/// adapter's own storage, never through the port under test.
#[allow(async_fn_in_trait)]
pub trait AnswersHarness {
    type Store: AnswerStore;
    fn store(&self) -> &Self::Store;
    /// The status and body stored under (scope, key), live or expired.
    async fn stored(&self, scope: &str, key: &str) -> Option<(u16, String)>;
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryAnswers,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryAnswers::new(),
    }
}

impl AnswersHarness for MemoryHarness {
    type Store = MemoryAnswers;

    fn store(&self) -> &MemoryAnswers {
        &self.store
    }

    async fn stored(&self, scope: &str, key: &str) -> Option<(u16, String)> {
        self.store
            .all()
            .get(&(scope.to_string(), key.to_string()))
            .map(|a| (a.status, a.body.clone()))
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: Idempotency,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("AccrualFunction").await;
    DynamoHarness {
        store: Idempotency::new(stack.dynamodb(), stack.table_name("ActivityTable")),
        stack,
    }
}

impl AnswersHarness for DynamoHarness {
    type Store = Idempotency;

    fn store(&self) -> &Idempotency {
        &self.store
    }

    async fn stored(&self, scope: &str, key: &str) -> Option<(u16, String)> {
        let out = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("ActivityTable"))
            .set_key(Some(record_key_of(scope, key)))
            .consistent_read(true)
            .send()
            .await
            .expect("read record");
        out.item.map(|i| {
            (
                i.number("status").expect("status") as u16,
                i.string("body").expect("body").to_string(),
            )
        })
    }
}

// --- Helpers ---------------------------------------------------------------------------

/// Now, in whole seconds (what a record's `ttl` keeps).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// The sample budget top-up under `key` by `scope`, for `amount`.
fn keyed(scope: &str, key: &str, amount: u64) -> Keyed {
    let req = ApiEvent::load("accrual/fund-rule-budget.json")
        .header("idempotency-key", key)
        .body(json!({ "amount": amount }))
        .request();
    Idempotency::keyed(&req, scope).expect("a valid key")
}

fn ok(n: u64) -> Answer {
    Answer::new(StatusCode::OK, json!({ "remaining": n }))
}

// --- The cases -------------------------------------------------------------------------

pub async fn an_answer_holds_its_key_and_a_second_is_refused_with_the_first(
    h: impl AnswersHarness,
) {
    let at = now();
    let k = keyed("admin-1", "fund-key-0001", 100);
    assert_eq!(h.store().answered(&k, at).await.unwrap(), None);
    assert_eq!(
        h.store().remember_answer(&k, &ok(100), at).await.unwrap(),
        Ok(())
    );
    let first = h.store().answered(&k, at).await.unwrap().expect("stored");
    assert_eq!(
        (
            first.status,
            first.fingerprint.as_str(),
            first.content_type.as_deref()
        ),
        (200, k.fingerprint(), Some("application/json"))
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&first.body).unwrap(),
        json!({ "remaining": 100 })
    );
    // The same key for another request: refused with the first answer, which stays.
    let other = keyed("admin-1", "fund-key-0001", 5);
    assert_ne!(other.fingerprint(), k.fingerprint());
    assert_eq!(
        h.store().remember_answer(&other, &ok(5), at).await.unwrap(),
        Err(Some(first.clone()))
    );
    assert_eq!(
        h.stored("admin-1", "fund-key-0001").await,
        Some((200, first.body))
    );
}

pub async fn a_refusal_is_stored_as_problem_json(h: impl AnswersHarness) {
    let at = now();
    let k = keyed("admin-1", "fund-key-0002", 100);
    let refusal = Answer::new(StatusCode::NOT_FOUND, json!({ "code": "rule_not_found" }));
    assert_eq!(
        h.store().remember_answer(&k, &refusal, at).await.unwrap(),
        Ok(())
    );
    let stored = h.store().answered(&k, at).await.unwrap().expect("stored");
    assert_eq!(
        (stored.status, stored.content_type.as_deref()),
        (404, Some("application/problem+json"))
    );
}

pub async fn an_answer_expires_after_24_hours_and_the_key_is_free_again(h: impl AnswersHarness) {
    let at = now();
    let k = keyed("admin-1", "fund-key-0003", 100);
    h.store()
        .remember_answer(&k, &ok(100), at)
        .await
        .unwrap()
        .unwrap();
    let almost = at + Duration::hours(24) - Duration::seconds(1);
    assert!(h.store().answered(&k, almost).await.unwrap().is_some());
    let later = at + Duration::hours(24);
    assert_eq!(h.store().answered(&k, later).await.unwrap(), None);
    let again = keyed("admin-1", "fund-key-0003", 7);
    assert_eq!(
        h.store()
            .remember_answer(&again, &ok(7), later)
            .await
            .unwrap(),
        Ok(())
    );
    let stored = h
        .store()
        .answered(&again, later)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.fingerprint, again.fingerprint());
}

pub async fn keys_are_per_caller(h: impl AnswersHarness) {
    let at = now();
    let mine = keyed("admin-1", "fund-key-0004", 100);
    let theirs = keyed("admin-2", "fund-key-0004", 100);
    h.store()
        .remember_answer(&mine, &ok(1), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.store().answered(&theirs, at).await.unwrap(), None);
    assert_eq!(
        h.store()
            .remember_answer(&theirs, &ok(2), at)
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        h.stored("admin-1", "fund-key-0004").await.map(|(s, _)| s),
        Some(200)
    );
}

#[macro_export]
macro_rules! answer_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(answers, $harness;
            an_answer_holds_its_key_and_a_second_is_refused_with_the_first,
            a_refusal_is_stored_as_problem_json,
            an_answer_expires_after_24_hours_and_the_key_is_free_again,
            keys_are_per_caller,
        );
    };
}
