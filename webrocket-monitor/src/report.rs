//! The script-friendly outputs: a plain-text snapshot (`--once`) and the
//! JSON document (`--json`).
//!
//! Pure: no I/O.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::snapshot::Snapshot;
use crate::view::{NodeInfo, Row, View, VHOST_COLUMNS};

const NAME_WIDTH: usize = 28;
const NUMBER_WIDTH: usize = 14;

/// The whole view as plain text, one panel after another.
pub fn plain(view: &View) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "webrocket-monitor: {}", view.title);
    section(&mut out, "TRAFFIC", &view.traffic, true);
    section(&mut out, "SESSIONS", &view.sessions, true);
    section(&mut out, "BACKEND", &view.backend, true);
    out.push_str("\nVHOSTS\n");
    if view.vhosts.is_empty() {
        out.push_str("  (not published by this source)\n");
    } else {
        let _ = write!(out, "  {:<w$}", "path", w = NAME_WIDTH - 2);
        for column in VHOST_COLUMNS {
            let _ = write!(out, "{column:>NUMBER_WIDTH$}");
        }
        out.push('\n');
        for vhost in &view.vhosts {
            let _ = write!(out, "  {:<w$}", vhost.path, w = NAME_WIDTH - 2);
            for value in &vhost.values {
                let _ = write!(out, "{value:>NUMBER_WIDTH$}");
            }
            out.push('\n');
        }
    }
    section(&mut out, "CLOSES BY REASON", &view.closes, false);
    section(&mut out, "ERRORS BY ID", &view.errors, false);
    out.push_str("\nCLUSTER NODES\n");
    for node in &view.nodes {
        let _ = writeln!(
            out,
            "  {:<w$}{:>NUMBER_WIDTH$}  {}",
            node.name,
            node.role,
            node.detail,
            w = NAME_WIDTH - 2
        );
    }
    if !view.other.is_empty() {
        section(&mut out, "OTHER COUNTERS", &view.other, false);
    }
    out
}

fn section(out: &mut String, title: &str, rows: &[Row], header: bool) {
    if header {
        let _ = writeln!(
            out,
            "\n{title:<NAME_WIDTH$}{:>NUMBER_WIDTH$}{:>NUMBER_WIDTH$}",
            "total", "per second"
        );
    } else {
        let _ = writeln!(out, "\n{title}");
    }
    if rows.is_empty() {
        out.push_str("  (none)\n");
    }
    for row in rows {
        let line = format!(
            "  {:<w$}{:>NUMBER_WIDTH$}{:>NUMBER_WIDTH$}",
            row.name,
            row.total,
            row.rate,
            w = NAME_WIDTH - 2
        );
        // Gauges have no rate: no trailing blanks for them.
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The snapshot as JSON: raw values and per-second rates by label.
///
/// ```json
/// {"node": "webrocket", "source": "files /dev/shm/webrocket/webrocket",
///  "interval_ms": 1000,
///  "values": {"broker.messages_in": 12, "broker.sessions": 2},
///  "rates": {"broker.messages_in": 3.0}}
/// ```
///
/// `rates` holds counters only (gauges have none); `interval_ms` is null
/// for a single sample.
pub fn json(snapshot: &Snapshot, node: &NodeInfo) -> Value {
    let mut values = Map::new();
    let mut rates = Map::new();
    for (label, metric) in &snapshot.metrics {
        values.insert(label.clone(), Value::from(metric.value));
        if let Some(rate) = metric.rate {
            rates.insert(label.clone(), json!(rate));
        }
    }
    let interval_ms = snapshot
        .interval
        .map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX));
    json!({
        "node": node.name,
        "source": node.source,
        "interval_ms": interval_ms,
        "values": values,
        "rates": rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Sample, Values};
    use std::time::{Duration, Instant};

    fn node() -> NodeInfo {
        NodeInfo {
            name: "n1".to_owned(),
            source: "files /run/n1".to_owned(),
        }
    }

    fn snapshot() -> Snapshot {
        let t0 = Instant::now();
        let older: Values = [("broker.messages_in".to_owned(), 10)].into();
        let newer: Values = [
            ("broker.messages_in".to_owned(), 30),
            ("broker.sessions".to_owned(), 2),
            ("broker.closes.idle".to_owned(), 1),
        ]
        .into();
        Snapshot::between(
            &Sample::new(t0, older),
            &Sample::new(t0 + Duration::from_secs(2), newer),
        )
    }

    #[test]
    fn plain_text_has_every_panel_and_the_numbers() {
        let text = plain(&View::build(&snapshot(), &node()));
        for heading in [
            "TRAFFIC",
            "SESSIONS",
            "BACKEND",
            "VHOSTS",
            "CLOSES BY REASON",
            "ERRORS BY ID",
            "CLUSTER NODES",
        ] {
            assert!(text.contains(heading), "{heading} missing from\n{text}");
        }
        assert!(text.starts_with("webrocket-monitor: node n1"), "{text}");
        let messages = text.lines().find(|l| l.contains("messages in")).unwrap();
        assert!(
            messages.contains("30") && messages.contains("10.0/s"),
            "{messages}"
        );
        let idle = text.lines().find(|l| l.contains("idle (1000)")).unwrap();
        assert!(idle.contains('1'), "{idle}");
        assert!(text.contains("  (none)\n"), "errors are empty: {text}");
        assert!(!text.contains("OTHER COUNTERS"), "{text}");
    }

    #[test]
    fn plain_text_columns_line_up() {
        let text = plain(&View::build(&snapshot(), &node()));
        let header = text.lines().find(|l| l.starts_with("TRAFFIC")).unwrap();
        let row = text.lines().find(|l| l.contains("messages in")).unwrap();
        assert_eq!(header.len(), row.len(), "\n{header}\n{row}");
    }

    #[test]
    fn plain_text_has_no_trailing_blanks() {
        let text = plain(&View::build(&snapshot(), &node()));
        for line in text.lines() {
            assert_eq!(line, line.trim_end(), "trailing blanks in {line:?}");
        }
    }

    #[test]
    fn json_has_raw_values_and_counter_rates() {
        let doc = json(&snapshot(), &node());
        assert_eq!(doc["node"], "n1");
        assert_eq!(doc["source"], "files /run/n1");
        assert_eq!(doc["interval_ms"], 2000);
        assert_eq!(doc["values"]["broker.messages_in"], 30);
        assert_eq!(doc["values"]["broker.sessions"], 2);
        assert_eq!(doc["rates"]["broker.messages_in"], 10.0);
        assert_eq!(doc["rates"]["broker.closes.idle"], 0.5);
        assert!(doc["rates"].get("broker.sessions").is_none());
    }

    #[test]
    fn json_of_a_single_sample_has_no_interval() {
        let sample = Sample::new(Instant::now(), [("x".to_owned(), 1)].into());
        let doc = json(&Snapshot::single(&sample), &node());
        assert!(doc["interval_ms"].is_null());
        assert_eq!(doc["rates"], json!({}));
    }
}
