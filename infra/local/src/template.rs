//! Reads `template.yaml`: the single source of truth for what exists in the cloud, and so
//! for what the local runner provisions and serves.
//!
//! CloudFormation intrinsics arrive in two spellings: short tags (`!Ref X`, `!GetAtt X.Arn`,
//! `!Sub "..."`), which serde_yaml keeps as [`serde_yaml::Value::Tagged`], and long forms
//! (`{Ref: X}`, `{"Fn::GetAtt": [X, Arn]}`, `{"Fn::Sub": "..."}`). [`Intrinsic::of`] reads both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template has no Resources section")]
    NoResources,
    #[error("{0}")]
    Invalid(String),
}

/// The repository root, found from this crate's location at build time.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

pub fn default_template_path() -> PathBuf {
    repo_root().join("template.yaml")
}

#[derive(Debug, Clone, PartialEq)]
pub enum Intrinsic {
    Ref(String),
    GetAtt {
        resource: String,
        attribute: String,
    },
    /// The `!Sub` string; only the single-string form is supported.
    Sub(String),
}

impl Intrinsic {
    pub fn of(value: &Value) -> Option<Intrinsic> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                Self::from_parts(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(map) if map.len() == 1 => {
                let (k, v) = map.iter().next()?;
                let name = k.as_str()?;
                Self::from_parts(name.strip_prefix("Fn::").unwrap_or(name), v)
            }
            _ => None,
        }
    }

    fn from_parts(name: &str, arg: &Value) -> Option<Intrinsic> {
        match name {
            "Ref" => arg.as_str().map(|s| Intrinsic::Ref(s.to_string())),
            "GetAtt" => match arg {
                Value::String(s) => {
                    let (resource, attribute) = s.split_once('.')?;
                    Some(Intrinsic::GetAtt {
                        resource: resource.into(),
                        attribute: attribute.into(),
                    })
                }
                Value::Sequence(parts) if parts.len() == 2 => Some(Intrinsic::GetAtt {
                    resource: parts[0].as_str()?.into(),
                    attribute: parts[1].as_str()?.into(),
                }),
                _ => None,
            },
            "Sub" => arg.as_str().map(|s| Intrinsic::Sub(s.to_string())),
            _ => None,
        }
    }

    /// The logical ids this intrinsic refers to (parameters and pseudo parameters included).
    pub fn targets(&self) -> Vec<String> {
        match self {
            Intrinsic::Ref(id) => vec![id.clone()],
            Intrinsic::GetAtt { resource, .. } => vec![resource.clone()],
            Intrinsic::Sub(text) => sub_placeholders(text)
                .into_iter()
                .map(|p| p.split('.').next().unwrap_or("").to_string())
                .collect(),
        }
    }
}

/// The `${...}` placeholders of a `!Sub` string, `${!Literal}` escapes excluded.
pub fn sub_placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            out.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub kind: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Mapping,
    pub metadata: Mapping,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventSource {
    /// `authorized` is false only for a route with `Auth: { Authorizer: NONE }`.
    Http {
        method: String,
        path: String,
        authorized: bool,
    },
    Sqs {
        queue: Value,
        batch_size: u32,
        report_batch_item_failures: bool,
    },
    /// `input`: the event's `Input` JSON, which EventBridge sends instead of the scheduled event.
    Schedule {
        expression: String,
        enabled: bool,
        input: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub source: EventSource,
}

/// An `AWS::Serverless::Function`, as the local runner needs it.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the crate that implements it.
    pub binary: String,
    pub environment: BTreeMap<String, Value>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: BTreeMap<String, Parameter>,
    /// `Globals.Function.Environment.Variables`.
    pub global_environment: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
}

fn map(value: Option<&Value>) -> Option<&Mapping> {
    value.and_then(Value::as_mapping)
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn variables(env_holder: Option<&Mapping>) -> BTreeMap<String, Value> {
    map(env_holder.and_then(|m| m.get("Environment")))
        .and_then(|e| map(e.get("Variables")))
        .map(|vars| {
            vars.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Template::parse(&text)
    }

    pub fn load_default() -> Result<Template, TemplateError> {
        Template::load(&default_template_path())
    }

    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let doc: Value = serde_yaml::from_str(text)?;
        let parameters = map(doc.get("Parameters"))
            .map(|params| {
                params
                    .iter()
                    .filter_map(|(k, v)| {
                        let kind = v
                            .get("Type")
                            .and_then(Value::as_str)
                            .unwrap_or("String")
                            .to_string();
                        let default = v.get("Default").and_then(scalar_string);
                        Some((k.as_str()?.to_string(), Parameter { kind, default }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let global_environment =
            variables(map(doc.get("Globals")).and_then(|g| map(g.get("Function"))));
        let resources = map(doc.get("Resources"))
            .ok_or(TemplateError::NoResources)?
            .iter()
            .filter_map(|(k, v)| {
                let logical_id = k.as_str()?.to_string();
                let kind = v
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let properties = map(v.get("Properties")).cloned().unwrap_or_default();
                let metadata = map(v.get("Metadata")).cloned().unwrap_or_default();
                Some((
                    logical_id.clone(),
                    Resource {
                        logical_id,
                        kind,
                        properties,
                        metadata,
                    },
                ))
            })
            .collect();
        Ok(Template {
            parameters,
            global_environment,
            resources,
        })
    }

    pub fn resources_of_type<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    pub fn functions(&self) -> Result<Vec<Function>, TemplateError> {
        self.resources_of_type("AWS::Serverless::Function")
            .map(|r| self.function_of(r))
            .collect()
    }

    pub fn function(&self, logical_id: &str) -> Result<Function, TemplateError> {
        let resource = self
            .resources
            .get(logical_id)
            .filter(|r| r.kind == "AWS::Serverless::Function")
            .ok_or_else(|| {
                TemplateError::Invalid(format!("template has no function {logical_id}"))
            })?;
        self.function_of(resource)
    }

    fn function_of(&self, r: &Resource) -> Result<Function, TemplateError> {
        let invalid =
            |what: &str| TemplateError::Invalid(format!("function {}: {what}", r.logical_id));
        let binary = map(r.metadata.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Metadata.BuildProperties.Binary is missing"))?
            .to_string();
        let mut events = Vec::new();
        for (name, event) in map(r.properties.get("Events")).into_iter().flatten() {
            let name = name.as_str().unwrap_or_default().to_string();
            let kind = event
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let props = event.get("Properties");
            let prop = |key: &str| props.and_then(|p| p.get(key));
            let source = match kind {
                "HttpApi" => EventSource::Http {
                    method: prop("Method")
                        .and_then(Value::as_str)
                        .unwrap_or("ANY")
                        .to_uppercase(),
                    path: prop("Path")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(&format!("event {name} has no Path")))?
                        .to_string(),
                    authorized: prop("Auth")
                        .and_then(|a| a.get("Authorizer"))
                        .and_then(Value::as_str)
                        != Some("NONE"),
                },
                "SQS" => EventSource::Sqs {
                    queue: prop("Queue")
                        .cloned()
                        .ok_or_else(|| invalid(&format!("event {name} has no Queue")))?,
                    batch_size: prop("BatchSize").and_then(Value::as_u64).unwrap_or(10) as u32,
                    report_batch_item_failures: prop("FunctionResponseTypes")
                        .and_then(Value::as_sequence)
                        .is_some_and(|types| {
                            types
                                .iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                        }),
                },
                "Schedule" | "ScheduleV2" => {
                    let key = if kind == "Schedule" {
                        "Schedule"
                    } else {
                        "ScheduleExpression"
                    };
                    let enabled = match kind {
                        "Schedule" => prop("Enabled").and_then(Value::as_bool).unwrap_or(true),
                        _ => prop("State")
                            .and_then(Value::as_str)
                            .is_none_or(|s| s == "ENABLED"),
                    };
                    EventSource::Schedule {
                        expression: prop(key)
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid(&format!("event {name} has no {key}")))?
                            .to_string(),
                        enabled,
                        input: prop("Input").and_then(Value::as_str).map(String::from),
                    }
                }
                other => {
                    return Err(invalid(&format!(
                        "event {name} has type {other}, which the local runner does not support"
                    )))
                }
            };
            events.push(Event { name, source });
        }
        Ok(Function {
            logical_id: r.logical_id.clone(),
            binary,
            environment: variables(Some(&r.properties)),
            events,
        })
    }

    /// The provisionable resources a function needs (those its environment and events refer
    /// to), and transitively what those refer to, such as a queue's dead-letter queue.
    pub fn dependencies_of(&self, function_id: &str) -> Result<BTreeSet<String>, TemplateError> {
        let function = self.function(function_id)?;
        let mut pending: Vec<String> = Vec::new();
        for value in self
            .global_environment
            .values()
            .chain(function.environment.values())
        {
            collect_targets(value, &mut pending);
        }
        for event in &function.events {
            if let EventSource::Sqs { queue, .. } = &event.source {
                collect_targets(queue, &mut pending);
            }
        }
        let mut found = BTreeSet::new();
        while let Some(id) = pending.pop() {
            let Some(resource) = self.resources.get(&id) else {
                continue;
            };
            if !crate::provision::is_provisionable(&resource.kind) || !found.insert(id) {
                continue;
            }
            collect_targets(&Value::Mapping(resource.properties.clone()), &mut pending);
        }
        Ok(found)
    }
}

/// Every logical id referenced anywhere inside `value`.
pub fn collect_targets(value: &Value, out: &mut Vec<String>) {
    if let Some(intrinsic) = Intrinsic::of(value) {
        out.extend(intrinsic.targets());
        return;
    }
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| collect_targets(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| collect_targets(v, out)),
        Value::Tagged(t) => collect_targets(&t.value, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_intrinsic_forms_read_the_same() {
        let doc: Value = serde_yaml::from_str(
            r#"
short_ref: !Ref Table
long_ref: { Ref: Table }
short_att: !GetAtt Queue.Arn
list_att: !GetAtt [Queue, Arn]
long_att: { "Fn::GetAtt": [Queue, Arn] }
sub: !Sub "https://${Api}.example/${Queue.Arn}"
plain: hello
"#,
        )
        .unwrap();
        let get = |k: &str| Intrinsic::of(doc.get(k).unwrap());
        assert_eq!(get("short_ref"), Some(Intrinsic::Ref("Table".into())));
        assert_eq!(get("long_ref"), get("short_ref"));
        let att = Some(Intrinsic::GetAtt {
            resource: "Queue".into(),
            attribute: "Arn".into(),
        });
        assert_eq!(get("short_att"), att);
        assert_eq!(get("list_att"), att);
        assert_eq!(get("long_att"), att);
        assert_eq!(
            get("sub").unwrap().targets(),
            vec!["Api".to_string(), "Queue".to_string()]
        );
        assert_eq!(get("plain"), None);
    }

    #[test]
    fn the_project_template_declares_functions_with_binaries_and_events() {
        let template = Template::load_default().unwrap();
        let functions = template.functions().unwrap();
        let claim = functions
            .iter()
            .find(|f| f.logical_id == "CodeClaimFunction")
            .unwrap();
        assert_eq!(claim.binary, "code-claim");
        assert!(claim.events.iter().any(|e| e.source
            == EventSource::Http {
                method: "POST".into(),
                path: "/claims".into(),
                authorized: true,
            }));
        assert!(claim.environment.contains_key("CODES_TABLE"));
        assert!(template.global_environment.contains_key("RUST_LOG"));
    }

    #[test]
    fn a_function_depends_on_the_queue_it_reads_and_that_queues_dead_letter_queue() {
        let template = Template::parse(
            r#"
Resources:
  Dlq: { Type: AWS::SQS::Queue }
  Jobs: { Type: AWS::SQS::Queue, Properties: { RedrivePolicy: { deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3 } } }
  Table: { Type: AWS::DynamoDB::Table }
  Other: { Type: AWS::DynamoDB::Table }
  Worker:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: worker } }
    Properties:
      Environment: { Variables: { TABLE: !Ref Table } }
      Events: { Jobs: { Type: SQS, Properties: { Queue: !GetAtt Jobs.Arn } } }
"#,
        )
        .unwrap();
        let deps: Vec<String> = template
            .dependencies_of("Worker")
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(deps, vec!["Dlq", "Jobs", "Table"]);
    }
}
