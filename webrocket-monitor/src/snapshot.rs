//! Two samples make a snapshot: every value plus, for counters, its rate per
//! second over the interval between the samples.
//!
//! Labels are classified by their last segment: a few names are gauges
//! (they go up and down, e.g. `broker.sessions`); everything else is a
//! counter that only grows while the server runs. A counter that went
//! backwards means the server restarted, so its rate is reported as zero
//! rather than negative.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::sample::Sample;

/// Last label segments that name gauges rather than counters.
pub const GAUGES: [&str; 15] = [
    "sessions",
    "authenticated",
    "subscriptions",
    "channels",
    "workers",
    "connections",
    "users",
    "vhosts",
    "peers",
    "lag",
    "leader",
    "term",
    "last_log",
    "applied",
    "uptime_seconds",
];

/// The namespace the broker publishes under (`broker.messages_in`). The
/// admin API may leave it out, so lookups try both forms.
pub const BROKER_PREFIX: &str = "broker.";

/// Whether a label names a gauge or a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down; shown as is.
    Gauge,
    /// Only grows; shown with a rate.
    Counter,
}

impl Kind {
    /// Classifies `label` by its last `.` segment.
    pub fn of(label: &str) -> Kind {
        let last = label.rsplit('.').next().unwrap_or(label);
        if GAUGES.contains(&last) {
            Kind::Gauge
        } else {
            Kind::Counter
        }
    }
}

/// One label's value and, for counters with a previous sample, its rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The value in the newer sample.
    pub value: i64,
    /// Increase per second since the older sample; `None` for gauges and
    /// for the very first sample.
    pub rate: Option<f64>,
}

/// Every metric of a node at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Time between the two samples; `None` for a single sample.
    pub interval: Option<Duration>,
    /// Metrics by label.
    pub metrics: BTreeMap<String, Metric>,
}

impl Snapshot {
    /// A snapshot of one sample: values only, no rates.
    pub fn single(sample: &Sample) -> Snapshot {
        let metrics = sample
            .values
            .iter()
            .map(|(label, &value)| (label.clone(), Metric { value, rate: None }))
            .collect();
        Snapshot {
            interval: None,
            metrics,
        }
    }

    /// The values of `newer` with counter rates over the time since `older`.
    ///
    /// A counter missing from `older` counts from zero (it was allocated in
    /// between). When the samples are not apart in time, no rate is given.
    pub fn between(older: &Sample, newer: &Sample) -> Snapshot {
        let interval = newer.taken.saturating_duration_since(older.taken);
        let seconds = interval.as_secs_f64();
        let metrics = newer
            .values
            .iter()
            .map(|(label, &value)| {
                let rate = (Kind::of(label) == Kind::Counter && seconds > 0.0).then(|| {
                    let before = older.values.get(label).copied().unwrap_or(0);
                    // Backwards means a restart: the new values count from zero.
                    value.saturating_sub(before).max(0) as f64 / seconds
                });
                (label.clone(), Metric { value, rate })
            })
            .collect();
        Snapshot {
            interval: Some(interval),
            metrics,
        }
    }

    /// The metric `name` of the broker: `broker.<name>`, else `<name>`.
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics
            .get(&format!("{BROKER_PREFIX}{name}"))
            .or_else(|| self.metrics.get(name))
    }

    /// The value of [`Snapshot::get`].
    pub fn value(&self, name: &str) -> Option<i64> {
        self.get(name).map(|m| m.value)
    }

    /// The members of a family such as `errors` (`broker.errors.<ID>`, or
    /// `errors.<ID>`), by member name.
    pub fn family(&self, name: &str) -> BTreeMap<String, Metric> {
        let prefixes = [format!("{BROKER_PREFIX}{name}."), format!("{name}.")];
        let mut out = BTreeMap::new();
        for (label, metric) in &self.metrics {
            if let Some(member) = prefixes.iter().find_map(|p| label.strip_prefix(p.as_str())) {
                out.entry(member.to_owned()).or_insert(*metric);
            }
        }
        out
    }

    /// Per-vhost metrics: labels with a `vhost` or `vhosts` segment followed
    /// by a vhost path (`broker.vhosts./chat.sessions`), as
    /// `vhost path -> metric name -> metric`.
    pub fn vhosts(&self) -> BTreeMap<String, BTreeMap<String, Metric>> {
        let mut out: BTreeMap<String, BTreeMap<String, Metric>> = BTreeMap::new();
        for (label, metric) in &self.metrics {
            if let Some((vhost, name)) = split_vhost_label(label) {
                out.entry(vhost.to_owned())
                    .or_default()
                    .insert(name.to_owned(), *metric);
            }
        }
        out
    }
}

/// `("/chat", "sessions")` for `broker.vhosts./chat.sessions`. Vhost paths
/// never contain `.`, so the path is exactly one segment.
pub fn split_vhost_label(label: &str) -> Option<(&str, &str)> {
    let mut rest = label;
    loop {
        let (segment, tail) = rest.split_once('.')?;
        if segment == "vhost" || segment == "vhosts" {
            let (path, name) = tail.split_once('.')?;
            if path.starts_with('/') && !name.is_empty() {
                return Some((path, name));
            }
        }
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Values;
    use std::time::Instant;

    fn sample(at: Instant, pairs: &[(&str, i64)]) -> Sample {
        let values: Values = pairs.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect();
        Sample::new(at, values)
    }

    #[test]
    fn kinds_follow_the_last_segment() {
        assert_eq!(Kind::of("broker.sessions"), Kind::Gauge);
        assert_eq!(Kind::of("broker.subscriptions"), Kind::Gauge);
        assert_eq!(Kind::of("vhosts./chat.channels"), Kind::Gauge);
        assert_eq!(Kind::of("broker.sessions_opened"), Kind::Counter);
        assert_eq!(Kind::of("broker.messages_in"), Kind::Counter);
        assert_eq!(Kind::of("broker.closes.idle"), Kind::Counter);
        assert_eq!(Kind::of("sessions"), Kind::Gauge);
    }

    #[test]
    fn counters_get_rates_per_second_and_gauges_none() {
        let t0 = Instant::now();
        let older = sample(t0, &[("broker.messages_in", 10), ("broker.sessions", 3)]);
        let newer = sample(
            t0 + Duration::from_millis(500),
            &[("broker.messages_in", 60), ("broker.sessions", 5)],
        );
        let snap = Snapshot::between(&older, &newer);
        assert_eq!(snap.interval, Some(Duration::from_millis(500)));
        let messages = snap.get("messages_in").unwrap();
        assert_eq!(messages.value, 60);
        assert_eq!(messages.rate, Some(100.0));
        let sessions = snap.get("sessions").unwrap();
        assert_eq!(sessions.value, 5);
        assert_eq!(sessions.rate, None);
    }

    #[test]
    fn a_counter_that_went_backwards_has_rate_zero() {
        let t0 = Instant::now();
        let older = sample(t0, &[("broker.bytes_in", 1000)]);
        let newer = sample(t0 + Duration::from_secs(1), &[("broker.bytes_in", 10)]);
        let snap = Snapshot::between(&older, &newer);
        assert_eq!(snap.get("bytes_in").unwrap().rate, Some(0.0));
    }

    #[test]
    fn a_new_counter_counts_from_zero() {
        let t0 = Instant::now();
        let older = sample(t0, &[]);
        let newer = sample(t0 + Duration::from_secs(2), &[("broker.triggers", 8)]);
        let snap = Snapshot::between(&older, &newer);
        assert_eq!(snap.get("triggers").unwrap().rate, Some(4.0));
    }

    #[test]
    fn samples_at_the_same_instant_give_no_rates() {
        let t0 = Instant::now();
        let a = sample(t0, &[("broker.messages_in", 1)]);
        let snap = Snapshot::between(&a, &a);
        assert_eq!(snap.get("messages_in").unwrap().rate, None);
    }

    #[test]
    fn single_sample_has_values_only() {
        let snap = Snapshot::single(&sample(Instant::now(), &[("broker.messages_in", 7)]));
        assert_eq!(snap.interval, None);
        assert_eq!(snap.value("messages_in"), Some(7));
        assert_eq!(snap.get("messages_in").unwrap().rate, None);
    }

    #[test]
    fn lookups_accept_labels_with_and_without_the_broker_prefix() {
        let t0 = Instant::now();
        let snap = Snapshot::single(&sample(t0, &[("messages_out", 4), ("broker.sessions", 1)]));
        assert_eq!(snap.value("messages_out"), Some(4));
        assert_eq!(snap.value("sessions"), Some(1));
        assert_eq!(snap.value("missing"), None);
    }

    #[test]
    fn families_collect_members_by_name() {
        let snap = Snapshot::single(&sample(
            Instant::now(),
            &[
                ("broker.errors.ACCESS_DENIED", 2),
                ("broker.errors.UNDEFINED_EVENT", 1),
                ("broker.closes.idle", 5),
                ("broker.errorsx", 9),
            ],
        ));
        let errors = snap.family("errors");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors["ACCESS_DENIED"].value, 2);
        assert_eq!(snap.family("closes")["idle"].value, 5);
    }

    #[test]
    fn vhost_labels_are_split_into_path_and_name() {
        assert_eq!(
            split_vhost_label("broker.vhosts./chat.sessions"),
            Some(("/chat", "sessions"))
        );
        assert_eq!(
            split_vhost_label("vhost./a/b-c.subscriptions"),
            Some(("/a/b-c", "subscriptions"))
        );
        assert_eq!(split_vhost_label("broker.sessions"), None);
        assert_eq!(split_vhost_label("broker.vhosts.chat.sessions"), None);
        assert_eq!(split_vhost_label("broker.vhosts./chat"), None);
    }

    #[test]
    fn vhost_rows_group_metrics() {
        let snap = Snapshot::single(&sample(
            Instant::now(),
            &[
                ("broker.vhosts./chat.sessions", 2),
                ("broker.vhosts./chat.channels", 1),
                ("broker.vhosts./news.sessions", 7),
            ],
        ));
        let vhosts = snap.vhosts();
        assert_eq!(vhosts.len(), 2);
        assert_eq!(vhosts["/chat"]["sessions"].value, 2);
        assert_eq!(vhosts["/chat"]["channels"].value, 1);
        assert_eq!(vhosts["/news"]["sessions"].value, 7);
    }
}
