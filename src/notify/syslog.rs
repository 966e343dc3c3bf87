//! Alerts for SIEMs: RFC 5424 syslog messages with structured data, or ArcSight CEF in the
//! message part, framed by octet counting over TCP (RFC 6587; over TLS, RFC 5425).

use std::fmt::Write as _;

use super::Alert;

/// The private enterprise number of the structured-data id `cwn@32473` (32473 is the number
/// RFC 5612 sets aside for documentation; an operator with its own PEN can map it).
pub const SD_ID: &str = "cwn@32473";

/// Facility local0 (16), severity warning (4) for hits, notice (5) for the rest.
fn pri(a: &Alert) -> u8 {
    16 * 8 + if a.notification == "hit" { 4 } else { 5 }
}

/// A structured-data parameter value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// The header fields' NILVALUE-safe form: printable ASCII without spaces, at most `max`.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// One alert as an RFC 5424 message (without framing), from host `hostname`.
pub fn rfc5424(a: &Alert, hostname: &str) -> String {
    let now = jiff::Timestamp::now();
    let mut sd = format!("[{SD_ID}");
    let assets: Vec<&str> = a.entity_assets.iter().map(|x| x.value.as_str()).collect();
    for (k, v) in [
        ("id", a.id.as_str()),
        ("revision", &a.revision.to_string()),
        ("tlp", a.tlp.as_str()),
        ("notification", a.notification.as_str()),
        ("indicator", a.indicator.as_str()),
        ("kind", a.kind.as_str()),
        ("matched_value", a.matched_value.as_str()),
        ("entity", a.entity.as_str()),
        ("entity_assets", &assets.join(",")),
        ("first_seen", a.first_seen.as_str()),
        ("last_seen", a.last_seen.as_str()),
        ("count", &a.count.to_string()),
        ("reported_by", a.reported_by.as_str()),
    ] {
        let _ = write!(sd, " {k}=\"{}\"", sd_value(v));
    }
    sd.push(']');
    format!(
        "<{}>1 {} {} cwn - {} {sd} \u{feff}{} {}: {}",
        pri(a),
        now,
        header_field(hostname, 255),
        header_field(&a.notification, 32),
        a.tlp,
        super::render::subject(std::slice::from_ref(a))
            .split_once("] ")
            .map_or("", |(_, s)| s),
        a.recommended_action
    )
}

/// A CEF header field: `|` and `\` escaped.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

/// A CEF extension value: `\`, `=` escaped, line ends as `\n`.
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "")
        .replace('\n', "\\n")
}

/// One alert as a CEF event in an RFC 5424 message (without framing).
pub fn cef(a: &Alert, hostname: &str) -> String {
    let severity = match super::tlp_of(&a.tlp) {
        crate::indicator::Tlp::Clear | crate::indicator::Tlp::Green => 7,
        _ => 8,
    };
    let first = a
        .first_seen
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond());
    let last = a
        .last_seen
        .parse::<jiff::Timestamp>()
        .map_or(0, |t| t.as_millisecond());
    let mut ext = String::new();
    let assets: Vec<&str> = a.entity_assets.iter().map(|x| x.value.as_str()).collect();
    for (k, v) in [
        ("externalId", a.id.clone()),
        ("cnt", a.count.to_string()),
        ("start", first.to_string()),
        ("end", last.to_string()),
        ("src", assets.first().copied().unwrap_or("").to_string()),
        ("request", a.indicator.clone()),
        ("cs1Label", "tlp".into()),
        ("cs1", a.tlp.clone()),
        ("cs2Label", "kind".into()),
        ("cs2", a.kind.clone()),
        ("cs3Label", "entityAssets".into()),
        ("cs3", assets.join(",")),
        ("cs4Label", "reportedBy".into()),
        ("cs4", a.reported_by.clone()),
        ("cs5Label", "revision".into()),
        ("cs5", a.revision.to_string()),
        ("msg", a.recommended_action.clone()),
    ] {
        if !v.is_empty() {
            let _ = write!(ext, "{k}={} ", cef_value(&v));
        }
    }
    let body = format!(
        "CEF:0|NCSC-NL|cwn|{}|{}|{}|{severity}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(&a.notification),
        cef_header(&format!("{} {} seen", a.kind, a.indicator)),
        ext.trim_end()
    );
    format!(
        "<{}>1 {} {} cwn - {} - {body}",
        pri(a),
        jiff::Timestamp::now(),
        header_field(hostname, 255),
        header_field(&a.notification, 32),
    )
}

/// `msg` framed by octet counting (RFC 6587 §3.4.1): its length in bytes, a space, the bytes.
pub fn framed(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}
