//! Start-up settings of the fake and their defaults.

use std::time::Duration;

/// How a [`FakeSlack`](crate::FakeSlack) is set up. `Options::default()` gives
/// the values listed on each field.
#[derive(Debug, Clone)]
pub struct Options {
    /// The app-level token accepted by `apps.connections.open`.
    /// Default `xapp-1-A0FAKE-1-fakeapptoken`.
    pub app_token: String,
    /// The bot token accepted by the other Web API methods.
    /// Default `xoxb-1-fakebottoken`.
    pub bot_token: String,
    /// An `events_api` envelope not acked within this time is sent again.
    /// Default 3 s, as Slack.
    pub redelivery_after: Duration,
    /// How many times an un-acked event is sent again. Default 3.
    pub max_retries: u32,
    /// After a `disconnect` frame, the socket is closed this much later. Default 1 s.
    pub disconnect_grace: Duration,
    /// When set, the server pings every connection this often. Default `None`.
    pub server_ping_every: Option<Duration>,
    /// Port of the Web API (and the response URLs and control API). Default 0: any free port.
    pub api_port: u16,
    /// Port of the Socket Mode endpoint. Default 0: any free port.
    pub ws_port: u16,
    /// Write one line per notable event on stderr. Default `false`.
    pub log_events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            app_token: "xapp-1-A0FAKE-1-fakeapptoken".to_string(),
            bot_token: "xoxb-1-fakebottoken".to_string(),
            redelivery_after: Duration::from_secs(3),
            max_retries: 3,
            disconnect_grace: Duration::from_secs(1),
            server_ping_every: None,
            api_port: 0,
            ws_port: 0,
            log_events: false,
        }
    }
}
