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

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::{Body, RequestExt};

    fn incoming() -> Incoming {
        let claims = json!({ "sub": "P-1", "role": "participant", "outlet_id": "O-1", "outlet_role": "owner", "region": "north", "exp": 1800000000, "aud": ["a", "b"] });
        Incoming {
            method: "POST".into(),
            route_key: "POST /outlets/{outletId}/members".into(),
            raw_path: "/outlets/O-1/members".into(),
            raw_query: "page=2&tag=a&tag=b&q=caf%C3%A9".into(),
            headers: vec![
                ("Host".into(), "127.0.0.1:3000".into()),
                ("Content-Type".into(), "application/json".into()),
                ("X-Multi".into(), "1".into()),
                ("x-multi".into(), "2".into()),
                ("Cookie".into(), "a=1; b=2".into()),
            ],
            path_parameters: vec![("outletId".into(), "O-1".into())],
            body: br#"{"name":"Ann"}"#.to_vec(),
            source_ip: "127.0.0.1".into(),
            request_id: "req-1".into(),
            claims: claims.as_object().cloned(),
            time_epoch_ms: 1_795_341_600_000,
        }
    }

    #[test]
    fn the_payload_has_the_shape_api_gateway_sends() {
        let p = payload(&incoming());
        assert_eq!(p["version"], "2.0");
        assert_eq!(p["routeKey"], "POST /outlets/{outletId}/members");
        assert_eq!(p["rawQueryString"], "page=2&tag=a&tag=b&q=caf%C3%A9");
        assert_eq!(p["headers"]["content-type"], "application/json");
        assert_eq!(p["headers"]["x-multi"], "1,2");
        assert!(p["headers"].get("cookie").is_none());
        assert_eq!(p["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(
            p["queryStringParameters"],
            json!({ "page": "2", "tag": "a,b", "q": "café" })
        );
        assert_eq!(p["requestContext"]["stage"], "$default");
        assert_eq!(p["requestContext"]["http"]["method"], "POST");
        assert_eq!(p["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(p["requestContext"]["time"], "22/Nov/2026:10:00:00 +0000");
        let claims = &p["requestContext"]["authorizer"]["jwt"]["claims"];
        assert_eq!(
            claims["exp"], "1800000000",
            "claims are strings, as API Gateway passes them"
        );
        assert_eq!(claims["aud"], "[a b]");
        assert_eq!(p["isBase64Encoded"], false);
    }

    #[test]
    fn the_payload_round_trips_through_lambda_http_as_in_lambda() {
        let req = into_request(&payload(&incoming())).unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), "/outlets/O-1/members");
        assert_eq!(
            req.path_parameters_ref().and_then(|p| p.first("outletId")),
            Some("O-1")
        );
        assert_eq!(
            req.query_string_parameters_ref()
                .and_then(|q| q.first("page")),
            Some("2")
        );
        assert_eq!(
            req.headers().get("content-type").unwrap(),
            "application/json"
        );
        assert_eq!(
            loyalty_platform::http::route_key(&req),
            "POST /outlets/{outletId}/members"
        );
        let caller = loyalty_platform::http::caller(&req).unwrap();
        assert_eq!(caller.subject.as_str(), "P-1");
        assert!(caller.is_owner_of(&loyalty_domain::ids::OutletId::parse("O-1").unwrap()));
        let body: serde_json::Value = loyalty_platform::http::json_body(&req).unwrap();
        assert_eq!(body["name"], "Ann");
    }

    #[test]
    fn a_binary_body_is_base64_encoded_and_decoded_back() {
        let raw = vec![0xff, 0x00, 0xfe];
        let p = payload(&Incoming {
            body: raw.clone(),
            claims: None,
            ..incoming()
        });
        assert_eq!(p["isBase64Encoded"], true);
        assert!(p["requestContext"].get("authorizer").is_none());
        let req = into_request(&p).unwrap();
        assert!(matches!(req.body(), Body::Binary(b) if *b == raw));
        assert_eq!(
            loyalty_platform::http::caller(&req).unwrap_err().code,
            "unauthenticated"
        );
    }
}
