//! Socket Mode: hello, envelopes and acks, redelivery, tickets, the connection
//! limit, disconnects, drops and half-open links.

mod support;

use fake_slack::{FakeSlack, Options, APP_ID, BOT_USER_ID, TEAM_ID};
use futures_util::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

fn quick(redelivery_ms: u64, max_retries: u32) -> FakeSlack {
    FakeSlack::start_with(Options {
        redelivery_after: millis(redelivery_ms),
        max_retries,
        disconnect_grace: millis(200),
        ..Options::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_then_websocket_then_hello() {
    let slack = FakeSlack::start();
    let url = open_url(&slack).await;
    assert!(url.starts_with(&format!("ws://127.0.0.1:{}/link/?ticket=", slack.ws_port())));
    assert!(url.ends_with(&format!("&app_id={APP_ID}")));

    let (_ws, hello) = connect(&slack).await;
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], APP_ID);
    assert!(hello["debug_info"]["host"].is_string());

    let live = slack.wait_live_connections(1, secs(2)).unwrap();
    assert_eq!(live[0].id, 1);
    assert!(live[0].hello_at.is_some());

    let (_ws2, hello2) = connect(&slack).await;
    assert_eq!(hello2["num_connections"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_is_delivered_and_its_ack_recorded() {
    let slack = FakeSlack::start();
    // Sent before any connection: queued, then delivered right after hello.
    let event_id = slack.send_mention("C123", "U777", "ping", Some("1700000000.000100"));
    let (mut ws, _) = connect(&slack).await;
    let env = next_json(&mut ws, secs(2)).await.unwrap();

    assert_eq!(env["type"], "events_api");
    assert_eq!(env["accepts_response_payload"], false);
    assert_eq!(env["retry_attempt"], 0);
    assert_eq!(env["retry_reason"], "");
    let envelope_id = env["envelope_id"].as_str().unwrap();
    assert_eq!(envelope_id.len(), 36);
    let payload = &env["payload"];
    assert_eq!(payload["type"], "event_callback");
    assert_eq!(payload["event_id"], event_id.as_str());
    assert_eq!(payload["team_id"], TEAM_ID);
    assert_eq!(payload["api_app_id"], APP_ID);
    assert!(payload["event_time"].is_u64());
    assert_eq!(payload["authorizations"][0]["user_id"], BOT_USER_ID);
    let event = &payload["event"];
    assert_eq!(event["type"], "app_mention");
    assert_eq!(event["text"], "<@UBOT> ping");
    assert_eq!(event["user"], "U777");
    assert_eq!(event["channel"], "C123");
    assert_eq!(event["thread_ts"], "1700000000.000100");
    assert_eq!(event["ts"], event["event_ts"]);

    ack(&mut ws, &env, None).await;
    let delivery = slack.wait_acked(&event_id, secs(2)).expect("ack recorded");
    assert_eq!(delivery.envelope_id, envelope_id);
    assert_eq!(delivery.kind, "events_api");
    assert_eq!(delivery.conn_id, 1);
    assert!(delivery.acked_at.unwrap() >= delivery.sent_at);
    assert!(delivery.ack_payload.is_none());

    // A DM goes to the user's stable D channel.
    let dm = slack.send_dm("U42", "hello");
    let env = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(env["payload"]["event_id"], dm.as_str());
    assert_eq!(
        env["payload"]["event"]["channel"],
        FakeSlack::dm_channel("U42")
    );
    assert_eq!(env["payload"]["event"]["channel_type"], "im");
    let snap = slack.snapshot();
    assert_eq!(snap.connections[0].frames_received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_envelope_is_redelivered_with_same_event_id() {
    let slack = quick(300, 2);
    let (mut ws, _) = connect(&slack).await;
    let event_id = slack.send_mention("C1", "U1", "retry me", None);
    let first = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(first["retry_attempt"], 0);

    let second = next_json(&mut ws, secs(3)).await.expect("redelivery");
    assert_eq!(second["type"], "events_api");
    assert_eq!(second["retry_attempt"], 1);
    assert_eq!(second["retry_reason"], "timeout");
    assert_eq!(second["payload"]["event_id"], event_id.as_str());
    assert_ne!(second["envelope_id"], first["envelope_id"]);

    let third = next_json(&mut ws, secs(3))
        .await
        .expect("second redelivery");
    assert_eq!(third["retry_attempt"], 2);
    // max_retries = 2: nothing more.
    assert!(next_json(&mut ws, millis(800)).await.is_none());

    // A late ack of any attempt counts.
    ack(&mut ws, &second, None).await;
    let acked = slack.wait_acked(&event_id, secs(2)).unwrap();
    assert_eq!(acked.retry_attempt, 1);
    assert_eq!(slack.snapshot().deliveries_of(&event_id).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_envelope_is_not_redelivered() {
    let slack = quick(1000, 3);
    let (mut ws, _) = connect(&slack).await;
    slack.send_mention("C1", "U1", "once", None);
    let env = next_json(&mut ws, secs(2)).await.unwrap();
    ack(&mut ws, &env, None).await;
    assert!(next_json(&mut ws, millis(1500)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_lost_with_its_connection_is_redelivered_on_the_next() {
    let slack = quick(300, 3);
    let (mut a, _) = connect(&slack).await;
    let event_id = slack.send_mention("C1", "U1", "lost", None);
    let first = next_json(&mut a, secs(2)).await.unwrap();
    assert!(slack.drop_connection(1));
    assert!(slack
        .wait_for(secs(2), |s| s.connections[0].closed_at)
        .is_some());
    let (mut b, _) = connect(&slack).await;
    let again = next_json(&mut b, secs(3)).await.expect("redelivered");
    assert_eq!(again["payload"]["event_id"], event_id.as_str());
    assert_eq!(again["retry_attempt"], 1);
    assert_ne!(again["envelope_id"], first["envelope_id"]);
    ack(&mut b, &again, None).await;
    assert_eq!(slack.wait_acked(&event_id, secs(2)).unwrap().conn_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_or_unknown_ticket_is_refused() {
    let slack = FakeSlack::start();
    let url = open_url(&slack).await;
    let (_ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("reused ticket accepted: {other:?}"),
    }
    let bogus = format!("ws://127.0.0.1:{}/link/?ticket=nope", slack.ws_port());
    match tokio_tungstenite::connect_async(bogus.as_str()).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!("unknown ticket accepted: {other:?}"),
    }
    assert_eq!(slack.snapshot().connections.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_stops_pongs() {
    let slack = FakeSlack::start();
    let (mut ws, _) = connect(&slack).await;
    ws.send(Message::Ping(Bytes::from_static(b"one")))
        .await
        .unwrap();
    match next_frame(&mut ws, secs(2)).await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"one"),
        other => panic!("expected a pong, got {other:?}"),
    }
    let counted = slack.wait_for(secs(2), |s| {
        (s.connections[0].pings_received == 1).then_some(())
    });
    assert!(counted.is_some());

    assert_eq!(slack.half_open(None), vec![1]);
    assert!(slack.live_connections().is_empty());
    ws.send(Message::Ping(Bytes::from_static(b"two")))
        .await
        .unwrap();
    assert!(
        next_frame(&mut ws, millis(800)).await.is_none(),
        "no pong, no close"
    );
    let conn = slack.snapshot().connections[0].clone();
    assert!(conn.half_open);
    assert!(conn.closed_at.is_none());
    assert_eq!(conn.pings_received, 1);

    // Events now wait for a new connection.
    let event_id = slack.send_mention("C1", "U1", "after", None);
    let (mut ws2, hello) = connect(&slack).await;
    assert_eq!(hello["num_connections"], 1);
    let env = next_json(&mut ws2, secs(2)).await.unwrap();
    assert_eq!(env["payload"]["event_id"], event_id.as_str());
    assert_eq!(env["retry_attempt"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_frame_then_close() {
    let slack = quick(3000, 3);
    let (mut ws, _) = connect(&slack).await;
    assert_eq!(slack.disconnect(None, "refresh_requested"), vec![1]);
    let frame = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(frame["type"], "disconnect");
    assert_eq!(frame["reason"], "refresh_requested");
    assert_eq!(frame["debug_info"]["host"], "fake-slack");
    // The socket is closed after the grace period, with a close frame.
    match next_frame(&mut ws, secs(2)).await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected a close frame, got {other:?}"),
    }
    let closed = slack.wait_for(secs(3), |s| s.connections[0].closed_at);
    assert!(closed.is_some());
    let conn = &slack.snapshot().connections[0];
    assert_eq!(conn.disconnect_reason.as_deref(), Some("refresh_requested"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connection_closes_without_close_frame() {
    let slack = FakeSlack::start();
    let (mut ws, _) = connect(&slack).await;
    assert!(slack.drop_connection(1));
    match next_frame(&mut ws, secs(2)).await {
        Some(Err(_)) => {}
        other => panic!("expected an abrupt end, got {other:?}"),
    }
    assert!(slack
        .wait_for(secs(2), |s| s.connections[0].closed_at)
        .is_some());
    assert!(!slack.drop_connection(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleventh_connection_gets_too_many_websockets() {
    let slack = FakeSlack::start();
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(connect(&slack).await.0);
    }
    // The eleventh apps.connections.open is refused, as Slack refuses it.
    let refused = api(
        &slack,
        "apps.connections.open",
        Some(slack.app_token()),
        serde_json::json!({}),
    )
    .await
    .json();
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"], "too_many_websockets");
    assert_eq!(slack.live_connections().len(), 10);
    // One closes: a place is free again.
    drop(sockets.pop());
    assert!(slack
        .wait_for(secs(3), |s| (s
            .connections
            .iter()
            .filter(|c| c.closed_at.is_none())
            .count()
            == 9)
            .then_some(()))
        .is_some());
    let url = open_url(&slack).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let hello = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(hello["type"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_envelope_goes_to_one_connection_chosen_at_random() {
    let slack = FakeSlack::start();
    let (_a, _) = connect(&slack).await;
    let (_b, _) = connect(&slack).await;
    for n in 0..100 {
        slack.send_mention("C1", "U1", &format!("n{n}"), None);
    }
    let snap = slack
        .wait_for(secs(5), |s| (s.deliveries.len() >= 100).then(|| s.clone()))
        .unwrap();
    let on_first = snap.deliveries.iter().filter(|d| d.conn_id == 1).count();
    assert_eq!(snap.deliveries.len(), 100, "each once");
    // Both get some, and not in strict turns (2^-99 odds against).
    assert!(
        on_first > 0 && on_first < 100,
        "{on_first} of 100 on one connection"
    );
    let alternating = snap
        .deliveries
        .windows(2)
        .all(|w| w[0].conn_id != w[1].conn_id);
    assert!(!alternating, "not round-robin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_goes_over_one_connection() {
    let slack = FakeSlack::start();
    let (mut ws, _) = connect(&slack).await;
    let ids = slack.send_burst(50, "n={n}");
    assert_eq!(ids.len(), 50);
    for (i, id) in ids.iter().enumerate() {
        let env = next_json(&mut ws, secs(2)).await.unwrap();
        assert_eq!(env["payload"]["event_id"], id.as_str());
        assert_eq!(env["payload"]["event"]["text"], format!("<@UBOT> n={i}"));
        ack(&mut ws, &env, None).await;
    }
    let all = slack.wait_for(secs(3), |s| {
        (s.deliveries.iter().filter(|d| d.acked_at.is_some()).count() == 50).then_some(())
    });
    assert!(all.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_ack_payload_and_response_url() {
    let slack = FakeSlack::start();
    let (mut ws, _) = connect(&slack).await;
    let envelope_id = slack.send_slash_command("/bot", "status", "U9", "C9");
    let env = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(env["type"], "slash_commands");
    assert_eq!(env["envelope_id"], envelope_id.as_str());
    assert_eq!(env["accepts_response_payload"], true);
    let p = &env["payload"];
    assert_eq!(p["command"], "/bot");
    assert_eq!(p["text"], "status");
    assert_eq!(p["channel_id"], "C9");
    assert_eq!(p["user_id"], "U9");
    ack(&mut ws, &env, Some(json!({ "text": "working" }))).await;
    let d = slack.wait_acked(&envelope_id, secs(2)).unwrap();
    assert_eq!(d.ack_payload, Some(json!({ "text": "working" })));

    let url = p["response_url"].as_str().unwrap();
    let path = url
        .split_once(&format!("127.0.0.1:{}", slack.api_port()))
        .unwrap()
        .1;
    let body = json!({ "text": "all good", "response_type": "in_channel" }).to_string();
    let reply = http(
        slack.api_port(),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(reply.json(), json!({ "ok": true }));
    let post = slack.wait_posts_containing("all good", secs(1)).unwrap();
    assert_eq!(post.method, "response_url");
    assert_eq!(post.channel, "C9");

    let bad = http(
        slack.api_port(),
        "POST",
        "/commands/T0FAKE/1/wrong",
        &[],
        &body,
    )
    .await;
    assert_eq!(bad.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_and_interactive_pass_through() {
    let slack = FakeSlack::start();
    assert_eq!(slack.send_raw_frame("garbage"), None);
    let (mut ws, _) = connect(&slack).await;
    assert_eq!(slack.send_raw_frame("{\"type\":\"brand_new\"}"), Some(1));
    let frame = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(frame["type"], "brand_new");
    assert_eq!(slack.send_binary_frame(b"\x00\x01"), Some(1));
    match next_frame(&mut ws, secs(2)).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"\x00\x01"),
        other => panic!("expected binary, got {other:?}"),
    }
    let id = slack.send_interactive(json!({ "type": "block_actions", "actions": [] }));
    let env = next_json(&mut ws, secs(2)).await.unwrap();
    assert_eq!(env["type"], "interactive");
    assert_eq!(env["envelope_id"], id.as_str());
    assert_eq!(env["payload"]["type"], "block_actions");

    // Garbage from the client is counted and ignored.
    ws.send(Message::text("not json")).await.unwrap();
    ws.send(Message::text("{\"envelope_id\":\"unknown\"}"))
        .await
        .unwrap();
    let seen = slack.wait_for(secs(2), |s| {
        (s.connections[0].frames_received >= 2).then_some(())
    });
    assert!(seen.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_when_asked() {
    let slack = FakeSlack::start_with(Options {
        server_ping_every: Some(millis(100)),
        ..Options::default()
    })
    .unwrap();
    let (mut ws, _) = connect(&slack).await;
    match next_frame(&mut ws, secs(2)).await {
        Some(Ok(Message::Ping(_))) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_fake_closes_sockets() {
    let slack = FakeSlack::start();
    let (mut ws, _) = connect(&slack).await;
    let port = slack.api_port();
    drop(slack);
    assert!(ends_within(&mut ws, secs(2)).await, "socket still open");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}
