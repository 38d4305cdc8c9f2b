//! One Socket Mode connection: a writer that carries out its mailbox
//! (envelopes, disconnects, drops, half-open silence) and a reader that
//! records acks and pings the moment they arrive, so ack latencies measure
//! the client, not this fake's own queueing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::watch;
use tokio::time::{Instant, Interval};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use crate::envelope;
use crate::links::{Admission, ClientFrame};
use crate::state::{Outbound, Shared};

type Ws = WebSocketStream<TcpStream>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// How long to wait for the client's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Frames written before a flush when the mailbox is busy.
const BATCH: usize = 16;

/// How the writer ended.
enum End {
    /// The socket is closed, or broken.
    Closed,
    /// Close the TCP stream now, without a close frame.
    Dropped,
    /// Keep the socket open and silent.
    HalfOpen,
}

/// What the reader is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    Reading,
    /// Stop reading (half-open, or closing): keep the socket as it is.
    Stop,
}

/// Runs a connection from just after the handshake until it is closed.
pub(crate) async fn run(shared: Arc<Shared>, mut ws: Ws) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, admission) = shared.open_connection(tx);
    if admission == Admission::Refused {
        if let Some(Outbound::Text(text)) = rx.recv().await {
            let _ = ws.send(Message::text(text)).await;
        }
        let _ = ws.close(None).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        shared.connection_closed(id);
        return;
    }
    let (mut sink, stream) = ws.split();
    let (mode_tx, mode_rx) = watch::channel(ReadMode::Reading);
    let (gone_tx, mut gone_rx) = watch::channel(false);
    let reader = tokio::spawn(read(Arc::clone(&shared), id, stream, mode_rx, gone_tx));
    let end = write(&shared, &mut sink, &mut rx, &mut gone_rx).await;
    match end {
        End::Closed => {
            // Wait briefly for the client's close frame, read by the reader.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                let _ = gone_rx.wait_for(|g| *g).await;
            })
            .await;
            let _ = mode_tx.send(ReadMode::Stop);
            let _ = reader.await;
        }
        End::Dropped => {
            let _ = mode_tx.send(ReadMode::Stop);
            let _ = reader.await;
        }
        End::HalfOpen => {
            let _ = mode_tx.send(ReadMode::Stop);
            let stream = reader.await.ok().flatten();
            // Neither read nor write; only a drop request ends the silence.
            while let Some(cmd) = rx.recv().await {
                if matches!(cmd, Outbound::Drop) {
                    break;
                }
            }
            drop(stream);
        }
    }
    drop(sink);
    shared.connection_closed(id);
}

/// Reads until the socket ends or the writer says stop; hands the stream back
/// when stopped, so a half-open socket stays open.
async fn read(
    shared: Arc<Shared>,
    id: u64,
    mut stream: Stream,
    mut mode: watch::Receiver<ReadMode>,
    gone: watch::Sender<bool>,
) -> Option<Stream> {
    loop {
        tokio::select! {
            // A stop comes first: once half-open, no later frame is answered.
            biased;
            _ = async { let _ = mode.wait_for(|m| *m == ReadMode::Stop).await; } => return Some(stream),
            frame = stream.next() => match frame {
                // Silenced meanwhile: this frame is never answered (a pong
                // tungstenite queued goes out only with a next read).
                Some(Ok(_)) if shared.is_silenced(id) => return Some(stream),
                // tungstenite queues the pong; the next read flushes it.
                Some(Ok(Message::Text(text))) => shared.client_text(id, text.as_str()),
                Some(Ok(Message::Ping(_))) => shared.client_frame(id, ClientFrame::Ping),
                Some(Ok(_)) => shared.client_frame(id, ClientFrame::Other),
                Some(Err(_)) | None => {
                    let _ = gone.send(true);
                    return None;
                }
            },
        }
    }
}

/// Carries out the mailbox until the connection ends.
async fn write(
    shared: &Shared,
    sink: &mut Sink,
    rx: &mut UnboundedReceiver<Outbound>,
    gone: &mut watch::Receiver<bool>,
) -> End {
    let mut close_at: Option<Instant> = None;
    let mut pinger: Option<Interval> = shared
        .opts
        .server_ping_every
        .filter(|every| !every.is_zero())
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    loop {
        tokio::select! {
            biased;
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return End::Closed };
                match apply_batch(shared, cmd, sink, rx, &mut close_at).await {
                    Ok(None) => {}
                    Ok(Some(end)) => return end,
                    Err(()) => return End::Closed,
                }
            }
            _ = async { let _ = gone.wait_for(|g| *g).await; } => return End::Closed,
            _ = sleep_until(close_at) => {
                let _ = sink.close().await;
                return End::Closed;
            }
            _ = tick(&mut pinger) => {
                if sink.send(Message::Ping(Bytes::from_static(b"fake-slack"))).await.is_err() {
                    return End::Closed;
                }
            }
        }
    }
}

/// Carries out `first` and whatever else is already waiting (up to a batch),
/// then flushes.
async fn apply_batch(
    shared: &Shared,
    first: Outbound,
    sink: &mut Sink,
    rx: &mut UnboundedReceiver<Outbound>,
    close_at: &mut Option<Instant>,
) -> Result<Option<End>, ()> {
    let mut next = Some(first);
    let mut count = 0;
    let mut written = Vec::new();
    while let Some(cmd) = next.take() {
        match cmd {
            Outbound::Text(text) => sink.feed(Message::text(text)).await.map_err(|_| ())?,
            Outbound::Envelope { text, envelope_id } => {
                sink.feed(Message::text(text)).await.map_err(|_| ())?;
                written.push(envelope_id);
            }
            Outbound::Binary(bytes) => sink.feed(Message::binary(bytes)).await.map_err(|_| ())?,
            Outbound::Disconnect(reason) => {
                sink.feed(Message::text(envelope::disconnect(&reason)))
                    .await
                    .map_err(|_| ())?;
                close_at.get_or_insert(Instant::now() + shared.opts.disconnect_grace);
            }
            Outbound::Drop => return Ok(Some(End::Dropped)),
            Outbound::HalfOpen => {
                // Frames queued before the silence still go out (a hello, say);
                // with nothing queued there is no flush, so not even a pong the
                // reader's last read may have queued leaves.
                if count > 0 {
                    shared.mark_written(&written, std::time::Instant::now());
                    let _ = sink.flush().await;
                }
                return Ok(Some(End::HalfOpen));
            }
        }
        count += 1;
        if count < BATCH {
            next = rx.try_recv().ok();
        }
    }
    // Stamped before the flush, so no ack can arrive before its send time.
    shared.mark_written(&written, std::time::Instant::now());
    sink.flush().await.map_err(|_| ())?;
    Ok(None)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(pinger: &mut Option<Interval>) {
    match pinger {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
