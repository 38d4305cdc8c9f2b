//! The registry of Socket Mode connections: opening (with `hello` and the
//! 10-connection limit), closing, what clients send, and the faults aimed at
//! connections (disconnect, drop, half-open, raw frames).

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::envelope;
use crate::snapshot::Conn;
use crate::state::{ConnHandle, Link, Outbound, Shared};
use crate::MAX_CONNECTIONS;

/// What happens to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// `hello` is queued on its mailbox, followed by any waiting envelopes.
    Accepted,
    /// One too many: a `too_many_websockets` disconnect is queued; close it.
    Refused,
}

/// What a client frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    Ping,
    Other,
}

impl Shared {
    /// Registers a connection whose handshake just succeeded.
    pub(crate) fn open_connection(
        self: &Arc<Self>,
        tx: UnboundedSender<Outbound>,
    ) -> (u64, Admission) {
        let (id, admission) = self.update(|inner| {
            let id = inner.snap.connections.len() as u64 + 1;
            let now = Instant::now();
            let mut conn = Conn {
                id,
                opened_at: now,
                closed_at: None,
                hello_at: None,
                half_open: false,
                pings_received: 0,
                frames_received: 0,
                last_client_frame_at: None,
                disconnect_sent_at: None,
                disconnect_reason: None,
            };
            let live = inner.live_count();
            if live >= MAX_CONNECTIONS {
                let reason = "too_many_websockets";
                let _ = tx.send(Outbound::Text(envelope::disconnect(reason)));
                conn.disconnect_sent_at = Some(now);
                conn.disconnect_reason = Some(reason.to_string());
                inner.snap.connections.push(conn);
                return (id, Admission::Refused);
            }
            let _ = tx.send(Outbound::Text(envelope::hello(live + 1)));
            conn.hello_at = Some(now);
            inner.snap.connections.push(conn);
            inner.handles.insert(
                id,
                ConnHandle {
                    tx,
                    link: Link::Live,
                },
            );
            self.flush_queue(inner, id);
            (id, Admission::Accepted)
        });
        match admission {
            Admission::Accepted => self.log(|| format!("conn {id}: opened, hello sent")),
            Admission::Refused => self.log(|| format!("conn {id}: refused, too_many_websockets")),
        }
        (id, admission)
    }

    /// Whether `half_open` silenced this connection (checked by its reader
    /// for every frame, so nothing that arrives after the call is answered).
    pub(crate) fn is_silenced(&self, id: u64) -> bool {
        self.read(|inner| {
            inner
                .handles
                .get(&id)
                .is_some_and(|h| h.link == Link::HalfOpen)
        })
    }

    /// Records that a connection's socket is gone.
    pub(crate) fn connection_closed(&self, id: u64) {
        self.update(|inner| {
            inner.handles.remove(&id);
            if let Some(conn) = inner.conn_mut(id) {
                conn.closed_at.get_or_insert_with(Instant::now);
            }
        });
        self.log(|| format!("conn {id}: closed"));
    }

    /// Counts a non-text frame from the client.
    pub(crate) fn client_frame(&self, id: u64, frame: ClientFrame) {
        self.update(|inner| {
            if let Some(conn) = inner.conn_mut(id) {
                let now = Instant::now();
                conn.frames_received += 1;
                conn.last_client_frame_at = Some(now);
                if frame == ClientFrame::Ping {
                    conn.pings_received += 1;
                }
            }
        });
    }

    /// Counts a text frame from the client and records it if it is an ack.
    pub(crate) fn client_text(&self, id: u64, text: &str) {
        let ack = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut map)) => match map.remove("envelope_id") {
                Some(Value::String(envelope_id)) => Some((envelope_id, map.remove("payload"))),
                _ => None,
            },
            _ => None,
        };
        if ack.is_none() {
            self.log(|| format!("conn {id}: unexpected frame {text:.200}"));
        }
        self.update(|inner| {
            if let Some(conn) = inner.conn_mut(id) {
                conn.frames_received += 1;
                conn.last_client_frame_at = Some(Instant::now());
            }
            if let Some((envelope_id, payload)) = ack {
                self.record_ack(inner, &envelope_id, payload);
            }
        });
    }

    /// Sends `disconnect` to one connection, or to every live one. Returns the
    /// connections told.
    pub(crate) fn disconnect(&self, conn: Option<u64>, reason: &str) -> Vec<u64> {
        let told = self.update(|inner| {
            let targets = targets(inner, conn);
            let now = Instant::now();
            for id in &targets {
                if let Some(h) = inner.handles.get_mut(id) {
                    h.link = Link::Closing;
                    let _ = h.tx.send(Outbound::Disconnect(reason.to_string()));
                }
                if let Some(c) = inner.conn_mut(*id) {
                    c.disconnect_sent_at = Some(now);
                    c.disconnect_reason = Some(reason.to_string());
                }
            }
            targets
        });
        self.log(|| format!("disconnect ({reason}) sent to {told:?}"));
        told
    }

    /// Closes a connection's TCP stream without a close frame.
    pub(crate) fn drop_connection(&self, id: u64) -> bool {
        let dropped = self.update(|inner| match inner.handles.get_mut(&id) {
            Some(h) => {
                h.link = Link::Closing;
                h.tx.send(Outbound::Drop).is_ok()
            }
            None => false,
        });
        self.log(|| format!("conn {id}: dropping, found={dropped}"));
        dropped
    }

    /// Makes one connection, or every live one, go silent. Returns those affected.
    pub(crate) fn half_open(&self, conn: Option<u64>) -> Vec<u64> {
        let silenced = self.update(|inner| {
            let targets = targets(inner, conn);
            for id in &targets {
                if let Some(h) = inner.handles.get_mut(id) {
                    h.link = Link::HalfOpen;
                    let _ = h.tx.send(Outbound::HalfOpen);
                }
                if let Some(c) = inner.conn_mut(*id) {
                    c.half_open = true;
                }
            }
            targets
        });
        self.log(|| format!("half-open: {silenced:?}"));
        silenced
    }

    /// Sends a frame as-is to a live connection. Returns which one, if any.
    pub(crate) fn send_frame(&self, frame: Outbound) -> Option<u64> {
        self.update(|inner| {
            let id = inner.pick_live()?;
            let h = inner.handles.get(&id)?;
            h.tx.send(frame).ok()?;
            Some(id)
        })
    }
}

/// The live connections a fault aims at: `conn` if it is open and not
/// half-open, else every live one when `conn` is `None`.
fn targets(inner: &crate::state::Inner, conn: Option<u64>) -> Vec<u64> {
    match conn {
        Some(id) => match inner.handles.get(&id) {
            Some(h) if h.link != Link::HalfOpen => vec![id],
            _ => Vec::new(),
        },
        None => inner
            .handles
            .iter()
            .filter(|(_, h)| h.link == Link::Live)
            .map(|(id, _)| *id)
            .collect(),
    }
}
