//! `slackbotd check`: validates the configuration and the tokens, calls
//! `auth.test`, checks the scopes the bot token was granted and the channels
//! the configuration names (`needs`), checks the local setup (`setup`),
//! opens (then closes) one Socket Mode connection, and explains each problem
//! in words an administrator can act on. It exits 78 when the bot cannot
//! work, and 0 with warnings when only an optional feature is affected.

pub(crate) mod needs;
pub(crate) mod setup;

use std::time::Duration;

use needs::{Finding, Level};

use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::{ExitCode, HasExitCode};
use crate::modes::Failure;
use crate::secrets::Tokens;
use crate::slack::socket::{self, OpenError};
use crate::slack::web::{SlackWeb, WebError};

fn ok(msg: &str) {
    println!("ok    {msg}");
}

fn fail(msg: &str) {
    println!("FAIL  {msg}");
}

fn warn(msg: &str) {
    println!("WARN  {msg}");
}

/// Prints a finding; true when it is a failure.
fn say(f: &Finding) -> bool {
    match f.level {
        Level::Ok => ok(&f.text),
        Level::Warn => warn(&f.text),
        Level::Fail => fail(&f.text),
    }
    f.level == Level::Fail
}

/// What to do about a Web API failure, for a person.
fn advice(e: &WebError, token: &str) -> String {
    match e {
        WebError::Api { code, .. } if code == "not_allowed_token_type" => format!(
            "{e}. The {token} is the wrong kind: the app token must be the app-level xapp- token \
             (Basic Information → App-Level Tokens, scope connections:write), the bot token the \
             xoxb- Bot User OAuth Token (OAuth & Permissions)."
        ),
        WebError::Api { code, .. } if crate::slack::web::is_auth_code(code) => {
            format!("{e}. Replace the {token} with a current one from the app's settings page.")
        }
        WebError::Unreachable { .. } => {
            format!("{e}. Check DNS, the firewall or proxy, and [slack].api_url.")
        }
        _ => e.to_string(),
    }
}

/// Runs every check; exits 0 only when all passed.
pub(crate) fn check(src: &ConfigSource) -> Result<(), Failure> {
    crate::logging::init_quiet();
    let config = match Config::load(&src.path) {
        Ok(c) => {
            ok(&format!("configuration {} is valid", src.path.display()));
            for w in c.commands.iter().filter_map(crate::bot::arguments::warning) {
                warn(&w);
            }
            c
        }
        Err(e) => {
            fail(&e.to_string());
            return Err(Failure::new(e.exit_code(), ""));
        }
    };
    let tokens = match Tokens::load(&config.slack, config.base_dir.as_deref()) {
        Ok(t) => {
            ok("both tokens are present, private, and of the right kind");
            t
        }
        Err(e) => {
            fail(&e.to_string());
            return Err(Failure::new(e.exit_code(), ""));
        }
    };
    let web = SlackWeb::new(&config.slack.api_url, &tokens, config.slack.call_timeout);
    let rt = crate::modes::small_runtime()?;
    let mut worst: Option<ExitCode> = None;
    let mut note = |code: ExitCode| {
        worst = Some(match worst {
            Some(w) if w == ExitCode::CONFIG => w,
            _ => code,
        })
    };
    for f in setup::findings(&config) {
        if say(&f) {
            note(ExitCode::CONFIG);
        }
    }
    if let Some(f) = &config.fleet {
        if let Err(code) = fleet(f, config.base_dir.as_deref()) {
            note(code);
        }
    }
    match rt.block_on(web.auth_test()) {
        Ok(id) => {
            ok(&format!(
                "bot token works: the bot is @{} ({}) in workspace {} ({})",
                id.user.as_deref().unwrap_or("?"),
                id.user_id,
                id.team,
                id.team_id
            ));
            if rt.block_on(slack_needs(
                &web,
                &config,
                id.user.as_deref().unwrap_or("bot"),
            )) {
                note(ExitCode::CONFIG);
            }
        }
        Err(e) => {
            fail(&advice(&e, "bot token"));
            note(e.exit_code());
        }
    }
    match rt.block_on(socket::open(&web, Duration::from_secs(15))) {
        Ok((mut ws, hello)) => {
            ok(&format!(
                "app token works: a Socket Mode connection opened and said hello (host {})",
                hello.host.as_deref().unwrap_or("?")
            ));
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await
            });
        }
        Err(OpenError::Web(e)) => {
            fail(&advice(&e, "app token"));
            note(e.exit_code());
        }
        Err(e @ OpenError::LinkDisabled) => {
            fail(&e.to_string());
            note(ExitCode::CONFIG);
        }
        Err(e) => {
            fail(&format!(
                "{e}. Outbound WebSocket (wss, port 443) may be blocked."
            ));
            note(ExitCode::UNAVAILABLE);
        }
    }
    match worst {
        None => {
            println!("all checks passed");
            Ok(())
        }
        Some(code) => Err(Failure::new(code, "")),
    }
}

/// The scopes and channels the bot needs, as Slack reports them; true when
/// something the bot cannot work without is missing.
async fn slack_needs(web: &SlackWeb, config: &Config, bot: &str) -> bool {
    let mut failed = false;
    let granted = match web.granted_scopes().await {
        Ok(Some(g)) => {
            for f in needs::scopes(&g) {
                failed |= say(&f);
            }
            g
        }
        Ok(None) => {
            warn("Slack did not say which scopes the bot token has (no x-oauth-scopes header); scopes not checked");
            Vec::new()
        }
        Err(e) => {
            warn(&format!("cannot read the bot token's scopes: {e}"));
            Vec::new()
        }
    };
    let public_posts = granted.iter().any(|s| s == "chat:write.public");
    for (id, u, why) in needs::channels(config) {
        let seen = match web.channel_info(&id).await {
            Ok(c) => needs::Seen::Found(c),
            Err(WebError::Api { code, .. }) if code == "channel_not_found" => needs::Seen::NotFound,
            Err(WebError::Api { code, .. }) if code == "missing_scope" => needs::Seen::CannotLook,
            Err(e) => {
                warn(&format!("cannot look at channel {id} ({why}): {e}"));
                continue;
            }
        };
        failed |= say(&needs::channel(&id, u, &why, &seen, bot, public_posts));
    }
    failed
}

/// `[fleet]`: the database answers, with which server, and the schema's
/// state; a refused login, a missing database or a server that is away,
/// each in words, with its exit code.
fn fleet(
    f: &crate::config::FleetConfig,
    base_dir: Option<&std::path::Path>,
) -> Result<(), ExitCode> {
    use crate::fleet::schema::{self, State};
    let host = crate::fleet::host_name(f);
    let db = crate::fleet::Db::new(f, base_dir).map_err(|e| {
        fail(&e.to_string());
        e.exit_code()
    })?;
    let mut c = db.connect().map_err(|e| {
        fail(&e.to_string());
        e.exit_code()
    })?;
    let version = c
        .query_one("SHOW server_version", &[])
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|_| "?".into());
    ok(&format!(
        "the fleet database {} answers (PostgreSQL {version})",
        db.target()
    ));
    match schema::state(&db, &mut c) {
        Ok(State::Current) => ok(&format!(
            "its schema is at version {}, this slackbotd's",
            schema::SCHEMA_VERSION
        )),
        Ok(State::Empty) => ok("its schema is empty: the first host to start creates the tables"),
        Ok(State::Older(v)) => ok(&format!(
            "its schema is at version {v}: the next start brings it to {}",
            schema::SCHEMA_VERSION
        )),
        Ok(State::Newer(v)) => {
            fail(
                &crate::fleet::FleetError::TooNew {
                    found: v,
                    known: schema::SCHEMA_VERSION,
                }
                .to_string(),
            );
            return Err(ExitCode::CONFIG);
        }
        Err(e) => {
            fail(&e.to_string());
            return Err(e.exit_code());
        }
    }
    ok(&format!(
        "this host joins the fleet as {host}{}, sharing {} Socket Mode connection(s), lease {}",
        if f.tags.is_empty() {
            String::new()
        } else {
            format!(" (tags: {})", f.tags.join(", "))
        },
        f.connections,
        crate::clock::short(f.lease)
    ));
    Ok(())
}
