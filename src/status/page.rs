//! The HTML status page: one self-contained document (inline CSS, inline SVG charts drawn
//! here, a few lines of inline script for auto-refresh), so it works on an air-gapped
//! operations network and loads nothing from anywhere else.
//!
//! Every figure is an element with `data-metric` naming its Prometheus series and one
//! `data-label-NAME` attribute per label, so that a test (or a curious operator) can hold the
//! page against `/metrics`:
//!
//! - the element's text is the value, with U+202F (narrow no-break space) as thousands
//!   separator;
//! - `data-scale` multiplies the shown value into the series' unit (latencies are shown in
//!   milliseconds, exported in seconds);
//! - `data-format="rfc3339"` marks a Unix-seconds series shown as a date;
//! - a chart (`<svg>`) carries its bucket values in `data-points`; they sum to the series.

use std::fmt::Write as _;

use super::metrics::{ReachClass, Status};

/// How often the page reloads its figures, in seconds.
pub const REFRESH_SECONDS: u32 = 10;

/// At most this many lagging subscribers are listed (the count is always complete).
pub const MAX_LISTED_LAGGING: usize = 50;
/// At most this many connected entities are named.
pub const MAX_LISTED_CONNECTED: usize = 100;

const STYLE: &str = r#"
:root { --fg:#1b2430; --muted:#5b6675; --line:#d9dee5; --card:#fff; --bg:#f3f5f8; --accent:#1f6feb; --hit:#d1242f; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:14px 24px; background:#0b2545; color:#fff; display:flex; gap:24px; align-items:baseline; flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; }
header .muted { color:#c9d3e0; }
main { padding:16px 24px; display:grid; grid-template-columns:repeat(auto-fill,minmax(380px,1fr)); grid-auto-flow:dense; gap:16px; align-items:start; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; overflow:auto; }
section.wide { grid-column:1/-1; }
h2 { font-size:15px; margin:0 0 8px; }
h3 { font-size:13px; margin:12px 0 4px; color:var(--muted); font-weight:600; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:3px 8px 3px 0; border-bottom:1px solid var(--line); vertical-align:top; }
td.r, th.r { text-align:right; }
.n { font-variant-numeric:tabular-nums; }
.big { font-size:24px; font-weight:600; }
.muted, .hint { color:var(--muted); }
.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; }
.bar { background:#e6ebf1; border-radius:3px; height:8px; min-width:80px; }
.bar > div { background:var(--accent); border-radius:3px; height:8px; }
.tlp { display:inline-block; padding:0 6px; border-radius:3px; background:#000; font-weight:600; font-size:12px; }
.empty { color:var(--muted); font-style:italic; }
svg text { font-size:11px; fill:var(--muted); }
.err td:first-child { white-space:nowrap; }
.warn { color:var(--hit); font-weight:600; }
"#;

const SCRIPT: &str = r#"
(function () {
  const every = REFRESH * 1000;
  async function refresh() {
    try {
      const r = await fetch(location.pathname, { cache: "no-store" });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.querySelector("main"), old = document.querySelector("main");
      const stamp = doc.getElementById("generated");
      if (fresh && old) old.replaceWith(fresh);
      if (stamp) document.getElementById("generated").replaceWith(stamp);
    } catch (e) { /* the hub may be restarting: try again next time */ }
  }
  setInterval(refresh, every);
})();
"#;

/// Renders the status page for `status`.
pub fn render(status: &Status) -> String {
    let s = status;
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>cwn hub status</title><style>{STYLE}</style></head><body>\n\
         <header><h1>cwn hub status</h1><span class=\"muted\">figures as of \
         <time id=\"generated\" datetime=\"{t}\" data-time=\"{}\">{t}</time>, refreshed every {REFRESH_SECONDS} s \
         · <a style=\"color:#c9d3e0\" href=\"/metrics\">/metrics</a> \
         · <a style=\"color:#c9d3e0\" href=\"/api/status.json\">/api/status.json</a></span></header>\n<main>\n",
        s.time,
        t = rfc3339(s.time),
    );
    snapshot(&mut h, s);
    throughput(&mut h, s);
    reach(&mut h, s);
    reciprocity(&mut h, s);
    subscribers(&mut h, s);
    failing_targets(&mut h, s);
    delivery(&mut h, s);
    traffic(&mut h, s);
    errors(&mut h, s);
    let _ = write!(
        h,
        "</main>\n<script>{}</script>\n</body></html>\n",
        SCRIPT.replace("REFRESH", &REFRESH_SECONDS.to_string())
    );
    h
}

fn snapshot(h: &mut String, s: &Status) {
    h.push_str("<section id=\"snapshot\"><h2>Snapshot</h2>");
    let Some(snap) = &s.snapshot else {
        h.push_str("<p class=\"empty\">no snapshot loaded yet</p></section>\n");
        return;
    };
    let _ = write!(
        h,
        "<div class=\"kv\"><span>set version</span><span class=\"big\">{}</span>\
         <span>created</span><span><time data-metric=\"cwn_snapshot_created_timestamp_seconds\" \
         data-format=\"rfc3339\" datetime=\"{c}\">{c}</time></span>\
         <span>age</span><span>{} s <span class=\"hint\">({})</span></span>\
         <span>indicators</span><span>{}</span><span>signature</span><span>{}</span></div>",
        fig("cwn_snapshot_version", &[], snap.version),
        fig("cwn_snapshot_age_seconds", &[], snap.age_seconds),
        human_duration(snap.age_seconds),
        fig("cwn_snapshot_indicators", &[], snap.indicators),
        if snap.signed {
            "signed"
        } else {
            "<span class=\"warn\">unsigned</span>"
        },
        c = rfc3339(snap.created_at),
    );
    h.push_str("<h3>by kind</h3><table><tr><th>kind</th><th class=\"r\">indicators</th></tr>");
    for (kind, n) in &snap.by_kind {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"r\">{}</td></tr>",
            esc(kind),
            fig("cwn_snapshot_indicators_by_kind", &[("kind", kind)], *n)
        );
    }
    h.push_str(
        "</table><h3>by TLP</h3><table><tr><th>TLP</th><th class=\"r\">indicators</th></tr>",
    );
    for (tlp, n) in &snap.by_tlp {
        let colour = match tlp.as_str() {
            "CLEAR" => "#fff",
            "GREEN" => "#33ff00",
            "AMBER" | "AMBER+STRICT" => "#ffc000",
            "RED" => "#ff2b2b",
            _ => "#fff",
        };
        let _ = write!(
            h,
            "<tr><td><span class=\"tlp\" style=\"color:{colour}\">TLP:{}</span></td><td class=\"r\">{}</td></tr>",
            esc(tlp),
            fig("cwn_snapshot_indicators_by_tlp", &[("tlp", tlp)], *n)
        );
    }
    h.push_str("</table></section>\n");
}

fn throughput(h: &mut String, s: &Status) {
    let t = &s.throughput;
    let minutes = t.window_seconds() as f64 / 60.0;
    let _ = write!(
        h,
        "<section id=\"throughput\" class=\"wide\"><h2>Throughput, last {} min</h2>\
         <div class=\"kv\"><span>rows in window</span><span>{}</span>\
         <span>hits in window</span><span>{}</span><span>window</span><span>{} s in {} s buckets</span></div>",
        sig(minutes),
        fig("cwn_throughput_window_rows", &[], t.rows_total),
        fig("cwn_throughput_window_hits", &[], t.hits_total),
        fig("cwn_throughput_window_seconds", &[], t.window_seconds()),
        t.bucket_seconds,
    );
    chart(
        h,
        "chart-rows",
        "cwn_throughput_window_rows",
        "telemetry rows per second",
        &t.rows,
        t.bucket_seconds,
        "#1f6feb",
    );
    chart(
        h,
        "chart-hits",
        "cwn_throughput_window_hits",
        "hits per second",
        &t.hits,
        t.bucket_seconds,
        "#d1242f",
    );
    h.push_str("</section>\n");
}

/// A bar chart of per-bucket counts, drawn as rates per second.
fn chart(
    h: &mut String,
    id: &str,
    metric: &str,
    title: &str,
    values: &[u64],
    bucket_seconds: u64,
    colour: &str,
) {
    const W: f64 = 900.0;
    const H: f64 = 120.0;
    const LEFT: f64 = 56.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 18.0;
    let secs = bucket_seconds.max(1) as f64;
    let max_rate = values.iter().copied().max().unwrap_or(0) as f64 / secs;
    let points: Vec<String> = values.iter().map(u64::to_string).collect();
    let _ = write!(
        h,
        "<h3>{}</h3><svg id=\"{id}\" data-metric=\"{metric}\" data-points=\"{}\" role=\"img\" \
         viewBox=\"0 0 {W} {H}\" width=\"100%\">\
         <title>{} over the last {} s (peak {}/s)</title>",
        esc(title),
        points.join(","),
        esc(title),
        values.len() as u64 * bucket_seconds,
        sig(max_rate),
    );
    let plot_w = W - LEFT;
    let plot_h = H - TOP - BOTTOM;
    let _ = write!(
        h,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" stroke=\"#d9dee5\"/>\
         <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{}/s</text>\
         <text x=\"{tx}\" y=\"{y}\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{H}\">−{} min</text><text x=\"{W}\" y=\"{H}\" text-anchor=\"end\">now</text>",
        sig(max_rate),
        sig(values.len() as f64 * secs / 60.0),
        y = TOP + plot_h,
        tx = LEFT - 4.0,
        ty = TOP + 10.0,
    );
    if !values.is_empty() && max_rate > 0.0 {
        let bw = plot_w / values.len() as f64;
        for (i, &v) in values.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let bh = (v as f64 / secs / max_rate * plot_h).max(1.0);
            let _ = write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}/s</title></rect>",
                LEFT + i as f64 * bw,
                TOP + plot_h - bh,
                (bw - 1.0).max(0.5),
                sig(v as f64 / secs),
            );
        }
    }
    h.push_str("</svg>");
}

fn reach(h: &mut String, s: &Status) {
    let r = &s.reach;
    let _ = write!(
        h,
        "<section id=\"reach\"><h2>Reach</h2><p>registered entities reachable (connected or seen) \
         in the last {} h: <span class=\"big\">{}</span> of {} <span class=\"hint\">({})</span></p>",
        sig(r.window_seconds as f64 / 3600.0),
        fig("cwn_entities_reachable", &[], r.reachable),
        fig("cwn_entities_registered", &[], r.registered),
        percent(r.reachable, r.registered),
    );
    reach_table(h, "role", &r.by_role);
    reach_table(h, "sector", &r.by_sector);
    let _ = writeln!(
        h,
        "<p class=\"hint\">window: {} s</p></section>",
        fig("cwn_reach_window_seconds", &[], r.window_seconds)
    );
}

fn reach_table(h: &mut String, by: &str, classes: &[ReachClass]) {
    let _ = write!(
        h,
        "<h3>by {by}</h3><table><tr><th>{by}</th><th class=\"r\">reachable</th><th class=\"r\">registered</th><th></th></tr>"
    );
    if classes.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"empty\">no entities registered</td></tr>");
    }
    for c in classes {
        let pct = if c.registered > 0 {
            100.0 * c.reachable as f64 / c.registered as f64
        } else {
            0.0
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td>\
             <td><div class=\"bar\" title=\"{}\"><div style=\"width:{pct:.1}%\"></div></div></td></tr>",
            esc(&c.name),
            fig(
                &format!("cwn_entities_reachable_by_{by}"),
                &[(by, &c.name)],
                c.reachable
            ),
            fig(
                &format!("cwn_entities_registered_by_{by}"),
                &[(by, &c.name)],
                c.registered
            ),
            percent(c.reachable, c.registered),
        );
    }
    h.push_str("</table>");
}

fn reciprocity(h: &mut String, s: &Status) {
    h.push_str(
        "<section id=\"reciprocity\" class=\"wide\"><h2>Reciprocity per partner</h2>\
         <p class=\"hint\">what each partner brought (telemetry rows, sightings) against what it \
         received (notifications)</p>\
         <table><tr><th>partner</th><th class=\"r\">rows</th><th class=\"r\">sightings</th>\
         <th class=\"r\">hits</th><th class=\"r\">notifications received</th>\
         <th class=\"r\">received per million brought</th></tr>",
    );
    if s.reciprocity.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"empty\">no partners yet</td></tr>");
    }
    for p in &s.reciprocity {
        let l = [("partner", p.partner.as_str())];
        // Per million: a partner receives a handful of notifications for millions of rows.
        let ratio = match p.ratio {
            Some(r) => fig_text(
                "cwn_partner_reciprocity_ratio",
                &l,
                &sig(r * 1e6),
                Some("0.000001"),
            ),
            None => "<span class=\"hint\">–</span>".to_string(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td>\
             <td class=\"r\">{}</td><td class=\"r\">{ratio}</td></tr>",
            esc(&p.partner),
            fig("cwn_partner_rows_total", &l, p.rows),
            fig("cwn_partner_sightings_total", &l, p.sightings),
            fig("cwn_partner_hits_total", &l, p.hits),
            fig(
                "cwn_partner_notifications_received_total",
                &l,
                p.notifications
            ),
        );
    }
    h.push_str("</table></section>\n");
}

fn subscribers(h: &mut String, s: &Status) {
    let sub = &s.subscribers;
    let _ = write!(
        h,
        "<section id=\"subscribers\"><h2>Subscribers</h2><div class=\"kv\">\
         <span>connected</span><span class=\"big\">{}</span>\
         <span>lagging</span><span class=\"big\">{}</span>\
         <span>lagging above</span><span>{} unacknowledged</span>\
         <span>log disk usage</span><span>{} bytes <span class=\"hint\">({})</span></span></div>",
        fig("cwn_subscribers_connected", &[], sub.connected),
        fig("cwn_subscribers_lagging", &[], sub.lagging.len()),
        fig("cwn_subscriber_lag_threshold", &[], sub.lag_threshold),
        fig("cwn_log_disk_bytes", &[], s.log_disk_bytes),
        human_bytes(s.log_disk_bytes),
    );
    h.push_str(
        "<h3>lagging</h3><table><tr><th>entity</th><th class=\"r\">unacknowledged</th></tr>",
    );
    if sub.lagging.is_empty() {
        h.push_str("<tr><td colspan=\"2\" class=\"empty\">none</td></tr>");
    }
    for b in sub.lagging.iter().take(MAX_LISTED_LAGGING) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"r\">{}</td></tr>",
            esc(&b.entity),
            fig(
                "cwn_subscriber_backlog",
                &[("entity", &b.entity)],
                b.backlog
            )
        );
    }
    if sub.lagging.len() > MAX_LISTED_LAGGING {
        let _ = write!(
            h,
            "<tr><td colspan=\"2\" class=\"hint\">and {} more</td></tr>",
            sub.lagging.len() - MAX_LISTED_LAGGING
        );
    }
    h.push_str("</table><h3>connected</h3><p id=\"connected\">");
    if sub.connected_ids.is_empty() {
        h.push_str("<span class=\"empty\">none</span>");
    }
    for (i, id) in sub
        .connected_ids
        .iter()
        .take(MAX_LISTED_CONNECTED)
        .enumerate()
    {
        if i > 0 {
            h.push_str(", ");
        }
        let _ = write!(
            h,
            "<a class=\"entity\" href=\"/entity/{}\">{}</a>",
            url_part(id),
            esc(id)
        );
    }
    if sub.connected_ids.len() > MAX_LISTED_CONNECTED {
        let _ = write!(
            h,
            " <span class=\"hint\">and {} more</span>",
            sub.connected_ids.len() - MAX_LISTED_CONNECTED
        );
    }
    h.push_str("</p></section>\n");
}

/// `s` as a URL path segment: unreserved characters as they are, the rest percent-encoded.
fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn failing_targets(h: &mut String, s: &Status) {
    h.push_str(
        "<section id=\"failing-targets\"><h2>Delivery targets failing at entities</h2>\
         <table><tr><th>entity</th><th>target</th><th class=\"r\">failed attempts</th>\
         <th class=\"r\">waiting</th><th>last error</th></tr>",
    );
    if s.failing_targets.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"empty\">none reported</td></tr>");
    }
    for f in s.failing_targets.iter().take(MAX_LISTED_LAGGING) {
        let _ = write!(
            h,
            "<tr><td><a href=\"/entity/{}\">{}</a></td><td>{}</td><td class=\"r\">{}</td>\
             <td class=\"r\">{}</td><td>{}</td></tr>",
            url_part(&f.entity),
            esc(&f.entity),
            esc(&f.target),
            group(f.failing as i128),
            group(f.pending as i128),
            esc(&f.last_error),
        );
    }
    if s.failing_targets.len() > MAX_LISTED_LAGGING {
        let _ = write!(
            h,
            "<tr><td colspan=\"5\" class=\"hint\">and {} more</td></tr>",
            s.failing_targets.len() - MAX_LISTED_LAGGING
        );
    }
    h.push_str("</table></section>\n");
}

/// Renders one entity's drill-down page.
pub fn render_entity(d: &crate::status::metrics::EntityDetail) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let when = |t: Option<i64>| t.map_or_else(|| "never".to_string(), rfc3339);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>cwn hub: {e}</title><style>{STYLE}</style></head><body>\n\
         <header><h1>{e}</h1><span class=\"muted\">figures as of \
         <time id=\"generated\" datetime=\"{t}\" data-time=\"{}\">{t}</time> \
         · <a style=\"color:#c9d3e0\" href=\"/\">hub status</a> \
         · <a style=\"color:#c9d3e0\" href=\"/api/entity/{u}.json\">json</a></span></header>\n<main>\n\
         <section id=\"entity\"><h2>Notifications</h2><div class=\"kv\">\
         <span>roles</span><span>{}</span><span>sector</span><span>{}</span>\
         <span>connections</span><span class=\"big\">{}</span>\
         <span>last seen</span><span>{}</span>\
         <span>queued</span><span class=\"big\">{}</span>\
         <span>delivered</span><span class=\"big\">{}</span>\
         <span>unacknowledged</span><span class=\"big\">{}</span>\
         <span>last delivery</span><span>{}</span></div></section>\n",
        d.time,
        esc(&d.roles),
        esc(&d.sector),
        d.connections,
        when(d.last_seen),
        group(d.queued as i128),
        group(d.delivered as i128),
        group(d.unacknowledged as i128),
        when(d.last_delivery),
        e = esc(&d.entity),
        u = url_part(&d.entity),
        t = rfc3339(d.time),
    );
    let _ = write!(
        h,
        "<section id=\"targets\"><h2>Delivery targets</h2><p class=\"hint\">as its \
         subscriber reported them {}</p><table><tr><th>target</th><th>state</th>\
         <th class=\"r\">delivered</th><th class=\"r\">waiting</th>\
         <th class=\"r\">withheld (TLP)</th><th>last delivery</th><th>last error</th></tr>",
        d.reported_at
            .map_or_else(|| "never".to_string(), |t| format!("at {}", rfc3339(t)))
    );
    if d.targets.is_empty() {
        h.push_str("<tr><td colspan=\"7\" class=\"empty\">none reported</td></tr>");
    }
    for t in &d.targets {
        let state = if t.failing > 0 {
            format!(
                "failing since {} ({} attempts)",
                t.failing_since_ms
                    .map_or_else(String::new, |ms| rfc3339(ms as i64 / 1000)),
                t.failing
            )
        } else {
            "ok".to_string()
        };
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td>\
             <td class=\"r\">{}</td><td>{}</td><td>{}</td></tr>",
            if t.failing > 0 { "failing" } else { "ok" },
            esc(&t.target),
            esc(&state),
            group(t.delivered as i128),
            group(t.pending as i128),
            group(t.withheld as i128),
            when(t.last_ok_ms.map(|ms| ms as i64 / 1000)),
            esc(&t.last_error),
        );
    }
    h.push_str("</table></section>\n</main></body></html>\n");
    h
}

fn delivery(h: &mut String, s: &Status) {
    let l = &s.latency;
    let q = |name: &str, v: Option<f64>| match v {
        Some(v) => fig_text(
            "cwn_delivery_latency_estimate_seconds",
            &[("quantile", name)],
            &sig(v * 1e3),
            Some("0.001"),
        ),
        None => "<span class=\"hint\">–</span>".to_string(),
    };
    let _ = write!(
        h,
        "<section id=\"delivery\"><h2>Notifications</h2><div class=\"kv\">\
         <span>delivered</span><span class=\"big\">{}</span>\
         <span>latency p50</span><span>{} ms</span><span>latency p99</span><span>{} ms</span></div>\
         <h3>by entity class</h3><table><tr><th>roles</th><th>sector</th>\
         <th class=\"r\">queued</th><th class=\"r\">delivered</th></tr>",
        fig("cwn_delivery_latency_seconds_count", &[], l.count),
        q("0.5", l.p50_seconds),
        q("0.99", l.p99_seconds),
    );
    if s.notifications.is_empty() {
        h.push_str("<tr><td colspan=\"4\" class=\"empty\">none yet</td></tr>");
    }
    for c in &s.notifications {
        let l = [("roles", c.roles.as_str()), ("sector", c.sector.as_str())];
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"r\">{}</td><td class=\"r\">{}</td></tr>",
            esc(&c.roles),
            esc(&c.sector),
            fig("cwn_notifications_queued_total", &l, c.queued),
            fig("cwn_notifications_delivered_total", &l, c.delivered),
        );
    }
    h.push_str("</table></section>\n");
}

fn traffic(h: &mut String, s: &Status) {
    h.push_str("<section id=\"traffic\"><h2>Telemetry and hits by partner</h2>");
    for (title, metric, counts) in [
        (
            "rows by telemetry kind",
            "cwn_telemetry_rows_total",
            &s.rows,
        ),
        ("hits by indicator kind", "cwn_hits_total", &s.hits),
    ] {
        let _ = write!(
            h,
            "<h3>{title}</h3><table><tr><th>partner</th><th>kind</th><th class=\"r\">count</th></tr>"
        );
        if counts.is_empty() {
            h.push_str("<tr><td colspan=\"3\" class=\"empty\">none yet</td></tr>");
        }
        for c in counts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"r\">{}</td></tr>",
                esc(&c.partner),
                esc(&c.kind),
                fig(
                    metric,
                    &[("partner", &c.partner), ("kind", &c.kind)],
                    c.count
                )
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>\n");
}

fn errors(h: &mut String, s: &Status) {
    let _ = write!(
        h,
        "<section id=\"errors\" class=\"wide\"><h2>Recent errors</h2>\
         <p>{} since start; the last {} shown, newest first</p>\
         <table class=\"err\"><tr><th>time</th><th>message</th></tr>",
        fig("cwn_errors_total", &[], s.errors_total),
        s.errors.len(),
    );
    if s.errors.is_empty() {
        h.push_str("<tr><td colspan=\"2\" class=\"empty\">none</td></tr>");
    }
    for e in &s.errors {
        let _ = write!(
            h,
            "<tr><td><time datetime=\"{t}\">{t}</time></td><td>{}</td></tr>",
            esc(&e.message),
            t = rfc3339(e.time),
        );
    }
    h.push_str("</table></section>\n");
}

/// A figure: an integer shown with thousands separators.
fn fig(metric: &str, labels: &[(&str, &str)], value: impl TryInto<i128>) -> String {
    let v: i128 = value.try_into().unwrap_or(i128::MAX);
    fig_text(metric, labels, &group(v), None)
}

fn fig_text(metric: &str, labels: &[(&str, &str)], text: &str, scale: Option<&str>) -> String {
    let mut s = format!("<span class=\"n\" data-metric=\"{}\"", esc(metric));
    for (k, v) in labels {
        let _ = write!(s, " data-label-{}=\"{}\"", esc(k), esc(v));
    }
    if let Some(scale) = scale {
        let _ = write!(s, " data-scale=\"{scale}\"");
    }
    let _ = write!(s, ">{}</span>", esc(text));
    s
}

/// `1234567` → `1 234 567` with narrow no-break spaces; numbers below 10,000 stay whole.
fn group(v: i128) -> String {
    let digits = v.unsigned_abs().to_string();
    if digits.len() <= 4 {
        return v.to_string();
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// Four significant digits, no exponent, trailing zeros dropped.
fn sig(v: f64) -> String {
    if !v.is_finite() {
        return super::prometheus::float(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{} %", sig(100.0 * part as f64 / whole as f64))
    }
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", sig(v), UNITS[u])
}

/// Escapes text for HTML element content and double- or single-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{EntityInfo, Metrics};

    #[test]
    fn number_formats() {
        assert_eq!(group(0), "0");
        assert_eq!(group(9999), "9999");
        assert_eq!(group(12345), "12\u{202f}345");
        assert_eq!(group(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(group(-123456), "-123\u{202f}456");
        assert_eq!(sig(0.0175), "0.0175");
        assert_eq!(sig(17.5), "17.5");
        assert_eq!(sig(12345.6), "12346");
        assert_eq!(sig(0.000123456), "0.0001235");
        assert_eq!(sig(2.0), "2");
        assert_eq!(human_duration(3725), "1 h 2 min");
        assert_eq!(human_bytes(3 << 20), "3 MiB");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn page_is_self_contained_and_escapes_names() {
        let now = jiff::Timestamp::from_second(1_750_000_000).unwrap();
        let m = Metrics::default();
        m.set_entities([EntityInfo::new(
            "<script>x</script>",
            ["partner"],
            Some("a&b"),
        )]);
        m.rows("<script>x</script>", "zeek", 5, now);
        m.error(now, "bad <b>thing</b>");
        let html = render(&m.status(now));
        assert!(!html.contains("<script>x"), "unescaped entity id");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("bad &lt;b&gt;thing&lt;/b&gt;"));
        assert!(html.contains("data-label-sector=\"a&amp;b\""));
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(external), "external reference {external}");
        }
        assert_eq!(html.matches("<script>").count(), 1, "one inline script");
    }
}
