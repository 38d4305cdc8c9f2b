//! Which words from Slack may reach an operator command's argv. A word after
//! the command's name becomes an argument of the configured program, and so
//! one of its options: `date -f /etc/shadow` prints the file, `find -exec`
//! and `git -c` run code. So a command takes no words unless its `args` say
//! which: `"any"`, or glob patterns, one per position (`args`) or one for
//! every word (`args_pattern`).
//!
//! The globs are this module's own small matcher, not a file-name glob
//! crate: `*` and `?` never match a `/` (so `/var/log/*` cannot reach
//! `/var/log/../../etc/shadow`), a word with a `..` component never matches,
//! and a word starting with `-` matches only a pattern that spells the `-`
//! itself, so an option is never smuggled in through a `*`.

use crate::config::{ArgsPolicy, CommandConfig};

/// Why the words were refused, for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The command takes no words.
    #[error("`{name}` takes no arguments (its `args` setting is \"none\", the default; an operator can allow some with `args` in its [[command]])")]
    NoArgs {
        /// The command.
        name: String,
    },
    /// More words than patterns.
    #[error("`{name}` takes at most {max} argument(s) (see `args` in its [[command]])")]
    TooMany {
        /// The command.
        name: String,
        /// How many its `args` list.
        max: usize,
    },
    /// A word that matches no allowed pattern.
    #[error("`{name}` does not accept {word:?} as argument {position} (allowed: {allowed}; see `args` in its [[command]])")]
    NoMatch {
        /// The command.
        name: String,
        /// The word refused.
        word: String,
        /// Its position, from 1.
        position: usize,
        /// The pattern it had to match.
        allowed: String,
    },
}

/// What follows `cmd`'s configured argv for the user's `words` (the
/// separator, then the words), or why not.
pub(crate) fn argv(cmd: &CommandConfig, words: &[String]) -> Result<Vec<String>, Refused> {
    check(cmd, words)?;
    let mut out = Vec::new();
    if !words.is_empty() {
        out.extend(cmd.args_separator.iter().cloned());
    }
    out.extend(words.iter().cloned());
    Ok(out)
}

/// Whether `words` are allowed by `cmd`'s policy.
pub(crate) fn check(cmd: &CommandConfig, words: &[String]) -> Result<(), Refused> {
    let name = || cmd.name.clone();
    let no_match = |i: usize, pattern: &str| Refused::NoMatch {
        name: name(),
        word: words[i].clone(),
        position: i + 1,
        allowed: format!("`{pattern}`"),
    };
    if let Some(p) = &cmd.args_pattern {
        return match words.iter().position(|w| !matches(p, w)) {
            Some(i) => Err(no_match(i, p)),
            None => Ok(()),
        };
    }
    match &cmd.args {
        _ if words.is_empty() => Ok(()),
        ArgsPolicy::None => Err(Refused::NoArgs { name: name() }),
        ArgsPolicy::Any => Ok(()),
        ArgsPolicy::Patterns(ps) if words.len() > ps.len() => Err(Refused::TooMany {
            name: name(),
            max: ps.len(),
        }),
        ArgsPolicy::Patterns(ps) => match words.iter().zip(ps).position(|(w, p)| !matches(p, w)) {
            Some(i) => Err(no_match(i, &ps[i])),
            None => Ok(()),
        },
    }
}

/// Whether `word` matches the glob `pattern` under the rules above.
pub(crate) fn matches(pattern: &str, word: &str) -> bool {
    if word.starts_with('-') && !pattern.starts_with('-') {
        return false;
    }
    if word.split('/').any(|c| c == "..") {
        return false;
    }
    glob(pattern.as_bytes(), word.as_bytes())
}

/// `*` (any run without `/`) and `?` (one character but `/`); no classes.
fn glob(p: &[u8], w: &[u8]) -> bool {
    // The classic two-pointer match with one backtrack point: linear enough
    // for words of a chat message.
    let (mut pi, mut wi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while wi < w.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, wi));
                pi += 1;
            }
            Some(b'?') if w[wi] != b'/' => {
                pi += 1;
                wi += 1;
            }
            Some(&c) if c != b'?' && c == w[wi] => {
                pi += 1;
                wi += 1;
            }
            _ => match star {
                Some((sp, sw)) if w[sw] != b'/' => {
                    pi = sp + 1;
                    wi = sw + 1;
                    star = Some((sp, sw + 1));
                }
                _ => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Programs whose options can read files or run code: `args = "any"` on one
/// of them is worth a warning from `slackbotd check`.
const DANGEROUS: &[&str] = &[
    "awk",
    "bash",
    "busybox",
    "curl",
    "date",
    "dd",
    "env",
    "find",
    "gawk",
    "git",
    "gzip",
    "journalctl",
    "less",
    "man",
    "more",
    "nc",
    "node",
    "perl",
    "php",
    "python",
    "python3",
    "rsync",
    "ruby",
    "scp",
    "sed",
    "sh",
    "sort",
    "ssh",
    "sudo",
    "systemctl",
    "tar",
    "tee",
    "vi",
    "vim",
    "wget",
    "xargs",
    "zip",
    "dash",
    "zsh",
];

/// A warning for `check` when `cmd` passes any words to a program known to
/// take dangerous options.
pub(crate) fn warning(cmd: &CommandConfig) -> Option<String> {
    if cmd.args != ArgsPolicy::Any {
        return None;
    }
    let program = std::path::Path::new(&cmd.run[0])
        .file_name()?
        .to_str()?
        .to_string();
    DANGEROUS.contains(&program.as_str()).then(|| {
        format!(
            "command `{}` passes any words from Slack to {program}, whose options can read files or run programs; \
             list the arguments it needs (args = [\"pattern\", …]) or put args_separator = \"--\" before them",
            cmd.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(extra: &str) -> CommandConfig {
        let text = format!("[[command]]\nname = \"date\"\nrun = [\"/bin/date\", \"-u\"]\n{extra}");
        crate::config::Config::parse(std::path::Path::new("x"), &text)
            .unwrap()
            .commands
            .remove(0)
    }

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs_match_whole_words_and_never_cross_a_slash_or_add_an_option() {
        for (pattern, word, want) in [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "db-1", false),
            ("web-?", "web-12", false),
            ("*", "anything", true),
            ("*", "-f", false),
            ("--since=*", "--since=1h", true),
            ("--since=*", "--until=1h", false),
            ("/var/log/*", "/var/log/syslog", true),
            ("/var/log/*", "/var/log/../../etc/shadow", false),
            ("/var/log/*", "/var/log/..", false),
            ("/var/log/*", "/var/log/a/b", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("x", "", false),
        ] {
            assert_eq!(matches(pattern, word), want, "{pattern:?} vs {word:?}");
        }
    }

    #[test]
    fn no_words_by_default_and_the_refusal_names_the_setting() {
        let c = cmd("");
        assert!(argv(&c, &[]).unwrap().is_empty());
        let e = argv(&c, &w(&["-f", "/etc/shadow"])).unwrap_err();
        assert!(e.to_string().contains("`args`"), "{e}");
        assert!(matches!(e, Refused::NoArgs { .. }));
    }

    #[test]
    fn patterns_per_position_and_for_every_word() {
        let c = cmd("args = [\"+%*\", \"web-*\"]");
        assert!(argv(&c, &w(&["+%s"])).is_ok());
        assert!(argv(&c, &w(&["+%s", "web-2"])).is_ok());
        assert!(matches!(
            argv(&c, &w(&["+%s", "web-2", "x"])),
            Err(Refused::TooMany { max: 2, .. })
        ));
        let e = argv(&c, &w(&["-f"])).unwrap_err();
        assert!(matches!(e, Refused::NoMatch { position: 1, .. }), "{e}");
        let c = cmd("args_pattern = \"web-*\"");
        assert!(argv(&c, &w(&["web-1", "web-2", "web-3"])).is_ok());
        assert!(matches!(
            argv(&c, &w(&["web-1", "--all"])),
            Err(Refused::NoMatch { position: 2, .. })
        ));
    }

    #[test]
    fn the_separator_goes_before_the_users_words() {
        let c = cmd("args = \"any\"\nargs_separator = \"--\"");
        assert_eq!(argv(&c, &w(&["-f", "x"])).unwrap(), ["--", "-f", "x"]);
        assert!(argv(&c, &[]).unwrap().is_empty());
    }

    #[test]
    fn check_warns_about_any_words_for_a_program_with_dangerous_options() {
        assert!(warning(&cmd("args = \"any\"")).is_some_and(|w| w.contains("date")));
        assert!(warning(&cmd("")).is_none());
        assert!(warning(&cmd("args = [\"+%s\"]")).is_none());
    }
}
