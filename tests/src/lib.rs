//! Support for the integration tests: an SDK configuration pointed at the local emulator,
//! fresh copies of the template's resources, and the sample API events as requests.
//!
//! The emulator's address comes from `LOCAL_AWS_ENDPOINT` (the test command starts moto and
//! sets it); every test provisions its own resources under a unique prefix, so tests run in
//! parallel and against a long-lived emulator.

pub mod contract;

use std::path::PathBuf;
use std::sync::OnceLock;

use loyalty_local::provision::{provision, Options, Resources};
use loyalty_local::template::Template;
use loyalty_platform::config::Env;
use serde_json::{json, Map, Value};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4567";

pub fn endpoint() -> String {
    std::env::var("LOCAL_AWS_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string())
}

/// An SDK configuration for the local emulator, with static test credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "loyalty-tests",
        ))
        .load()
        .await
}

/// A name no other test uses, in this run or an earlier one against the same emulator:
/// the run is identified by its start time and process id, lower-case so it suits buckets.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        format!(
            "{}{}",
            base36(millis),
            base36(u64::from(std::process::id()))
        )
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{run}-{n}")
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

pub fn repo_root() -> PathBuf {
    loyalty_local::template::repo_root()
}

/// The project's `template.yaml`, parsed once per test binary.
pub fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| Template::load_default().expect("template.yaml parses"))
}

/// Fresh local copies of template resources, and each function's configuration against them.
pub struct TestStack {
    pub aws: aws_config::SdkConfig,
    pub resources: Resources,
}

impl TestStack {
    /// Every table, queue, topic and bucket the template declares.
    pub async fn fresh() -> TestStack {
        TestStack::provisioned(Options::local(unique_name("t"))).await
    }

    /// Only what one function needs (its environment's and event sources' resources, and
    /// their dead-letter queues): quicker than [`TestStack::fresh`].
    pub async fn for_function(function_id: &str) -> TestStack {
        let needed = template()
            .dependencies_of(function_id)
            .unwrap_or_else(|e| panic!("{e}"));
        TestStack::provisioned(Options::local(unique_name("t")).only(needed)).await
    }

    /// What several functions need, e.g. to pass work from one to the next.
    pub async fn for_functions(function_ids: &[&str]) -> TestStack {
        let mut needed = std::collections::BTreeSet::new();
        for id in function_ids {
            needed.extend(
                template()
                    .dependencies_of(id)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        TestStack::provisioned(Options::local(unique_name("t")).only(needed)).await
    }

    async fn provisioned(options: Options) -> TestStack {
        let aws = sdk_config().await;
        let resources = provision(&aws, template(), &options)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "provisioning on {} failed (is the emulator running?): {e}",
                    endpoint()
                )
            });
        TestStack { aws, resources }
    }

    /// The function's configuration, as `App::new` takes it.
    pub fn env_for(&self, function_id: &str) -> Env {
        self.resources
            .env_for(function_id)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn table_name(&self, logical_id: &str) -> &str {
        self.resources
            .table_name(logical_id)
            .unwrap_or_else(|| panic!("no table {logical_id} in this stack"))
    }

    pub fn queue_url(&self, logical_id: &str) -> &str {
        self.resources
            .queue_url(logical_id)
            .unwrap_or_else(|| panic!("no queue {logical_id} in this stack"))
    }

    pub fn bucket(&self, logical_id: &str) -> &str {
        self.resources
            .bucket(logical_id)
            .unwrap_or_else(|| panic!("no bucket {logical_id} in this stack"))
    }

    pub fn arn(&self, logical_id: &str) -> &str {
        self.resources
            .get(logical_id)
            .map(|p| p.arn.as_str())
            .unwrap_or_else(|| panic!("no resource {logical_id} in this stack"))
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.aws)
    }

    /// Accrual's settings and sell-in adapter on this stack's tables.
    pub fn earning_store(&self) -> loyalty_platform::stores::earning::EarningStore {
        loyalty_platform::stores::earning::EarningStore::new(
            self.dynamodb(),
            loyalty_platform::stores::earning::EarningTables {
                programme: self.table_name("ProgrammeTable").into(),
                activity: self.table_name("ActivityTable").into(),
                ledger: self.table_name("LedgerTable").into(),
                outbox: self.table_name("OutboxTable").into(),
                participants: self.table_name("ParticipantsTable").into(),
            },
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.aws)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        loyalty_platform::aws::s3(
            &self.aws,
            &Env::default().with("S3_FORCE_PATH_STYLE", "true"),
        )
    }
}

/// A sample API Gateway v2 event from `events/`, to vary and turn into a `Request`.
///
/// ```ignore
/// let req = ApiEvent::load("participants/register.json").role("rep").sub("R1").body(json!({..})).request();
/// ```
#[derive(Debug, Clone)]
pub struct ApiEvent(pub Value);

impl ApiEvent {
    /// `path` is relative to `events/`, e.g. `"code-claim/claim.json"`.
    pub fn load(path: &str) -> ApiEvent {
        let file = repo_root().join("events").join(path);
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        ApiEvent(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display())),
        )
    }

    pub fn from_json(value: Value) -> ApiEvent {
        ApiEvent(value)
    }

    fn claims_mut(&mut self) -> &mut Map<String, Value> {
        let context = &mut self.0["requestContext"];
        if !context["authorizer"]["jwt"]["claims"].is_object() {
            context["authorizer"] = json!({ "jwt": { "claims": {}, "scopes": null } });
        }
        context["authorizer"]["jwt"]["claims"]
            .as_object_mut()
            .expect("claims is an object")
    }

    /// Sets one claim; API Gateway passes every claim as a string.
    pub fn claim(mut self, name: &str, value: &str) -> ApiEvent {
        self.claims_mut()
            .insert(name.to_string(), Value::String(value.to_string()));
        self
    }

    pub fn without_claim(mut self, name: &str) -> ApiEvent {
        self.claims_mut().remove(name);
        self
    }

    /// As if no token had been verified: no authorizer context at all.
    pub fn without_claims(mut self) -> ApiEvent {
        if let Some(context) = self.0["requestContext"].as_object_mut() {
            context.remove("authorizer");
        }
        self
    }

    pub fn role(self, role: &str) -> ApiEvent {
        self.claim("role", role)
    }

    /// Named after the JWT claim it sets, not arithmetic.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, subject: &str) -> ApiEvent {
        self.claim("sub", subject)
    }

    pub fn outlet(self, outlet_id: &str, outlet_role: &str) -> ApiEvent {
        self.claim("outlet_id", outlet_id)
            .claim("outlet_role", outlet_role)
    }

    pub fn without_outlet(self) -> ApiEvent {
        self.without_claim("outlet_id").without_claim("outlet_role")
    }

    pub fn region(self, region: &str) -> ApiEvent {
        self.claim("region", region)
    }

    pub fn body(self, body: Value) -> ApiEvent {
        self.text_body(&body.to_string())
    }

    pub fn text_body(mut self, body: &str) -> ApiEvent {
        self.0["body"] = Value::String(body.to_string());
        self.0["isBase64Encoded"] = Value::Bool(false);
        self
    }

    pub fn without_body(mut self) -> ApiEvent {
        if let Some(event) = self.0.as_object_mut() {
            event.remove("body");
        }
        self
    }

    /// The address API Gateway saw the request come from (`requestContext.http.sourceIp`).
    pub fn source_ip(mut self, ip: &str) -> ApiEvent {
        self.0["requestContext"]["http"]["sourceIp"] = Value::String(ip.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> ApiEvent {
        if !self.0["headers"].is_object() {
            self.0["headers"] = json!({});
        }
        self.0["headers"][name.to_ascii_lowercase()] = Value::String(value.to_string());
        self
    }

    /// Sets a path parameter and rewrites `rawPath` from the route key, so both agree.
    pub fn path_param(mut self, name: &str, value: &str) -> ApiEvent {
        if !self.0["pathParameters"].is_object() {
            self.0["pathParameters"] = json!({});
        }
        self.0["pathParameters"][name] = Value::String(value.to_string());
        let route = self.0["routeKey"].as_str().unwrap_or_default().to_string();
        if let Some((_, template)) = route.split_once(' ') {
            let mut path = template.to_string();
            if let Some(params) = self.0["pathParameters"].as_object() {
                for (k, v) in params {
                    path = path.replace(&format!("{{{k}}}"), v.as_str().unwrap_or_default());
                }
            }
            self.0["rawPath"] = Value::String(path.clone());
            self.0["requestContext"]["http"]["path"] = Value::String(path);
        }
        self
    }

    /// Adds a query parameter (keeping `rawQueryString` in step).
    pub fn query(mut self, name: &str, value: &str) -> ApiEvent {
        if !self.0["queryStringParameters"].is_object() {
            self.0["queryStringParameters"] = json!({});
        }
        self.0["queryStringParameters"][name] = Value::String(value.to_string());
        self.sync_raw_query();
        self
    }

    pub fn without_query(mut self) -> ApiEvent {
        if let Some(event) = self.0.as_object_mut() {
            event.remove("queryStringParameters");
        }
        self.sync_raw_query();
        self
    }

    fn sync_raw_query(&mut self) {
        let raw = self.0["queryStringParameters"]
            .as_object()
            .map(|params| {
                params
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}={}",
                            percent_encode(k),
                            percent_encode(v.as_str().unwrap_or_default())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .unwrap_or_default();
        self.0["rawQueryString"] = Value::String(raw);
    }

    /// The `Request` a handler receives in Lambda for this event.
    pub fn request(&self) -> lambda_http::Request {
        loyalty_local::apigw::into_request(&self.0)
            .unwrap_or_else(|e| panic!("event does not deserialise as API Gateway v2: {e}"))
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A response body as JSON (problem+json included), for assertions.
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    let bytes: &[u8] = match response.body() {
        lambda_http::Body::Text(t) => t.as_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => b"",
    };
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
