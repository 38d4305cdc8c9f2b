//! The Slack Web API, through slack-morphism's client.
//!
//! The connector speaks http1 and http2 over plain http or TLS, so the same
//! code reaches slack.com and a local fake. Every call has a deadline (hyper's
//! client has none of its own), and every failure is sorted into a
//! [`WebError`] that says whether to retry, to wait, or to stop.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::exit::{ExitCode, HasExitCode};
use crate::secrets::{Token, Tokens};

/// The slack-morphism connector type used everywhere.
pub(crate) type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// Web API calls in flight at once. Slack paces posts per channel anyway;
/// more parallel calls only open more connections (over http1) and memory.
pub(crate) const MAX_CONCURRENT_CALLS: usize = 8;

/// A failed Web API call, sorted by what the caller should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum WebError {
    /// Slack answered `ok: false`.
    #[error("{method}: Slack answered {code}{}", explain(.code).map(|e| format!(" ({e})")).unwrap_or_default())]
    Api { method: &'static str, code: String },
    /// HTTP 429: wait `retry_after` before the next call.
    #[error("{method}: rate-limited by Slack (retry after {})", .retry_after.map(|d| format!("{}s", d.as_secs())).unwrap_or_else(|| "an unspecified delay".into()))]
    RateLimited {
        method: &'static str,
        retry_after: Option<Duration>,
    },
    /// A non-200 HTTP status.
    #[error("{method}: HTTP status {status}")]
    Http { method: &'static str, status: u16 },
    /// The request did not complete: DNS, TCP, TLS, or the deadline.
    #[error("{method}: cannot connect to {url} ({detail})")]
    Unreachable {
        method: &'static str,
        url: String,
        detail: String,
    },
    /// Slack's answer did not parse.
    #[error("{method}: unexpected answer from Slack: {detail}")]
    Protocol {
        method: &'static str,
        detail: String,
    },
}

/// Plain words for the Slack error codes an administrator meets first.
pub(crate) fn explain(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid_auth" => "the token is wrong, belongs to another workspace, or was regenerated",
        "not_authed" => "no token was sent",
        "token_revoked" => "the token was revoked, or the app was uninstalled from the workspace",
        "token_expired" => "the token has expired; rotate it",
        "account_inactive" => "the bot's user was deactivated or the app uninstalled",
        "not_allowed_token_type" => {
            "the wrong kind of token was used: Socket Mode needs the app-level xapp- token, the Web API the bot xoxb- token"
        }
        "missing_scope" => "the app lacks an OAuth scope this call needs; add it and reinstall the app",
        "channel_not_found" => "no such channel, or the bot cannot see it",
        "not_in_channel" => "the bot is not a member of the channel; invite it with /invite",
        "is_archived" => "the channel is archived",
        "msg_too_long" => "the message is longer than Slack accepts",
        "ratelimited" => "too many requests; Slack asks to slow down",
        _ => return None,
    })
}

impl WebError {
    /// True when the credentials themselves are bad: retrying cannot help.
    pub(crate) fn is_auth_failure(&self) -> bool {
        matches!(self, WebError::Api { code, .. } if is_auth_code(code))
    }

    /// True when this exact request will never succeed.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            WebError::Api { code, .. } => {
                code != "ratelimited"
                    && code != "internal_error"
                    && code != "fatal_error"
                    && code != "request_timeout"
                    && code != "service_unavailable"
            }
            WebError::Http { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            _ => false,
        }
    }

    /// How long Slack asked us to wait, when it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            WebError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Codes that mean the token is unusable.
pub(crate) fn is_auth_code(code: &str) -> bool {
    matches!(
        code,
        "invalid_auth"
            | "not_authed"
            | "token_revoked"
            | "token_expired"
            | "account_inactive"
            | "not_allowed_token_type"
    )
}

impl HasExitCode for WebError {
    fn exit_code(&self) -> ExitCode {
        if self.is_auth_failure() {
            ExitCode::CONFIG
        } else if matches!(
            self,
            WebError::RateLimited { .. } | WebError::Unreachable { .. }
        ) {
            ExitCode::TEMPFAIL
        } else {
            ExitCode::UNAVAILABLE
        }
    }
}

/// Who the bot is, from `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    /// The bot's user ID (`U…`), to recognise its own messages and mentions.
    pub(crate) user_id: String,
    /// The bot ID (`B…`), carried by the bot's own messages.
    pub(crate) bot_id: Option<String>,
    /// The bot's user name.
    pub(crate) user: Option<String>,
    /// The workspace ID.
    pub(crate) team_id: String,
    /// The workspace name.
    pub(crate) team: String,
}

impl Identity {
    /// Whether a message sent by `user` (or carrying `bot_id`) is the bot's own.
    pub(crate) fn is_me(&self, user: Option<&str>, bot_id: Option<&str>) -> bool {
        let own_bot = self.bot_id.is_some() && bot_id == self.bot_id.as_deref();
        own_bot || user.is_some_and(|u| u == self.user_id)
    }
}

/// A message to post.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct OutgoingMessage {
    /// Channel ID.
    pub(crate) channel: String,
    /// The text (Slack mrkdwn).
    pub(crate) text: String,
    /// Reply in this thread.
    pub(crate) thread_ts: Option<String>,
    /// An idempotency key carried in the message metadata.
    pub(crate) idempotency_key: Option<String>,
}

/// Pages of 200 messages one look-up reads at most (Slack's `conversations.*`
/// methods are rate-limited per minute: a deeper search costs more than a
/// rare double post).
pub(crate) const POSTED_PAGES: usize = 10;

/// What the bot posted in one channel or thread: the idempotency keys, and
/// the texts of its own messages that carry none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Posted {
    /// Idempotency key → the message's `ts`.
    keys: std::collections::HashMap<String, String>,
    /// Text → `ts`, for the bot's messages without a key.
    bare_texts: std::collections::HashMap<String, String>,
}

impl Posted {
    fn add(&mut self, m: &SlackHistoryMessage, me: &Identity) {
        let key = m
            .content
            .metadata
            .as_ref()
            .and_then(|md| md.event_payload.as_ref())
            .and_then(|p| p.get("idempotency_key"))
            .map(|k| k.as_str());
        let ts = m.origin.ts.to_string();
        match key {
            Some(k) => {
                self.keys.insert(k.to_string(), ts);
            }
            None => {
                let mine = me.is_me(
                    m.sender.user.as_ref().map(|u| u.0.as_str()),
                    m.sender.bot_id.as_ref().map(|b| b.0.as_str()),
                );
                if let (true, Some(text)) = (mine, m.content.text.as_deref()) {
                    self.bare_texts.insert(text.to_string(), ts);
                }
            }
        }
    }

    /// The `ts` of `msg` if it is among them: found by its key, or by the
    /// text of a message of the bot's that has no key (Slack leaves metadata
    /// out where the app may not read it).
    pub(crate) fn find(&self, msg: &OutgoingMessage) -> Option<&str> {
        msg.idempotency_key
            .as_ref()
            .and_then(|k| self.keys.get(k))
            .or_else(|| self.bare_texts.get(&msg.text))
            .map(String::as_str)
    }
}

/// A channel as `conversations.info` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelFacts {
    /// Its name, without `#`.
    pub(crate) name: String,
    /// A private channel.
    pub(crate) is_private: bool,
    /// Whether the bot is in it.
    pub(crate) is_member: bool,
    /// Archived: nobody can post.
    pub(crate) is_archived: bool,
}

/// The Slack Web API for one pair of tokens.
#[derive(Clone)]
pub(crate) struct SlackWeb {
    client: Arc<SlackClient<Connector>>,
    calls: Arc<tokio::sync::Semaphore>,
    api_url: String,
    timeout: Duration,
    bot: SlackApiToken,
    app: SlackApiToken,
}

impl std::fmt::Debug for SlackWeb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWeb")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// Builds an http1+http2, http+https connector. CA roots are loaded only
/// when the API URL is https (see `tls`).
fn connector(api_url: &str) -> Connector {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*crate::tls::for_url(api_url)).clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url)
}

fn api_token(t: &Token) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(t.expose().to_string()))
}

impl SlackWeb {
    /// A client for `api_url` (no trailing slash) with these tokens; each
    /// call may take up to `timeout`.
    pub(crate) fn new(api_url: &str, tokens: &Tokens, timeout: Duration) -> SlackWeb {
        SlackWeb {
            timeout,
            client: Arc::new(SlackClient::new(connector(api_url))),
            calls: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS)),
            api_url: api_url.to_string(),
            bot: api_token(&tokens.bot),
            app: api_token(&tokens.app),
        }
    }

    async fn call<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = ClientResult<T>>,
    ) -> Result<T, WebError> {
        let _slot = self.calls.acquire().await;
        let r = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(WebError::Unreachable {
                method,
                url: self.api_url.clone(),
                detail: format!("no answer within {}", crate::clock::short(self.timeout)),
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.sort(method, e)),
        };
        let outcome = match &r {
            Ok(_) => "ok",
            Err(WebError::Api { .. }) => "api_error",
            Err(WebError::RateLimited { .. }) => "rate_limited",
            Err(WebError::Http { .. }) => "http_error",
            Err(WebError::Protocol { .. }) => "protocol_error",
            Err(_) => "unreachable",
        };
        crate::metrics::global().web_call(method, outcome);
        r
    }

    fn sort(&self, method: &'static str, e: SlackClientError) -> WebError {
        match e {
            SlackClientError::ApiError(a) => WebError::Api {
                method,
                code: a.code,
            },
            SlackClientError::RateLimitError(r) => WebError::RateLimited {
                method,
                retry_after: r.retry_after,
            },
            SlackClientError::HttpError(h) => WebError::Http {
                method,
                status: h.status_code.as_u16(),
            },
            SlackClientError::ProtocolError(p) => WebError::Protocol {
                method,
                detail: p.json_error.to_string(),
            },
            other => WebError::Unreachable {
                method,
                url: self.api_url.clone(),
                detail: transport_detail(&other),
            },
        }
    }

    /// `auth.test` with the bot token.
    pub(crate) async fn auth_test(&self) -> Result<Identity, WebError> {
        let session = self.client.open_session(&self.bot);
        let r = self.call("auth.test", session.auth_test()).await?;
        Ok(Identity {
            user_id: r.user_id.to_string(),
            bot_id: r.bot_id.map(|b| b.to_string()),
            user: r.user,
            team_id: r.team_id.to_string(),
            team: r.team,
        })
    }

    /// `apps.connections.open` with the app token: a single-use WebSocket URL.
    pub(crate) async fn open_socket_url(&self) -> Result<String, WebError> {
        let session = self.client.open_session(&self.app);
        let r = self
            .call(
                "apps.connections.open",
                session.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()),
            )
            .await?;
        Ok(r.url.0.to_string())
    }

    /// `chat.postMessage` with the bot token; returns the message's `ts`.
    pub(crate) async fn post_message(&self, msg: &OutgoingMessage) -> Result<String, WebError> {
        let mut content = SlackMessageContent::new().with_text(msg.text.clone());
        if let Some(key) = &msg.idempotency_key {
            let payload = [("idempotency_key".to_string(), key.clone())]
                .into_iter()
                .collect();
            content = content.with_metadata(SlackMessageMetadata {
                event_type: "slackbotd_message".to_string(),
                event_payload: Some(payload),
            });
        }
        let mut req = SlackApiChatPostMessageRequest::new(msg.channel.clone().into(), content);
        if let Some(ts) = &msg.thread_ts {
            req = req.with_thread_ts(ts.clone().into());
        }
        let session = self.client.open_session(&self.bot);
        let r = self
            .call("chat.postMessage", session.chat_post_message(&req))
            .await?;
        Ok(r.ts.to_string())
    }
}

impl SlackWeb {
    /// Whether `msg` already reached Slack since `since_ms`: a message with
    /// its idempotency key (or, where Slack returns no metadata, the bot's own
    /// message with the same text). Returns its `ts`.
    pub(crate) async fn find_posted(
        &self,
        msg: &OutgoingMessage,
        since_ms: u64,
        me: &Identity,
    ) -> Result<Option<String>, WebError> {
        let posted = self
            .posted(&msg.channel, msg.thread_ts.as_deref(), since_ms, me)
            .await?;
        Ok(posted.find(msg).map(str::to_string))
    }

    /// What the bot posted in `channel` (or in thread `thread`) since
    /// `since_ms` (less 5 s for clock skew), read page by page up to
    /// [`POSTED_PAGES`] pages of 200: one look-up can answer for many
    /// messages.
    pub(crate) async fn posted(
        &self,
        channel: &str,
        thread: Option<&str>,
        since_ms: u64,
        me: &Identity,
    ) -> Result<Posted, WebError> {
        let oldest: SlackTs = format!("{}.000000", (since_ms / 1000).saturating_sub(5)).into();
        let session = self.client.open_session(&self.bot);
        let mut posted = Posted::default();
        let mut cursor: Option<SlackCursorId> = None;
        for _ in 0..POSTED_PAGES {
            let (messages, next) = match thread {
                None => {
                    let req = SlackApiConversationsHistoryRequest::new()
                        .with_channel(channel.to_string().into())
                        .with_oldest(oldest.clone())
                        .with_limit(200)
                        .with_include_all_metadata(true)
                        .opt_cursor(cursor.take());
                    let r = self
                        .call("conversations.history", session.conversations_history(&req))
                        .await?;
                    (r.messages, r.response_metadata.and_then(|m| m.next_cursor))
                }
                Some(ts) => {
                    let req = SlackApiConversationsRepliesRequest::new(
                        channel.to_string().into(),
                        ts.to_string().into(),
                    )
                    .with_oldest(oldest.clone())
                    .with_limit(200)
                    .opt_cursor(cursor.take());
                    let r = self
                        .call("conversations.replies", session.conversations_replies(&req))
                        .await?;
                    (r.messages, r.response_metadata.and_then(|m| m.next_cursor))
                }
            };
            for m in &messages {
                posted.add(m, me);
            }
            match next {
                Some(c) if !c.0.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(posted)
    }

    /// The scopes Slack granted the bot token, as the `x-oauth-scopes`
    /// header of `auth.test` lists them (slack-morphism hides headers, so
    /// this one call is made by hand); `None` when Slack sent no header.
    pub(crate) async fn granted_scopes(&self) -> Result<Option<Vec<String>>, WebError> {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        const METHOD: &str = "auth.test";
        let unreachable = |detail: String| WebError::Unreachable {
            method: METHOD,
            url: self.api_url.clone(),
            detail,
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*crate::tls::for_url(&self.api_url)).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        let req = hyper::Request::post(format!("{}/{METHOD}", self.api_url))
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.bot.token_value.0),
            )
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = match tokio::time::timeout(self.timeout, client.request(req)).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}",
                    crate::clock::short(self.timeout)
                )))
            }
            Ok(Err(e)) => return Err(unreachable(crate::cause::plain_cause(&e))),
            Ok(Ok(r)) => r,
        };
        let scopes = resp
            .headers()
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
        if !resp.status().is_success() {
            return Err(WebError::Http {
                method: METHOD,
                status: resp.status().as_u16(),
            });
        }
        let _ = resp.into_body().collect().await;
        Ok(scopes)
    }

    /// What `conversations.info` says of a channel.
    pub(crate) async fn channel_info(&self, channel: &str) -> Result<ChannelFacts, WebError> {
        let session = self.client.open_session(&self.bot);
        let req = SlackApiConversationsInfoRequest::new(channel.to_string().into());
        let info = self
            .call("conversations.info", session.conversations_info(&req))
            .await?
            .channel;
        let f = &info.flags;
        Ok(ChannelFacts {
            name: info.name.clone().unwrap_or_else(|| channel.to_string()),
            is_private: f.is_private.unwrap_or(false) || f.is_group.unwrap_or(false),
            is_member: f.is_member.unwrap_or(false),
            is_archived: f.is_archived.unwrap_or(false),
        })
    }

    /// Answers a slash command through its `response_url` (seen only by the
    /// person who typed the command, as Slack does by default).
    pub(crate) async fn respond(
        &self,
        response_url: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Result<(), WebError> {
        const METHOD: &str = "response_url";
        let url: url::Url = response_url.parse().map_err(|e| WebError::Protocol {
            method: METHOD,
            detail: format!("the slash command's response_url does not parse: {e}"),
        })?;
        let mut req = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new().with_text(text.to_string()),
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(ts.to_string().into());
        }
        self.call(
            METHOD,
            self.client
                .respond_to_event(&SlackResponseUrl::new(url), &req),
        )
        .await
        .map(|_| ())
    }
}

/// An error and its causes on one line.
/// Why a request never got an answer, in words (slack-morphism prints its
/// transport errors with `{:?}`, which is no message for a person).
fn transport_detail(e: &SlackClientError) -> String {
    match e {
        SlackClientError::HttpProtocolError(p) => match &p.cause {
            Some(c) => crate::cause::plain_cause(c.as_ref()),
            None => "the HTTP exchange failed".into(),
        },
        SlackClientError::SystemError(s) => match &s.cause {
            Some(c) => crate::cause::plain_cause(c.as_ref()),
            None => s.message.clone().unwrap_or_else(|| "a system error".into()),
        },
        SlackClientError::EndOfStream(_) => "the connection closed before the answer".into(),
        other => crate::cause::error_chain(other),
    }
}
