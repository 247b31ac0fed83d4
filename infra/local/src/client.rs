//! A minimal HTTP/1.1 client for the local calls that need no SDK: SNS `CreateTopic` on the
//! emulator, the emulator's own API (`/moto-api/data.json`: the SMS it was asked to send),
//! `loyalty-local trigger`, and the server's tests.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
#[error("HTTP request to {url} failed: {message}")]
pub struct ClientError {
    pub url: String,
    pub message: String,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Sends one `POST` to an `http://host:port/path` URL and reads the whole reply.
pub async fn post(url: &str, headers: &[(&str, &str)], body: String) -> Result<Reply, ClientError> {
    send("POST", url, headers, body).await
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<Reply, ClientError> {
    let fail = |message: String| ClientError {
        url: url.to_string(),
        message,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| fail(format!("invalid URL: {e}")))?;
    let host = uri.host().ok_or_else(|| fail("URL has no host".into()))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{host}:{port}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| fail(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// The six digits of the last SMS to `e164` in the emulator's `GET /moto-api/data.json`
/// (its `sns.SMS` list, oldest first): the passcode a phone would have received.
pub fn last_sms_code(data: &serde_json::Value, e164: &str) -> Option<String> {
    data["sns"]["SMS"]
        .as_array()?
        .iter()
        .rev()
        .find(|sms| sms["phone_number"].as_str() == Some(e164))
        .and_then(|sms| sms["message"].as_str())
        .and_then(loyalty_platform::memory::passcodes::six_digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_sms_to_a_phone_gives_its_passcode() {
        let data = json!({"sns": {"SMS": [
            {"phone_number": "+447700900123", "message": "Your code is 111111. It is valid for 5 minutes."},
            {"phone_number": "+447700900999", "message": "Your code is 222222."},
            {"phone_number": "+447700900123", "message": "Your code is 333333. It is valid for 5 minutes."},
        ]}});
        assert_eq!(
            last_sms_code(&data, "+447700900123").as_deref(),
            Some("333333")
        );
        assert_eq!(
            last_sms_code(&data, "+447700900999").as_deref(),
            Some("222222")
        );
        assert_eq!(last_sms_code(&data, "+15550100000"), None);
        assert_eq!(last_sms_code(&json!({}), "+447700900123"), None);
    }
}
