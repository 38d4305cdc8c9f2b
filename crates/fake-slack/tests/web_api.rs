//! The Web API over raw HTTP: tokens, injected faults, `chat.postMessage`,
//! `conversations.history`, bad requests and the control API.

mod support;

use fake_slack::{FakeSlack, BOT_ID, BOT_USER_ID};
use serde_json::{json, Value};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_test_answers_like_slack() {
    let slack = FakeSlack::start();
    let reply = api(&slack, "auth.test", Some(slack.bot_token()), json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = reply.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["user_id"], BOT_USER_ID);
    assert_eq!(body["bot_id"], BOT_ID);
    assert_eq!(body["team_id"], "T0FAKE");
    assert!(slack.api_url().ends_with("/api"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_slack_errors() {
    let slack = FakeSlack::start();
    let error = |r: HttpReply| {
        assert_eq!(r.status, 200);
        r.json()["error"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(
        error(api(&slack, "auth.test", None, json!({})).await),
        "not_authed"
    );
    assert_eq!(
        error(api(&slack, "auth.test", Some("xoxb-nope"), json!({})).await),
        "invalid_auth"
    );
    assert_eq!(
        error(api(&slack, "auth.test", Some(slack.app_token()), json!({})).await),
        "not_allowed_token_type"
    );
    assert_eq!(
        error(
            api(
                &slack,
                "apps.connections.open",
                Some(slack.bot_token()),
                json!({})
            )
            .await
        ),
        "not_allowed_token_type"
    );
    assert_eq!(
        error(api(&slack, "no.such", Some(slack.bot_token()), json!({})).await),
        "unknown_method"
    );

    // A token in a form field works too.
    let form = format!("token={}", slack.bot_token());
    let reply = http(
        slack.api_port(),
        "POST",
        "/api/auth.test",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await;
    assert_eq!(reply.json()["ok"], true);

    slack.set_token_error(Some("token_revoked"));
    assert_eq!(
        error(api(&slack, "auth.test", Some(slack.bot_token()), json!({})).await),
        "token_revoked"
    );
    assert_eq!(
        error(
            api(
                &slack,
                "apps.connections.open",
                Some(slack.app_token()),
                json!({})
            )
            .await
        ),
        "token_revoked"
    );
    slack.set_token_error(None);
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .json()["ok"],
        true
    );

    let calls = slack.snapshot().calls;
    assert_eq!(calls[0].error.as_deref(), Some("not_authed"));
    assert_eq!(calls.last().unwrap().error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_gives_429_with_retry_after() {
    let slack = FakeSlack::start();
    slack.rate_limit("chat.postMessage", 1, 7);
    let body = json!({ "channel": "C1", "text": "hi" });
    let reply = api(
        &slack,
        "chat.postMessage",
        Some(slack.bot_token()),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(reply.json(), json!({ "ok": false, "error": "ratelimited" }));
    // Only the named method, only once.
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .status,
        200
    );
    let reply = api(&slack, "chat.postMessage", Some(slack.bot_token()), body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["ok"], true);
    let calls = slack.snapshot().calls_to("chat.postMessage");
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[0].error.as_deref(), Some("ratelimited"));

    slack.rate_limit("*", 1, 1);
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .status,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_server_errors() {
    let slack = FakeSlack::start();
    slack.fail_method("chat.postMessage", "fatal_error", 1);
    slack.server_error("auth.test", 1);
    let post = json!({ "channel": "C1", "text": "hi" });
    let r = api(
        &slack,
        "chat.postMessage",
        Some(slack.bot_token()),
        post.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (200, json!("fatal_error"))
    );
    let r = api(&slack, "auth.test", Some(slack.bot_token()), json!({})).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        api(&slack, "chat.postMessage", Some(slack.bot_token()), post)
            .await
            .json()["ok"],
        true
    );

    slack.set_channel_error("C2", Some("is_archived"));
    let r = api(
        &slack,
        "chat.postMessage",
        Some(slack.bot_token()),
        json!({ "channel": "C2", "text": "x" }),
    )
    .await;
    assert_eq!(r.json()["error"], "is_archived");
    slack.set_channel_error("C2", None);
    let r = api(
        &slack,
        "chat.postMessage",
        Some(slack.bot_token()),
        json!({ "channel": "C2", "text": "x" }),
    )
    .await;
    assert_eq!(r.json()["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_message_validates_and_records() {
    let slack = FakeSlack::start();
    let token = Some(slack.bot_token());
    let err = |v: Value| v["error"].as_str().unwrap_or("").to_string();
    assert_eq!(
        err(
            api(&slack, "chat.postMessage", token, json!({ "text": "x" }))
                .await
                .json()
        ),
        "channel_not_found"
    );
    assert_eq!(
        err(api(
            &slack,
            "chat.postMessage",
            token,
            json!({ "channel": "C1" })
        )
        .await
        .json()),
        "no_text"
    );
    let long = "a".repeat(40_001);
    assert_eq!(
        err(api(
            &slack,
            "chat.postMessage",
            token,
            json!({ "channel": "C1", "text": long })
        )
        .await
        .json()),
        "msg_too_long"
    );

    let meta =
        json!({ "event_type": "slackbotd_reply", "event_payload": { "idempotency_key": "k-1" } });
    let first = api(&slack, "chat.postMessage", token,
        json!({ "channel": "C1", "text": "first", "thread_ts": "1700000000.000100", "metadata": meta })).await.json();
    assert_eq!(first["ok"], true);
    assert_eq!(first["channel"], "C1");
    assert_eq!(first["message"]["user"], BOT_USER_ID);
    assert_eq!(first["message"]["text"], "first");
    assert_eq!(first["ts"], first["message"]["ts"]);
    // Form bodies carry metadata as a JSON string.
    let form = format!(
        "channel=C1&text=second&metadata={}",
        "%7B%22event_type%22%3A%22x%22%2C%22event_payload%22%3A%7B%22idempotency_key%22%3A%22k-1%22%7D%7D"
    );
    let auth = format!("Bearer {}", slack.bot_token());
    let second = http(
        slack.api_port(),
        "POST",
        "/api/chat.postMessage",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await
    .json();
    assert_eq!(second["ok"], true);
    assert!(second["ts"].as_str().unwrap() > first["ts"].as_str().unwrap());

    let snap = slack.snapshot();
    assert_eq!(snap.duplicate_idempotency_keys, vec!["k-1".to_string()]);
    assert_eq!(snap.posts.len(), 2);
    assert_eq!(
        snap.posts[0].thread_ts.as_deref(),
        Some("1700000000.000100")
    );
    assert_eq!(
        snap.posts[0].metadata.as_ref().unwrap()["event_type"],
        "slackbotd_reply"
    );
    assert_eq!(slack.posts_containing("sec").len(), 1);
    assert_eq!(
        slack
            .wait_posts_containing("first", millis(10))
            .unwrap()
            .channel,
        "C1"
    );

    // History: top-level messages only (as Slack), newest first, metadata
    // only when asked, `oldest` is exclusive.
    let hist = api(
        &slack,
        "conversations.history",
        token,
        json!({ "channel": "C1" }),
    )
    .await
    .json();
    assert_eq!(hist["ok"], true);
    assert_eq!(hist["has_more"], false);
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(
        msgs.len(),
        1,
        "a thread reply is not in the channel's history"
    );
    assert_eq!(msgs[0]["text"], "second");
    // The thread reply is in conversations.replies.
    let replies = api(
        &slack,
        "conversations.replies",
        token,
        json!({ "channel": "C1", "ts": "1700000000.000100" }),
    )
    .await
    .json();
    let msgs = replies["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["thread_ts"], "1700000000.000100");
    assert!(msgs[0].get("metadata").is_none());
    let query = format!(
        "/api/conversations.history?channel=C1&include_all_metadata=true&oldest={}&limit=5",
        first["ts"].as_str().unwrap()
    );
    let hist = http(
        slack.api_port(),
        "GET",
        &query,
        &[("Authorization", &auth)],
        "",
    )
    .await
    .json();
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["text"], "second");
    assert_eq!(
        msgs[0]["metadata"]["event_payload"]["idempotency_key"],
        "k-1"
    );
    let other = api(
        &slack,
        "conversations.history",
        token,
        json!({ "channel": "C2", "limit": 1 }),
    )
    .await
    .json();
    assert_eq!(other["messages"], json!([]));

    // Pages: newest first, `next_cursor` until the last page, then empty.
    for n in 0..5 {
        let r = api(
            &slack,
            "chat.postMessage",
            token,
            json!({ "channel": "C3", "text": format!("m{n}") }),
        )
        .await
        .json();
        assert_eq!(r["ok"], true);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page in 0.. {
        let mut args = json!({ "channel": "C3", "limit": 2 });
        if !cursor.is_empty() {
            args["cursor"] = json!(cursor);
        }
        let h = api(&slack, "conversations.history", token, args)
            .await
            .json();
        seen.extend(
            h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_string()),
        );
        cursor = h["response_metadata"]["next_cursor"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(h["has_more"], !cursor.is_empty(), "page {page}");
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["m4", "m3", "m2", "m1", "m0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_not_crashes() {
    let slack = FakeSlack::start();
    let port = slack.api_port();
    let auth = format!("Bearer {}", slack.bot_token());
    let r = http(
        port,
        "POST",
        "/api/chat.postMessage",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        "{not json",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (200, json!("invalid_json"))
    );
    let r = http(port, "GET", "/elsewhere", &[], "").await;
    assert_eq!(r.status, 404);
    let garbage = raw(port, b"\x16\x03\x01 garbage\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let ws_garbage = raw(slack.ws_port(), b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(!ws_garbage.contains("101"), "{ws_garbage}");
    // Still serving.
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .json()["ok"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_drives_the_fake() {
    let slack = FakeSlack::start();
    let port = slack.api_port();
    let (mut ws, _) = connect(&slack).await;
    let r = http(
        port,
        "POST",
        "/_fake/mention",
        &[],
        r#"{"text":"hello","channel":"C5"}"#,
    )
    .await
    .json();
    let event_id = r["event_id"].as_str().unwrap().to_string();
    let env = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(env["payload"]["event_id"], event_id.as_str());
    assert_eq!(env["payload"]["event"]["channel"], "C5");
    ack(&mut ws, &env, None).await;
    slack.wait_acked(&event_id, secs(2)).unwrap();

    let deliveries = http(port, "GET", "/_fake/deliveries", &[], "").await.json();
    let d = &deliveries["deliveries"][0];
    assert_eq!(d["event_id"], event_id.as_str());
    assert!(d["acked_at_ms"].as_f64().unwrap() >= d["sent_at_ms"].as_f64().unwrap());
    let conns = http(port, "GET", "/_fake/connections", &[], "")
        .await
        .json();
    assert_eq!(conns["connections"][0]["live"], true);

    let r = http(
        port,
        "POST",
        "/_fake/rate_limit",
        &[],
        r#"{"method":"auth.test","times":1,"retry_after":3}"#,
    )
    .await;
    assert_eq!(r.json()["ok"], true);
    let limited = api(&slack, "auth.test", Some(slack.bot_token()), json!({})).await;
    assert_eq!(limited.header("retry-after"), Some("3"));
    http(
        port,
        "POST",
        "/_fake/token_error",
        &[],
        r#"{"error":"invalid_auth"}"#,
    )
    .await;
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .json()["error"],
        "invalid_auth"
    );
    http(port, "POST", "/_fake/token_error", &[], r#"{"error":null}"#).await;
    assert_eq!(
        api(&slack, "auth.test", Some(slack.bot_token()), json!({}))
            .await
            .json()["ok"],
        true
    );

    let r = http(
        port,
        "POST",
        "/_fake/disconnect",
        &[],
        r#"{"reason":"warning"}"#,
    )
    .await
    .json();
    assert_eq!(r["connections"], json!([1]));
    assert_eq!(
        next_json(&mut ws, secs(2)).await.unwrap()["reason"],
        "warning"
    );

    let bad = http(port, "POST", "/_fake/mention", &[], "{oops").await;
    assert_eq!(bad.status, 400);
    let posts = http(port, "GET", "/_fake/posts", &[], "").await.json();
    assert_eq!(posts["posts"], json!([]));
}
