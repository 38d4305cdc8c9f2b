"""The peer slackbotd is measured against: the bot teams run today, a minimal
Slack Bolt app on Socket Mode (slack_bolt's SocketModeHandler), answering
"ping" with "pong". scripts/bench points it at the local fake Slack through
WebClient(base_url=...). Reads SLACK_API_URL, SLACK_APP_TOKEN, SLACK_BOT_TOKEN.
"""
import logging
import os

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

logging.basicConfig(level=logging.WARNING)

client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"].rstrip("/") + "/")
app = App(client=client)


@app.event("app_mention")
def on_mention(event, say):
    if "ping" in event.get("text", ""):
        say(text="pong", thread_ts=event.get("thread_ts"))


if __name__ == "__main__":
    SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start()
