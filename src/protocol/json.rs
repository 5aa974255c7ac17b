//! Small JSON pieces the client codec is built from: reading an object's
//! members without parsing their values, classifying a raw value, and writing
//! escaped strings straight into an output buffer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// An object's members in document order, values left unparsed.
///
/// Unlike `serde_json::Map`, duplicate keys are kept, so a message such as
/// `{"logout": true, "logout": true}` is seen as having two keys.
#[derive(Debug)]
pub(crate) struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// Parses `text` as one JSON object (nothing but whitespace around it).
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The value of `key`: `Ok(None)` when absent, `Err(Duplicate)` when the key
    /// appears more than once (ambiguous, so the payload is rejected).
    pub fn get(&self, key: &str) -> Result<Option<&'a RawValue>, Duplicate> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == key {
                if found.is_some() {
                    return Err(Duplicate);
                }
                found = Some(*v);
            }
        }
        Ok(found)
    }
}

/// A key appeared twice in one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate;

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(1));
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The JSON type of a raw value, read from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// Classifies a value serde_json has already validated.
pub(crate) fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// How deeply arrays and objects nest in `raw` (0 for a scalar).
///
/// serde_json limits nesting when it parses values, but not when it only
/// skips over them to capture a `RawValue`, so `data` is checked with this.
pub(crate) fn depth(raw: &RawValue) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw.get().as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Decodes a raw value that [`kind`] says is a string.
pub(crate) fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text<'_>>(raw.get())
        .ok()
        .map(|t| t.0)
}

/// Appends `s` as a quoted JSON string.
///
/// Escapes exactly what `serde_json` escapes (`"`, `\`, and control
/// characters, with the short forms for `\b \f \n \r \t`), so the output is
/// byte-for-byte what `serde_json::to_string(s)` gives. Written by hand
/// because it cannot fail, which keeps `Result`s out of the fan-out path.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `value` verbatim, or `null` when absent.
pub(crate) fn push_raw(out: &mut Vec<u8>, value: Option<&RawValue>) {
    match value {
        Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `value` as a JSON string, or `null` when absent.
pub(crate) fn push_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    #[test]
    fn push_str_matches_serde_json_for_every_ascii_byte() {
        for b in 0u8..=0x7f {
            let s = format!("a{}b", char::from(b));
            assert_eq!(
                escaped(&s),
                serde_json::to_string(&s).expect("ser"),
                "byte {b:#x}"
            );
        }
    }

    #[test]
    fn push_str_matches_serde_json_for_unicode_and_mixes() {
        for s in [
            "",
            "plain",
            "ünïcödé ✓ 😀",
            "\"quoted\" and \\back\\",
            "line\nbreak\r\ttab\u{0008}\u{000c}\u{0000}\u{001f}",
            "\u{2028}\u{2029}\u{7f}",
            "</script>",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).expect("ser"), "{s:?}");
        }
    }

    #[test]
    fn escaped_strings_round_trip() {
        let s = "weird \" \\ \n \u{1} ✓";
        let back: String = serde_json::from_str(&escaped(s)).expect("parse");
        assert_eq!(back, s);
    }

    #[test]
    fn members_keep_duplicates_and_order() {
        let m = Members::parse(r#"{"b": 1, "a": {"x": [1, 2]}, "b": 2}"#).expect("parse");
        let keys: Vec<&str> = m.0.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(m.get("b").err(), Some(Duplicate));
        assert_eq!(
            m.get("a").expect("unique").map(RawValue::get),
            Some(r#"{"x": [1, 2]}"#)
        );
        assert!(m.get("zzz").expect("absent").is_none());
    }

    #[test]
    fn members_decode_escaped_keys() {
        let m = Members::parse(r#"{"sub\u0073cribe": true}"#).expect("parse");
        assert_eq!(m.0[0].0, "subscribe");
    }

    #[test]
    fn members_reject_non_objects_and_trailing_data() {
        for bad in ["[]", "1", "\"s\"", "null", "{} {}", "{", "{\"a\" 1}", ""] {
            assert!(Members::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        let m = Members::parse(
            r#"{"s": 1, "a": [1, [2, {"x": [3]}]], "t": "[[[[\"]]]", "o": {"k": "{\\\\"}}"#,
        )
        .expect("parse");
        let d = |key| depth(m.get(key).expect("unique").expect("present"));
        assert_eq!(d("s"), 0);
        assert_eq!(d("a"), 4);
        assert_eq!(d("t"), 0);
        assert_eq!(d("o"), 1);
    }

    #[test]
    fn kinds_and_text() {
        let m =
            Members::parse(r#"{"n": null, "b": false, "i": -1.5, "s": "x\ny", "a": [], "o": {}}"#)
                .expect("parse");
        let k = |key| kind(m.get(key).expect("unique").expect("present"));
        assert_eq!(k("n"), Kind::Null);
        assert_eq!(k("b"), Kind::Bool);
        assert_eq!(k("i"), Kind::Number);
        assert_eq!(k("s"), Kind::String);
        assert_eq!(k("a"), Kind::Array);
        assert_eq!(k("o"), Kind::Object);
        let s = m.get("s").expect("unique").expect("present");
        assert_eq!(text(s).as_deref(), Some("x\ny"));
    }
}
