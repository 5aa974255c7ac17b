//! One reading of a node's counters: a flat map of label to value, stamped
//! with the moment it was taken.
//!
//! Both sources end up here: the counters region of the control files
//! yields `(label, value)` pairs directly, and the admin API's `/stats` JSON
//! is read into the same dotted labels ([`stats_document`]), so everything
//! downstream (rates, the TUI, `--json`) is the same for both.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

/// Counter values by label, e.g. `broker.messages_in -> 42`.
pub type Values = BTreeMap<String, i64>;

/// A set of counter values read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the values were read; rates divide by the distance between two.
    pub taken: Instant,
    /// The values.
    pub values: Values,
}

impl Sample {
    /// A sample of `values` taken at `taken`.
    pub fn new(taken: Instant, values: Values) -> Self {
        Sample { taken, values }
    }
}

/// Flattens a `/stats` JSON document into dotted labels.
///
/// Objects nest with `.` (`{"broker": {"sessions": 2}}` becomes
/// `broker.sessions`), so a flat map of labels and a nested one give the same
/// result. Integers are kept, other numbers are rounded, booleans count as
/// 0/1; strings, nulls and arrays carry no counter and are skipped. A
/// document that is not an object yields nothing.
pub fn flatten_json(document: &Value) -> Values {
    let mut out = Values::new();
    if let Value::Object(map) = document {
        for (key, value) in map {
            flatten_into(key, value, &mut out);
        }
    }
    out
}

/// Reads the admin API's `/stats` document into labels.
///
/// The admin API answers `{"node": .., "uptime_seconds": ..,
/// "counters": {label: value}, "totals": {..}, "vhosts": [{"path": "/chat",
/// "users": 2, ..}]}`. The `counters` map is taken as is (the same labels
/// the control files carry), each `vhosts` entry becomes
/// `vhosts.<path>.<field>`, and the other keys are flattened by
/// [`flatten_json`]. A document without `counters` is flattened whole, so a
/// plain label map works too.
pub fn stats_document(document: &Value) -> Values {
    let Value::Object(map) = document else {
        return Values::new();
    };
    let Some(Value::Object(counters)) = map.get("counters") else {
        return flatten_json(document);
    };
    let mut out = Values::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("counters", _) => {}
            ("vhosts", Value::Array(vhosts)) => {
                for vhost in vhosts {
                    vhost_entry(vhost, &mut out);
                }
            }
            _ => flatten_into(key, value, &mut out),
        }
    }
    // Counters last: they win over a derived value of the same label.
    for (label, value) in counters {
        flatten_into(label, value, &mut out);
    }
    out
}

/// `{"path": "/chat", "users": 2}` as `vhosts./chat.users = 2`.
fn vhost_entry(vhost: &Value, out: &mut Values) {
    let Some(Value::String(path)) = vhost.get("path") else {
        return;
    };
    if let Value::Object(fields) = vhost {
        for (field, value) in fields.iter().filter(|(field, _)| *field != "path") {
            flatten_into(&format!("vhosts.{path}.{field}"), value, out);
        }
    }
}

fn flatten_into(label: &str, value: &Value, out: &mut Values) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                flatten_into(&format!("{label}.{key}"), inner, out);
            }
        }
        Value::Number(number) => {
            let value = number
                .as_i64()
                .or_else(|| {
                    number
                        .as_u64()
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                })
                .or_else(|| number.as_f64().map(round_to_i64));
            if let Some(value) = value {
                out.insert(label.to_owned(), value);
            }
        }
        Value::Bool(flag) => {
            out.insert(label.to_owned(), i64::from(*flag));
        }
        Value::Null | Value::String(_) | Value::Array(_) => {}
    }
}

// `as` saturates at the i64 bounds and maps NaN to 0, which is what a
// display of counters wants.
fn round_to_i64(value: f64) -> i64 {
    value.round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_map_is_kept_as_is() {
        let values = flatten_json(&json!({
            "broker.sessions": 3,
            "broker.errors.ACCESS_DENIED": 1
        }));
        assert_eq!(values["broker.sessions"], 3);
        assert_eq!(values["broker.errors.ACCESS_DENIED"], 1);
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn nested_objects_become_dotted_labels() {
        let values = flatten_json(&json!({
            "broker": {"sessions": 2, "closes": {"idle": 4}},
            "vhosts": {"/chat": {"sessions": 2}}
        }));
        assert_eq!(values["broker.sessions"], 2);
        assert_eq!(values["broker.closes.idle"], 4);
        assert_eq!(values["vhosts./chat.sessions"], 2);
    }

    #[test]
    fn numbers_of_every_kind_and_booleans() {
        let values = flatten_json(&json!({
            "big": u64::MAX,
            "float": 2.6,
            "negative": -5,
            "up": true,
            "down": false
        }));
        assert_eq!(values["big"], i64::MAX);
        assert_eq!(values["float"], 3);
        assert_eq!(values["negative"], -5);
        assert_eq!(values["up"], 1);
        assert_eq!(values["down"], 0);
    }

    #[test]
    fn non_counters_are_skipped() {
        let values = flatten_json(&json!({
            "node": "n1",
            "peers": [1, 2],
            "nothing": null,
            "ok": 1
        }));
        assert_eq!(values.keys().collect::<Vec<_>>(), ["ok"]);
    }

    #[test]
    fn admin_stats_document_keeps_counter_labels_and_splits_vhosts() {
        let values = stats_document(&json!({
            "node": "webrocket",
            "uptime_seconds": 42,
            "counters": {"broker.sessions": 3, "broker.errors.ACCESS_DENIED": 1},
            "totals": {"vhosts": 1, "users": 2},
            "vhosts": [{"path": "/chat", "users": 2, "channels": 5}, {"no": "path"}]
        }));
        assert_eq!(values["broker.sessions"], 3);
        assert_eq!(values["broker.errors.ACCESS_DENIED"], 1);
        assert_eq!(values["uptime_seconds"], 42);
        assert_eq!(values["totals.vhosts"], 1);
        assert_eq!(values["vhosts./chat.users"], 2);
        assert_eq!(values["vhosts./chat.channels"], 5);
        assert_eq!(values.len(), 7, "{values:?}");
    }

    #[test]
    fn a_stats_document_without_counters_is_flattened_whole() {
        let values = stats_document(&json!({"broker": {"sessions": 1}}));
        assert_eq!(values["broker.sessions"], 1);
        assert!(stats_document(&json!("text")).is_empty());
    }

    #[test]
    fn a_document_that_is_not_an_object_yields_nothing() {
        assert!(flatten_json(&json!([1, 2, 3])).is_empty());
        assert!(flatten_json(&json!(7)).is_empty());
    }
}
