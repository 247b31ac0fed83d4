//! Figure 3: the handler's own CPU time per claim, with DynamoDB answering from memory.
//!
//! The client is real (request building, serialisation, signing, response parsing all
//! run); only the transport is replaced by `aws-smithy-mocks`. Time is the calling
//! thread's CPU clock on a current-thread runtime, so it is exactly the work the claim
//! costs, and never time spent waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, RuleMode};
use lambda_http::http::StatusCode;
use loyalty_domain::batch::BatchStatus;
use loyalty_domain::code::Code;
use loyalty_domain::ports::SystemClock;
use loyalty_platform::config::Env;
use loyalty_platform::stores::codes::CodesStore;

use crate::stack::{create_batch, BoxError, ClaimEvents};

type Item = std::collections::HashMap<String, AttributeValue>;

const WARM_UP: usize = 200;

pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A client whose transport answers instantly: PutItem and TransactWriteItems succeed,
/// UpdateItem hands out batch number 1, GetItem returns `batch` (once filled in), Query finds
/// no time zones (every region counts in UTC; the function caches that).
/// The first item put by a TransactWriteItems (the batch, when the store creates one) is
/// kept in `put`.
fn instant_client(batch: Arc<Mutex<Option<Item>>>, put: Arc<Mutex<Option<Item>>>) -> Client {
    let get = mock!(Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .set_item(batch.lock().expect("batch").clone())
            .build()
    });
    let zones = mock!(Client::query).then_output(|| QueryOutput::builder().build());
    let single = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let sequence = mock!(Client::update_item).then_output(|| {
        UpdateItemOutput::builder()
            .attributes("last", AttributeValue::N("1".into()))
            .build()
    });
    let transact = mock!(Client::transact_write_items)
        .match_requests(move |req| {
            let mut kept = put.lock().expect("put");
            if kept.is_none() {
                *kept = req
                    .transact_items()
                    .first()
                    .and_then(|item| item.put())
                    .map(|p| p.item().clone());
            }
            true
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let mocks = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(&get)
        .with_rule(&zones)
        .with_rule(&single)
        .with_rule(&sequence)
        .with_rule(&transact);
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .http_client(create_mock_http_client())
        .interceptor(mocks)
        .build();
    Client::from_conf(config)
}

/// Per-claim CPU time over `samples` successful claims, after a warm-up.
pub fn handler_cpu(samples: usize) -> Result<Vec<Duration>, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let batch_item = Arc::new(Mutex::new(None));
        let put = Arc::new(Mutex::new(None));
        let client = instant_client(batch_item.clone(), put.clone());
        // The batch item GetItem returns is the one the store itself writes.
        let store = CodesStore::new(client.clone(), "codes");
        let batch = create_batch(&store, 100_000, 10, 10_000, BatchStatus::Ready).await?;
        *batch_item.lock().expect("batch") = put.lock().expect("put").clone();
        let env = Env::from_pairs([
            ("CODES_TABLE", "codes"),
            ("LEDGER_TABLE", "ledger"),
            ("FRAUD_TABLE", "fraud"),
            ("OUTBOX_TABLE", "outbox"),
            ("PARTICIPANTS_TABLE", "participants"),
            ("PROGRAMME_TABLE", "programme"),
        ]);
        let app = code_claim::App::with_dynamodb(client, &env, Box::new(SystemClock))?;
        let events = ClaimEvents::load()?;
        let codes = Code::chunk(&batch.seed.0, batch.number, 0, (WARM_UP + samples) as u32);
        let mut times = Vec::with_capacity(samples);
        for (i, code) in codes.iter().enumerate() {
            let request = events.request(&format!("p-cpu-{}", i / 50), &code.display());
            let started = thread_cpu_time();
            let response = app.handle(request).await?;
            let spent = thread_cpu_time() - started;
            if response.status() != StatusCode::OK {
                return Err(format!("a mocked claim answered {}", response.status()).into());
            }
            if i >= WARM_UP {
                times.push(spent);
            }
        }
        Ok(times)
    })
}
