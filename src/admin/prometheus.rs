//! Counters in the Prometheus text exposition format (0.0.4). Pure.
//!
//! A counter labelled `a.b.c` becomes the metric `webrocket_a_b_c`. The two
//! families keyed by a table become one metric with a label:
//! `broker.errors.ACCESS_DENIED` is `webrocket_broker_errors{id="ACCESS_DENIED"}`
//! and `broker.closes.slow_consumer` is
//! `webrocket_broker_closes{reason="slow_consumer"}`. Gauges (values that go
//! down: sessions, workers, subscriptions, channels, vhosts, users) are typed
//! `gauge`, everything else `counter`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Families keyed by a table, and the label their last segment becomes.
const KEYED: [(&str, &str); 2] = [("errors", "id"), ("closes", "reason")];

/// Last segments of labels whose values go up and down.
const GAUGES: [&str; 12] = [
    "sessions",
    "leader",
    "term",
    "last_log",
    "applied",
    "lag",
    "workers",
    "subscriptions",
    "channels",
    "vhosts",
    "users",
    "uptime_seconds",
];

/// One sample of a family: its label (if keyed) and value.
type Sample = (Option<(&'static str, String)>, i64);

/// Renders `(label, value)` pairs; samples of one family are kept together
/// (the format requires it) and families come out sorted by name.
pub fn render<'a>(counters: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (label, value) in counters {
        let (name, key) = metric(label);
        families.entry(name).or_default().push((key, value));
    }
    let mut out = String::new();
    for (name, samples) in &families {
        let kind = if GAUGES.iter().any(|g| name.ends_with(&format!("_{g}"))) {
            "gauge"
        } else {
            "counter"
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (key, value) in samples {
            match key {
                Some((key, label)) => {
                    let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {value}", escape(label));
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
    }
    out
}

/// The metric name of a counter label and, for keyed families, its label.
pub fn metric(label: &str) -> (String, Option<(&'static str, String)>) {
    let segments: Vec<&str> = label.split('.').collect();
    if let [family @ .., table, key] = segments.as_slice() {
        if let Some((_, label_name)) = KEYED.iter().find(|(t, _)| t == table) {
            let mut parts = family.to_vec();
            parts.push(table);
            return (name(&parts), Some((label_name, (*key).to_owned())));
        }
    }
    (name(&segments), None)
}

/// `webrocket_` and the segments joined by `_`, other characters replaced.
fn name(segments: &[&str]) -> String {
    let joined = segments.join("_");
    let clean: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("webrocket_{clean}")
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_labels_become_metric_names() {
        assert_eq!(
            metric("broker.messages_in"),
            ("webrocket_broker_messages_in".into(), None)
        );
        assert_eq!(
            metric("odd-name.x y"),
            ("webrocket_odd_name_x_y".into(), None)
        );
    }

    #[test]
    fn error_and_close_tables_become_labels() {
        assert_eq!(
            metric("broker.errors.ACCESS_DENIED"),
            (
                "webrocket_broker_errors".into(),
                Some(("id", "ACCESS_DENIED".into()))
            )
        );
        assert_eq!(
            metric("broker.closes.slow_consumer"),
            (
                "webrocket_broker_closes".into(),
                Some(("reason", "slow_consumer".into()))
            )
        );
        // A bare "errors" counter is not a table.
        assert_eq!(metric("errors"), ("webrocket_errors".into(), None));
    }

    #[test]
    fn render_groups_families_and_types_gauges() {
        let text = render([
            ("broker.errors.ACCESS_DENIED", 2),
            ("broker.sessions", 3),
            ("broker.messages_in", 10),
            ("broker.errors.INVALID_PAYLOAD", 0),
        ]);
        let expected = "\
# TYPE webrocket_broker_errors counter
webrocket_broker_errors{id=\"ACCESS_DENIED\"} 2
webrocket_broker_errors{id=\"INVALID_PAYLOAD\"} 0
# TYPE webrocket_broker_messages_in counter
webrocket_broker_messages_in 10
# TYPE webrocket_broker_sessions gauge
webrocket_broker_sessions 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render([("x.errors.a\"b\\c\nd", 1)]);
        assert!(
            text.contains(r#"webrocket_x_errors{id="a\"b\\c\nd"} 1"#),
            "{text}"
        );
        assert_eq!(render(std::iter::empty()), "");
    }
}
