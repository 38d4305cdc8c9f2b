//! The HTTP listener: serves HTTP/1.1 on 127.0.0.1 and routes `/api/METHOD` to
//! the Web API, `/commands/…` to response URLs and `/_fake/…` to the control
//! API. Every answer is JSON.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::params::Params;
use crate::state::Shared;
use crate::{control, response_url, web_api};

/// Bodies larger than this are refused.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A JSON answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    /// Seconds for a `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
    /// The bot token's scopes, for an `x-oauth-scopes` header.
    pub(crate) scopes: Option<String>,
}

impl Reply {
    /// HTTP 200 with this body.
    pub(crate) fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            retry_after: None,
            scopes: None,
        }
    }

    /// `{"ok":false,"error":code}` with this status.
    pub(crate) fn error(status: u16, code: &str) -> Reply {
        Reply {
            status,
            body: json!({ "ok": false, "error": code }),
            retry_after: None,
            scopes: None,
        }
    }

    /// The `error` field, when the answer is not `ok`.
    pub(crate) fn error_code(&self) -> Option<String> {
        if self.body.get("ok") == Some(&Value::Bool(true)) {
            return None;
        }
        Some(
            self.body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error")
                .to_string(),
        )
    }
}

/// Accepts connections until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(respond(&shared, req).await) }
            });
            // Garbage on the wire ends the connection; hyper answers 400 itself when it can.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return into_response(Reply::error(413, "request_too_large")),
    };
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let path = parts.uri.path();
    let params = || Params::parse(parts.uri.query(), header(CONTENT_TYPE), &body);
    let reply = if let Some(method) = path.strip_prefix("/api/") {
        let reply = web_api::call(shared, method, header(AUTHORIZATION), params());
        if let Some(d) = shared.read(|inner| inner.faults.delay(method)) {
            tokio::time::sleep(d).await;
        }
        reply
    } else if let Some(rest) = path.strip_prefix("/commands/") {
        response_url::post(shared, rest, params())
    } else if let Some(name) = path.strip_prefix("/_fake/") {
        control::handle(shared, &parts.method, name, &body)
    } else {
        Reply::error(404, "not_found")
    };
    into_response(reply)
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(v) = reply
        .scopes
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        response.headers_mut().insert("x-oauth-scopes", v);
    }
    if let Some(secs) = reply.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
