//! Envelope routing: each envelope goes to one live connection, chosen at
//! random as Slack does, or
//! waits in a queue until one connects. Un-acked `events_api` envelopes are sent
//! again after `redelivery_after` with a new envelope id and `retry_attempt + 1`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::envelope::{self, Kind};
use crate::ids;
use crate::snapshot::Delivery;
use crate::state::{Inner, Message, Outbound, Shared};

/// An envelope about to be sent for the first time.
#[derive(Debug)]
pub(crate) struct NewEnvelope {
    pub(crate) kind: Kind,
    pub(crate) event_id: Option<String>,
    pub(crate) payload: Value,
    pub(crate) accepts_response_payload: bool,
}

impl NewEnvelope {
    /// An `events_api` envelope around an inner event.
    pub(crate) fn event(event: Value) -> Self {
        let event_id = ids::event_id();
        NewEnvelope {
            kind: Kind::EventsApi,
            payload: envelope::event_callback(event, &event_id),
            event_id: Some(event_id),
            accepts_response_payload: false,
        }
    }
}

impl Shared {
    /// Sends (or queues) one envelope. Returns its event id for `events_api`,
    /// its envelope id otherwise.
    pub(crate) fn submit(self: &Arc<Self>, env: NewEnvelope) -> String {
        self.update(|inner| {
            let (index, id) = add_message(inner, env);
            self.route(inner, index, None);
            id
        })
    }

    /// Sends every envelope to the same live connection, as fast as it goes.
    pub(crate) fn submit_burst(self: &Arc<Self>, envs: Vec<NewEnvelope>) -> Vec<String> {
        self.update(|inner| {
            let target = inner.pick_live();
            envs.into_iter()
                .map(|env| {
                    let (index, id) = add_message(inner, env);
                    self.route(inner, index, target);
                    id
                })
                .collect()
        })
    }

    /// Sends message `index` to `target` if it is live, else to any live
    /// connection, else queues it.
    pub(crate) fn route(self: &Arc<Self>, inner: &mut Inner, index: usize, target: Option<u64>) {
        let conn = match target {
            Some(id) if inner.is_live(id) => Some(id),
            _ => inner.pick_live(),
        };
        match conn {
            Some(id) => self.transmit(inner, index, id),
            None => inner.queue.push_back(index),
        }
    }

    /// Sends every queued message to connection `conn_id`.
    pub(crate) fn flush_queue(self: &Arc<Self>, inner: &mut Inner, conn_id: u64) {
        while let Some(index) = inner.queue.pop_front() {
            if !inner.messages[index].acked {
                self.transmit(inner, index, conn_id);
            }
        }
    }

    fn transmit(self: &Arc<Self>, inner: &mut Inner, index: usize, conn_id: u64) {
        let m = &inner.messages[index];
        let text = envelope::frame(
            m.kind,
            &m.envelope_id,
            m.accepts_response_payload,
            m.retry_attempt,
            &m.payload,
        );
        let sent = inner.handles.get(&conn_id).is_some_and(|h| {
            h.tx.send(Outbound::Envelope {
                text,
                envelope_id: m.envelope_id.clone(),
            })
            .is_ok()
        });
        if !sent {
            inner.queue.push_back(index);
            return;
        }
        let delivery = Delivery {
            envelope_id: m.envelope_id.clone(),
            event_id: m.event_id.clone(),
            kind: m.kind.as_str(),
            retry_attempt: m.retry_attempt,
            conn_id,
            sent_at: Instant::now(),
            acked_at: None,
            ack_payload: None,
        };
        let kind = m.kind;
        self.log(|| {
            format!(
                "conn {conn_id}: sent {} envelope {}{} retry_attempt={}",
                delivery.kind,
                delivery.envelope_id,
                delivery
                    .event_id
                    .as_deref()
                    .map(|e| format!(" event {e}"))
                    .unwrap_or_default(),
                delivery.retry_attempt
            )
        });
        let delivery_index = inner.snap.deliveries.len();
        inner
            .by_envelope
            .insert(delivery.envelope_id.clone(), delivery_index);
        inner.snap.deliveries.push(delivery);
        inner.delivery_message.push(index);
        inner.messages[index].last_delivery = Some(delivery_index);
        if kind == Kind::EventsApi {
            let me = Arc::clone(self);
            let after = self.opts.redelivery_after;
            self.runtime.spawn(async move {
                tokio::time::sleep(after).await;
                me.redelivery_due(delivery_index);
            });
        }
    }

    /// Called when a delivery's ack time is up: sends the event again if needed.
    fn redelivery_due(self: &Arc<Self>, delivery_index: usize) {
        self.update(|inner| {
            let Some(&index) = inner.delivery_message.get(delivery_index) else {
                return;
            };
            let max_retries = self.opts.max_retries;
            let m = &mut inner.messages[index];
            if m.acked || m.last_delivery != Some(delivery_index) || m.retry_attempt >= max_retries
            {
                return;
            }
            m.retry_attempt += 1;
            m.envelope_id = ids::uuid_like();
            self.route(inner, index, None);
        });
    }

    /// Sends an event again as Slack sometimes does, acked or not: same event
    /// id, new envelope id, `retry_attempt` + 1. False when the id is unknown.
    pub(crate) fn resend(self: &Arc<Self>, event_id: &str) -> bool {
        self.update(|inner| {
            let Some(index) = inner
                .messages
                .iter()
                .position(|m| m.event_id.as_deref() == Some(event_id))
            else {
                return false;
            };
            let m = &mut inner.messages[index];
            m.acked = false;
            m.retry_attempt += 1;
            m.envelope_id = ids::uuid_like();
            self.route(inner, index, None);
            true
        })
    }

    /// Envelopes handed to the socket now: their deliveries count from here,
    /// not from when they were queued for the connection.
    pub(crate) fn mark_written(&self, envelope_ids: &[String], at: Instant) {
        if envelope_ids.is_empty() {
            return;
        }
        self.update(|inner| {
            for id in envelope_ids {
                if let Some(&d) = inner.by_envelope.get(id) {
                    let delivery = &mut inner.snap.deliveries[d];
                    if delivery.acked_at.is_none() {
                        delivery.sent_at = at;
                    }
                }
            }
        });
    }

    /// Records an ack frame; the first ack of an envelope id wins.
    pub(crate) fn record_ack(&self, inner: &mut Inner, envelope_id: &str, payload: Option<Value>) {
        let Some(&d) = inner.by_envelope.get(envelope_id) else {
            self.log(|| format!("ack for unknown envelope {envelope_id}"));
            return;
        };
        let delivery = &mut inner.snap.deliveries[d];
        if delivery.acked_at.is_none() {
            let now = Instant::now();
            delivery.acked_at = Some(now);
            delivery.ack_payload = payload;
            let took = now.saturating_duration_since(delivery.sent_at);
            self.log(|| format!("ack {envelope_id} after {took:?}"));
        }
        let index = inner.delivery_message[d];
        inner.messages[index].acked = true;
    }
}

fn add_message(inner: &mut Inner, env: NewEnvelope) -> (usize, String) {
    let envelope_id = ids::uuid_like();
    let id = env.event_id.clone().unwrap_or_else(|| envelope_id.clone());
    inner.messages.push(Message {
        kind: env.kind,
        event_id: env.event_id,
        payload: env.payload,
        accepts_response_payload: env.accepts_response_payload,
        retry_attempt: 0,
        envelope_id,
        last_delivery: None,
        acked: false,
    });
    (inner.messages.len() - 1, id)
}
