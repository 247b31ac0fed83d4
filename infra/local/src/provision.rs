//! Creates on the local emulator the resources `template.yaml` declares, from the template's
//! own definitions (key schemas, indexes, TTL, queue attributes, redrive), so that local and
//! cloud cannot drift. Physical names carry a prefix; provisioning again is harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use loyalty_platform::config::Env;
use serde_yaml::{Mapping, Value};

use crate::template::{sub_placeholders, Intrinsic, Template};

pub const TABLE: &str = "AWS::DynamoDB::Table";
pub const QUEUE: &str = "AWS::SQS::Queue";
pub const TOPIC: &str = "AWS::SNS::Topic";
pub const BUCKET: &str = "AWS::S3::Bucket";

/// moto's fixed account; used only where an ARN must be built rather than read back.
const ACCOUNT: &str = "123456789012";

pub fn is_provisionable(kind: &str) -> bool {
    matches!(kind, TABLE | QUEUE | TOPIC | BUCKET)
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("template: {0}")]
    Template(String),
    #[error("{operation} {name} failed: {message}")]
    Aws {
        operation: &'static str,
        name: String,
        message: String,
    },
}

fn bad(message: impl Into<String>) -> ProvisionError {
    ProvisionError::Template(message.into())
}

fn aws_err(operation: &'static str, name: &str, err: impl std::error::Error) -> ProvisionError {
    ProvisionError::Aws {
        operation,
        name: name.to_string(),
        message: DisplayErrorContext(err).to_string(),
    }
}

/// What one template resource became locally.
#[derive(Debug, Clone)]
pub struct Physical {
    pub kind: String,
    pub name: String,
    pub arn: String,
    /// Queues only: what `!Ref` of a queue resolves to.
    pub url: Option<String>,
    /// Tables with a stream only.
    pub stream_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub prefix: String,
    /// Provision only these logical ids (and fail if one needs a resource outside the set).
    pub only: Option<BTreeSet<String>>,
    /// Values for template parameters, over their `Default`.
    pub parameters: BTreeMap<String, String>,
}

impl Options {
    /// Local parameter values: the issuer and audience of the development tokens.
    pub fn local(prefix: impl Into<String>) -> Options {
        let parameters = BTreeMap::from([
            ("JwtIssuer".to_string(), crate::LOCAL_ISSUER.to_string()),
            ("JwtAudience".to_string(), crate::LOCAL_AUDIENCE.to_string()),
            (
                "PasscodeHmacKey".to_string(),
                crate::LOCAL_PASSCODE_KEY.to_string(),
            ),
        ]);
        Options {
            prefix: prefix.into(),
            only: None,
            parameters,
        }
    }

    pub fn only(mut self, ids: impl IntoIterator<Item = String>) -> Options {
        self.only = Some(ids.into_iter().collect());
        self
    }
}

/// The local resources, by logical id, and how to configure a function against them.
#[derive(Debug, Clone)]
pub struct Resources {
    pub prefix: String,
    pub region: String,
    template: Template,
    parameters: BTreeMap<String, String>,
    physical: BTreeMap<String, Physical>,
}

impl Resources {
    pub fn template(&self) -> &Template {
        &self.template
    }

    pub fn get(&self, logical_id: &str) -> Option<&Physical> {
        self.physical.get(logical_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Physical)> {
        self.physical.iter()
    }

    fn of_kind(&self, logical_id: &str, kind: &str) -> Option<&Physical> {
        self.physical.get(logical_id).filter(|p| p.kind == kind)
    }

    pub fn table_name(&self, logical_id: &str) -> Option<&str> {
        self.of_kind(logical_id, TABLE).map(|p| p.name.as_str())
    }

    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.of_kind(logical_id, QUEUE)
            .and_then(|p| p.url.as_deref())
    }

    pub fn bucket(&self, logical_id: &str) -> Option<&str> {
        self.of_kind(logical_id, BUCKET).map(|p| p.name.as_str())
    }

    pub fn topic_arn(&self, logical_id: &str) -> Option<&str> {
        self.of_kind(logical_id, TOPIC).map(|p| p.arn.as_str())
    }

    /// The function's configuration as Lambda would see it: Globals and its own
    /// `Environment.Variables`, intrinsics resolved to the local resources.
    pub fn env_for(&self, function_id: &str) -> Result<Env, ProvisionError> {
        let function = self
            .template
            .function(function_id)
            .map_err(|e| bad(e.to_string()))?;
        let mut env = Env::default();
        // The function's own variables override the globals, as in SAM.
        for (key, value) in self
            .template
            .global_environment
            .iter()
            .chain(function.environment.iter())
        {
            let resolved = self
                .resolve(value)
                .map_err(|e| bad(format!("{function_id} variable {key}: {e}")))?;
            env = env.with(key.clone(), resolved);
        }
        Ok(crate::webhooks::local_overrides(
            &function.binary,
            env.with("S3_FORCE_PATH_STYLE", "true"),
        ))
    }

    /// A template value as a string, with `!Ref`, `!GetAtt` and `!Sub` resolved.
    pub fn resolve(&self, value: &Value) -> Result<String, ProvisionError> {
        match Intrinsic::of(value) {
            Some(Intrinsic::Ref(id)) => self.reference(&id),
            Some(Intrinsic::GetAtt {
                resource,
                attribute,
            }) => self.attribute(&resource, &attribute),
            Some(Intrinsic::Sub(text)) => {
                let mut out = text.clone();
                for placeholder in sub_placeholders(&text) {
                    let value = match placeholder.split_once('.') {
                        Some((resource, attribute)) => self.attribute(resource, attribute)?,
                        None => self.reference(&placeholder)?,
                    };
                    out = out.replace(&format!("${{{placeholder}}}"), &value);
                }
                Ok(out.replace("${!", "${"))
            }
            None => match value {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(bad(format!("cannot turn {other:?} into a string"))),
            },
        }
    }

    fn reference(&self, id: &str) -> Result<String, ProvisionError> {
        match id {
            "AWS::Region" => return Ok(self.region.clone()),
            "AWS::AccountId" => return Ok(ACCOUNT.to_string()),
            "AWS::Partition" => return Ok("aws".to_string()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_string()),
            "AWS::StackName" => return Ok(self.prefix.clone()),
            _ => {}
        }
        if let Some(parameter) = self.template.parameters.get(id) {
            return self
                .parameters
                .get(id)
                .cloned()
                .or_else(|| parameter.default.clone())
                .ok_or_else(|| bad(format!("parameter {id} has no Default and no local value")));
        }
        let physical = self.physical.get(id).ok_or_else(|| self.missing(id))?;
        Ok(match physical.kind.as_str() {
            QUEUE => physical.url.clone().unwrap_or_default(),
            TOPIC => physical.arn.clone(),
            _ => physical.name.clone(),
        })
    }

    fn attribute(&self, id: &str, attribute: &str) -> Result<String, ProvisionError> {
        let physical = self.physical.get(id).ok_or_else(|| self.missing(id))?;
        let value = match attribute {
            "Arn" => Some(physical.arn.clone()),
            "QueueName" | "TopicName" | "BucketName" => Some(physical.name.clone()),
            "QueueUrl" => physical.url.clone(),
            "StreamArn" => physical.stream_arn.clone(),
            _ => None,
        };
        value.ok_or_else(|| {
            bad(format!(
                "attribute {id}.{attribute} is not available locally"
            ))
        })
    }

    fn missing(&self, id: &str) -> ProvisionError {
        match self.template.resources.get(id) {
            Some(r) if is_provisionable(&r.kind) => {
                bad(format!("{id} was not provisioned in this stack"))
            }
            Some(r) => bad(format!(
                "{id} is a {}, which has no local counterpart",
                r.kind
            )),
            None => bad(format!("the template has no parameter or resource {id}")),
        }
    }
}

/// Physical names: `<prefix>-<LogicalId>` (or `<prefix>-<name>` when the template names the
/// resource), lower-cased for buckets.
fn physical_name(prefix: &str, logical_id: &str, kind: &str, props: &Mapping) -> String {
    let name_prop = match kind {
        TABLE => "TableName",
        QUEUE => "QueueName",
        TOPIC => "TopicName",
        _ => "BucketName",
    };
    let base = props
        .get(name_prop)
        .and_then(Value::as_str)
        .unwrap_or(logical_id);
    let mut name = format!("{prefix}-{base}");
    if kind == BUCKET {
        name = name
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
    }
    let fifo = props
        .get("FifoQueue")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || props
            .get("FifoTopic")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    if fifo && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    name
}

pub async fn provision(
    aws: &aws_config::SdkConfig,
    template: &Template,
    options: &Options,
) -> Result<Resources, ProvisionError> {
    let region = aws
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut resources = Resources {
        prefix: options.prefix.clone(),
        region,
        template: template.clone(),
        parameters: options.parameters.clone(),
        physical: BTreeMap::new(),
    };
    let wanted = |id: &String| options.only.as_ref().is_none_or(|only| only.contains(id));
    let selected = |kind: &'static str| {
        template
            .resources_of_type(kind)
            .filter(|r| wanted(&r.logical_id))
            .map(|r| (r.logical_id.clone(), r.properties.clone()))
            .collect::<Vec<_>>()
    };

    let dynamo = aws_sdk_dynamodb::Client::new(aws);
    for (id, props) in selected(TABLE) {
        let physical = create_table(
            &dynamo,
            &physical_name(&options.prefix, &id, TABLE, &props),
            &props,
        )
        .await?;
        resources.physical.insert(id, physical);
    }
    let s3 = loyalty_platform::aws::s3(aws, &Env::default().with("S3_FORCE_PATH_STYLE", "true"));
    for (id, props) in selected(BUCKET) {
        let name = physical_name(&options.prefix, &id, BUCKET, &props);
        create_bucket(&s3, &name).await?;
        let arn = format!("arn:aws:s3:::{name}");
        resources.physical.insert(
            id,
            Physical {
                kind: BUCKET.into(),
                name,
                arn,
                url: None,
                stream_arn: None,
            },
        );
    }
    for (id, props) in selected(TOPIC) {
        let name = physical_name(&options.prefix, &id, TOPIC, &props);
        let arn = create_topic(aws, &resources.region, &name, &props).await?;
        resources.physical.insert(
            id,
            Physical {
                kind: TOPIC.into(),
                name,
                arn,
                url: None,
                stream_arn: None,
            },
        );
    }

    // A queue's redrive policy names its dead-letter queue's ARN, so dead-letter queues first.
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut pending = selected(QUEUE);
    while !pending.is_empty() {
        let before = pending.len();
        let mut blocked = Vec::new();
        for (id, props) in pending {
            match queue_attributes(&resources, &props) {
                Ok(attributes) => {
                    let name = physical_name(&options.prefix, &id, QUEUE, &props);
                    let physical = create_queue(&sqs, &name, attributes).await?;
                    resources.physical.insert(id, physical);
                }
                Err(_) => blocked.push((id, props)),
            }
        }
        if blocked.len() == before {
            // No progress: report the first queue's real resolution error.
            let (id, props) = &blocked[0];
            let err = queue_attributes(&resources, props)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(bad(format!("queue {id}: {err}")));
        }
        pending = blocked;
    }
    Ok(resources)
}

fn str_prop<'a>(props: &'a Mapping, key: &str) -> Option<&'a str> {
    props.get(key).and_then(Value::as_str)
}

fn key_schema(value: Option<&Value>, owner: &str) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    let elements = value
        .and_then(Value::as_sequence)
        .ok_or_else(|| bad(format!("{owner}: KeySchema is missing")))?;
    elements
        .iter()
        .map(|e| {
            KeySchemaElement::builder()
                .attribute_name(
                    e.get("AttributeName")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
                .key_type(KeyType::from(
                    e.get("KeyType").and_then(Value::as_str).unwrap_or_default(),
                ))
                .build()
                .map_err(|err| bad(format!("{owner}: {err}")))
        })
        .collect()
}

fn projection(value: Option<&Value>) -> Projection {
    let kind = value
        .and_then(|p| p.get("ProjectionType"))
        .and_then(Value::as_str)
        .unwrap_or("ALL");
    let non_key = value
        .and_then(|p| p.get("NonKeyAttributes"))
        .and_then(Value::as_sequence)
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect()
        });
    Projection::builder()
        .projection_type(ProjectionType::from(kind))
        .set_non_key_attributes(non_key)
        .build()
}

fn throughput(value: Option<&Value>) -> Result<Option<ProvisionedThroughput>, ProvisionError> {
    let Some(value) = value else { return Ok(None) };
    let units = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("ProvisionedThroughput.{key} is missing")))
    };
    ProvisionedThroughput::builder()
        .read_capacity_units(units("ReadCapacityUnits")?)
        .write_capacity_units(units("WriteCapacityUnits")?)
        .build()
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    props: &Mapping,
) -> Result<Physical, ProvisionError> {
    let definitions = props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| bad(format!("table {name}: AttributeDefinitions is missing")))?
        .iter()
        .map(|d| {
            AttributeDefinition::builder()
                .attribute_name(
                    d.get("AttributeName")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
                .attribute_type(ScalarAttributeType::from(
                    d.get("AttributeType")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ))
                .build()
                .map_err(|e| bad(format!("table {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let billing = BillingMode::from(str_prop(props, "BillingMode").unwrap_or("PROVISIONED"));
    let mut request = client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_schema(props.get("KeySchema"), name)?))
        .billing_mode(billing)
        .set_provisioned_throughput(throughput(props.get("ProvisionedThroughput"))?);
    for index in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let index_name = index
            .get("IndexName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(index_name)
            .set_key_schema(Some(key_schema(index.get("KeySchema"), index_name)?))
            .projection(projection(index.get("Projection")))
            .set_provisioned_throughput(throughput(index.get("ProvisionedThroughput"))?)
            .build()
            .map_err(|e| bad(format!("table {name}: {e}")))?;
        request = request.global_secondary_indexes(gsi);
    }
    for index in props
        .get("LocalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let index_name = index
            .get("IndexName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lsi = LocalSecondaryIndex::builder()
            .index_name(index_name)
            .set_key_schema(Some(key_schema(index.get("KeySchema"), index_name)?))
            .projection(projection(index.get("Projection")))
            .build()
            .map_err(|e| bad(format!("table {name}: {e}")))?;
        request = request.local_secondary_indexes(lsi);
    }
    if let Some(view) = props
        .get("StreamSpecification")
        .and_then(|s| s.get("StreamViewType"))
        .and_then(Value::as_str)
    {
        let spec = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(view))
            .build()
            .map_err(|e| bad(format!("table {name}: {e}")))?;
        request = request.stream_specification(spec);
    }
    match request.send().await {
        Ok(_) => {}
        Err(err) => {
            let err = err.into_service_error();
            if !err.is_resource_in_use_exception() {
                return Err(aws_err("CreateTable", name, err));
            }
        }
    }
    let description = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_err("DescribeTable", name, e.into_service_error()))?
        .table
        .ok_or_else(|| bad(format!("table {name}: DescribeTable returned no table")))?;

    if let Some(ttl) = props
        .get("TimeToLiveSpecification")
        .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
    {
        let attribute = ttl
            .get("AttributeName")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("table {name}: TTL AttributeName is missing")))?;
        let current = client
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DescribeTimeToLive", name, e.into_service_error()))?;
        let status = current
            .time_to_live_description
            .and_then(|d| d.time_to_live_status);
        // UpdateTimeToLive refuses to enable TTL twice, so a second run checks first.
        if !matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| aws_err("UpdateTimeToLive", name, e.into_service_error()))?;
        }
    }
    Ok(Physical {
        kind: TABLE.into(),
        name: name.to_string(),
        arn: description
            .table_arn
            .unwrap_or_else(|| format!("arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}")),
        url: None,
        stream_arn: description.latest_stream_arn,
    })
}

async fn create_bucket(client: &aws_sdk_s3::Client, name: &str) -> Result<(), ProvisionError> {
    match client.create_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = err.into_service_error();
            // One account owns everything on the emulator: an existing bucket is ours.
            if err.is_bucket_already_owned_by_you() || err.is_bucket_already_exists() {
                Ok(())
            } else {
                Err(aws_err("CreateBucket", name, err))
            }
        }
    }
}

/// SNS `CreateTopic` (idempotent in SNS) in the query protocol; the emulator routes on the
/// credential scope of the `Authorization` header and does not check the signature.
async fn create_topic(
    aws: &aws_config::SdkConfig,
    region: &str,
    name: &str,
    props: &Mapping,
) -> Result<String, ProvisionError> {
    let endpoint = aws.endpoint_url().ok_or_else(|| {
        bad("SNS topics are only provisioned on a local emulator (set an endpoint URL)")
    })?;
    let mut form = format!(
        "Action=CreateTopic&Version=2010-03-31&Name={}",
        form_encode(name)
    );
    if name.ends_with(".fifo") {
        form.push_str("&Attributes.entry.1.key=FifoTopic&Attributes.entry.1.value=true");
    }
    if props
        .get("ContentBasedDeduplication")
        .and_then(Value::as_bool)
        == Some(true)
    {
        form.push_str(
            "&Attributes.entry.2.key=ContentBasedDeduplication&Attributes.entry.2.value=true",
        );
    }
    let date = chrono::Utc::now().format("%Y%m%d").to_string();
    let authorization = format!("AWS4-HMAC-SHA256 Credential=test/{date}/{region}/sns/aws4_request, SignedHeaders=host, Signature=0");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", authorization.as_str()),
    ];
    let reply = crate::client::post(
        &format!("{}/", endpoint.trim_end_matches('/')),
        &headers,
        form,
    )
    .await
    .map_err(|e| aws_err("CreateTopic", name, e))?;
    let arn = reply
        .body
        .split_once("<TopicArn>")
        .and_then(|(_, rest)| rest.split_once("</TopicArn>"))
        .map(|(arn, _)| arn.trim().to_string());
    match arn {
        Some(arn) if reply.status == 200 => Ok(arn),
        _ => Err(ProvisionError::Aws {
            operation: "CreateTopic",
            name: name.into(),
            message: format!("HTTP {}: {}", reply.status, reply.body),
        }),
    }
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CloudFormation queue properties that are SQS attributes. Encryption settings are
/// left out: they change nothing observable locally.
fn queue_attributes(
    resources: &Resources,
    props: &Mapping,
) -> Result<HashMap<QueueAttributeName, String>, ProvisionError> {
    const PLAIN: [&str; 7] = [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
    ];
    let mut attributes = HashMap::new();
    for key in PLAIN {
        if let Some(value) = props.get(key) {
            attributes.insert(QueueAttributeName::from(key), resources.resolve(value)?);
        }
    }
    for (key, attribute) in [
        ("RedrivePolicy", "RedrivePolicy"),
        ("RedriveAllowPolicy", "RedriveAllowPolicy"),
    ] {
        if let Some(Value::Mapping(policy)) = props.get(key) {
            let mut json = serde_json::Map::new();
            for (k, v) in policy {
                let k = k.as_str().unwrap_or_default().to_string();
                let resolved = resources.resolve(v)?;
                // SQS wants maxReceiveCount as a number inside the JSON policy.
                let value = resolved
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::String(resolved));
                json.insert(k, value);
            }
            attributes.insert(
                QueueAttributeName::from(attribute),
                serde_json::Value::Object(json).to_string(),
            );
        }
    }
    Ok(attributes)
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<Physical, ProvisionError> {
    let url = match client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await
    {
        Ok(out) => out.queue_url,
        Err(err) => {
            let err = err.into_service_error();
            if !err.is_queue_name_exists() {
                return Err(aws_err("CreateQueue", name, err));
            }
            // The queue exists with other attributes (the template changed): bring it in line.
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| aws_err("GetQueueUrl", name, e.into_service_error()))?
                .queue_url;
            if let Some(url) = &url {
                let settable: HashMap<_, _> = attributes
                    .into_iter()
                    .filter(|(k, _)| !matches!(k, QueueAttributeName::FifoQueue))
                    .collect();
                client
                    .set_queue_attributes()
                    .queue_url(url)
                    .set_attributes(Some(settable))
                    .send()
                    .await
                    .map_err(|e| aws_err("SetQueueAttributes", name, e.into_service_error()))?;
            }
            url
        }
    };
    let url = url.ok_or_else(|| bad(format!("queue {name}: no URL returned")))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_err("GetQueueAttributes", name, e.into_service_error()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| bad(format!("queue {name}: no ARN returned")))?;
    Ok(Physical {
        kind: QUEUE.into(),
        name: name.to_string(),
        arn,
        url: Some(url),
        stream_arn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_names_carry_the_prefix_and_buckets_are_lower_case() {
        let none = Mapping::new();
        assert_eq!(
            physical_name("local", "LedgerTable", TABLE, &none),
            "local-LedgerTable"
        );
        assert_eq!(
            physical_name("local", "ExportsBucket", BUCKET, &none),
            "local-exportsbucket"
        );
        let fifo: Mapping = serde_yaml::from_str("FifoQueue: true").unwrap();
        assert_eq!(physical_name("t1", "Jobs", QUEUE, &fifo), "t1-Jobs.fifo");
    }
}
