//! Where the metrics go (`[metrics]`): an HTTP `/metrics` endpoint, a
//! textfile for node_exporter rewritten atomically every 15 s, or both.
//! Both run on the bot's runtime, never on the Socket Mode thread, so a
//! scrape can never delay an ack. The endpoint is bound before the bot
//! says it is ready, so a port in use is an error at start, not a silent
//! loss of metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::health::Health;
use crate::metrics::{self, OutboxFigures, Snapshot};
use crate::store::SharedStore;

/// How often the textfile is rewritten.
pub(crate) const TEXTFILE_EVERY: Duration = Duration::from_secs(15);
/// The media type of the text format `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for scrapers that do not ask for OpenMetrics.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the metrics cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// The listen address could not be bound.
    #[error("[metrics].listen = {addr}: cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The textfile could not be written.
    #[error("[metrics].textfile = {}: cannot write it: {source}", .path.display())]
    Textfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a scrape reads.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// The connections' health.
    pub(crate) health: Arc<Health>,
    /// The store, for the outbox.
    pub(crate) store: Option<SharedStore>,
    /// The fleet's state, for a member.
    pub(crate) fleet: Option<Arc<crate::fleet::FleetState>>,
}

impl Sources {
    /// The figures now.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let h = self.health.snapshot();
        let restarts = match &self.store {
            Some(s) => s
                .call(|st| st.unclean_exits_by_cause())
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let outbox = match &self.store {
            Some(s) => s.call(|st| st.queue_stats()).await.ok().map(|q| {
                let now = crate::clock::now_ms();
                OutboxFigures {
                    waiting: q.depth,
                    oldest: q
                        .oldest_ms
                        .map(|t| Duration::from_millis(now.saturating_sub(t))),
                    failed: q.failed,
                }
            }),
            None => None,
        };
        Snapshot {
            connections: h.connections as u64,
            fresh: h.fresh as u64,
            last_frame_age: h.freshest_frame_age,
            envelopes: h.events,
            uptime: h.uptime,
            durable: h.durable,
            outbox,
            restarts,
            fleet: self
                .fleet
                .as_ref()
                .map(|f| (f.slots_held() as u64, f.db_up())),
        }
    }

    /// The rendered text now.
    pub(crate) async fn render(&self) -> String {
        metrics::render(&self.snapshot().await)
    }
}

/// Binds the endpoint (if configured) and writes the textfile once (if
/// configured), then serves both in the background.
pub(crate) async fn start(
    listen: Option<SocketAddr>,
    textfile: Option<PathBuf>,
    sources: Sources,
) -> Result<(), ExportError> {
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ExportError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!("metrics at http://{bound}/metrics");
        tokio::spawn(serve(listener, sources.clone()));
    }
    if let Some(path) = textfile {
        write_textfile(&path, &metrics::to_prometheus_text(&sources.render().await))?;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TEXTFILE_EVERY);
            every.tick().await;
            let mut failing = false;
            loop {
                every.tick().await;
                let text = metrics::to_prometheus_text(&sources.render().await);
                match write_textfile(&path, &text) {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("metrics textfile written again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!("{e}; retrying every {}s", TEXTFILE_EVERY.as_secs());
                    }
                    Err(_) => {}
                }
            }
        });
    }
    Ok(())
}

fn write_textfile(path: &Path, text: &str) -> Result<(), ExportError> {
    crate::files::write_atomic(path, text.as_bytes(), 0o644).map_err(|source| {
        ExportError::Textfile {
            path: path.to_path_buf(),
            source,
        }
    })
}

async fn serve(listener: tokio::net::TcpListener, sources: Sources) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, sources.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A scraper that never finishes its request is dropped.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    sources: Sources,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = kind.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            let wants_openmetrics = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let text = sources.render().await;
            if wants_openmetrics {
                reply(StatusCode::OK, OPENMETRICS, text)
            } else {
                reply(StatusCode::OK, CLASSIC, metrics::to_prometheus_text(&text))
            }
        }
        (&hyper::Method::GET, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "slackbotd serves /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
    })
}
