//! `cwn subscribe --summary`: a short daily summary for a person at the entity — what was
//! seen today and yesterday, where, what to do, and whether the notifications reach their
//! targets — from what the subscriber keeps beside its spool (the aggregation state and each
//! target's report). Sans-IO: the caller reads the files.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::aggregate::AggregateState;
use super::{Alert, TargetReport};

/// Alerts listed per day; the rest are counted.
const LISTED: usize = 10;

fn clock(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| {
            format!(
                "{}",
                t.to_zoned(jiff::tz::TimeZone::UTC)
                    .strftime("%Y-%m-%d %H:%M UTC")
            )
        })
        .unwrap_or_default()
}

fn time_of(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|t| format!("{}", t.strftime("%H:%M")))
        .unwrap_or_else(|_| t.to_string())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn day_part(out: &mut String, title: &str, alerts: &[&Alert]) {
    if alerts.is_empty() {
        let _ = writeln!(out, "{title}: nothing seen.");
        return;
    }
    let indicators: BTreeSet<&str> = alerts.iter().map(|a| a.indicator.as_str()).collect();
    let assets: BTreeSet<&str> = alerts
        .iter()
        .flat_map(|a| a.entity_assets.iter().map(|x| x.value.as_str()))
        .collect();
    let sightings: u64 = alerts.iter().map(|a| a.count).sum();
    let _ = writeln!(
        out,
        "{title}: {} about {} at {}; {} in all.",
        plural(alerts.len(), "alert", "alerts"),
        plural(indicators.len(), "indicator", "indicators"),
        plural(assets.len(), "of your systems", "of your systems"),
        plural(sightings as usize, "sighting", "sightings"),
    );
    for a in alerts.iter().take(LISTED) {
        let at: Vec<&str> = a.entity_assets.iter().map(|x| x.value.as_str()).collect();
        let _ = writeln!(
            out,
            "  [{}] {} ({}) seen {}× at {}, {}–{}{}",
            a.tlp,
            a.indicator,
            a.kind,
            a.count,
            if at.is_empty() {
                "(not named)".to_string()
            } else {
                at.join(", ")
            },
            time_of(&a.first_seen),
            time_of(&a.last_seen),
            if a.reported_by.is_empty() {
                String::new()
            } else {
                format!(", reported by {}", a.reported_by)
            },
        );
        let _ = writeln!(out, "    What to do: {}", a.recommended_action);
    }
    if alerts.len() > LISTED {
        let _ = writeln!(out, "  … and {} more.", alerts.len() - LISTED);
    }
}

/// The summary for `entity` at `now`: today's and yesterday's alerts (most restrictive TLP
/// and most sightings first) and each target's state.
pub fn render(
    entity: &str,
    state: &AggregateState,
    reports: &[TargetReport],
    now: jiff::Timestamp,
) -> String {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let yesterday = today.yesterday().unwrap_or(today);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cwn summary for {} — {}",
        if entity.is_empty() {
            "this entity"
        } else {
            entity
        },
        clock(now.as_millisecond().max(0) as u64)
    );
    for (title, day) in [("Today", today), ("Yesterday", yesterday)] {
        let day = day.to_string();
        let mut alerts: Vec<&Alert> = state
            .open
            .values()
            .map(|o| &o.alert)
            .filter(|a| a.day == day && a.notification == "hit")
            .collect();
        alerts.sort_by(|a, b| {
            super::tlp_of(&b.tlp)
                .cmp(&super::tlp_of(&a.tlp))
                .then(b.count.cmp(&a.count))
                .then(a.indicator.cmp(&b.indicator))
        });
        day_part(&mut out, title, &alerts);
    }
    if reports.is_empty() {
        let _ = writeln!(out, "Delivery: no target has reported yet.");
    }
    for r in reports {
        let state = if r.failing > 0 {
            format!(
                "FAILING since {} ({}: {}), {} waiting",
                r.failing_since_ms.map(clock).unwrap_or_default(),
                plural(r.failing as usize, "attempt", "attempts"),
                r.last_error,
                r.pending
            )
        } else {
            format!(
                "ok, last delivery {}{}",
                r.last_ok_ms.map_or_else(|| "never".to_string(), clock),
                if r.pending > 0 {
                    format!(", {} waiting", r.pending)
                } else {
                    String::new()
                }
            )
        };
        let _ = writeln!(out, "Delivery to {}: {state}.", r.target);
        if r.withheld > 0 {
            let _ = writeln!(
                out,
                "  {} withheld: above TLP:GREEN for a target outside the entity.",
                plural(r.withheld as usize, "alert", "alerts")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::aggregate::Open;
    use crate::notify::{Asset, Context};

    fn alert(id: &str, day: &str, tlp: &str, indicator: &str, count: u64) -> Alert {
        Alert {
            id: id.into(),
            revision: 1,
            notification: "hit".into(),
            tlp: tlp.into(),
            tlp_meaning: String::new(),
            entity: "hospital".into(),
            indicator: indicator.into(),
            indicator_id: String::new(),
            kind: "domain".into(),
            matched_value: indicator.into(),
            field: "query".into(),
            entity_assets: vec![Asset {
                field: "client".into(),
                value: "10.0.0.5".into(),
            }],
            first_seen: format!("{day}T08:02:00Z"),
            last_seen: format!("{day}T14:31:00Z"),
            count,
            day: day.into(),
            reported_by: "msp".into(),
            context: Context::default(),
            recommended_action: format!("Block {indicator}."),
            retro: false,
            uid: None,
        }
    }

    #[test]
    fn the_summary_lists_today_yesterday_and_the_targets() {
        let mut state = AggregateState::default();
        for a in [
            alert("1", "2026-12-07", "TLP:GREEN", "evil.example", 1000),
            alert("2", "2026-12-07", "TLP:AMBER", "secret.example", 3),
            alert("3", "2026-12-06", "TLP:GREEN", "old.example", 1),
            alert("4", "2026-12-01", "TLP:GREEN", "ancient.example", 1),
        ] {
            state.open.insert(
                a.id.clone(),
                Open {
                    alert: a,
                    sent_count: 0,
                    sent_at_ms: 0,
                },
            );
        }
        let reports = [
            TargetReport {
                target: "webhook:https://soc.example/".into(),
                delivered: 4,
                last_ok_ms: Some(1_796_647_860_000),
                ..Default::default()
            },
            TargetReport {
                target: "smtp:mail.example:25".into(),
                pending: 3,
                failing: 7,
                failing_since_ms: Some(1_796_640_000_000),
                last_error: "connection refused".into(),
                ..Default::default()
            },
        ];
        let now: jiff::Timestamp = "2026-12-07T15:00:00Z".parse().unwrap();
        let text = render("hospital", &state, &reports, now);
        let today = text
            .find("Today: 2 alerts about 2 indicators")
            .expect(&text);
        let amber = text.find("[TLP:AMBER] secret.example").expect(&text);
        let green = text.find("[TLP:GREEN] evil.example (domain) seen 1000× at 10.0.0.5, 08:02–14:31, reported by msp").expect(&text);
        let yesterday = text
            .find("Yesterday: 1 alert about 1 indicator")
            .expect(&text);
        assert!(
            today < amber && amber < green && green < yesterday,
            "{text}"
        );
        assert!(text.contains("What to do: Block evil.example."), "{text}");
        assert!(!text.contains("ancient.example"), "{text}");
        assert!(
            text.contains("Delivery to webhook:https://soc.example/: ok, last delivery 2026-12-07"),
            "{text}"
        );
        assert!(
            text.contains("Delivery to smtp:mail.example:25: FAILING since 2026-12-07 ")
                && text.contains("(7 attempts: connection refused), 3 waiting."),
            "{text}"
        );
    }
}
