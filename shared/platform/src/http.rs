//! The HTTP edge: every API route's request enters and its response leaves through here.
//!
//! Handlers return `Result<Response<Body>, Problem>`; [`respond`] turns a `Problem` into an
//! `application/problem+json` response (RFC 9457) with a stable `code` that clients switch on.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use loyalty_domain::auth::{AuthError, Caller, OutletRole, Role};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::{Classified, Kind};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error response. Build one from any classified domain error with [`Problem::from_error`].
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: String,
    // Boxed: rarely set, and every handler returns `Result<_, Problem>` by value.
    pub detail: Option<Box<str>>,
    pub retry_after_secs: Option<u64>,
    /// Extra members of the problem object, e.g. the failing lines of an import.
    pub extensions: Option<Box<serde_json::Value>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: title.into(),
            detail: None,
            retry_after_secs: None,
            extensions: None,
        }
    }

    pub fn bad_request(code: &'static str, title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, title)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into().into_boxed_str());
        self
    }

    pub fn with_extensions(mut self, extensions: serde_json::Value) -> Self {
        self.extensions = Some(Box::new(extensions));
        self
    }

    pub fn from_error<E: Classified>(error: E) -> Self {
        let (status, retry_after_secs) = match error.kind() {
            Kind::BadInput => (StatusCode::BAD_REQUEST, None),
            Kind::Unauthenticated => (StatusCode::UNAUTHORIZED, None),
            Kind::Forbidden => (StatusCode::FORBIDDEN, None),
            Kind::NotFound => (StatusCode::NOT_FOUND, None),
            Kind::Conflict => (StatusCode::CONFLICT, None),
            Kind::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, None),
            Kind::TooManyAttempts { retry_after_secs } => {
                (StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs))
            }
            Kind::Infrastructure { retryable } => {
                // The details are for our logs, never for the caller.
                tracing::error!(error = %error, retryable, "infrastructure failure");
                return if retryable {
                    let mut p = Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "We are busy; please retry in a moment.",
                    );
                    p.retry_after_secs = Some(1);
                    p
                } else {
                    Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "Something went wrong on our side.",
                    )
                };
            }
        };
        let mut problem = Self::new(status, error.code(), error.to_string());
        problem.retry_after_secs = retry_after_secs;
        problem
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "route_not_found", "No such route.")
    }

    pub fn into_response(self) -> Response<Body> {
        let mut body = serde_json::json!({
            "type": format!("https://loyalty-engine.dev/errors/{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "code": self.code,
        });
        if let Some(detail) = self.detail {
            body["detail"] = String::from(detail).into();
        }
        if let Some(secs) = self.retry_after_secs {
            body["retry_after_seconds"] = secs.into();
        }
        if let Some(serde_json::Value::Object(extra)) = self.extensions.map(|e| *e) {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let mut response = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/problem+json");
        if let Some(secs) = self.retry_after_secs {
            response = response.header(header::RETRY_AFTER, secs);
        }
        response
            .body(Body::Text(body.to_string()))
            .expect("static headers are valid")
    }
}

pub trait ResultExt<T> {
    fn problem(self) -> Result<T, Problem>;
}

impl<T, E: Classified> ResultExt<T> for Result<T, E> {
    fn problem(self) -> Result<T, Problem> {
        self.map_err(Problem::from_error)
    }
}

/// The last step of every HTTP handler.
pub fn respond(result: Result<Response<Body>, Problem>) -> Response<Body> {
    result.unwrap_or_else(Problem::into_response)
}

/// The media type of a JSON body with `status`: every error body is a problem (RFC 9457),
/// whoever built it (a handler, or a replay of a stored answer).
pub fn json_content_type(status: StatusCode) -> &'static str {
    if status.is_client_error() || status.is_server_error() {
        "application/problem+json"
    } else {
        "application/json"
    }
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).expect("response types serialise");
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(json_content_type(status)),
        )
        .body(Body::Text(body))
        .expect("static headers are valid")
}

/// `"POST /claims"`: API Gateway's route key, which the local server sets the same way.
pub fn route_key(req: &Request) -> &str {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// The address API Gateway saw the request come from (`requestContext.http.sourceIp`),
/// which the caller cannot set.
pub fn source_ip(req: &Request) -> Option<&str> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref(),
        _ => None,
    }
}

/// The verified caller, from the JWT authorizer's claims in the request context.
pub fn caller(req: &Request) -> Result<Caller, Problem> {
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims),
        _ => None,
    };
    let unauthenticated = || Problem::from_error(AuthError::Unauthenticated);
    let claims = claims.ok_or_else(unauthenticated)?;
    let subject = claims
        .get("sub")
        .and_then(|s| ParticipantId::parse(s).ok())
        .ok_or_else(unauthenticated)?;
    // A token without a known role is treated as unauthenticated, not as a participant:
    // a misconfigured issuer must fail closed.
    let role = claims
        .get("role")
        .and_then(|r| Role::parse(r))
        .ok_or_else(unauthenticated)?;
    // A subject that adopted an imported member acts as that member: the identity provider
    // reads its `SUBJECT#sub`/`LINK` item and puts the member's id into `participant_id`.
    let subject = match claims.get("participant_id") {
        Some(id) if !id.is_empty() && role == Role::Participant => {
            ParticipantId::parse(id).map_err(|_| unauthenticated())?
        }
        _ => subject,
    };
    let outlet = match (claims.get("outlet_id"), claims.get("outlet_role")) {
        (Some(id), Some(r)) if !id.is_empty() => Some((
            OutletId::parse(id).map_err(|_| unauthenticated())?,
            OutletRole::parse(r).ok_or_else(unauthenticated)?,
        )),
        _ => None,
    };
    let region = match claims.get("region") {
        Some(r) if !r.is_empty() => Some(RegionId::parse(r).map_err(|_| unauthenticated())?),
        _ => None,
    };
    let scopes = claims
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    // Cognito's ID tokens say `phone_number_verified` as a boolean, which API Gateway hands
    // on as the string "true". An unverified or malformed number proves nothing.
    let verified_phone = match (
        claims.get("phone_number"),
        claims.get("phone_number_verified"),
    ) {
        (Some(phone), Some(verified)) if verified == "true" => PhoneNumber::from_e164(phone).ok(),
        _ => None,
    };
    Ok(Caller {
        subject,
        role,
        outlet,
        region,
        scopes,
        verified_phone,
    })
}

/// Deserialises a JSON body; an empty, malformed or mistyped body is a 400 that says why.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, Problem> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => b"",
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    };
    if bytes.is_empty() {
        return Err(Problem::bad_request(
            "missing_body",
            "A JSON request body is required.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_body"
        };
        Problem::bad_request(code, "The request body is not valid for this route.")
            .with_detail(e.to_string())
    })
}

/// The raw body as text (CSV uploads). Binary bodies must be UTF-8.
pub fn text_body(req: &Request) -> Result<&str, Problem> {
    let text = match req.body() {
        Body::Text(t) => t.as_str(),
        Body::Binary(b) => std::str::from_utf8(b).map_err(|_| {
            Problem::bad_request("invalid_encoding", "The request body must be UTF-8 text.")
        })?,
        _ => "",
    };
    if text.trim().is_empty() {
        return Err(Problem::bad_request(
            "missing_body",
            "A request body is required.",
        ));
    }
    Ok(text)
}

pub fn path_param<'a>(req: &'a Request, name: &str) -> Result<&'a str, Problem> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .ok_or_else(|| {
            Problem::bad_request(
                "missing_path_parameter",
                format!("Path parameter {name} is missing."),
            )
        })
}

pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
