//! Fresh emulator resources from template.yaml, seeded batches, and claim events.

use chrono::{Duration, Utc};
use loyalty_domain::batch::{Batch, BatchRequest, BatchSeed, BatchSpec, BatchStatus};
use loyalty_local::provision::{provision, Options, Resources};
use loyalty_local::template::Template;
use loyalty_platform::stores::codes::CodesStore;
use serde_json::{json, Value};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "loyalty-bench",
        ))
        .load()
        .await
}

/// Registers `participants` (a profile each, active, with `region` and `outlet`), as
/// registration would: only registered participants earn, and with the facts their tokens
/// carry an earning write is one round trip from the first.
pub async fn register(
    aws: &aws_config::SdkConfig,
    resources: &Resources,
    participants: impl IntoIterator<Item = String>,
    region: &str,
    outlet: Option<&str>,
) -> Result<(), BoxError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = aws_sdk_dynamodb::Client::new(aws);
    let table = resources
        .table_name("ParticipantsTable")
        .ok_or("ParticipantsTable is not provisioned")?;
    for p in participants {
        let mut item = loyalty_platform::dynamo::key(format!("PARTICIPANT#{p}"), "PROFILE");
        item.insert("region".into(), AttributeValue::S(region.into()));
        if let Some(o) = outlet {
            item.insert("outlet_id".into(), AttributeValue::S(o.into()));
        }
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await?;
    }
    Ok(())
}

/// The resources `functions` need, under a prefix no earlier run used.
pub async fn provision_for(
    aws: &aws_config::SdkConfig,
    template: &Template,
    functions: &[&str],
    label: &str,
) -> Result<Resources, BoxError> {
    let mut needed = std::collections::BTreeSet::new();
    for f in functions {
        needed.extend(template.dependencies_of(f)?);
    }
    let stamp = Utc::now().timestamp_millis();
    let prefix = format!("bench-{label}-{stamp}-{}", std::process::id());
    Ok(provision(aws, template, &Options::local(prefix).only(needed)).await?)
}

/// A batch record for `count` codes worth `points` each, valid for `north`, chunked as
/// `chunk_size`; its codes are not written.
pub async fn create_batch(
    store: &CodesStore,
    count: u32,
    points: u64,
    chunk_size: u32,
    status: BatchStatus,
) -> Result<Batch, BoxError> {
    let today = Utc::now().date_naive();
    let spec = BatchSpec::parse(&BatchRequest {
        sku: "COLA-05".into(),
        product_type: "Cola 0.5 l".into(),
        pack_size: "0.5 l".into(),
        points_per_pack: points,
        region: "north".into(),
        valid_until: (today + Duration::days(30)).to_string(),
        count,
    })
    .map_err(|e| format!("batch spec: {e}"))?;
    let number = store
        .allocate_batch_number()
        .await?
        .ok_or("no batch numbers left")?;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&Utc::now().timestamp_nanos_opt().unwrap_or(0).to_be_bytes());
    seed[8..12].copy_from_slice(&number.to_be_bytes());
    let batch = Batch {
        number,
        plan: spec.plan(chunk_size),
        spec,
        seed: BatchSeed(seed),
        status,
        created_at: Utc::now(),
    };
    store.create_batch(&batch, "loyalty-bench").await?;
    Ok(batch)
}

/// The sample claim event (events/code-claim/claim.json), as a participant selling at an
/// outlet in the batch's region would send it.
pub struct ClaimEvents(Value);

impl ClaimEvents {
    pub fn load() -> Result<ClaimEvents, BoxError> {
        let path = loyalty_local::template::repo_root().join("events/code-claim/claim.json");
        Ok(ClaimEvents(serde_json::from_str(
            &std::fs::read_to_string(path)?,
        )?))
    }

    pub fn request(&self, participant: &str, code: &str) -> lambda_http::Request {
        let mut event = self.0.clone();
        event["requestContext"]["authorizer"]["jwt"]["claims"] = json!({
            "sub": participant,
            "role": "participant",
            "outlet_id": "o-bench",
            "outlet_role": "seller",
            "region": "north",
        });
        event["body"] = Value::String(json!({ "code": code }).to_string());
        loyalty_local::apigw::into_request(&event).expect("the sample event is API Gateway v2")
    }
}
