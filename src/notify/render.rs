//! Alerts for people: the e-mail subject, plain text and HTML of one alert or a digest, the
//! TLP banner first in each.

use std::fmt::Write as _;

use super::{Alert, tlp_of};
use crate::indicator::Tlp;

/// The most restrictive label of `alerts` (CLEAR for none).
pub fn tlp_of_all(alerts: &[Alert]) -> Tlp {
    alerts
        .iter()
        .map(|a| tlp_of(&a.tlp))
        .max()
        .unwrap_or(Tlp::Clear)
}

/// The subject: the TLP banner, then what happened (one alert) or how many (a digest).
pub fn subject(alerts: &[Alert]) -> String {
    let tlp = tlp_of_all(alerts);
    match alerts {
        [a] if a.notification == "hit" => {
            let at = a
                .entity_assets
                .first()
                .map_or(String::new(), |x| format!(" at {}", x.value));
            let count = if a.count > 1 {
                format!(" ({}×)", a.count)
            } else {
                String::new()
            };
            format!(
                "[TLP:{}] {} {} seen{at}{count}",
                tlp.name(),
                a.kind,
                a.indicator
            )
        }
        [a] => format!("[TLP:{}] cwn {} notification", tlp.name(), a.notification),
        many => {
            let entity = many.first().map_or("", |a| a.entity.as_str());
            format!(
                "[TLP:{}] {} cwn alerts for {entity}",
                tlp.name(),
                many.len()
            )
        }
    }
}

fn assets(a: &Alert) -> String {
    if a.entity_assets.is_empty() {
        return "(not named)".into();
    }
    a.entity_assets
        .iter()
        .map(|x| format!("{} ({})", x.value, x.field))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plain-text body.
pub fn text(alerts: &[Alert]) -> String {
    let tlp = tlp_of_all(alerts);
    let mut t = String::new();
    let _ = writeln!(t, "TLP:{} — {}", tlp.name(), super::tlp_meaning(tlp));
    let _ = writeln!(t);
    for (i, a) in alerts.iter().enumerate() {
        if alerts.len() > 1 {
            let _ = writeln!(t, "--- {} of {} ---", i + 1, alerts.len());
        }
        if a.notification != "hit" {
            let _ = writeln!(t, "A {} notification from the hub:", a.notification);
            let _ = writeln!(t, "{}", a.context.source);
            let _ = writeln!(t);
            continue;
        }
        let _ = writeln!(
            t,
            "What was seen:  {} {} (as {:?} in {})",
            a.kind, a.indicator, a.matched_value, a.field
        );
        let _ = writeln!(t, "Where:          {}", assets(a));
        let _ = writeln!(
            t,
            "When:           {} to {} ({} time(s) on {} UTC)",
            a.first_seen, a.last_seen, a.count, a.day
        );
        if !a.reported_by.is_empty() {
            let _ = writeln!(t, "Reported by:    {}", a.reported_by);
        }
        if !a.context.source.is_empty() {
            let _ = writeln!(t, "Source:         {}", a.context.source);
        }
        if !a.context.tags.is_empty() {
            let _ = writeln!(t, "Context:        {}", a.context.tags.join(", "));
        }
        if a.retro {
            let _ = writeln!(
                t,
                "Found later:    the indicator was published after this traffic."
            );
        }
        let _ = writeln!(t, "Label:          {} — {}", a.tlp, a.tlp_meaning);
        let _ = writeln!(t);
        let _ = writeln!(t, "What to do: {}", a.recommended_action);
        let _ = writeln!(t);
        let _ = writeln!(t, "Alert {} (update {})", a.id, a.revision);
        let _ = writeln!(t);
    }
    t
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The banner's colours as FIRST gives them (text on black).
fn tlp_colour(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "#FFFFFF",
        Tlp::Green => "#33FF00",
        Tlp::Amber | Tlp::AmberStrict => "#FFC000",
        Tlp::Red => "#FF2B2B",
    }
}

/// The HTML body (inline styles only: mail clients drop style sheets).
pub fn html(alerts: &[Alert]) -> String {
    let tlp = tlp_of_all(alerts);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">\
         <p style=\"background:#000;color:{};padding:4px 8px;font-weight:bold\">TLP:{}</p>\
         <p><em>{}</em></p>",
        tlp_colour(tlp),
        tlp.name(),
        esc(super::tlp_meaning(tlp))
    );
    for a in alerts {
        if a.notification != "hit" {
            let _ = write!(
                h,
                "<h3>A {} notification from the hub</h3><pre>{}</pre>",
                esc(&a.notification),
                esc(&a.context.source)
            );
            continue;
        }
        let _ = write!(
            h,
            "<h3>{} <code>{}</code> seen</h3><table cellpadding=\"3\">",
            esc(&a.kind),
            esc(&a.indicator)
        );
        let mut row = |k: &str, v: String| {
            let _ = write!(
                h,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                esc(k),
                v
            );
        };
        row(
            "Seen as",
            format!(
                "<code>{}</code> in {}",
                esc(&a.matched_value),
                esc(&a.field)
            ),
        );
        row("Where", esc(&assets(a)));
        row(
            "When",
            format!(
                "{} to {} ({} time(s) on {} UTC)",
                esc(&a.first_seen),
                esc(&a.last_seen),
                a.count,
                esc(&a.day)
            ),
        );
        if !a.reported_by.is_empty() {
            row("Reported by", esc(&a.reported_by));
        }
        if !a.context.source.is_empty() {
            row("Source", esc(&a.context.source));
        }
        if !a.context.tags.is_empty() {
            row("Context", esc(&a.context.tags.join(", ")));
        }
        if a.retro {
            row(
                "Found later",
                "the indicator was published after this traffic".into(),
            );
        }
        row(
            "Label",
            format!("{} — {}", esc(&a.tlp), esc(&a.tlp_meaning)),
        );
        let _ = write!(
            h,
            "</table><p><strong>What to do:</strong> {}</p><p style=\"color:#666\">Alert {} (update {})</p>",
            esc(&a.recommended_action),
            esc(&a.id),
            a.revision
        );
    }
    h.push_str("</body></html>");
    h
}
