//! One Socket Mode connection's task: writes what its mailbox asks for, reads
//! acks and pings from the client, and carries out disconnects, drops and
//! half-open silence.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::{Instant, Interval};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use crate::envelope;
use crate::links::{Admission, ClientFrame};
use crate::state::{Outbound, Shared};

type Ws = WebSocketStream<TcpStream>;

/// How long to wait for the client's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Frames written before a flush when the mailbox is busy.
const BATCH: usize = 256;

/// How the serving loop ended.
enum End {
    /// The socket is closed, or broken.
    Closed,
    /// Close the TCP stream now, without a close frame.
    Dropped,
    /// Keep the socket open and silent.
    HalfOpen,
}

/// Runs a connection from just after the handshake until it is closed.
pub(crate) async fn run(shared: Arc<Shared>, mut ws: Ws) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, admission) = shared.open_connection(tx);
    if admission == Admission::Refused {
        if let Some(Outbound::Text(text)) = rx.recv().await {
            let _ = ws.send(Message::text(text)).await;
        }
        close(&mut ws).await;
        shared.connection_closed(id);
        return;
    }
    match serve(&shared, id, &mut ws, &mut rx).await {
        End::Closed | End::Dropped => {}
        End::HalfOpen => {
            // Neither read nor write; only a drop request ends the silence.
            while let Some(cmd) = rx.recv().await {
                if matches!(cmd, Outbound::Drop) {
                    break;
                }
            }
        }
    }
    drop(ws);
    shared.connection_closed(id);
}

async fn serve(shared: &Shared, id: u64, ws: &mut Ws, rx: &mut UnboundedReceiver<Outbound>) -> End {
    let mut close_at: Option<Instant> = None;
    let mut pinger: Option<Interval> = shared
        .opts
        .server_ping_every
        .filter(|every| !every.is_zero())
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    loop {
        tokio::select! {
            // Commands first: once `half_open` (or a drop) is asked for, no
            // frame that arrives later may still be answered.
            biased;
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return End::Closed };
                match apply_batch(shared, cmd, ws, rx, &mut close_at).await {
                    Ok(None) => {}
                    Ok(Some(end)) => return end,
                    Err(()) => return End::Closed,
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => shared.client_text(id, text.as_str()),
                Some(Ok(Message::Ping(_))) => {
                    shared.client_frame(id, ClientFrame::Ping);
                    // Sends the pong tungstenite queued.
                    if ws.flush().await.is_err() {
                        return End::Closed;
                    }
                }
                Some(Ok(_)) => shared.client_frame(id, ClientFrame::Other),
                Some(Err(_)) | None => return End::Closed,
            },
            _ = sleep_until(close_at) => {
                close(ws).await;
                return End::Closed;
            }
            _ = tick(&mut pinger) => {
                if ws.send(Message::Ping(Bytes::from_static(b"fake-slack"))).await.is_err() {
                    return End::Closed;
                }
            }
        }
    }
}

/// Carries out `first` and whatever else is already waiting, then flushes.
async fn apply_batch(
    shared: &Shared,
    first: Outbound,
    ws: &mut Ws,
    rx: &mut UnboundedReceiver<Outbound>,
    close_at: &mut Option<Instant>,
) -> Result<Option<End>, ()> {
    let mut next = Some(first);
    let mut count = 0;
    while let Some(cmd) = next.take() {
        match cmd {
            Outbound::Text(text) => ws.feed(Message::text(text)).await.map_err(|_| ())?,
            Outbound::Binary(bytes) => ws.feed(Message::binary(bytes)).await.map_err(|_| ())?,
            Outbound::Disconnect(reason) => {
                ws.feed(Message::text(envelope::disconnect(&reason)))
                    .await
                    .map_err(|_| ())?;
                close_at.get_or_insert(Instant::now() + shared.opts.disconnect_grace);
            }
            Outbound::Drop => return Ok(Some(End::Dropped)),
            Outbound::HalfOpen => {
                let _ = ws.flush().await;
                return Ok(Some(End::HalfOpen));
            }
        }
        count += 1;
        if count < BATCH {
            next = rx.try_recv().ok();
        }
    }
    ws.flush().await.map_err(|_| ())?;
    Ok(None)
}

/// Sends a close frame and waits briefly for the client's close frame.
async fn close(ws: &mut Ws) {
    if ws.close(None).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
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
