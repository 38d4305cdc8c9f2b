//! Turning message text into words: Slack's escaping undone, then split the
//! way a shell would quote (but never run by one).

/// Why a message could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WordsError {
    /// A quote was opened and never closed.
    #[error("unbalanced quotes: close every \" and ' you open")]
    Unbalanced,
}

/// Undoes Slack's message escaping: `&amp;` `&lt;` `&gt;`, links written as
/// `<https://x|label>` or `<mailto:…>` (the address is kept), and the curly
/// quotes phones and Macs type.
pub(crate) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('>') {
            Some(j) => {
                let inner = &after[..j];
                let is_link = inner.starts_with("http://")
                    || inner.starts_with("https://")
                    || inner.starts_with("mailto:");
                if is_link {
                    let target = inner.split('|').next().unwrap_or(inner);
                    out.push_str(target.strip_prefix("mailto:").unwrap_or(target));
                } else {
                    out.push('<');
                    out.push_str(inner);
                    out.push('>');
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace(['\u{201C}', '\u{201D}'], "\"")
        .replace(['\u{2018}', '\u{2019}'], "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Splits unescaped text into words, honouring single and double quotes.
pub(crate) fn split(text: &str) -> Result<Vec<String>, WordsError> {
    shlex::split(text).ok_or(WordsError::Unbalanced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escapes_are_undone() {
        assert_eq!(unescape("a &amp;&amp; b &lt;x&gt;"), "a && b <x>");
        assert_eq!(
            unescape("see <https://example.com|example.com> now"),
            "see https://example.com now"
        );
        assert_eq!(unescape("mail <mailto:a@b.c|a@b.c>"), "mail a@b.c");
        assert_eq!(unescape("\u{201C}two words\u{201D}"), "\"two words\"");
        assert_eq!(
            unescape("<@U1> and <#C1|general>"),
            "<@U1> and <#C1|general>"
        );
    }

    #[test]
    fn quoting_is_respected_and_metacharacters_stay_plain() {
        assert_eq!(
            split("deploy 'web 1' \"a b\" c").unwrap(),
            ["deploy", "web 1", "a b", "c"]
        );
        assert_eq!(
            split("x ; rm -rf / $(id) `id` | cat").unwrap(),
            ["x", ";", "rm", "-rf", "/", "$(id)", "`id`", "|", "cat"]
        );
        assert_eq!(split("bad 'quote"), Err(WordsError::Unbalanced));
    }
}
