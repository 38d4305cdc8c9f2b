//! Request parameters as Slack reads them: the query string, then a body that is
//! JSON or `application/x-www-form-urlencoded`, merged into one map; and the
//! token, from `Authorization: Bearer …` or a `token` parameter.

use serde_json::{Map, Value};

/// The merged parameters of one request. Form values are strings; JSON values
/// keep their type.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Map<String, Value>);

/// Why a request's parameters could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamsError {
    /// The body claims or looks like JSON but is not a JSON object.
    InvalidJson,
}

impl ParamsError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            ParamsError::InvalidJson => "invalid_json",
        }
    }
}

impl Params {
    /// Reads the query string and the body.
    pub(crate) fn parse(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Params, ParamsError> {
        let mut map = Map::new();
        for (k, v) in form_pairs(query.unwrap_or("")) {
            map.insert(k, Value::String(v));
        }
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        let trimmed = body.trim_ascii();
        let is_json = content_type.starts_with("application/json")
            || (!content_type.starts_with("application/x-www-form-urlencoded")
                && trimmed.first() == Some(&b'{'));
        if is_json {
            if !trimmed.is_empty() {
                match serde_json::from_slice::<Value>(trimmed) {
                    Ok(Value::Object(obj)) => map.extend(obj),
                    _ => return Err(ParamsError::InvalidJson),
                }
            }
        } else {
            let text = String::from_utf8_lossy(body);
            for (k, v) in form_pairs(&text) {
                map.insert(k, Value::String(v));
            }
        }
        Ok(Params(map))
    }

    /// A parameter as text; numbers and booleans are turned into text.
    pub(crate) fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A parameter that may hold JSON encoded as a string (form bodies send
    /// `metadata` and `blocks` that way).
    pub(crate) fn json(&self, key: &str) -> Option<Value> {
        match self.0.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(serde_json::from_str(s).unwrap_or(Value::String(s.clone()))),
            other => Some(other.clone()),
        }
    }

    /// A boolean parameter: `true`, `"true"` and `"1"` are true.
    pub(crate) fn bool(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            _ => false,
        }
    }

    /// A non-negative integer parameter.
    pub(crate) fn u64(&self, key: &str) -> Option<u64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Whether a parameter is present and not null.
    pub(crate) fn has(&self, key: &str) -> bool {
        !matches!(self.0.get(key), None | Some(Value::Null))
    }

    /// All parameters as a JSON object, without the token.
    pub(crate) fn to_value(&self) -> Value {
        let mut map = self.0.clone();
        map.remove("token");
        Value::Object(map)
    }
}

/// The token of a request: the bearer token, else the `token` parameter.
pub(crate) fn token(authorization: Option<&str>, params: &Params) -> Option<String> {
    let bearer = authorization.and_then(|h| {
        let (scheme, value) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| value.trim().to_string())
    });
    bearer
        .filter(|t| !t.is_empty())
        .or_else(|| params.str("token").filter(|t| !t.is_empty()))
}

/// One value of a query string.
pub(crate) fn query_value(query: &str, key: &str) -> Option<String> {
    form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Splits `a=1&b=x+y` into decoded pairs.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding with `+` as space; malformed escapes are kept as they are.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_query_merge() {
        let p = Params::parse(
            Some("channel=C1&limit=5"),
            Some("application/x-www-form-urlencoded"),
            b"text=hello+w%C3%B6rld&include_all_metadata=true&bad=%zz%4",
        )
        .unwrap();
        assert_eq!(p.str("channel").as_deref(), Some("C1"));
        assert_eq!(p.u64("limit"), Some(5));
        assert_eq!(p.str("text").as_deref(), Some("hello wörld"));
        assert!(p.bool("include_all_metadata"));
        assert_eq!(p.str("bad").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn json_body_and_bad_json() {
        let p = Params::parse(
            None,
            Some("application/json; charset=utf-8"),
            br#"{"channel":"C1","metadata":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(p.json("metadata").unwrap()["a"], 1);
        assert_eq!(
            Params::parse(None, Some("application/json"), b"{nope").unwrap_err(),
            ParamsError::InvalidJson
        );
        assert_eq!(
            Params::parse(None, Some("application/json"), b"[1]").unwrap_err(),
            ParamsError::InvalidJson
        );
    }

    #[test]
    fn token_sources() {
        let p = Params::parse(Some("token=xoxb-q"), None, b"").unwrap();
        assert_eq!(token(Some("Bearer xoxb-h"), &p).as_deref(), Some("xoxb-h"));
        assert_eq!(token(None, &p).as_deref(), Some("xoxb-q"));
        assert_eq!(token(Some("Basic abc"), &Params::default()), None);
    }
}
