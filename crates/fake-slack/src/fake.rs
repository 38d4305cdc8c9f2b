//! The public handle: starts the fake on its own thread and runtime, offers
//! synchronous methods to drive and inspect it, and shuts it down when dropped.

use std::io;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::ids;
use crate::options::Options;
use crate::snapshot::{Conn, Delivery, Post, Snapshot};
use crate::state::{Outbound, Shared};
use crate::workspace::Channel;
use crate::{http, socket, DEFAULT_CHANNEL, DEFAULT_USER};

/// A running fake Slack. All methods are synchronous; dropping it closes the
/// listeners and every socket.
///
/// Methods that wait block the calling thread: from an async test, call them
/// through `tokio::task::spawn_blocking` or on a multi-threaded runtime.
#[derive(Debug)]
pub struct FakeSlack {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn bind(port: u16) -> io::Result<StdListener> {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, port))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl FakeSlack {
    /// Starts with [`Options::default`] on free ports.
    ///
    /// # Panics
    /// When no port on 127.0.0.1 can be bound or no thread can be started.
    pub fn start() -> FakeSlack {
        FakeSlack::start_with(Options::default()).expect("fake-slack could not start")
    }

    /// Starts with the given options. The ports are bound before this returns.
    pub fn start_with(opts: Options) -> io::Result<FakeSlack> {
        let api = bind(opts.api_port)?;
        let ws = bind(opts.ws_port)?;
        let (api_port, ws_port) = (api.local_addr()?.port(), ws.local_addr()?.port());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (api, ws) = {
            let _entered = runtime.enter();
            (TcpListener::from_std(api)?, TcpListener::from_std(ws)?)
        };
        let shared = Arc::new(Shared::new(
            opts,
            api_port,
            ws_port,
            runtime.handle().clone(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let inside = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fake-slack".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(http::serve(api, Arc::clone(&inside)));
                    tokio::spawn(socket::serve(ws, inside));
                    let _ = stopped.await;
                });
                // Dropping the runtime drops every task, closing every socket.
                drop(runtime);
            })?;
        shared.log(|| format!("listening: api {} ws port {ws_port}", shared.api_url()));
        Ok(FakeSlack {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The Web API base URL, `http://127.0.0.1:PORT/api`, without a trailing slash.
    pub fn api_url(&self) -> String {
        self.shared.api_url()
    }

    /// The port of the Web API, response URLs and the control API.
    pub fn api_port(&self) -> u16 {
        self.shared.api_port
    }

    /// The port of the Socket Mode endpoint.
    pub fn ws_port(&self) -> u16 {
        self.shared.ws_port
    }

    /// The accepted app-level token (`xapp-…`).
    pub fn app_token(&self) -> &str {
        &self.shared.opts.app_token
    }

    /// The accepted bot token (`xoxb-…`).
    pub fn bot_token(&self) -> &str {
        &self.shared.opts.bot_token
    }

    /// The options the fake runs with.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The stable direct-message channel of a user: `U123` → `D123`.
    pub fn dm_channel(user: &str) -> String {
        ids::dm_channel(user)
    }

    // ---- events -------------------------------------------------------------

    /// `user` writes `<@UBOT> text` in `channel` (in a thread when `thread_ts`
    /// is given). Returns the event id.
    pub fn send_mention(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> String {
        self.shared.mention(channel, user, text, thread_ts)
    }

    /// `user` writes `text` to the bot directly, in [`FakeSlack::dm_channel`].
    /// Returns the event id.
    pub fn send_dm(&self, user: &str, text: &str) -> String {
        self.shared.direct_message(user, text)
    }

    /// Sends any inner event object, wrapped into an `event_callback`.
    /// Returns the event id.
    pub fn send_event(&self, event: Value) -> String {
        self.shared.raw_event(event)
    }

    /// `user` runs `command text` in `channel`. Returns the envelope id. The
    /// payload's `response_url` posts back to this fake.
    pub fn send_slash_command(
        &self,
        command: &str,
        text: &str,
        user: &str,
        channel: &str,
    ) -> String {
        self.shared.slash_command(command, text, user, channel)
    }

    /// Sends an `interactive` envelope with this payload as-is. Returns the
    /// envelope id. `accepts_response_payload` is true only for
    /// `block_suggestion` payloads, as on Slack.
    pub fn send_interactive(&self, payload: Value) -> String {
        self.shared.interaction(payload)
    }

    /// Sends `n` mentions from [`DEFAULT_USER`](crate::DEFAULT_USER) in
    /// [`DEFAULT_CHANNEL`](crate::DEFAULT_CHANNEL) over one connection, as fast
    /// as possible; `{n}` in `text` becomes the mention's index. Returns the
    /// event ids in order.
    pub fn send_burst(&self, n: usize, text: &str) -> Vec<String> {
        self.shared.burst(n, text, DEFAULT_CHANNEL, DEFAULT_USER)
    }

    /// Sends a text frame as-is to a live connection. Returns which one, or
    /// `None` when none is live (nothing is queued).
    pub fn send_raw_frame(&self, text: &str) -> Option<u64> {
        self.shared.send_frame(Outbound::Text(text.to_string()))
    }

    /// Sends a binary frame to a live connection. Returns which one, if any.
    pub fn send_binary_frame(&self, bytes: &[u8]) -> Option<u64> {
        self.shared.send_frame(Outbound::Binary(bytes.to_vec()))
    }

    // ---- inspection ---------------------------------------------------------

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.read(|inner| inner.snap.clone())
    }

    /// Calls `check` now and after every change until it returns `Some`, or
    /// `timeout` passes. `check` runs under the fake's lock: it must not call
    /// back into the fake.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        check: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Option<T> {
        self.shared.wait_for(timeout, check)
    }

    /// Connections that are open, greeted, not half-open and not told to disconnect.
    pub fn live_connections(&self) -> Vec<Conn> {
        self.shared.read(|inner| inner.snap.live_connections())
    }

    /// Waits until at least `n` connections are live; returns them.
    pub fn wait_live_connections(&self, n: usize, timeout: Duration) -> Option<Vec<Conn>> {
        self.wait_for(timeout, |s| {
            let live = s.live_connections();
            (live.len() >= n).then_some(live)
        })
    }

    /// Waits until an envelope with this event id or envelope id is acked;
    /// returns the acked delivery.
    pub fn wait_acked(&self, id: &str, timeout: Duration) -> Option<Delivery> {
        self.wait_for(timeout, |s| s.acked(id))
    }

    /// Posts whose text contains `text`.
    pub fn posts_containing(&self, text: &str) -> Vec<Post> {
        self.shared.read(|inner| inner.snap.posts_containing(text))
    }

    /// Waits for the first post whose text contains `text`.
    pub fn wait_posts_containing(&self, text: &str, timeout: Duration) -> Option<Post> {
        self.wait_for(timeout, |s| {
            s.posts.iter().find(|p| p.text.contains(text)).cloned()
        })
    }

    // ---- faults -------------------------------------------------------------

    /// Sends `{"type":"disconnect","reason":…}` to connection `conn`, or to every
    /// live connection, and closes each `disconnect_grace` later. Tokens stay
    /// valid. Returns the connections told.
    pub fn disconnect(&self, conn: Option<u64>, reason: &str) -> Vec<u64> {
        self.shared.disconnect(conn, reason)
    }

    /// Closes a connection's TCP stream at once, without a close frame.
    /// Returns whether it was open.
    pub fn drop_connection(&self, id: u64) -> bool {
        self.shared.drop_connection(id)
    }

    /// Makes connection `conn`, or every live one, go silent: nothing is sent or
    /// read (so pings get no pong) and the socket is never closed. Returns those
    /// affected.
    pub fn half_open(&self, conn: Option<u64>) -> Vec<u64> {
        self.shared.half_open(conn)
    }

    /// The next `times` calls of `method` (`*` for any) get HTTP 429 with
    /// `Retry-After: retry_after_secs` and `{"ok":false,"error":"ratelimited"}`.
    pub fn rate_limit(&self, method: &str, times: u32, retry_after_secs: u64) {
        self.shared
            .update(|inner| inner.faults.add_rate_limit(method, times, retry_after_secs));
    }

    /// The next `times` calls of `method` (`*` for any) get HTTP 200
    /// `{"ok":false,"error":error}`.
    pub fn fail_method(&self, method: &str, error: &str, times: u32) {
        self.shared
            .update(|inner| inner.faults.add_failure(method, error, times));
    }

    /// The next `times` calls of `method` (`*` for any) get HTTP 500.
    pub fn server_error(&self, method: &str, times: u32) {
        self.shared
            .update(|inner| inner.faults.add_server_error(method, times));
    }

    /// While set, every call that carries a token gets this error
    /// (`invalid_auth`, `token_revoked`, `account_inactive`, …).
    pub fn set_token_error(&self, error: Option<&str>) {
        self.shared
            .update(|inner| inner.faults.set_token_error(error));
    }

    /// While set, `chat.postMessage` to `channel` fails with this error
    /// (`channel_not_found`, `not_in_channel`, `is_archived`, …).
    pub fn set_channel_error(&self, channel: &str, error: Option<&str>) {
        self.shared
            .update(|inner| inner.faults.set_channel_error(channel, error));
    }

    /// Answers to `method` (`*` for any) arrive `delay` late, after the call
    /// took effect; `None` clears it. A client killed meanwhile never learns
    /// that its post went through.
    pub fn delay_method(&self, method: &str, delay: Option<Duration>) {
        self.shared
            .update(|inner| inner.faults.set_delay(method, delay));
    }

    /// Sends an event again with its same `event_id` (a new envelope id and
    /// `retry_attempt` + 1), as Slack may after it already was acked.
    /// Returns false for an unknown event id.
    pub fn resend(&self, event_id: &str) -> bool {
        self.shared.resend(event_id)
    }

    /// The scopes granted to the bot token (default: every scope slackbotd's
    /// manifest asks for, [`DEFAULT_SCOPES`](crate::workspace::DEFAULT_SCOPES)).
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.shared.update(|inner| {
            inner.workspace.scopes = scopes.iter().map(|s| s.to_string()).collect();
        });
    }

    /// Makes a channel known to `conversations.info` (and posts to it follow
    /// its membership: `not_in_channel` unless the bot is a member, or it
    /// is public and the bot has `chat:write.public`).
    pub fn add_channel(&self, id: &str, name: &str, is_private: bool, is_member: bool) {
        self.shared.update(|inner| {
            inner.workspace.channels.insert(
                id.to_string(),
                Channel {
                    id: id.to_string(),
                    name: name.to_string(),
                    is_private,
                    is_member,
                },
            );
        });
    }

    /// Disarms every fault set with the methods above.
    pub fn clear_faults(&self) {
        self.shared.update(|inner| inner.faults.clear());
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
