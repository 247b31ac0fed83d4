//! API Gateway HTTP API payload format 2.0: what a function behind the HTTP API receives.
//!
//! The local server builds this JSON exactly as AWS does and hands it to
//! `lambda_http::request::from_str`, so handlers see the same `Request` as in Lambda.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// One incoming HTTP request, as the server read it.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub method: String,
    /// The matched route's key, e.g. `GET /outlets/{outletId}/members`.
    pub route_key: String,
    pub raw_path: String,
    pub raw_query: String,
    /// Header names as received; lower-cased in the payload.
    pub headers: Vec<(String, String)>,
    pub path_parameters: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: String,
    pub request_id: String,
    /// Verified token claims; `None` for a route without authorizer.
    pub claims: Option<Map<String, Value>>,
    pub time_epoch_ms: i64,
}

/// API Gateway passes JWT claims as strings; arrays become `[a b]`.
pub fn claim_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(claim_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits a query string into (name, value) pairs, percent-decoded.
pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn payload(incoming: &Incoming) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &incoming.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        // Repeated headers arrive comma-joined in payload 2.0.
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    let user_agent = headers
        .get("user-agent")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let host = headers
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost")
        .to_string();

    let mut request_context = json!({
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or_default(),
        "http": {
            "method": incoming.method,
            "path": incoming.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": incoming.source_ip,
            "userAgent": user_agent,
        },
        "requestId": incoming.request_id,
        "routeKey": incoming.route_key,
        "stage": "$default",
        "time": chrono::DateTime::from_timestamp_millis(incoming.time_epoch_ms)
            .unwrap_or_default()
            .format("%d/%b/%Y:%H:%M:%S %z")
            .to_string(),
        "timeEpoch": incoming.time_epoch_ms,
    });
    if let Some(claims) = &incoming.claims {
        let strings: Map<String, Value> = claims
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(claim_string(v))))
            .collect();
        let scopes = claims
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| {
                Value::Array(
                    s.split_whitespace()
                        .map(|x| Value::String(x.into()))
                        .collect(),
                )
            })
            .unwrap_or(Value::Null);
        request_context["authorizer"] = json!({ "jwt": { "claims": strings, "scopes": scopes } });
    }

    let mut payload = json!({
        "version": "2.0",
        "routeKey": incoming.route_key,
        "rawPath": incoming.raw_path,
        "rawQueryString": incoming.raw_query,
        "headers": headers,
        "requestContext": request_context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        payload["cookies"] = json!(cookies);
    }
    let query = query_pairs(&incoming.raw_query);
    if !query.is_empty() {
        let mut params = Map::new();
        for (k, v) in query {
            match params.get_mut(&k) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(&v);
                }
                _ => {
                    params.insert(k, Value::String(v));
                }
            }
        }
        payload["queryStringParameters"] = Value::Object(params);
    }
    if !incoming.path_parameters.is_empty() {
        let params: Map<String, Value> = incoming
            .path_parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        payload["pathParameters"] = Value::Object(params);
    }
    if !incoming.body.is_empty() {
        match std::str::from_utf8(&incoming.body) {
            Ok(text) => payload["body"] = Value::String(text.to_string()),
            Err(_) => {
                payload["body"] = Value::String(STANDARD.encode(&incoming.body));
                payload["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    payload
}

/// Turns a payload into the `Request` a handler receives in Lambda.
pub fn into_request(payload: &Value) -> Result<lambda_http::Request, serde_json::Error> {
    lambda_http::request::from_str(&payload.to_string())
}
