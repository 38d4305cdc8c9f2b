//! A tiny Slack client for the tests: raw HTTP/1.1 over a TCP stream for the
//! Web API, and tokio-tungstenite for Socket Mode.

#![allow(dead_code)]

use std::time::Duration;

use fake_slack::FakeSlack;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An HTTP answer: status, lower-cased headers, body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends raw bytes to the port and reads until the server closes.
pub async fn raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let text = raw(port, req.as_bytes()).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A Web API call with a JSON body and an optional bearer token.
pub async fn api(slack: &FakeSlack, method: &str, token: Option<&str>, body: Value) -> HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json; charset=utf-8")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(
        slack.api_port(),
        "POST",
        &format!("/api/{method}"),
        &headers,
        &body.to_string(),
    )
    .await
}

/// `apps.connections.open` with the app token; returns the WebSocket URL.
pub async fn open_url(slack: &FakeSlack) -> String {
    let reply = api(
        slack,
        "apps.connections.open",
        Some(slack.app_token()),
        json!({}),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["ok"], true, "{body}");
    body["url"].as_str().unwrap().to_string()
}

/// Opens a Socket Mode connection and reads its `hello`.
pub async fn connect(slack: &FakeSlack) -> (Ws, Value) {
    let url = open_url(slack).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&debug_reconnects=true"))
        .await
        .unwrap();
    let hello = next_json(&mut ws, Duration::from_secs(5))
        .await
        .expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    (ws, hello)
}

/// The next text frame as JSON, skipping control frames; `None` on timeout or close.
pub async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match frame {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next frame of any kind; `None` on timeout or end of stream.
pub async fn next_frame(ws: &mut Ws, within: Duration) -> Option<Result<Message, String>> {
    match tokio::time::timeout(within, ws.next()).await {
        Ok(Some(Ok(m))) => Some(Ok(m)),
        Ok(Some(Err(e))) => Some(Err(e.to_string())),
        Ok(None) | Err(_) => None,
    }
}

/// Acks an envelope, with an optional payload.
pub async fn ack(ws: &mut Ws, envelope: &Value, payload: Option<Value>) {
    let mut frame = json!({ "envelope_id": envelope["envelope_id"] });
    if let Some(p) = payload {
        frame["payload"] = p;
    }
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether the stream ends (close frame, error or end of stream) within the time,
/// skipping any other frames.
pub async fn ends_within(ws: &mut Ws, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}
