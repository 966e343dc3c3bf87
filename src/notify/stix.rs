//! Alerts as STIX 2.1 sightings, for the `stix:DIR` target and tools that read STIX.
//!
//! Each alert is a `sighting` of its indicator (`sighting_of_ref`: the source's STIX id when
//! the indicator came from STIX, else an `indicator` object made here with a pattern for its
//! kind and value), sighted at the entity (`where_sighted_refs`: an `identity`), with
//! `first_seen`, `last_seen` and `count`, marked with the alert's TLP (TLP 2.0 marking ids).
//! Up to TLP:GREEN it refers to an `observed-data` object with the matched value and the
//! entity's assets as cyber observables; above, it names the indicator only. An update of an
//! alert is a new version of the same sighting (same id, later `modified`).

use serde_json::{Value, json};

use super::Alert;
use crate::indicator::Tlp;

/// The STIX 2.1 namespace of deterministic cyber-observable ids (UUIDv5).
const SCO_NAMESPACE: [u8; 16] = [
    0x00, 0xab, 0xed, 0xb4, 0xaa, 0x42, 0x46, 0x6c, 0x9c, 0x01, 0xfe, 0xd2, 0x33, 0x15, 0xa9, 0xb7,
];

fn uuid_text(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A stable id of type `ty` for `key` (a version-4-shaped UUID from a 128-bit hash: the same
/// key gives the same id, so a resent bundle names the same objects).
fn id_for(ty: &str, key: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(format!("{ty}\0{key}").as_bytes());
    format!("{ty}--{}", uuid_text(h.to_be_bytes(), 4))
}

/// A cyber observable's id as STIX 2.1 §2.9 derives it: UUIDv5 in the SCO namespace over
/// the canonical JSON of its id-contributing properties (`value` for these types).
fn sco_id(ty: &str, value: &str) -> String {
    let name = serde_json::to_string(&json!({ "value": value })).expect("plain data");
    let mut input = SCO_NAMESPACE.to_vec();
    input.extend_from_slice(name.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    format!("{ty}--{}", uuid_text(b, 5))
}

/// The TLP 2.0 marking-definition id of a label.
pub fn marking(tlp: Tlp) -> &'static str {
    crate::ingest::stix::TLP_MARKINGS
        .iter()
        .find(|(_, t)| *t == tlp)
        .map(|(id, _)| *id)
        .expect("every level has a marking")
}

/// The STIX pattern of an indicator of `kind` with `value`.
fn pattern(kind: &str, value: &str) -> String {
    let v = value.replace('\\', "\\\\").replace('\'', "\\'");
    let path = match kind {
        "ipv4" => "ipv4-addr:value",
        "ipv6" => "ipv6-addr:value",
        "cidr" if value.contains(':') => "ipv6-addr:value",
        "cidr" => "ipv4-addr:value",
        "domain" | "hostname" => "domain-name:value",
        "url" | "uri" => "url:value",
        "email" => "email-addr:value",
        "md5" => "file:hashes.MD5",
        "sha1" => "file:hashes.'SHA-1'",
        "sha256" => "file:hashes.'SHA-256'",
        "sha512" => "file:hashes.'SHA-512'",
        "ja3" | "ja3s" | "ja4" => "network-traffic:extensions.'x-cwn-tls'.fingerprint",
        _ => "x-cwn-observable:value",
    };
    format!("[{path} = '{v}']")
}

/// The SCO type of an asset or matched value, when it is one STIX knows by `value`.
fn sco_type(value: &str) -> &'static str {
    match value.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "ipv4-addr",
        Ok(std::net::IpAddr::V6(_)) => "ipv6-addr",
        Err(_) if value.contains("://") => "url",
        Err(_) if value.contains('@') => "email-addr",
        Err(_) => "domain-name",
    }
}

/// STIX timestamps: RFC 3339 UTC with milliseconds.
fn stamp(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|t| format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")))
        .unwrap_or_else(|_| t.to_string())
}

/// The STIX id of an indicator id that came from STIX: `indicator--<uuid>`, without the
/// `#N` cwn appends for the N-th disjunct of a pattern.
fn stix_indicator_id(id: &str) -> Option<&str> {
    id.starts_with("indicator--")
        .then(|| id.split_once('#').map_or(id, |(i, _)| i))
}

/// A bundle's objects, each id once (an identity or indicator many rows refer to).
#[derive(Default)]
struct Objects {
    list: Vec<Value>,
    seen: std::collections::HashSet<String>,
}

impl Objects {
    fn push(&mut self, o: Value) {
        let id = o["id"].as_str().unwrap_or_default().to_string();
        if self.seen.insert(id) {
            self.list.push(o);
        }
    }

    /// The bundle of the objects, its id derived from theirs and `now_s`.
    fn bundle(self, now_s: &str) -> Value {
        let key: Vec<&str> = self.list.iter().filter_map(|o| o["id"].as_str()).collect();
        let id = id_for("bundle", &format!("{}\0{now_s}", key.join("|")));
        json!({ "type": "bundle", "id": id, "objects": self.list })
    }
}

/// The identity object of an organisation named `name` (a stable id per name).
fn identity(name: &str) -> Value {
    json!({
        "type": "identity", "spec_version": "2.1", "id": id_for("identity", name),
        "created": "1970-01-01T00:00:00.000Z", "modified": "1970-01-01T00:00:00.000Z",
        "name": name, "identity_class": "organization",
    })
}

/// A bundle of the publisher's sightings (`cwn sightings export --format stix`): per row a
/// `sighting` of the indicator (its STIX id when it came from STIX, else an `indicator` with
/// a pattern, when the hub's set still holds it), `where_sighted_refs` the partner (an
/// `identity`), `first_seen`/`last_seen` the UTC day, `count`, marked with the indicator's
/// TLP. The counts are those handed over in `window` (Unix ms, as `sightings::read` took
/// them), so each sighting's id is derived from its row and the window: consecutive exports
/// are separate sightings that add up, and exporting the same window again yields the same
/// ids. Rows whose indicator is neither a STIX id nor in the set are left out and counted in
/// the second value.
pub fn sightings_bundle(
    rows: &[crate::sightings::Counted],
    known: &std::collections::BTreeMap<String, crate::sightings::Known>,
    window: (u64, u64),
    now: jiff::Timestamp,
) -> (Value, usize) {
    let now_s = format!("{}", now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let mut objects = Objects::default();
    let mut skipped = 0;
    for r in rows {
        let k = known.get(&r.indicator_id);
        let tlp = k.map_or(Tlp::AmberStrict, |k| k.tlp);
        let marks = json!([marking(tlp)]);
        let start = r
            .day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let end = start + jiff::SignedDuration::from_secs(86_399);
        let (first, last) = (
            format!("{}", start.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")),
            format!("{}", end.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")),
        );
        let indicator = match (stix_indicator_id(&r.indicator_id), k) {
            (Some(id), _) => id.to_string(),
            (None, Some(k)) => {
                let id = id_for("indicator", &format!("{}\0{}", k.kind, k.value));
                objects.push(json!({
                    "type": "indicator", "spec_version": "2.1", "id": id,
                    "created": first, "modified": first,
                    "name": k.value, "pattern": pattern(&k.kind, &k.value),
                    "pattern_type": "stix", "valid_from": first,
                    "object_marking_refs": marks,
                }));
                id
            }
            (None, None) => {
                skipped += 1;
                continue;
            }
        };
        let who = identity(&r.partner);
        let who_id = who["id"].clone();
        objects.push(who);
        objects.push(json!({
            "type": "sighting", "spec_version": "2.1",
            "id": id_for("sighting", &format!(
                "{}\0{}\0{}\0{}\0{}", r.indicator_id, r.partner, r.day, window.0, window.1
            )),
            "created": now_s, "modified": now_s,
            "first_seen": first, "last_seen": last,
            "count": r.count.min(999_999_999), "sighting_of_ref": indicator,
            "where_sighted_refs": [who_id],
            "object_marking_refs": marks,
        }));
    }
    (objects.bundle(&now_s), skipped)
}

/// A bundle with the sightings of `alerts` (hits; other notifications are left out) and the
/// objects they refer to; `now` is the sightings' `modified` time.
pub fn bundle(alerts: &[Alert], now: jiff::Timestamp) -> Value {
    let now_s = format!("{}", now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let mut objects = Objects::default();
    for a in alerts.iter().filter(|a| a.notification == "hit") {
        let tlp = super::tlp_of(&a.tlp);
        let marks = json!([marking(tlp)]);
        let created = stamp(&a.first_seen);
        let who = id_for("identity", &a.entity);
        objects.push(identity(&a.entity));
        let indicator = if let Some(id) = stix_indicator_id(&a.indicator_id) {
            id.to_string()
        } else {
            let id = id_for("indicator", &format!("{}\0{}", a.kind, a.indicator));
            let mut o = json!({
                "type": "indicator", "spec_version": "2.1", "id": id,
                "created": created, "modified": created,
                "name": a.indicator, "pattern": pattern(&a.kind, &a.indicator),
                "pattern_type": "stix", "valid_from": created,
                "object_marking_refs": marks,
            });
            // STIX lists are never empty.
            if !a.context.tags.is_empty() {
                o["labels"] = json!(a.context.tags);
            }
            objects.push(o);
            id
        };
        let mut sighting = json!({
            "type": "sighting", "spec_version": "2.1", "id": id_for("sighting", &a.id),
            "created": created, "modified": now_s.clone(),
            "first_seen": stamp(&a.first_seen), "last_seen": stamp(&a.last_seen),
            "count": a.count.min(999_999_999), "sighting_of_ref": indicator,
            "where_sighted_refs": [who], "description": a.recommended_action,
            "object_marking_refs": marks,
        });
        let mut refs = vec![];
        if tlp <= Tlp::Green {
            for v in std::iter::once(a.matched_value.as_str())
                .chain(a.entity_assets.iter().map(|x| x.value.as_str()))
                .filter(|v| !v.is_empty())
            {
                let ty = sco_type(v);
                let id = sco_id(ty, v);
                objects.push(json!({ "type": ty, "spec_version": "2.1", "id": id, "value": v }));
                refs.push(id);
            }
        }
        if !refs.is_empty() {
            let od = id_for("observed-data", &format!("{}\0{}", a.id, a.revision));
            objects.push(json!({
                "type": "observed-data", "spec_version": "2.1", "id": od,
                "created": now_s, "modified": now_s,
                "first_observed": stamp(&a.first_seen), "last_observed": stamp(&a.last_seen),
                "number_observed": a.count.clamp(1, 999_999_999),
                "object_refs": refs, "object_marking_refs": marks,
            }));
            sighting["observed_data_refs"] = json!([od]);
        }
        objects.push(sighting);
    }
    objects.bundle(&now_s)
}
