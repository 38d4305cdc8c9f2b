//! The recorded history of the fake, handed to tests as plain cloned data.

use std::time::Instant;

use serde_json::Value;

/// Everything the fake has seen and sent so far.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every Socket Mode connection, in the order they were opened (ids start at 1).
    pub connections: Vec<Conn>,
    /// Every envelope sent, one entry per attempt.
    pub deliveries: Vec<Delivery>,
    /// Every message the bot posted (`chat.postMessage` and response URLs).
    pub posts: Vec<Post>,
    /// Every Web API call, including refused ones.
    pub calls: Vec<Call>,
    /// Idempotency keys (`metadata.event_payload.idempotency_key`) seen on more
    /// than one `chat.postMessage`, once per repeated post.
    pub duplicate_idempotency_keys: Vec<String>,
}

/// One Socket Mode connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: u64,
    pub opened_at: Instant,
    pub closed_at: Option<Instant>,
    /// When `hello` was sent; `None` for a connection refused as one too many.
    pub hello_at: Option<Instant>,
    /// Set by [`FakeSlack::half_open`](crate::FakeSlack::half_open).
    pub half_open: bool,
    /// WebSocket pings received from the client.
    pub pings_received: u64,
    /// Every frame received from the client (text, binary, ping, pong, close).
    pub frames_received: u64,
    pub last_client_frame_at: Option<Instant>,
    /// When a `disconnect` frame was sent, and its reason.
    pub disconnect_sent_at: Option<Instant>,
    pub disconnect_reason: Option<String>,
}

impl Conn {
    /// Open, greeted, not half-open and not told to disconnect: envelopes go here.
    pub fn is_live(&self) -> bool {
        self.closed_at.is_none()
            && self.hello_at.is_some()
            && !self.half_open
            && self.disconnect_sent_at.is_none()
    }
}

/// One attempt at delivering an envelope.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope_id: String,
    /// The event id of an `events_api` envelope, shared by its redeliveries.
    pub event_id: Option<String>,
    /// `events_api`, `slash_commands` or `interactive`.
    pub kind: &'static str,
    pub retry_attempt: u32,
    pub conn_id: u64,
    pub sent_at: Instant,
    /// The first ack for this envelope id.
    pub acked_at: Option<Instant>,
    /// The `payload` of that ack, if it carried one.
    pub ack_payload: Option<Value>,
}

impl Delivery {
    /// Whether `id` is this delivery's envelope id or event id.
    pub fn matches(&self, id: &str) -> bool {
        self.envelope_id == id || self.event_id.as_deref() == Some(id)
    }
}

/// A message the bot posted.
#[derive(Debug, Clone)]
pub struct Post {
    /// `chat.postMessage` or `response_url`.
    pub method: String,
    pub channel: String,
    /// The `text` field; empty when only `blocks` were given.
    pub text: String,
    pub thread_ts: Option<String>,
    /// The message timestamp the fake assigned.
    pub ts: String,
    pub metadata: Option<Value>,
    pub at: Instant,
    /// The request's parameters as received.
    pub body: Value,
}

/// One Web API call (or response URL post) and how it was answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub at: Instant,
    pub status: u16,
    /// The `error` of the answer, `None` when it was `ok`.
    pub error: Option<String>,
}

impl Snapshot {
    /// Connections envelopes can currently go to.
    pub fn live_connections(&self) -> Vec<Conn> {
        self.connections
            .iter()
            .filter(|c| c.is_live())
            .cloned()
            .collect()
    }

    /// Posts whose text contains `text`.
    pub fn posts_containing(&self, text: &str) -> Vec<Post> {
        self.posts
            .iter()
            .filter(|p| p.text.contains(text))
            .cloned()
            .collect()
    }

    /// Every delivery of an event id or envelope id, oldest first.
    pub fn deliveries_of(&self, id: &str) -> Vec<Delivery> {
        self.deliveries
            .iter()
            .filter(|d| d.matches(id))
            .cloned()
            .collect()
    }

    /// The first acked delivery of an event id or envelope id.
    pub fn acked(&self, id: &str) -> Option<Delivery> {
        self.deliveries
            .iter()
            .find(|d| d.matches(id) && d.acked_at.is_some())
            .cloned()
    }

    /// Calls made to a Web API method.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}
