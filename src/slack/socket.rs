//! One Socket Mode connection: open it, then drive it.
//!
//! The loop acknowledges every envelope the moment it arrives, before anything
//! looks at its payload, and hands the envelope on (see `handoff`: recorded,
//! acked, queued), so no handler can ever delay an ack. Frames that arrive
//! back to back are recorded with one commit and acked together with one
//! flush. It pings Slack four times per heartbeat
//! timeout and reports the connection stale when nothing at all (event, ping
//! or pong) arrived for a whole timeout: that is how a half-open TCP link is
//! found. It never reconnects by itself: the pool decides that.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::envelope::{ack, parse_frame, salvage_envelope_id, DisconnectReason, Envelope, Frame};
use super::handoff::{Handoff, Inbound, Recorded};
use super::web::{SlackWeb, WebError};
use crate::health::Health;

/// The WebSocket type of a Socket Mode connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a write (ack, ping, close) may take before the link counts as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames read back to back before their acks are flushed.
const ACK_BATCH: usize = 256;

/// What Slack said in its `hello`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hello {
    /// Slack's host for this socket.
    pub(crate) host: Option<String>,
    /// Connections Slack counts for this app.
    pub(crate) num_connections: Option<u64>,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// `apps.connections.open` failed.
    #[error(transparent)]
    Web(#[from] WebError),
    /// The WebSocket handshake failed.
    #[error("cannot open the Socket Mode WebSocket at {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The socket opened but never said hello.
    #[error("the Socket Mode connection did not say hello: {0}")]
    NoHello(String),
    /// Slack disabled Socket Mode for this app.
    #[error("Slack answered link_disabled: Socket Mode is turned off for this app (enable it under Settings → Socket Mode)")]
    LinkDisabled,
}

impl OpenError {
    /// How long Slack asked us to wait, when it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            OpenError::Web(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The URL without its query (the ticket), for logs.
fn loggable(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Asks Slack for a socket URL, connects, and waits for `hello`.
pub(crate) async fn open(
    web: &SlackWeb,
    hello_timeout: Duration,
) -> Result<(Ws, Hello), OpenError> {
    let url = web.open_socket_url().await?;
    let tls = tokio_tungstenite::Connector::Rustls(crate::tls::for_url(&url));
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, Some(tls));
    let (mut ws, _) = match tokio::time::timeout(hello_timeout, connect).await {
        Err(_) => {
            return Err(OpenError::Connect {
                url: loggable(&url),
                detail: format!("no answer within {}s", hello_timeout.as_secs()),
            })
        }
        Ok(Err(e)) => {
            return Err(OpenError::Connect {
                url: loggable(&url),
                detail: e.to_string(),
            })
        }
        Ok(Ok(pair)) => pair,
    };
    let deadline = tokio::time::Instant::now() + hello_timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(OpenError::NoHello(format!(
                    "nothing within {}s",
                    hello_timeout.as_secs()
                )))
            }
            Ok(None) => return Err(OpenError::NoHello("closed by Slack".into())),
            Ok(Some(Err(e))) => return Err(OpenError::NoHello(e.to_string())),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = msg else { continue };
        match parse_frame(&text) {
            Ok(Frame::Hello {
                host,
                num_connections,
            }) => {
                return Ok((
                    ws,
                    Hello {
                        host,
                        num_connections,
                    },
                ))
            }
            Ok(Frame::Disconnect {
                reason: DisconnectReason::LinkDisabled,
            }) => return Err(OpenError::LinkDisabled),
            Ok(Frame::Disconnect { reason }) => {
                return Err(OpenError::NoHello(format!(
                    "disconnect ({reason}) before hello"
                )))
            }
            Ok(other) => tracing::debug!("frame before hello ignored: {other:?}"),
            Err(e) => tracing::warn!("frame before hello ignored: {e}"),
        }
    }
}

/// What a running connection tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    /// Slack sent `disconnect` with this reason; it will close the socket soon.
    Disconnect(DisconnectReason),
    /// Nothing arrived for longer than the heartbeat timeout.
    Stale(Duration),
    /// The connection is gone, and why.
    Ended(String),
    /// The configuration was reloaded (sent by the pool to itself).
    Reloaded,
}

/// The owner's side of a running connection. Dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// The connection's number, unique in this process.
    pub(crate) id: u64,
    /// When it said hello.
    pub(crate) opened: Instant,
    /// Signals from the connection.
    pub(crate) signals: mpsc::UnboundedReceiver<Signal>,
    close: Option<oneshot::Sender<()>>,
}

impl ConnHandle {
    /// Closes the connection (a WebSocket close frame, then the TCP link).
    pub(crate) fn close(mut self) {
        if let Some(tx) = self.close.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs an opened connection in its own task.
pub(crate) fn spawn(id: u64, ws: Ws, health: Arc<Health>, handoff: Arc<Handoff>) -> ConnHandle {
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let (close_tx, close_rx) = oneshot::channel();
    health.connected(id);
    tokio::spawn(drive(id, ws, health, handoff, sig_tx, close_rx));
    ConnHandle {
        id,
        opened: Instant::now(),
        signals: sig_rx,
        close: Some(close_tx),
    }
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    m: Message,
) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(m)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "a write did not complete within {}s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

/// Queues a frame without flushing (the caller flushes after a batch).
async fn feed(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    m: Message,
) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.feed(m)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("ack failed: {e}")),
        Err(_) => Err(format!(
            "an ack did not go out within {}s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

async fn drive(
    id: u64,
    ws: Ws,
    health: Arc<Health>,
    handoff: Arc<Handoff>,
    signals: mpsc::UnboundedSender<Signal>,
    mut close: oneshot::Receiver<()>,
) {
    let (mut sink, mut stream) = ws.split();
    let heartbeat = health.heartbeat_timeout();
    let ping_every = heartbeat / 4;
    let mut ticker = tokio::time::interval(
        (heartbeat / 10).clamp(Duration::from_millis(20), Duration::from_secs(1)),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();
    let mut stale_reported = false;
    let mut pings = 0u64;

    // Batches on their way through the inbox writer, oldest first: each
    // one's acks go out when its commit returns.
    let mut commits: VecDeque<(Instant, oneshot::Receiver<Recorded>)> = VecDeque::new();
    let why: String = loop {
        tokio::select! {
            biased;
            _ = &mut close => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
                break "closed by slackbotd".to_string();
            }
            done = async { (&mut commits.front_mut().expect("not empty").1).await }, if !commits.is_empty() => {
                let read = commits.pop_front().map_or_else(Instant::now, |c| c.0);
                let Ok((batch, rows)) = done else { continue };
                if let Err(e) = acknowledge(id, read, batch, rows, &mut sink, &health, &handoff).await {
                    break e;
                }
            }
            msg = stream.next() => {
                // This frame and any already waiting behind it: recorded with
                // one commit, then acked with one flush.
                let mut msg = msg;
                let mut handled = 0;
                let mut batch: Vec<Envelope> = Vec::new();
                let read = Instant::now();
                let ended = loop {
                    let m = match msg {
                        None => break Some("closed by Slack".to_string()),
                        Some(Err(e)) => break Some(format!("read failed: {e}")),
                        Some(Ok(m)) => m,
                    };
                    health.frame(id);
                    match m {
                        Message::Text(text) => {
                            if let Err(e) = on_text(id, &text, &mut sink, &handoff, &signals, &mut batch).await {
                                break Some(e);
                            }
                        }
                        Message::Binary(b) => tracing::warn!(conn = id, "ignoring a binary frame of {} bytes", b.len()),
                        Message::Close(frame) => {
                            break Some(match frame {
                                Some(f) => format!("Slack closed the connection ({} {})", f.code, f.reason),
                                None => "Slack closed the connection".to_string(),
                            });
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                    handled += 1;
                    if handled >= ACK_BATCH {
                        break None;
                    }
                    match stream.next().now_or_never() {
                        Some(next) => msg = next,
                        None => break None,
                    }
                };
                if !batch.is_empty() {
                    commits.push_back((read, handoff.record(batch)));
                }
                if let Some(why) = ended {
                    // What was recorded is handled; what was not acked, Slack sends again.
                    while let Some((read, c)) = commits.pop_front() {
                        if let Ok((batch, rows)) = c.await {
                            let _ = acknowledge(id, read, batch, rows, &mut sink, &health, &handoff).await;
                        }
                    }
                    break why;
                }
            }
            _ = ticker.tick() => {
                let age = health.frame_age(id).unwrap_or_default();
                if age > health.heartbeat_timeout() && !stale_reported {
                    stale_reported = true;
                    let _ = signals.send(Signal::Stale(age));
                }
                if last_ping.elapsed() >= ping_every {
                    pings += 1;
                    last_ping = Instant::now();
                    if let Err(e) = send(&mut sink, Message::Ping(pings.to_be_bytes().to_vec().into())).await {
                        break format!("ping failed: {e}");
                    }
                }
            }
        }
    };
    health.disconnected(id);
    let _ = signals.send(Signal::Ended(why));
}

/// An acknowledged envelope waiting for the flush, with its inbox row or
/// its place in the queue.
type Acked<'a> = (
    Envelope,
    Option<i64>,
    Option<tokio::sync::mpsc::Permit<'a, Inbound>>,
);

/// A recorded batch: its acks, one flush, then each envelope to the
/// dispatcher. An envelope that is neither recorded nor sure of a place in
/// the queue is not acknowledged: Slack delivers it again.
async fn acknowledge(
    id: u64,
    read: Instant,
    batch: Vec<Envelope>,
    rows: Vec<Option<i64>>,
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    health: &Health,
    handoff: &Handoff,
) -> Result<(), String> {
    let mut acked: Vec<Acked<'_>> = Vec::with_capacity(batch.len());
    for (envelope, row) in batch.into_iter().zip(rows) {
        let permit = match row {
            Some(_) => None,
            None => match handoff.reserve() {
                Some(p) => Some(p),
                None => {
                    tracing::warn!(conn = id, envelope = %envelope.envelope_id, "the bot is busy and the inbox unavailable: not acknowledging, so Slack delivers it again");
                    continue;
                }
            },
        };
        feed(sink, Message::Text(ack(&envelope.envelope_id).into())).await?;
        health.event();
        tracing::debug!(conn = id, envelope = %envelope.envelope_id, kind = envelope.kind.as_str(), retry = envelope.retry_attempt, row, "envelope acknowledged");
        acked.push((envelope, row, permit));
    }
    let flushed = match tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("ack failed: {e}")),
        Err(_) => Err(format!(
            "an ack did not go out within {}s",
            SEND_TIMEOUT.as_secs()
        )),
    };
    if flushed.is_ok() {
        let m = crate::metrics::global();
        let took = read.elapsed();
        for (envelope, _, _) in &acked {
            m.envelope_acked(envelope.kind.as_str(), took);
        }
    }
    // Recorded ones are handled even when the flush failed: Slack will send
    // them again, and the dispatcher answers once.
    hand_over(handoff, acked);
    flushed
}

/// After the flush: each acknowledged envelope to the dispatcher.
fn hand_over(handoff: &Handoff, acked: Vec<Acked<'_>>) {
    for (envelope, row, permit) in acked {
        let msg = Inbound {
            envelope,
            row,
            recovered: None,
        };
        match permit {
            Some(p) => p.send(msg),
            None => handoff.offer(msg),
        }
    }
}

/// Handles one text frame: an envelope joins the batch; the rest is
/// answered here.
async fn on_text(
    id: u64,
    text: &str,
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    handoff: &Handoff,
    signals: &mpsc::UnboundedSender<Signal>,
    batch: &mut Vec<Envelope>,
) -> Result<(), String> {
    match parse_frame(text) {
        Ok(Frame::Envelope(envelope)) => {
            if handoff.is_closed() {
                // Stopping: nobody would handle it. Unacknowledged, Slack
                // delivers it again, to the next bot.
                return Ok(());
            }
            batch.push(envelope);
        }
        Ok(Frame::Disconnect { reason }) => {
            tracing::info!(conn = id, "Slack sent disconnect ({reason})");
            let _ = signals.send(Signal::Disconnect(reason));
        }
        Ok(Frame::Hello { .. }) => {
            tracing::debug!(conn = id, "a second hello on one connection, ignored")
        }
        Ok(Frame::Unknown { kind, envelope_id }) => {
            tracing::warn!(conn = id, "ignoring a frame of unknown type {kind:?}");
            if let Some(eid) = envelope_id {
                send(sink, Message::Text(ack(&eid).into()))
                    .await
                    .map_err(|e| format!("ack failed: {e}"))?;
            }
        }
        Err(e) => {
            tracing::warn!(conn = id, "ignoring a frame that does not parse: {e}");
            if let Some(eid) = salvage_envelope_id(text) {
                send(sink, Message::Text(ack(&eid).into()))
                    .await
                    .map_err(|e| format!("ack failed: {e}"))?;
            }
        }
    }
    Ok(())
}
