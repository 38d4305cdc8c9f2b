//! `slackbotd install`: puts the systemd unit, the cron line and a
//! configuration skeleton in place, creates empty private token files, and
//! prints the next steps. It never overwrites a configuration or a token;
//! `--dry-run` shows what it would write.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cli::ConfigSource;
use crate::exit::ExitCode;
use crate::modes::Failure;

/// The unit as shipped (`etc/slackbotd.service`).
pub(crate) const UNIT: &str = include_str!("../../etc/slackbotd.service");
/// The cron line as shipped (`etc/slackbotd.cron`).
pub(crate) const CRON: &str = include_str!("../../etc/slackbotd.cron");
/// The configuration skeleton (`etc/slackbotd.example.toml`).
pub(crate) const SKELETON: &str = include_str!("../../etc/slackbotd.example.toml");

/// The unit, running `bin` with the configuration `config`.
pub(crate) fn render_unit(bin: &Path, config: &Path) -> String {
    render(UNIT, bin, config)
}

/// The cron line, running `bin` with the configuration `config`.
pub(crate) fn render_cron(bin: &Path, config: &Path) -> String {
    render(CRON, bin, config)
}

/// Where `install` writes.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// The binary the unit and cron line run.
    pub(crate) bin: PathBuf,
    /// Directory for the unit; `None` to skip it (no systemd).
    pub(crate) unit_dir: Option<PathBuf>,
    /// Directory for the cron line.
    pub(crate) cron_dir: PathBuf,
    /// Preview only.
    pub(crate) dry_run: bool,
}

/// Fills the shipped templates in with the real paths.
fn render(template: &str, bin: &Path, config: &Path) -> String {
    let dir = config.parent().unwrap_or(Path::new("/etc/slackbotd"));
    template
        .replace("/usr/local/bin/slackbotd", &bin.display().to_string())
        .replace(
            "/etc/slackbotd/slackbotd.toml",
            &config.display().to_string(),
        )
        .replace("/etc/slackbotd/", &format!("{}/", dir.display()))
}

enum Write {
    Replace,
    KeepExisting,
}

fn put(path: &Path, content: &str, mode: u32, how: Write, dry: bool) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            ExitCode::CANTCREAT,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let exists = path.exists();
    if exists && matches!(how, Write::KeepExisting) {
        println!("keep    {} (exists; never overwritten)", path.display());
        return Ok(());
    }
    let same = exists && std::fs::read_to_string(path).is_ok_and(|c| c == content);
    let verb = match (exists, same) {
        (true, true) => "same   ",
        (true, false) => "update ",
        _ => "create ",
    };
    println!("{verb} {} (mode {mode:04o})", path.display());
    if dry {
        if !content.is_empty() && !same {
            for line in content.lines() {
                println!("        | {line}");
            }
        }
        return Ok(());
    }
    if same {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("slackbotd-new");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(fail)?;
        std::io::Write::write_all(&mut f, content.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The default directory for the unit: writing there only makes sense
/// where systemd runs.
pub(crate) const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// Why a unit for these targets could never work, if it could not.
fn refusal(t: &Targets, systemd_runs: bool) -> Option<String> {
    let unit_dir = t.unit_dir.as_ref()?;
    if unit_dir == Path::new(DEFAULT_UNIT_DIR) && !systemd_runs {
        return Some(
            "this machine was not booted with systemd (there is no /run/systemd/system), so a unit \
             would never run: use `slackbotd install --no-systemd` (cron and `slackbotd daemon` \
             keep the bot alive), or --unit-dir to write the unit for another machine"
                .into(),
        );
    }
    let bin = std::fs::canonicalize(&t.bin).unwrap_or_else(|_| t.bin.clone());
    let hidden = ["/tmp", "/var/tmp", "/home", "/root", "/run/user"]
        .iter()
        .find(|d| bin.starts_with(d))?;
    Some(format!(
        "the unit could not run {}: ProtectHome= and PrivateTmp= hide {hidden} from it; install the \
         binary first (install -m 0755 {} /usr/local/bin/slackbotd, as scripts/install.sh does) and \
         pass --bin /usr/local/bin/slackbotd",
        bin.display(),
        t.bin.display()
    ))
}

/// Installs, or previews with `dry_run`.
pub(crate) fn install(src: &ConfigSource, t: &Targets) -> Result<(), Failure> {
    if let Some(why) = refusal(t, crate::modes::check::setup::systemd_runs()) {
        return Err(Failure::new(ExitCode::USAGE, why));
    }
    let config = std::path::absolute(&src.path).unwrap_or_else(|_| src.path.clone());
    let dir = config
        .parent()
        .unwrap_or(Path::new("/etc/slackbotd"))
        .to_path_buf();
    if t.dry_run {
        println!("dry run: nothing is written\n");
    }
    put(&config, SKELETON, 0o644, Write::KeepExisting, t.dry_run)?;
    for token in ["app-token", "bot-token"] {
        put(&dir.join(token), "", 0o600, Write::KeepExisting, t.dry_run)?;
    }
    if let Some(unit_dir) = &t.unit_dir {
        put(
            &unit_dir.join("slackbotd.service"),
            &render(UNIT, &t.bin, &config),
            0o644,
            Write::Replace,
            t.dry_run,
        )?;
    }
    put(
        &t.cron_dir.join("slackbotd"),
        &render(CRON, &t.bin, &config),
        0o644,
        Write::Replace,
        t.dry_run,
    )?;
    // An existing configuration may already name what cannot work.
    if let Ok(c) = crate::config::Config::load(&config) {
        for f in crate::modes::check::setup::findings(&c) {
            match f.level {
                crate::modes::check::needs::Level::Ok => {}
                _ => println!("warning: {}", f.text),
            }
        }
    }
    let dir = dir.display();
    println!(
        "\nNext steps:\n  \
         1. Put the app-level token (xapp-…) in {dir}/app-token and the bot token (xoxb-…)\n     \
            in {dir}/bot-token; INSTALL.md shows where Slack shows them.\n  \
         2. Check them against Slack:   {bin} --config {config} check",
        bin = t.bin.display(),
        config = config.display()
    );
    if t.unit_dir.is_some() {
        println!("  3. Start it under systemd:     systemctl daemon-reload && systemctl enable --now slackbotd");
    } else {
        println!(
            "  3. Start the daemon:           {} --config {} daemon",
            t.bin.display(),
            config.display()
        );
    }
    println!("  cron runs `ensure` every minute and starts or repairs the bot whenever it is down or deaf.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_get_the_real_paths() {
        let unit = render(
            UNIT,
            Path::new("/opt/s/slackbotd"),
            Path::new("/srv/bot/bot.toml"),
        );
        assert!(
            unit.contains("ExecStart=/opt/s/slackbotd --config /srv/bot/bot.toml run"),
            "{unit}"
        );
        assert!(
            unit.contains("LoadCredential=slack-app-token:/srv/bot/app-token"),
            "{unit}"
        );
        let cron = render(
            CRON,
            Path::new("/opt/s/slackbotd"),
            Path::new("/srv/bot/bot.toml"),
        );
        assert!(
            cron.contains("root /opt/s/slackbotd --config /srv/bot/bot.toml ensure"),
            "{cron}"
        );
    }

    #[test]
    fn a_unit_that_could_never_run_is_refused() {
        let t = |bin: &str, dir: Option<&str>| Targets {
            bin: PathBuf::from(bin),
            unit_dir: dir.map(PathBuf::from),
            cron_dir: PathBuf::from("/etc/cron.d"),
            dry_run: true,
        };
        let unit = Some(DEFAULT_UNIT_DIR);
        assert!(refusal(&t("/usr/local/bin/slackbotd", unit), true).is_none());
        for hidden in [
            "/tmp/x/slackbotd",
            "/home/ann/slackbotd",
            "/root/slackbotd/target/release/slackbotd",
        ] {
            let why = refusal(&t(hidden, unit), true).expect(hidden);
            assert!(
                why.contains("ProtectHome") && why.contains("--bin"),
                "{why}"
            );
        }
        assert!(
            refusal(&t("/tmp/slackbotd", None), true).is_none(),
            "no unit, nothing hidden from it"
        );
        let why = refusal(&t("/usr/bin/slackbotd", unit), false).unwrap();
        assert!(why.contains("--no-systemd"), "{why}");
        assert!(refusal(&t("/usr/bin/slackbotd", Some("/srv/units")), false).is_none());
    }

    #[test]
    fn the_skeleton_is_a_valid_configuration() {
        crate::config::Config::parse(Path::new("skeleton.toml"), SKELETON)
            .expect("the shipped skeleton parses");
    }
}
