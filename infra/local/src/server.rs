//! The local HTTP API: serves every `HttpApi` route of the template by verifying the bearer
//! token as the JWT authorizer does, building the API Gateway v2 payload and calling the
//! function's `App::handle`. `POST /_local/schedules/{FunctionLogicalId}` runs a schedule now;
//! `GET /openapi.json` answers the API's contract (docs/openapi.json).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming as HyperBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::http::StatusCode;
use loyalty_domain::auth::AuthError;
use loyalty_platform::http::Problem;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::apigw::{self, Incoming};
use crate::jwt::{self, DevKey};
use crate::openapi;
use crate::registry::{Apps, Handler};
use crate::routes::{Route, Router};
use crate::runtime::{self, ScheduleSource};
use crate::template::EventSource;

/// API Gateway's payload limit.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const SCHEDULES_PATH: &str = "/_local/schedules/";

pub struct ServerState {
    pub router: Router,
    pub apps: Apps,
    pub key: DevKey,
    pub issuer: String,
    pub audience: String,
    pub schedules: Vec<ScheduleSource>,
    pub region: String,
}

impl ServerState {
    pub fn new(
        apps: Apps,
        key: DevKey,
        schedules: Vec<ScheduleSource>,
        region: String,
    ) -> Result<ServerState, String> {
        let mut routes = Vec::new();
        for app in apps.iter() {
            for event in &app.function.events {
                if let EventSource::Http {
                    method,
                    path,
                    authorized,
                } = &event.source
                {
                    if !matches!(app.handler, Handler::Http(_)) {
                        return Err(format!(
                            "{} has HTTP routes but its registered handler is not HTTP",
                            app.function.logical_id
                        ));
                    }
                    routes.push(Route::new(
                        method,
                        path,
                        &app.function.logical_id,
                        *authorized,
                    ));
                }
            }
        }
        Ok(ServerState {
            router: Router::new(routes),
            apps,
            key,
            issuer: crate::LOCAL_ISSUER.to_string(),
            audience: crate::LOCAL_AUDIENCE.to_string(),
            schedules,
            region,
        })
    }
}

pub type Reply = hyper::Response<Full<Bytes>>;

fn convert(response: lambda_http::Response<lambda_http::Body>) -> Reply {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

fn problem(p: Problem) -> Reply {
    convert(p.into_response())
}

fn unauthenticated() -> Reply {
    problem(Problem::from_error(AuthError::Unauthenticated))
}

/// Serves until `shutdown` turns true; connections already open finish their request.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, remote).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection closed with an error");
            }
        });
    }
}

/// A request as read from the wire (or made up by the seed).
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: String,
}

pub async fn handle(
    state: &ServerState,
    req: hyper::Request<HyperBody>,
    remote: SocketAddr,
) -> Reply {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let (reply, route) = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => {
            let raw = RawRequest {
                method: method.clone(),
                path: path.clone(),
                query,
                headers,
                body: collected.to_bytes().to_vec(),
                source_ip: remote.ip().to_string(),
            };
            dispatch(state, raw).await
        }
        Err(_) => (
            problem(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )),
            None,
        ),
    };
    tracing::info!(
        method = %method,
        route = %route.unwrap_or(path),
        status = reply.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    reply
}

/// Routes, authenticates and invokes: everything API Gateway and Lambda do for one request.
/// Returns the reply and the matched route key.
pub async fn dispatch(state: &ServerState, raw: RawRequest) -> (Reply, Option<String>) {
    // Not a template route: the contract of the routes, for clients and for Schemathesis.
    if raw.method == "GET" && raw.path == openapi::PATH {
        let reply = hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(openapi::DOCUMENT.as_bytes())))
            .expect("static response");
        return (reply, Some(format!("GET {}", openapi::PATH)));
    }
    if let Some(function_id) = raw.path.strip_prefix(SCHEDULES_PATH) {
        let reply = if raw.method == "POST" {
            trigger(state, function_id).await
        } else {
            problem(Problem::route_not_found())
        };
        return (
            reply,
            Some(format!("POST {SCHEDULES_PATH}{{FunctionLogicalId}}")),
        );
    }
    let Some(matched) = state.router.find(&raw.method, &raw.path) else {
        return (problem(Problem::route_not_found()), None);
    };
    let route_key = matched.route.key();
    let claims = if matched.route.authorized {
        let header = raw
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str());
        let now = chrono::Utc::now().timestamp();
        match jwt::bearer(header)
            .and_then(|token| state.key.verify(token, now, &state.issuer, &state.audience))
        {
            Ok(claims) => Some(claims),
            Err(reason) => {
                tracing::info!(route = %route_key, %reason, "token refused");
                return (unauthenticated(), Some(route_key));
            }
        }
    } else {
        None
    };
    let handler = match state.apps.http(&matched.route.function_id) {
        Ok(handler) => handler.clone(),
        Err(error) => {
            tracing::error!(%error, "route without HTTP handler");
            return (problem(internal_error()), Some(route_key));
        }
    };
    let payload = apigw::payload(&Incoming {
        method: raw.method.to_uppercase(),
        route_key: route_key.clone(),
        raw_path: raw.path,
        raw_query: raw.query,
        headers: raw.headers,
        path_parameters: matched.path_parameters,
        body: raw.body,
        source_ip: raw.source_ip,
        request_id: uuid::Uuid::new_v4().to_string(),
        claims,
        time_epoch_ms: chrono::Utc::now().timestamp_millis(),
    });
    let request = match apigw::into_request(&payload) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(%error, "the v2 payload did not deserialise");
            return (problem(internal_error()), Some(route_key));
        }
    };
    match handler(request).await {
        Ok(response) => (convert(response), Some(route_key)),
        Err(error) => {
            // Lambda reports a handler error as a 500 without details; so do we.
            tracing::error!(function = %matched.route.function_id, %error, "handler failed");
            (problem(internal_error()), Some(route_key))
        }
    }
}

fn internal_error() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Something went wrong on our side; please retry.",
    )
}

async fn trigger(state: &ServerState, function_id: &str) -> Reply {
    let Some(source) = state
        .schedules
        .iter()
        .find(|s| s.function_id == function_id)
    else {
        let known: Vec<&str> = state
            .schedules
            .iter()
            .map(|s| s.function_id.as_str())
            .collect();
        let p = Problem::new(
            StatusCode::NOT_FOUND,
            "schedule_not_found",
            format!("{function_id} has no schedule."),
        )
        .with_detail(format!("Scheduled functions: {known:?}"));
        return problem(p);
    };
    let Some(app) = state.apps.get(function_id) else {
        return problem(Problem::route_not_found());
    };
    match runtime::run_schedule(app, source, &state.region).await {
        Ok(result) => convert(loyalty_platform::http::json(
            StatusCode::OK,
            &serde_json::json!({ "function": function_id, "event": source.event_name, "result": result }),
        )),
        // A local development endpoint: the error text is what the developer needs.
        Err(error) => problem(
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "schedule_failed",
                format!("{function_id} failed."),
            )
            .with_detail(error),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lambda_http::RequestExt;
    use serde_json::{json, Value};

    use super::*;
    use crate::jwt::TokenRequest;
    use crate::provision::{provision, Options};
    use crate::registry::{Factory, Registry};
    use crate::template::Template;

    const FIXTURE: &str = r#"
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: echo } }
    Properties:
      Environment: { Variables: { GREETING: hello } }
      Events:
        Get: { Type: HttpApi, Properties: { Method: GET, Path: "/things/{thingId}" } }
        Post: { Type: HttpApi, Properties: { Method: POST, Path: /things } }
        Health: { Type: HttpApi, Properties: { Method: GET, Path: /health, Auth: { Authorizer: NONE } } }
  TickFunction:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: tick } }
    Properties:
      Events:
        Nightly: { Type: Schedule, Properties: { Schedule: "cron(0 3 * * ? *)" } }
  ReportFunction:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: tick } }
    Properties:
      Events:
        Weekly: { Type: ScheduleV2, Properties: { ScheduleExpression: "rate(7 days)", Input: '{"report": "weekly"}' } }
"#;

    /// Answers with what it received, or fails when the body says "boom".
    fn echo() -> Factory {
        Arc::new(
            |_aws: &aws_config::SdkConfig, env: &loyalty_platform::config::Env| {
                let greeting = env.required("GREETING")?;
                Ok(Handler::Http(Arc::new(move |req: lambda_http::Request| {
                    let greeting = greeting.clone();
                    Box::pin(async move {
                        let body = match req.body() {
                            lambda_http::Body::Text(t) => t.clone(),
                            _ => String::new(),
                        };
                        if body == "boom" {
                            return Err("the handler failed with a secret detail".into());
                        }
                        let claims = match req.request_context_ref() {
                            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx
                                .authorizer
                                .as_ref()
                                .and_then(|a| a.jwt.as_ref())
                                .map(|j| json!(j.claims)),
                            _ => None,
                        };
                        let echo = json!({
                            "greeting": greeting,
                            "route": loyalty_platform::http::route_key(&req),
                            "thing": req.path_parameters_ref().and_then(|p| p.first("thingId")),
                            "page": req.query_string_parameters_ref().and_then(|q| q.first("page")),
                            "claims": claims,
                            "body": body,
                        });
                        Ok(loyalty_platform::http::json(StatusCode::OK, &echo))
                    })
                })))
            },
        )
    }

    fn tick(received: Arc<Mutex<Vec<Value>>>) -> Factory {
        Arc::new(
            move |_aws: &aws_config::SdkConfig, _env: &loyalty_platform::config::Env| {
                let received = received.clone();
                Ok(Handler::Event(Arc::new(
                    move |event: lambda_runtime::LambdaEvent<Value>| {
                        received.lock().unwrap().push(event.payload);
                        Box::pin(async { Ok(json!({ "ticked": true })) })
                    },
                )))
            },
        )
    }

    struct Running {
        base: String,
        key: DevKey,
        ticks: Arc<Mutex<Vec<Value>>>,
        _stop: watch::Sender<bool>,
    }

    async fn start() -> Running {
        let template = Template::parse(FIXTURE).unwrap();
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let resources = provision(&aws, &template, &Options::local("fixture"))
            .await
            .unwrap();
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let registry = Registry::empty()
            .with("echo", echo())
            .with("tick", tick(ticks.clone()));
        let apps = registry.instantiate(&aws, &resources).unwrap();
        let schedules = runtime::schedule_sources(&apps).unwrap();
        let key = DevKey::from_bytes(b"test-key".to_vec());
        let state =
            Arc::new(ServerState::new(apps, key.clone(), schedules, "us-east-1".into()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, state, stopped));
        Running {
            base,
            key,
            ticks,
            _stop: stop,
        }
    }

    fn token(key: &DevKey, ttl_hours: i64, now: i64) -> String {
        let request = TokenRequest {
            role: "participant".into(),
            sub: "P-9".into(),
            outlet: Some(("O-1".into(), "seller".into())),
            region: Some("north".into()),
            scope: None,
            phone: None,
            participant_id: None,
            ttl_hours,
        };
        key.sign(&request.claims(now))
    }

    async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let reply = crate::client::send("GET", &format!("{base}{path}"), &headers, String::new())
            .await
            .unwrap();
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn an_authorized_request_reaches_its_handler_with_claims_path_and_query() {
        let server = start().await;
        let t = token(&server.key, 1, chrono::Utc::now().timestamp());
        let (status, echo) = get(&server.base, "/things/T%2042?page=3", Some(&t)).await;
        assert_eq!(status, 200);
        assert_eq!(
            echo["greeting"], "hello",
            "the function got its template environment"
        );
        assert_eq!(echo["route"], "GET /things/{thingId}");
        assert_eq!(echo["thing"], "T 42");
        assert_eq!(echo["page"], "3");
        assert_eq!(echo["claims"]["sub"], "P-9");
        assert_eq!(echo["claims"]["outlet_role"], "seller");
        assert_eq!(
            echo["claims"]["exp"]
                .as_str()
                .map(|s| s.parse::<i64>().is_ok()),
            Some(true)
        );
    }

    #[tokio::test]
    async fn a_request_without_a_valid_token_gets_401_unauthenticated() {
        let server = start().await;
        let now = chrono::Utc::now().timestamp();
        let expired = token(&server.key, 1, now - 7200);
        let foreign = token(&DevKey::from_bytes(b"other".to_vec()), 1, now);
        let mut wrong_audience = TokenRequest {
            role: "admin".into(),
            sub: "A".into(),
            outlet: None,
            region: None,
            scope: None,
            phone: None,
            participant_id: None,
            ttl_hours: 1,
        }
        .claims(now);
        wrong_audience.insert("aud".into(), "someone-else".into());
        let wrong_audience = server.key.sign(&wrong_audience);
        for bad in [
            None,
            Some("not-a-jwt"),
            Some(expired.as_str()),
            Some(foreign.as_str()),
            Some(wrong_audience.as_str()),
        ] {
            let (status, problem) = get(&server.base, "/things/1", bad).await;
            assert_eq!(status, 401, "{bad:?}");
            assert_eq!(problem["code"], "unauthenticated");
        }
    }

    #[tokio::test]
    async fn an_unknown_route_or_method_gets_404_route_not_found() {
        let server = start().await;
        let t = token(&server.key, 1, chrono::Utc::now().timestamp());
        for path in ["/nothing", "/things/1/extra", "/things"] {
            let (status, problem) = get(&server.base, path, Some(&t)).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("route_not_found")),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn a_route_without_authorizer_needs_no_token() {
        let server = start().await;
        let (status, echo) = get(&server.base, "/health", None).await;
        assert_eq!(status, 200);
        assert_eq!(echo["claims"], Value::Null);
    }

    #[tokio::test]
    async fn the_openapi_document_is_served_without_a_token_and_only_on_get() {
        let server = start().await;
        let (status, doc) = get(&server.base, crate::openapi::PATH, None).await;
        assert_eq!(status, 200);
        let expected: Value = serde_json::from_str(crate::openapi::DOCUMENT).unwrap();
        assert_eq!(doc, expected);
        let reply = crate::client::send(
            "POST",
            &format!("{}{}", server.base, crate::openapi::PATH),
            &[],
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 404);
    }

    #[tokio::test]
    async fn a_handler_error_becomes_a_500_problem_without_its_details() {
        let server = start().await;
        let t = format!(
            "Bearer {}",
            token(&server.key, 1, chrono::Utc::now().timestamp())
        );
        let reply = crate::client::post(
            &format!("{}/things", server.base),
            &[("authorization", &t)],
            "boom".into(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 500);
        assert!(reply.body.contains("internal_error"));
        assert!(!reply.body.contains("secret"));
    }

    #[tokio::test]
    async fn a_schedule_runs_now_on_request_with_an_eventbridge_payload() {
        let server = start().await;
        let reply = crate::client::post(
            &format!("{}{SCHEDULES_PATH}TickFunction", server.base),
            &[],
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(answer["result"], json!({ "ticked": true }));
        let ticks = server.ticks.lock().unwrap().clone();
        assert_eq!(ticks.len(), 1);
        assert_eq!(ticks[0]["detail-type"], "Scheduled Event");
        assert_eq!(ticks[0]["source"], "aws.events");
        assert!(ticks[0]["resources"][0]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:events:us-east-1:"));

        let report = crate::client::post(
            &format!("{}{SCHEDULES_PATH}ReportFunction", server.base),
            &[],
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.status, 200, "{}", report.body);
        assert_eq!(
            server.ticks.lock().unwrap()[1],
            json!({ "report": "weekly" }),
            "a schedule's Input replaces the event"
        );

        let unknown = crate::client::post(
            &format!("{}{SCHEDULES_PATH}EchoFunction", server.base),
            &[],
            String::new(),
        )
        .await
        .unwrap();
        assert_eq!(unknown.status, 404);
        assert!(unknown.body.contains("schedule_not_found"));
    }

    #[tokio::test]
    async fn a_template_function_without_a_registered_crate_stops_startup_with_its_name() {
        let template = Template::parse(FIXTURE).unwrap();
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let resources = provision(&aws, &template, &Options::local("fixture"))
            .await
            .unwrap();
        let err = Registry::empty()
            .with("echo", echo())
            .instantiate(&aws, &resources)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("(binary tick) has no registered handler"),
            "{err}"
        );
    }
}
