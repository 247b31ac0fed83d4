//! Counts the requests an SDK client sends, by operation, as they go on the wire.
//!
//! Counted in `read_before_transmit`, which runs once per attempt: an SDK retry is a
//! round trip too, and that is what the figures are about.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};

#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<Mutex<Tally>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests by operation: the DynamoDB `X-Amz-Target` action, or `S3 <METHOD>`.
    pub by_operation: BTreeMap<String, u64>,
    /// Request body bytes by operation.
    pub bytes: BTreeMap<String, u64>,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.by_operation.values().sum()
    }

    pub fn get(&self, operation: &str) -> u64 {
        self.by_operation.get(operation).copied().unwrap_or(0)
    }

    /// What happened between two snapshots.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Tally {
            by_operation: diff(&self.by_operation, &earlier.by_operation),
            bytes: diff(&self.bytes, &earlier.bytes),
        }
    }

    /// `TransactWriteItems 1, PutItem 1`.
    pub fn describe(&self) -> String {
        if self.by_operation.is_empty() {
            return "none".into();
        }
        self.by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Counter {
    pub fn snapshot(&self) -> Tally {
        self.0.lock().expect("counter").clone()
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = match request.headers().get("x-amz-target") {
            Some(target) => target.rsplit('.').next().unwrap_or(target).to_string(),
            None => format!("S3 {}", request.method()),
        };
        let len = request.body().bytes().map_or(0, |b| b.len() as u64);
        let mut tally = self.0.lock().expect("counter");
        *tally.by_operation.entry(operation.clone()).or_default() += 1;
        *tally.bytes.entry(operation).or_default() += len;
        Ok(())
    }
}

pub fn counted_dynamodb(
    aws: &aws_config::SdkConfig,
    counter: &Counter,
) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(aws)
        .interceptor(counter.clone())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub fn counted_s3(aws: &aws_config::SdkConfig, counter: &Counter) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(true)
        .interceptor(counter.clone())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
