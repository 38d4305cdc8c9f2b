//! `slackbotd check`: validates the configuration and the tokens, calls
//! `auth.test`, opens (then closes) one Socket Mode connection, and explains
//! each problem in words an administrator can act on.

use std::time::Duration;

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
                println!("WARN  {w}");
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
    match rt.block_on(web.auth_test()) {
        Ok(id) => ok(&format!(
            "bot token works: the bot is @{} ({}) in workspace {} ({})",
            id.user.as_deref().unwrap_or("?"),
            id.user_id,
            id.team,
            id.team_id
        )),
        Err(e) => {
            fail(&format!("auth.test: {}", advice(&e, "bot token")));
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
            fail(&format!(
                "apps.connections.open: {}",
                advice(&e, "app token")
            ));
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
