//! Cutting text at a length limit the way a reader prefers: at a line break
//! when there is one in the second half, else at the limit itself. Command
//! replies and `notify --stdin` both cut this way.

/// Where to cut `text` so that at most `max` characters come before the
/// cut: the byte index of a newline in the second half if there is one, else
/// of the `max`-th character. `None` when the whole text fits.
fn cut_point(text: &str, max: usize) -> Option<usize> {
    let hard = text.char_indices().nth(max).map(|(i, _)| i)?;
    Some(match text[..hard].rfind('\n') {
        Some(nl) if nl > hard / 2 => nl,
        _ => hard,
    })
}

/// At most `max` characters of `text`, and whether anything was cut.
/// `n` and the noun, in the singular or the plural ("1 connection", "2 connections").
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(crate) fn cut(text: &str, max: usize) -> (String, bool) {
    match cut_point(text, max) {
        None => (text.to_string(), false),
        Some(i) => (text[..i].to_string(), true),
    }
}

/// `text` in pieces of at most `max` characters, none lost (the newline a
/// piece was cut at is the only character dropped).
pub(crate) fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim_end();
    while !rest.is_empty() {
        let Some(i) = cut_point(rest, max) else {
            out.push(rest.to_string());
            break;
        };
        out.push(rest[..i].to_string());
        rest = rest[i..].strip_prefix('\n').unwrap_or(&rest[i..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_prefer_a_line_break_in_the_second_half() {
        assert_eq!(cut("short", 10), ("short".to_string(), false));
        assert_eq!(cut("aaaaa\nbbbbbb", 8), ("aaaaa".to_string(), true));
        assert_eq!(cut("a\nbbbbbbbbbb", 8), ("a\nbbbbbb".to_string(), true));
        assert_eq!(cut("ééééé", 3), ("ééé".to_string(), true));
    }

    #[test]
    fn chunks_keep_everything_in_order() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let parts = chunks(&text, 500);
        assert!(parts.iter().all(|p| p.chars().count() <= 500));
        assert_eq!(parts.join("\n"), text.trim_end());
        assert_eq!(chunks("short", 500), ["short"]);
        assert_eq!(chunks(&"x".repeat(1200), 500).len(), 3);
    }
}
