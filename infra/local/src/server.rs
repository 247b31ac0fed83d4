//! The local HTTP API: serves every `HttpApi` route of the template by verifying the bearer
//! token as the JWT authorizer does, building the API Gateway v2 payload and calling the
//! function's `App::handle`. `POST /_local/schedules/{FunctionLogicalId}` runs a schedule now.

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
