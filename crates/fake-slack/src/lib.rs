//! A protocol-faithful local Slack: the Web API over HTTP and Socket Mode over
//! WebSocket, both on 127.0.0.1, with fault injection for tests.
//!
//! [`FakeSlack`] is the entry point. It runs on its own thread with its own tokio
//! runtime, so every method is synchronous and usable from a plain `#[test]`.
//! Dropping it closes the listeners and every socket.
//!
//! ```no_run
//! use std::time::Duration;
//! use fake_slack::FakeSlack;
//!
//! let slack = FakeSlack::start();
//! // point the bot at slack.api_url() with slack.app_token() / slack.bot_token()
//! let event_id = slack.send_mention("C0GENERAL", "U0HUMAN", "ping", None);
//! let delivery = slack.wait_acked(&event_id, Duration::from_secs(5));
//! let reply = slack.wait_posts_containing("pong", Duration::from_secs(5));
//! # let _ = (delivery, reply);
//! ```
//!
//! Layout, one job per module:
//! - [`options`]: start-up settings and their defaults;
//! - [`snapshot`]: the recorded history handed to tests;
//! - `fake`: the public handle;
//! - `state`: shared state, its lock and change notification;
//! - `dispatch`: routing envelopes to connections, queueing and redelivery;
//! - `envelope`: the JSON frames Slack sends over Socket Mode;
//! - `events`: mentions, direct messages, slash commands and interactions;
//! - `faults`: the fault-injection table;
//! - `links`: the registry of connections and the faults aimed at them;
//! - `socket` and `connection`: the WebSocket listener and one socket's task;
//! - `http`, `params`, `web_api`, `response_url`, `control`: the HTTP side;
//! - `ids`: ids, tickets and message timestamps;
//! - [`workspace`]: the bot token's scopes and the channels it can see.

mod connection;
mod control;
mod dispatch;
mod envelope;
mod events;
mod fake;
mod faults;
mod http;
mod ids;
mod links;
pub mod options;
mod params;
mod response_url;
pub mod snapshot;
mod socket;
mod state;
mod web_api;
pub mod workspace;

pub use fake::FakeSlack;
pub use options::Options;
pub use snapshot::{Call, Conn, Delivery, Post, Snapshot};

/// The workspace id of the fake team.
pub const TEAM_ID: &str = "T0FAKE";
/// The app id reported in `hello` and in every envelope.
pub const APP_ID: &str = "A0FAKE";
/// The bot's user id: mentions read `<@UBOT>`.
pub const BOT_USER_ID: &str = "UBOT";
/// The bot id reported by `auth.test` and on the bot's messages.
pub const BOT_ID: &str = "B0FAKE";
/// The channel used when a control request names none.
pub const DEFAULT_CHANNEL: &str = "C0GENERAL";
/// The human user used when a control request names none.
pub const DEFAULT_USER: &str = "U0HUMAN";
/// Slack allows at most this many Socket Mode connections per app.
pub const MAX_CONNECTIONS: usize = 10;
/// `chat.postMessage` refuses longer text with `msg_too_long`.
pub const MAX_TEXT_LEN: usize = 40_000;
