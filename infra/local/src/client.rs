//! A minimal HTTP/1.1 client for the local calls that have no SDK here: SNS `CreateTopic` on
//! the emulator (no SNS SDK in the workspace), `loyalty-local trigger`, and the server's tests.

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
