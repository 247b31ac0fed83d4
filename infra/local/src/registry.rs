//! Which crate implements each template function (`Metadata.BuildProperties.Binary`), and
//! one running instance of every function, built with its own configuration.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, Response};
use lambda_runtime::LambdaEvent;
use loyalty_platform::config::{ConfigError, Env};
use serde_json::Value;

use crate::provision::Resources;
use crate::template::{Function, Template};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type HttpFn =
    Arc<dyn Fn(Request) -> BoxFuture<Result<Response<Body>, lambda_http::Error>> + Send + Sync>;
pub type SqsFn = Arc<
    dyn Fn(LambdaEvent<SqsEvent>) -> BoxFuture<Result<SqsBatchResponse, lambda_runtime::Error>>
        + Send
        + Sync,
>;
/// Any other event source (schedules): the raw event JSON in, the result JSON out.
pub type EventFn = Arc<
    dyn Fn(LambdaEvent<Value>) -> BoxFuture<Result<Value, lambda_runtime::Error>> + Send + Sync,
>;

#[derive(Clone)]
pub enum Handler {
    Http(HttpFn),
    Sqs(SqsFn),
    Event(EventFn),
}

impl Handler {
    fn kind(&self) -> &'static str {
        match self {
            Handler::Http(_) => "HTTP",
            Handler::Sqs(_) => "SQS",
            Handler::Event(_) => "event",
        }
    }
}

pub type Factory =
    Arc<dyn Fn(&aws_config::SdkConfig, &Env) -> Result<Handler, ConfigError> + Send + Sync>;

/// Wraps a function crate's `App` (see docs/architecture.md, "The function contract").
macro_rules! app {
    ($krate:ident, Http) => {
        Arc::new(|aws: &aws_config::SdkConfig, env: &Env| {
            let app = Arc::new($krate::App::new(aws, env)?);
            Ok(Handler::Http(Arc::new(move |event| {
                let app = app.clone();
                Box::pin(async move { app.handle(event).await })
            })))
        }) as Factory
    };
    // Lambda does not need an event handler's future to be `Send`, and some are not
    // (rustc cannot always prove it for higher-ranked closures), so queue handlers run on a
    // blocking thread of their own, as a Lambda instance would.
    ($krate:ident, Sqs) => {
        Arc::new(|aws: &aws_config::SdkConfig, env: &Env| {
            let app = Arc::new($krate::App::new(aws, env)?);
            Ok(Handler::Sqs(Arc::new(move |event| {
                let app = app.clone();
                Box::pin(async move {
                    let runtime = tokio::runtime::Handle::current();
                    tokio::task::spawn_blocking(move || runtime.block_on(app.handle(event))).await?
                })
            })))
        }) as Factory
    };
}

#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("function {function} (binary {binary}) has no registered handler: add its crate to infra/local/Cargo.toml and to Registry::builtin in infra/local/src/registry.rs")]
    Unregistered { function: String, binary: String },
    #[error("function {function}: {source}")]
    Config {
        function: String,
        source: ConfigError,
    },
    #[error("{0}")]
    Template(String),
}

impl Registry {
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every function crate of the workspace.
    pub fn builtin() -> Registry {
        Registry::empty()
            .with("participants", app!(participants, Http))
            .with("code-claim", app!(code_claim, Http))
            .with("wallet", app!(wallet, Http))
            .with("accrual", app!(accrual, Http))
            .with("codes-admin", app!(codes_admin, Http))
            .with("batch-worker", app!(batch_worker, Sqs))
            .with("partner-webhooks", app!(partner_webhooks, Http))
    }

    pub fn with(mut self, binary: &str, factory: Factory) -> Registry {
        self.factories.insert(binary.to_string(), factory);
        self
    }

    pub fn contains(&self, binary: &str) -> bool {
        self.factories.contains_key(binary)
    }

    /// The template functions that no crate implements.
    pub fn missing(&self, template: &Template) -> Result<Vec<Function>, RegistryError> {
        let functions = template
            .functions()
            .map_err(|e| RegistryError::Template(e.to_string()))?;
        Ok(functions
            .into_iter()
            .filter(|f| !self.contains(&f.binary))
            .collect())
    }

    /// One instance of every template function, configured against `resources`.
    pub fn instantiate(
        &self,
        aws: &aws_config::SdkConfig,
        resources: &Resources,
    ) -> Result<Apps, RegistryError> {
        let mut apps = BTreeMap::new();
        for function in resources
            .template()
            .functions()
            .map_err(|e| RegistryError::Template(e.to_string()))?
        {
            let factory = self.factories.get(&function.binary).ok_or_else(|| {
                RegistryError::Unregistered {
                    function: function.logical_id.clone(),
                    binary: function.binary.clone(),
                }
            })?;
            let env = resources
                .env_for(&function.logical_id)
                .map_err(|e| RegistryError::Template(e.to_string()))?;
            let handler = factory(aws, &env).map_err(|source| RegistryError::Config {
                function: function.logical_id.clone(),
                source,
            })?;
            apps.insert(function.logical_id.clone(), App { function, handler });
        }
        Ok(Apps { apps })
    }
}

#[derive(Clone)]
pub struct App {
    pub function: Function,
    pub handler: Handler,
}

/// The running functions, by logical id.
#[derive(Clone)]
pub struct Apps {
    apps: BTreeMap<String, App>,
}

impl Apps {
    pub fn get(&self, function_id: &str) -> Option<&App> {
        self.apps.get(function_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    pub fn http(&self, function_id: &str) -> Result<&HttpFn, String> {
        match self.apps.get(function_id).map(|a| &a.handler) {
            Some(Handler::Http(f)) => Ok(f),
            Some(other) => Err(format!(
                "{function_id} is an {} function, not HTTP",
                other.kind()
            )),
            None => Err(format!("no function {function_id}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_function_has_a_registered_handler() {
        let template = Template::load_default().unwrap();
        let missing: Vec<String> = Registry::builtin()
            .missing(&template)
            .unwrap()
            .into_iter()
            .map(|f| format!("{} ({})", f.logical_id, f.binary))
            .collect();
        assert!(missing.is_empty(), "unregistered functions: {missing:?}");
    }

    #[test]
    fn an_unregistered_function_is_named_in_the_error() {
        let template = Template::load_default().unwrap();
        let missing = Registry::empty()
            .with("wallet", Registry::builtin().factories["wallet"].clone())
            .missing(&template)
            .unwrap();
        assert!(missing.iter().any(|f| f.logical_id == "CodeClaimFunction"));
        assert!(!missing.iter().any(|f| f.logical_id == "WalletFunction"));
    }
}

#[cfg(test)]
mod sample_events {
    use crate::routes::{Route, Router};
    use crate::template::{repo_root, EventSource, Template};

    /// events/<binary>/*.json must be events the function can receive: an HTTP sample's route
    /// is one of its function's template routes, and its path matches that route.
    #[test]
    fn every_sample_event_is_an_event_its_function_receives() {
        let template = Template::load_default().unwrap();
        let mut checked = 0;
        for function in template.functions().unwrap() {
            let dir = repo_root().join("events").join(&function.binary);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let routes: Vec<Route> = function
                .events
                .iter()
                .filter_map(|e| match &e.source {
                    EventSource::Http {
                        method,
                        path,
                        authorized,
                    } => Some(Route::new(method, path, &function.logical_id, *authorized)),
                    _ => None,
                })
                .collect();
            let router = Router::new(routes.clone());
            let takes_sqs = function
                .events
                .iter()
                .any(|e| matches!(e.source, EventSource::Sqs { .. }));
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let name = path.display().to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                let event: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                if event.get("Records").is_some() {
                    assert!(
                        takes_sqs,
                        "{name}: an SQS event for a function without an SQS source"
                    );
                    serde_json::from_value::<aws_lambda_events::sqs::SqsEvent>(event)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                } else {
                    let key = event["routeKey"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: no routeKey"));
                    assert!(
                        routes.iter().any(|r| r.key() == key),
                        "{name}: {key} is not a route of {}",
                        function.logical_id
                    );
                    let (method, _) = key.split_once(' ').unwrap();
                    let raw_path = event["rawPath"].as_str().unwrap_or_default();
                    let matched = router.find(method, raw_path).map(|m| m.route.key());
                    assert_eq!(
                        matched.as_deref(),
                        Some(key),
                        "{name}: rawPath {raw_path} does not match its routeKey"
                    );
                    crate::apigw::into_request(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                checked += 1;
            }
        }
        assert!(checked > 0, "no sample events found");
    }
}
