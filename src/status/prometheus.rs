//! The Prometheus text exposition format (version 0.0.4) of a [`Status`].
//!
//! Every series is named `cwn_…`; counters end in `_total`, durations are in seconds. The
//! status page names these same series in its `data-metric` attributes, so the two can be
//! compared figure by figure.
//!
//! Written out here rather than through `prometheus-client`: that crate owns the metric values
//! (its own counter and gauge types, registered once), while cwn's figures live in
//! [`Metrics`](super::metrics::Metrics), which also feeds the status page and its JSON from
//! one [`Status`] snapshot. Rendering that snapshot is a table of family names and help texts
//! and one escaping rule for label values; a second registry would hold every figure twice.

use std::fmt::Write as _;

use super::metrics::Status;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `status` in the text exposition format.
pub fn render(status: &Status) -> String {
    let mut w = Exposition::default();
    let s = status;

    if let Some(snap) = &s.snapshot {
        w.family(
            "cwn_snapshot_version",
            "gauge",
            "Set version of the snapshot being served.",
        );
        w.sample("cwn_snapshot_version", &[], snap.version);
        w.family(
            "cwn_snapshot_created_timestamp_seconds",
            "gauge",
            "Creation time of the snapshot being served, Unix seconds.",
        );
        w.sample(
            "cwn_snapshot_created_timestamp_seconds",
            &[],
            snap.created_at,
        );
        w.family(
            "cwn_snapshot_age_seconds",
            "gauge",
            "Seconds since the snapshot being served was created.",
        );
        w.sample("cwn_snapshot_age_seconds", &[], snap.age_seconds);
        w.family(
            "cwn_snapshot_indicators",
            "gauge",
            "Indicators in the snapshot being served.",
        );
        w.sample("cwn_snapshot_indicators", &[], snap.indicators);
        w.family(
            "cwn_snapshot_indicators_by_kind",
            "gauge",
            "Indicators in the snapshot by kind.",
        );
        for (kind, n) in &snap.by_kind {
            w.sample("cwn_snapshot_indicators_by_kind", &[("kind", kind)], *n);
        }
        w.family(
            "cwn_snapshot_indicators_by_tlp",
            "gauge",
            "Indicators in the snapshot by TLP level.",
        );
        for (tlp, n) in &snap.by_tlp {
            w.sample("cwn_snapshot_indicators_by_tlp", &[("tlp", tlp)], *n);
        }
    }

    w.family(
        "cwn_telemetry_rows_total",
        "counter",
        "Telemetry rows received, by partner and telemetry kind.",
    );
    for c in &s.rows {
        w.sample(
            "cwn_telemetry_rows_total",
            &[("partner", &c.partner), ("kind", &c.kind)],
            c.count,
        );
    }
    w.family(
        "cwn_hits_total",
        "counter",
        "Hits, by partner and indicator kind.",
    );
    for c in &s.hits {
        w.sample(
            "cwn_hits_total",
            &[("partner", &c.partner), ("kind", &c.kind)],
            c.count,
        );
    }

    w.family(
        "cwn_notifications_queued_total",
        "counter",
        "Notifications queued, by entity class (roles and sector).",
    );
    for c in &s.notifications {
        w.sample(
            "cwn_notifications_queued_total",
            &[("roles", &c.roles), ("sector", &c.sector)],
            c.queued,
        );
    }
    w.family(
        "cwn_notifications_delivered_total",
        "counter",
        "Notifications delivered (acknowledged), by entity class (roles and sector).",
    );
    for c in &s.notifications {
        w.sample(
            "cwn_notifications_delivered_total",
            &[("roles", &c.roles), ("sector", &c.sector)],
            c.delivered,
        );
    }

    let l = &s.latency;
    w.family(
        "cwn_delivery_latency_seconds",
        "histogram",
        "Time from queueing a notification to its acknowledgement.",
    );
    let mut cumulative = 0u64;
    for (i, n) in l.counts.iter().enumerate() {
        cumulative += n;
        let le = l
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| float(*b));
        w.sample(
            "cwn_delivery_latency_seconds_bucket",
            &[("le", &le)],
            cumulative,
        );
    }
    w.sample(
        "cwn_delivery_latency_seconds_sum",
        &[],
        Value::F(l.sum_seconds),
    );
    w.sample("cwn_delivery_latency_seconds_count", &[], l.count);
    w.family(
        "cwn_delivery_latency_estimate_seconds",
        "gauge",
        "Delivery latency quantiles estimated from the histogram buckets.",
    );
    for (q, v) in [("0.5", l.p50_seconds), ("0.99", l.p99_seconds)] {
        if let Some(v) = v {
            w.sample(
                "cwn_delivery_latency_estimate_seconds",
                &[("quantile", q)],
                Value::F(v),
            );
        }
    }

    let sub = &s.subscribers;
    w.family(
        "cwn_subscribers_connected",
        "gauge",
        "Entities with at least one open connection.",
    );
    w.sample("cwn_subscribers_connected", &[], sub.connected);
    w.family(
        "cwn_subscriber_lag_threshold",
        "gauge",
        "Unacknowledged notifications above which a subscriber is lagging.",
    );
    w.sample("cwn_subscriber_lag_threshold", &[], sub.lag_threshold);
    w.family(
        "cwn_subscribers_lagging",
        "gauge",
        "Subscribers whose unacknowledged backlog exceeds the threshold.",
    );
    w.sample("cwn_subscribers_lagging", &[], sub.lagging.len() as u64);
    w.family(
        "cwn_subscriber_backlog",
        "gauge",
        "Unacknowledged notifications of each lagging subscriber.",
    );
    for b in &sub.lagging {
        w.sample(
            "cwn_subscriber_backlog",
            &[("entity", &b.entity)],
            b.backlog,
        );
    }

    w.family(
        "cwn_log_disk_bytes",
        "gauge",
        "Bytes the notification logs take on disk.",
    );
    w.sample("cwn_log_disk_bytes", &[], s.log_disk_bytes);
    w.family(
        "cwn_errors_total",
        "counter",
        "Errors recorded since start.",
    );
    w.sample("cwn_errors_total", &[], s.errors_total);

    let t = &s.throughput;
    w.family(
        "cwn_throughput_window_seconds",
        "gauge",
        "Length of the recent-throughput window.",
    );
    w.sample("cwn_throughput_window_seconds", &[], t.window_seconds());
    w.family(
        "cwn_throughput_window_rows",
        "gauge",
        "Telemetry rows received within the recent-throughput window.",
    );
    w.sample("cwn_throughput_window_rows", &[], t.rows_total);
    w.family(
        "cwn_throughput_window_hits",
        "gauge",
        "Hits within the recent-throughput window.",
    );
    w.sample("cwn_throughput_window_hits", &[], t.hits_total);

    let r = &s.reach;
    w.family(
        "cwn_reach_window_seconds",
        "gauge",
        "An entity seen within this many seconds counts as reachable.",
    );
    w.sample("cwn_reach_window_seconds", &[], r.window_seconds);
    w.family(
        "cwn_entities_registered",
        "gauge",
        "Entities in the registry.",
    );
    w.sample("cwn_entities_registered", &[], r.registered);
    w.family(
        "cwn_entities_reachable",
        "gauge",
        "Registered entities connected or seen within the reach window.",
    );
    w.sample("cwn_entities_reachable", &[], r.reachable);
    for (suffix, label, classes) in [
        ("role", "role", &r.by_role),
        ("sector", "sector", &r.by_sector),
    ] {
        let reg = format!("cwn_entities_registered_by_{suffix}");
        let rea = format!("cwn_entities_reachable_by_{suffix}");
        w.family(
            &reg,
            "gauge",
            &format!("Entities in the registry, by {suffix}."),
        );
        for c in classes {
            w.sample(&reg, &[(label, &c.name)], c.registered);
        }
        w.family(
            &rea,
            "gauge",
            &format!("Registered entities reachable within the reach window, by {suffix}."),
        );
        for c in classes {
            w.sample(&rea, &[(label, &c.name)], c.reachable);
        }
    }

    // One family per partner figure; a partner without a figure (no ratio yet) has no sample.
    type PartnerFigure = fn(&super::metrics::Reciprocity) -> Option<Value>;
    let per_partner: [(&str, &str, &str, PartnerFigure); 5] = [
        (
            "cwn_partner_rows_total",
            "counter",
            "Telemetry rows each partner brought.",
            |p| Some(p.rows.into()),
        ),
        (
            "cwn_partner_sightings_total",
            "counter",
            "Sightings each partner brought.",
            |p| Some(p.sightings.into()),
        ),
        (
            "cwn_partner_hits_total",
            "counter",
            "Hits each partner's telemetry produced.",
            |p| Some(p.hits.into()),
        ),
        (
            "cwn_partner_notifications_received_total",
            "counter",
            "Notifications delivered to each partner.",
            |p| Some(p.notifications.into()),
        ),
        (
            "cwn_partner_reciprocity_ratio",
            "gauge",
            "Notifications each partner received per contribution (telemetry row or sighting) it brought.",
            |p| p.ratio.map(Value::F),
        ),
    ];
    for (name, kind, help, figure) in per_partner {
        w.family(name, kind, help);
        for p in &s.reciprocity {
            if let Some(v) = figure(p) {
                w.sample(name, &[("partner", &p.partner)], v);
            }
        }
    }
    w.out
}

/// A sample value: integers print exactly, floats in Prometheus' spelling.
enum Value {
    I(i128),
    F(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::I(v.into())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I(v.into())
    }
}

/// A float as the exposition format spells it (`+Inf`, `-Inf`, `NaN`, else shortest decimal).
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Escapes `# HELP` text: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = match value.into() {
            Value::I(v) => writeln!(self.out, " {v}"),
            Value::F(v) => writeln!(self.out, " {}", float(v)),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::Timestamp;

    use crate::indicator::{Kind, Tlp};
    use crate::status::{EntityInfo, Metrics, SnapshotInfo};

    #[test]
    fn escaping_follows_the_format() {
        assert_eq!(super::escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(super::escape_help("x\\y\nz"), r"x\\y\nz");
        assert_eq!(super::float(f64::INFINITY), "+Inf");
        assert_eq!(super::float(0.0025), "0.0025");
        assert_eq!(super::float(30.0), "30");
    }

    /// The whole exposition for a small registry, against a golden text.
    #[test]
    fn golden_exposition() {
        let now = Timestamp::from_second(1_750_003_600).unwrap();
        let m = Metrics::default();
        m.set_entities([
            EntityInfo::new("msp-\"a\"", ["partner"], Some("digital")),
            EntityInfo::new("h", ["subscriber"], Some("health")),
        ]);
        m.snapshot(SnapshotInfo {
            version: 7,
            created_at: 1_750_000_000,
            indicators: 3,
            signed: true,
            by_kind: vec![(Kind::Domain, 2), (Kind::Ipv4, 1)],
            by_tlp: vec![(Tlp::Clear, 1), (Tlp::Amber, 2)],
        });
        m.rows("msp-\"a\"", "zeek", 1000, now);
        m.hits("msp-\"a\"", Kind::Domain, 2, now);
        m.queued("h", 2);
        m.connected("h", now);
        m.delivered("h", Duration::from_millis(4));
        m.delivered("h", Duration::from_millis(40));
        m.log_bytes(4096);
        m.error(now, "disk\nfull");
        let text = m.render_prometheus(now);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let golden = r#"cwn_snapshot_version 7
cwn_snapshot_created_timestamp_seconds 1750000000
cwn_snapshot_age_seconds 3600
cwn_snapshot_indicators 3
cwn_snapshot_indicators_by_kind{kind="domain"} 2
cwn_snapshot_indicators_by_kind{kind="ipv4"} 1
cwn_snapshot_indicators_by_tlp{tlp="CLEAR"} 1
cwn_snapshot_indicators_by_tlp{tlp="AMBER"} 2
cwn_telemetry_rows_total{partner="msp-\"a\"",kind="zeek"} 1000
cwn_hits_total{partner="msp-\"a\"",kind="domain"} 2
cwn_notifications_queued_total{roles="subscriber",sector="health"} 2
cwn_notifications_delivered_total{roles="subscriber",sector="health"} 2
cwn_delivery_latency_seconds_bucket{le="0.001"} 0
cwn_delivery_latency_seconds_bucket{le="0.0025"} 0
cwn_delivery_latency_seconds_bucket{le="0.005"} 1
cwn_delivery_latency_seconds_bucket{le="0.01"} 1
cwn_delivery_latency_seconds_bucket{le="0.025"} 1
cwn_delivery_latency_seconds_bucket{le="0.05"} 2
cwn_delivery_latency_seconds_bucket{le="0.1"} 2
cwn_delivery_latency_seconds_bucket{le="0.25"} 2
cwn_delivery_latency_seconds_bucket{le="0.5"} 2
cwn_delivery_latency_seconds_bucket{le="1"} 2
cwn_delivery_latency_seconds_bucket{le="2.5"} 2
cwn_delivery_latency_seconds_bucket{le="5"} 2
cwn_delivery_latency_seconds_bucket{le="10"} 2
cwn_delivery_latency_seconds_bucket{le="30"} 2
cwn_delivery_latency_seconds_bucket{le="+Inf"} 2
cwn_delivery_latency_seconds_sum 0.044
cwn_delivery_latency_seconds_count 2
cwn_delivery_latency_estimate_seconds{quantile="0.5"} 0.005
cwn_delivery_latency_estimate_seconds{quantile="0.99"} 0.0495
cwn_subscribers_connected 1
cwn_subscriber_lag_threshold 1000
cwn_subscribers_lagging 0
cwn_log_disk_bytes 4096
cwn_errors_total 1
cwn_throughput_window_seconds 900
cwn_throughput_window_rows 1000
cwn_throughput_window_hits 2
cwn_reach_window_seconds 86400
cwn_entities_registered 2
cwn_entities_reachable 1
cwn_entities_registered_by_role{role="partner"} 1
cwn_entities_registered_by_role{role="subscriber"} 1
cwn_entities_reachable_by_role{role="partner"} 0
cwn_entities_reachable_by_role{role="subscriber"} 1
cwn_entities_registered_by_sector{sector="digital"} 1
cwn_entities_registered_by_sector{sector="health"} 1
cwn_entities_reachable_by_sector{sector="digital"} 0
cwn_entities_reachable_by_sector{sector="health"} 1
cwn_partner_rows_total{partner="msp-\"a\""} 1000
cwn_partner_sightings_total{partner="msp-\"a\""} 0
cwn_partner_hits_total{partner="msp-\"a\""} 2
cwn_partner_notifications_received_total{partner="msp-\"a\""} 0
cwn_partner_reciprocity_ratio{partner="msp-\"a\""} 0"#;
        let want: Vec<&str> = golden.lines().collect();
        assert_eq!(samples, want, "\n{text}");
        // Every family has HELP then TYPE, and each sample belongs to the family above it.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(family), "{line} outside {family}");
            }
        }
        assert!(text.contains("# TYPE cwn_delivery_latency_seconds histogram\n"));
        assert!(text.ends_with('\n'));
    }
}
