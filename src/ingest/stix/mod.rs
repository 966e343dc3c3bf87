//! STIX 2.1 bundles (FORMATS.md §3): indicators, their TLP markings and their authors.
//!
//! [`parse_bundle`] reads a bundle (`{"type": "bundle", "objects": […]}`), a TAXII 2.1
//! envelope (`{"objects": […]}`), a bare JSON array of objects or a single object, STIX 2.1
//! or 2.0. It indexes `identity` and `marking-definition` objects so that references resolve,
//! keeps the newest version of every indicator (highest `modified`), and turns each
//! indicator's pattern into indicators through [`pattern::parse`] and [`compile::compile`].
//! Every other object type is ignored (and counted in a debug log).
//!
//! Each indicator yields either one [`Indicator`] per `AND`-group of its pattern (ids are the
//! STIX id, with `#N` appended when there are several) or exactly one reject:
//!
//! | condition | category | reason starts with |
//! |---|---|---|
//! | no `id`, or one that is not `indicator--…` | invalid | `indicator has no` / `indicator \`id\`` |
//! | `revoked: true`, `indicator_types` with `benign`, an older version | skipped | `revoked`, `benign`, `superseded` |
//! | `pattern_type` other than `stix` | unsupported | `E_UNSUPPORTED_PATTERN_TYPE` |
//! | no `pattern`, or not a string | invalid | `no pattern` / `pattern is …` |
//! | `valid_from`/`valid_until` malformed or out of order | invalid | `E_INVALID_TIMESTAMPS` |
//! | pattern does not parse | invalid (unsupported for `E_TOO_COMPLEX`) | `E_SYNTAX at line L column C` |
//! | pattern parses but cannot be armed | by first code ([`compile::Code`]) | that code |
//!
//! Expired indicators are accepted: validity is checked at match time against the event's
//! own time. The TLP is taken from `object_marking_refs` and from `granular_markings` that
//! touch `pattern`, `name` or `description`, by the nine well-known marking ids (TLP 2.0 and 1.0) (never by what
//! a bundle claims those ids mean); an unknown `statement` marking is context; any other
//! reference that does not resolve makes the indicator TLP:RED (`W_UNRESOLVED_MARKING`).

pub mod compile;
pub mod pattern;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{Batch, Category, SourceOptions};
use crate::indicator::normalize::Note;
use crate::indicator::{Indicator, Tlp, Validity};

/// The TLP marking-definition ids of STIX 2.1 (TLP 1.0) and of the OASIS TLP 2.0 extension
/// (FORMATS.md §3.4). Recognised by id only.
pub const TLP_MARKINGS: [(&str, Tlp); 9] = [
    (
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        Tlp::Clear,
    ),
    (
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        Tlp::Green,
    ),
    (
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        Tlp::Amber,
    ),
    (
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
        Tlp::AmberStrict,
    ),
    (
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        Tlp::Red,
    ),
    (
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        Tlp::Clear,
    ),
    (
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        Tlp::Green,
    ),
    (
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        Tlp::Amber,
    ),
    (
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        Tlp::Red,
    ),
];

/// The TLP level of a well-known marking-definition id.
pub fn tlp_of_marking(id: &str) -> Option<Tlp> {
    TLP_MARKINGS
        .iter()
        .find(|(known, _)| *known == id)
        .map(|(_, tlp)| *tlp)
}

/// Properties whose granular markings apply to the whole indicator.
const MATCHED_PROPERTIES: [&str; 3] = ["pattern", "name", "description"];

/// What the bundle says about the objects indicators refer to.
#[derive(Default)]
struct Index<'a> {
    /// identity id → name.
    identities: HashMap<&'a str, &'a str>,
    /// marking-definition id → object (newest version).
    markings: HashMap<&'a str, &'a Map<String, Value>>,
    /// indicator id → index of its newest version in `objects`.
    newest: HashMap<&'a str, (usize, Option<Timestamp>)>,
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// The version stamp of an object: `modified`, else `created`.
fn version(obj: &Map<String, Value>) -> Option<Timestamp> {
    str_field(obj, "modified")
        .or_else(|| str_field(obj, "created"))
        .and_then(|s| pattern::parse_timestamp(s).ok())
}

/// Parses a STIX 2.1 bundle (or a TAXII envelope, a JSON array of objects, one object; STIX
/// 2.0 objects included) and adds one item per indicator to `out` (see the module docs).
///
/// A file that is not JSON, or JSON that holds no STIX objects, becomes one `invalid` reject
/// naming the problem (with line and column for JSON errors).
pub fn parse_bundle(bytes: &[u8], file: &Arc<str>, opts: &SourceOptions, out: &mut Batch) {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            out.reject(file, "file", Category::Invalid, json_error(&e));
            return;
        }
    };
    let single;
    let (objects, source): (&[Value], Arc<str>) = match &doc {
        Value::Object(top) => match top.get("objects") {
            Some(Value::Array(objects)) => {
                let source = match str_field(top, "type") {
                    Some("bundle") => str_field(top, "id").unwrap_or(file.as_ref()),
                    _ => file,
                };
                (objects, Arc::from(source))
            }
            Some(other) => {
                out.reject(
                    file,
                    "file",
                    Category::Invalid,
                    format!(
                        "`objects` is {}, expected an array of STIX objects",
                        crate::ingest::json_kind(other)
                    ),
                );
                return;
            }
            None if str_field(top, "type") == Some("bundle") => {
                tracing::debug!(file = %file, "STIX bundle without objects");
                return;
            }
            None if str_field(top, "type").is_some() => {
                single = [doc.clone()];
                (&single[..], Arc::clone(file))
            }
            None => {
                out.reject(
                    file,
                    "file",
                    Category::Invalid,
                    "not a STIX bundle: expected {\"type\": \"bundle\", \"objects\": [...]} or a TAXII envelope {\"objects\": [...]}",
                );
                return;
            }
        },
        Value::Array(objects) => (objects.as_slice(), Arc::clone(file)),
        other => {
            out.reject(
                file,
                "file",
                Category::Invalid,
                format!(
                    "not a STIX bundle: the document is {}",
                    crate::ingest::json_kind(other)
                ),
            );
            return;
        }
    };

    let index = index(objects, file);
    for (i, value) in objects.iter().enumerate() {
        let Some(obj) = value.as_object() else {
            continue;
        };
        if str_field(obj, "type") != Some("indicator") {
            continue;
        }
        let Some(id) = str_field(obj, "id") else {
            out.reject(
                file,
                format!("objects[{i}]"),
                Category::Invalid,
                "indicator has no `id`",
            );
            continue;
        };
        // Every indicator's id names it in rejects, hits and notifications: `indicator--`
        // and something after it (STIX asks for a UUID; producers are not all that careful).
        if id
            .strip_prefix("indicator--")
            .is_none_or(|rest| rest.trim().is_empty())
        {
            out.reject(
                file,
                format!("objects[{i}]"),
                Category::Invalid,
                format!(
                    "indicator `id` {:?} is not `indicator--` followed by its UUID",
                    crate::ingest::plain::shorten(id)
                ),
            );
            continue;
        }
        if let Some(&(newest, stamp)) = index.newest.get(id)
            && newest != i
        {
            let when =
                stamp.map_or_else(|| "a later copy".to_string(), |t| format!("modified {t}"));
            out.reject(
                file,
                id,
                Category::Skipped,
                format!("superseded by a newer version of the same indicator ({when})"),
            );
            continue;
        }
        indicator(obj, id, &index, &source, file, opts, out);
    }
}

/// Indexes identities, markings and indicator versions; counts what is ignored.
fn index<'a>(objects: &'a [Value], file: &str) -> Index<'a> {
    let mut idx = Index::default();
    let mut ignored: BTreeMap<&str, usize> = BTreeMap::new();
    let mut marking_versions: HashMap<&str, Option<Timestamp>> = HashMap::new();
    for (i, value) in objects.iter().enumerate() {
        let Some(obj) = value.as_object() else {
            *ignored.entry("(not an object)").or_insert(0) += 1;
            continue;
        };
        let id = str_field(obj, "id");
        match (str_field(obj, "type"), id) {
            (Some("indicator"), Some(id)) => {
                let v = version(obj);
                let newer = idx.newest.get(id).is_none_or(|(_, prev)| v >= *prev);
                if newer {
                    idx.newest.insert(id, (i, v));
                }
            }
            (Some("indicator"), None) => {}
            (Some("identity"), Some(id)) => {
                if let Some(name) = str_field(obj, "name") {
                    idx.identities.insert(id, name);
                }
            }
            (Some("marking-definition"), Some(id)) => {
                let v = version(obj);
                let newer = marking_versions.get(id).is_none_or(|prev| v >= *prev);
                if newer {
                    marking_versions.insert(id, v);
                    idx.markings.insert(id, obj);
                }
            }
            (Some(t), _) => *ignored.entry(t).or_insert(0) += 1,
            (None, _) => *ignored.entry("(no type)").or_insert(0) += 1,
        }
    }
    if !ignored.is_empty() {
        tracing::debug!(
            file,
            ignored = ignored.values().sum::<usize>(),
            types = ?ignored,
            "STIX objects cwn does not read were ignored"
        );
    }
    idx
}

fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text
        .rfind(" at line ")
        .map_or(text.as_str(), |cut| &text[..cut]);
    let what = match e.classify() {
        serde_json::error::Category::Eof => format!("truncated JSON ({what})"),
        _ => format!("not valid JSON ({what})"),
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// How a marking reference resolves.
enum Marking {
    Tlp(Tlp),
    /// A copyright or terms statement: context, no TLP.
    Statement,
    Unresolved(String),
}

fn resolve_marking(id: &str, index: &Index<'_>) -> Marking {
    let claimed = index.markings.get(id);
    if let Some(tlp) = tlp_of_marking(id) {
        if let Some(claim) = claimed.and_then(|obj| claimed_tlp(obj))
            && claim != tlp
        {
            tracing::warn!(
                code = "W_MARKING_MISMATCH",
                marking = id,
                "the bundle redefines a well-known TLP marking as {claim}; using {tlp} as the id says"
            );
        }
        return Marking::Tlp(tlp);
    }
    match claimed {
        Some(obj)
            if str_field(obj, "definition_type") == Some("statement")
                || obj
                    .get("definition")
                    .and_then(|d| d.get("statement"))
                    .is_some() =>
        {
            Marking::Statement
        }
        Some(_) => Marking::Unresolved(format!(
            "marking `{id}` is neither a well-known TLP marking nor a statement"
        )),
        None => Marking::Unresolved(format!(
            "marking `{id}` is not a well-known TLP marking and is not defined in the bundle"
        )),
    }
}

/// The TLP a marking-definition object says it is (TLP 1.0 `definition.tlp` or the TLP 2.0
/// extension), only to warn when a bundle contradicts a well-known id.
fn claimed_tlp(obj: &Map<String, Value>) -> Option<Tlp> {
    let v1 = obj
        .get("definition")
        .and_then(|d| d.get("tlp"))
        .and_then(Value::as_str);
    let v2 = obj
        .get("extensions")
        .and_then(Value::as_object)
        .and_then(|ext| ext.values().find_map(|e| e.get("tlp_2_0")))
        .and_then(Value::as_str);
    v2.or(v1).and_then(|level| level.parse().ok())
}

/// The effective TLP of an object (FORMATS.md §3.4, §4.3).
fn effective_tlp(obj: &Map<String, Value>, id: &str, index: &Index<'_>, default: Tlp) -> Tlp {
    let mut refs: Vec<Option<&str>> = Vec::new();
    match obj.get("object_marking_refs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => refs.extend(items.iter().map(Value::as_str)),
        Some(_) => refs.push(None),
    }
    if let Some(Value::Array(granular)) = obj.get("granular_markings") {
        for g in granular {
            let touches = g
                .get("selectors")
                .and_then(Value::as_array)
                .is_some_and(|sel| {
                    sel.iter().filter_map(Value::as_str).any(|s| {
                        MATCHED_PROPERTIES.iter().any(|p| {
                            s == *p
                                || s.strip_prefix(p)
                                    .is_some_and(|rest| rest.starts_with(['.', '[']))
                        })
                    })
                });
            // A granular marking may carry `lang` instead of `marking_ref`: no TLP then.
            if touches && let Some(r) = g.get("marking_ref") {
                refs.push(r.as_str());
            }
        }
    }
    let mut levels: Vec<Tlp> = Vec::new();
    for r in refs {
        let marking = match r {
            Some(r) => resolve_marking(r, index),
            None => Marking::Unresolved("a marking reference is not a string".to_string()),
        };
        match marking {
            Marking::Tlp(t) => levels.push(t),
            Marking::Statement => {}
            Marking::Unresolved(why) => {
                tracing::warn!(
                    code = "W_UNRESOLVED_MARKING",
                    indicator = id,
                    "{why}; treating the indicator as TLP:RED"
                );
                levels.push(Tlp::Red);
            }
        }
    }
    levels.sort();
    levels.dedup();
    if levels.len() > 1 {
        tracing::warn!(
            code = "W_TLP_CONFLICT",
            indicator = id,
            levels = ?levels,
            "several TLP markings; the most restrictive applies"
        );
    }
    levels.last().copied().unwrap_or(default)
}

fn timestamps(obj: &Map<String, Value>) -> Result<Validity, String> {
    let read = |key: &str| -> Result<Option<Timestamp>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => pattern::parse_timestamp(s)
                .map(Some)
                .map_err(|e| format!("E_INVALID_TIMESTAMPS: {key} {e}")),
            Some(other) => Err(format!(
                "E_INVALID_TIMESTAMPS: {key} is {}, expected a timestamp string",
                crate::ingest::json_kind(other)
            )),
        }
    };
    let validity = Validity {
        valid_from: read("valid_from")?,
        valid_until: read("valid_until")?,
    };
    if let (Some(from), Some(until)) = (validity.valid_from, validity.valid_until)
        && until <= from
    {
        return Err(format!(
            "E_INVALID_TIMESTAMPS: valid_until {until} is not later than valid_from {from}"
        ));
    }
    Ok(validity)
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Turns one indicator object (its newest version) into indicators or one reject.
fn indicator(
    obj: &Map<String, Value>,
    id: &str,
    index: &Index<'_>,
    source: &Arc<str>,
    file: &Arc<str>,
    opts: &SourceOptions,
    out: &mut Batch,
) {
    if obj.get("revoked") == Some(&Value::Bool(true)) {
        out.reject(file, id, Category::Skipped, "revoked by its producer");
        return;
    }
    // STIX 2.0 has no `indicator_types`; its `labels` play that part.
    let is_v20 = !obj.contains_key("spec_version");
    let types_key = if is_v20 { "labels" } else { "indicator_types" };
    if strings(obj.get(types_key)).any(|t| t.eq_ignore_ascii_case("benign")) {
        out.reject(
            file,
            id,
            Category::Skipped,
            format!("benign: `{types_key}` includes `benign`, so this is an allowlist entry, not something to alert on"),
        );
        return;
    }
    match obj.get("pattern_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "stix" => {}
        Some(other) => {
            let shown = other.as_str().map_or_else(
                || crate::ingest::json_kind(other).to_string(),
                |t| format!("`{}`", super::plain::shorten(t)),
            );
            out.reject(
                file,
                id,
                Category::Unsupported,
                format!("E_UNSUPPORTED_PATTERN_TYPE: pattern_type is {shown}; cwn arms only `stix` patterns"),
            );
            return;
        }
    }
    let text = match obj.get("pattern") {
        Some(Value::String(p)) => p.as_str(),
        None | Some(Value::Null) => {
            out.reject(
                file,
                id,
                Category::Invalid,
                "no pattern: the indicator has no `pattern` property",
            );
            return;
        }
        Some(other) => {
            out.reject(
                file,
                id,
                Category::Invalid,
                format!(
                    "pattern is {}, expected a string",
                    crate::ingest::json_kind(other)
                ),
            );
            return;
        }
    };
    let validity = match timestamps(obj) {
        Ok(v) => v,
        Err(why) => {
            out.reject(file, id, Category::Invalid, why);
            return;
        }
    };
    let tree = match pattern::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let category = match e.code {
                pattern::ErrorCode::TooComplex => Category::Unsupported,
                _ => Category::Invalid,
            };
            out.reject(file, id, category, e.to_string());
            return;
        }
    };
    let observables = match compile::compile(&tree) {
        Ok(o) => o,
        Err(refusal) => {
            out.reject(file, id, refusal.category(), refusal.to_string());
            return;
        }
    };

    let tlp = effective_tlp(obj, id, index, opts.default_tlp);
    let origin: Option<Arc<str>> = str_field(obj, "created_by_ref")
        .map(|r| Arc::from(index.identities.get(r).copied().unwrap_or(r)));
    let confidence = match obj.get("confidence") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(c @ 0..=100) => Some(c as u8),
            _ => {
                tracing::warn!(indicator = id, confidence = %v, "confidence is not an integer 0-100; ignored");
                None
            }
        },
    };
    let labels: Vec<Arc<str>> = strings(obj.get("labels")).map(Arc::from).collect();
    let several = observables.len() > 1;
    for (n, o) in observables.into_iter().enumerate() {
        let ind_id = if several {
            format!("{id}#{}", n + 1)
        } else {
            id.to_string()
        };
        let mut ind = Indicator::new(ind_id.clone(), o.kind, o.value, Arc::clone(source), tlp);
        ind.origin = origin.clone();
        ind.tags = labels.clone();
        ind.tags.extend(o.context.into_iter().map(Arc::from));
        ind.validity = validity;
        ind.confidence = confidence;
        ind.direction = o.direction;
        ind.port = o.port;
        ind.defanged = o.notes.contains(&Note::Refanged);
        out.accept(file, ind_id, ind, o.notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::{Direction, Kind};
    use crate::ingest::Item;

    fn run(json: &str, opts: &SourceOptions) -> Batch {
        let mut out = Batch::new();
        parse_bundle(json.as_bytes(), &Arc::from("t.json"), opts, &mut out);
        out
    }

    /// `(record, category, reason)` of the rejects; `(id, kind, value, tlp)` of the indicators.
    #[allow(clippy::type_complexity)]
    fn split(
        b: &Batch,
    ) -> (
        Vec<(String, Kind, String, Tlp)>,
        Vec<(String, Category, String)>,
    ) {
        let mut acc = Vec::new();
        let mut rej = Vec::new();
        for item in &b.items {
            match item {
                Item::Indicator { indicator: i, .. } => {
                    acc.push((i.id.clone(), i.kind, i.value.clone(), i.tlp))
                }
                Item::Rejected(r) => rej.push((r.record.clone(), r.category, r.reason.clone())),
            }
        }
        (acc, rej)
    }

    fn indicator_json(extra: &str) -> String {
        format!(
            r#"{{"type": "indicator", "spec_version": "2.1", "id": "indicator--1", "created": "2025-03-10T10:00:00.000Z", "modified": "2025-03-10T10:00:00.000Z", "pattern_type": "stix", "valid_from": "2025-03-10T10:00:00Z", "pattern": "[ipv4-addr:value = '198.51.100.23']"{extra}}}"#
        )
    }

    fn bundle(objects: &[String]) -> String {
        format!(
            r#"{{"type": "bundle", "id": "bundle--b", "objects": [{}]}}"#,
            objects.join(",")
        )
    }

    const AMBER_V2: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";
    const RED_V1: &str = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";
    const GREEN_V1: &str = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";

    #[test]
    fn tlp_comes_from_marking_ids() {
        let statement = r#"{"type": "marking-definition", "id": "marking-definition--s", "definition_type": "statement", "definition": {"statement": "Copyright Example"}}"#;
        let fake_clear = r#"{"type": "marking-definition", "id": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "definition_type": "tlp", "definition": {"tlp": "white"}}"#;
        let custom = r#"{"type": "marking-definition", "id": "marking-definition--c", "definition_type": "pap", "definition": {"pap": "white"}}"#;
        let cases: Vec<(String, Tlp)> = vec![
            (String::new(), Tlp::AmberStrict),
            (
                format!(r#", "object_marking_refs": ["{AMBER_V2}"]"#),
                Tlp::Amber,
            ),
            (
                format!(r#", "object_marking_refs": ["{RED_V1}"]"#),
                Tlp::Red,
            ),
            (
                format!(r#", "object_marking_refs": ["{GREEN_V1}", "{AMBER_V2}"]"#),
                Tlp::Amber,
            ),
            (
                r#", "object_marking_refs": ["marking-definition--s"]"#.into(),
                Tlp::AmberStrict,
            ),
            (
                format!(r#", "object_marking_refs": ["marking-definition--s", "{GREEN_V1}"]"#),
                Tlp::Green,
            ),
            (
                r#", "object_marking_refs": ["marking-definition--unknown"]"#.into(),
                Tlp::Red,
            ),
            (
                r#", "object_marking_refs": ["marking-definition--c"]"#.into(),
                Tlp::Red,
            ),
            (r#", "object_marking_refs": [42]"#.into(), Tlp::Red),
            (r#", "object_marking_refs": "oops""#.into(), Tlp::Red),
            (
                format!(
                    r#", "object_marking_refs": ["{GREEN_V1}"], "granular_markings": [{{"marking_ref": "{RED_V1}", "selectors": ["description"]}}]"#
                ),
                Tlp::Red,
            ),
            (
                format!(
                    r#", "object_marking_refs": ["{GREEN_V1}"], "granular_markings": [{{"marking_ref": "{RED_V1}", "selectors": ["labels.[0]", "patternx"]}}]"#
                ),
                Tlp::Green,
            ),
            (
                format!(
                    r#", "granular_markings": [{{"lang": "en", "selectors": ["pattern"]}}, {{"marking_ref": "{AMBER_V2}", "selectors": ["pattern"]}}]"#
                ),
                Tlp::Amber,
            ),
        ];
        for (extra, want) in cases {
            let json = bundle(&[
                statement.to_string(),
                fake_clear.to_string(),
                custom.to_string(),
                indicator_json(&extra),
            ]);
            let (acc, rej) = split(&run(&json, &SourceOptions::default()));
            assert!(rej.is_empty(), "{extra}: {rej:?}");
            assert_eq!(acc[0].3, want, "{extra}");
        }
        let green = SourceOptions {
            default_tlp: Tlp::Green,
            ..SourceOptions::default()
        };
        let (acc, _) = split(&run(&bundle(&[indicator_json("")]), &green));
        assert_eq!(acc[0].3, Tlp::Green);
    }

    #[test]
    fn indicator_properties_decide_what_is_armed() {
        let cases: &[(&str, Option<Category>, &str)] = &[
            (r#", "revoked": true"#, Some(Category::Skipped), "revoked"),
            (r#", "revoked": false"#, None, ""),
            (
                r#", "indicator_types": ["malicious-activity", "benign"]"#,
                Some(Category::Skipped),
                "benign",
            ),
            (
                r#", "pattern_type": "sigma""#,
                Some(Category::Unsupported),
                "E_UNSUPPORTED_PATTERN_TYPE: pattern_type is `sigma`",
            ),
            (
                r#", "pattern_type": 3"#,
                Some(Category::Unsupported),
                "E_UNSUPPORTED_PATTERN_TYPE",
            ),
            (
                r#", "valid_until": "2025-03-10T10:00:00Z""#,
                Some(Category::Invalid),
                "E_INVALID_TIMESTAMPS: valid_until 2025-03-10T10:00:00Z is not later",
            ),
            (
                r#", "valid_until": "2025-06-30T00:00:00+02:00""#,
                Some(Category::Invalid),
                "E_INVALID_TIMESTAMPS: valid_until `2025-06-30T00:00:00+02:00` must be in UTC",
            ),
            (
                r#", "valid_until": 5"#,
                Some(Category::Invalid),
                "E_INVALID_TIMESTAMPS: valid_until is a number",
            ),
            (
                r#", "valid_until": "2000-01-01T00:00:00Z", "valid_from": "1999-01-01T00:00:00Z""#,
                None,
                "",
            ),
        ];
        for (extra, want, msg) in cases {
            // Later keys win in serde_json maps, so `extra` overrides the defaults.
            let (acc, rej) = split(&run(
                &bundle(&[indicator_json(extra)]),
                &SourceOptions::default(),
            ));
            match want {
                None => assert_eq!((acc.len(), rej.len()), (1, 0), "{extra}: {rej:?}"),
                Some(cat) => {
                    assert!(acc.is_empty(), "{extra}");
                    assert_eq!(rej[0].1, *cat, "{extra}");
                    assert!(rej[0].2.contains(msg), "{extra}: {}", rej[0].2);
                    assert_eq!(rej[0].0, "indicator--1");
                }
            }
        }
    }

    #[test]
    fn indicator_fields_are_copied() {
        let identity = r#"{"type": "identity", "id": "identity--a", "name": "Synthetic-CERT-A"}"#;
        let json = bundle(&[
            identity.to_string(),
            indicator_json(
                r#", "created_by_ref": "identity--a", "confidence": 60, "labels": ["c2", 5], "valid_until": "2025-06-30T00:00:00Z", "pattern": "[network-traffic:dst_ref.value = '203.0.113.45' AND network-traffic:dst_port = 8443] OR [file:hashes.MD5 = 'e69894213ec071803808fb5c7e66ab8d' AND file:name = 'a.exe']""#,
            ),
            r#"{"type": "indicator", "id": "indicator--2", "created_by_ref": "identity--missing", "confidence": 300, "pattern": "[url:value = 'hxxp://bad[.]example[.]com/x']"}"#.to_string(),
        ]);
        let b = run(&json, &SourceOptions::default());
        let inds: Vec<&Indicator> = b
            .items
            .iter()
            .map(|i| match i {
                Item::Indicator { indicator, .. } => indicator,
                Item::Rejected(r) => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(inds.len(), 3);
        let a = inds[0];
        assert_eq!(
            (a.id.as_str(), a.kind, a.value.as_str()),
            ("indicator--1#1", Kind::IpPort, "203.0.113.45:8443")
        );
        assert_eq!(a.direction, Some(Direction::Dst));
        assert_eq!(a.origin.as_deref(), Some("Synthetic-CERT-A"));
        assert_eq!(&*a.source, "bundle--b");
        assert_eq!(a.confidence, Some(60));
        assert_eq!(a.tags, vec![Arc::<str>::from("c2")]);
        assert_eq!(
            a.validity.valid_until,
            Some("2025-06-30T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            a.validity.valid_from,
            Some("2025-03-10T10:00:00Z".parse().unwrap())
        );
        let h = inds[1];
        assert_eq!((h.id.as_str(), h.kind), ("indicator--1#2", Kind::Md5));
        assert_eq!(
            h.tags,
            vec![Arc::<str>::from("c2"), Arc::from("file:name = 'a.exe'")]
        );
        let u = inds[2];
        assert_eq!(
            (u.id.as_str(), u.kind, u.value.as_str()),
            ("indicator--2", Kind::Url, "http://bad.example.com/x")
        );
        assert!(u.defanged);
        assert_eq!(u.origin.as_deref(), Some("identity--missing"));
        assert_eq!(u.confidence, None);
        assert_eq!(u.validity, Validity::default());
    }

    #[test]
    fn newest_version_wins() {
        let v = |modified: &str, pattern: &str, revoked: bool| {
            format!(
                r#"{{"type": "indicator", "spec_version": "2.1", "id": "indicator--v", "modified": "{modified}", "revoked": {revoked}, "pattern": "{pattern}", "pattern_type": "stix"}}"#
            )
        };
        let json = bundle(&[
            v(
                "2025-03-02T00:00:00.000Z",
                "[ipv4-addr:value = '192.0.2.2']",
                false,
            ),
            v(
                "2025-03-01T00:00:00Z",
                "[ipv4-addr:value = '192.0.2.1']",
                false,
            ),
            v(
                "2025-03-03T00:00:00Z",
                "[ipv4-addr:value = '192.0.2.3']",
                true,
            ),
        ]);
        let (acc, rej) = split(&run(&json, &SourceOptions::default()));
        assert!(acc.is_empty());
        let cats: Vec<(Category, &str)> = rej.iter().map(|r| (r.1, &r.2[..10])).collect();
        assert_eq!(
            cats,
            vec![
                (Category::Skipped, "superseded"),
                (Category::Skipped, "superseded"),
                (Category::Skipped, "revoked by")
            ]
        );
        let json = bundle(&[
            v(
                "2025-03-02T00:00:00Z",
                "[ipv4-addr:value = '192.0.2.2']",
                false,
            ),
            v(
                "2025-03-01T00:00:00Z",
                "[ipv4-addr:value = '192.0.2.1']",
                true,
            ),
        ]);
        let (acc, _) = split(&run(&json, &SourceOptions::default()));
        assert_eq!(acc[0].2, "192.0.2.2");
    }

    #[test]
    fn envelopes_and_stix_2_0_are_read() {
        let v20 = r#"{"type": "indicator", "id": "indicator--20", "created": "2017-01-01T00:00:00Z", "modified": "2017-01-01T00:00:00Z", "labels": ["malicious-activity"], "pattern": "[domain-name:value = 'c2.malware.test']", "valid_from": "2017-01-01T00:00:00Z", "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]}"#;
        for doc in [
            format!(r#"{{"objects": [{v20}], "more": false}}"#),
            format!("[{v20}]"),
            v20.to_string(),
            format!(
                r#"{{"type": "bundle", "id": "bundle--x", "spec_version": "2.0", "objects": [{v20}, {{"type": "x-custom", "id": "x-custom--1"}}, 7]}}"#
            ),
        ] {
            let (acc, rej) = split(&run(&doc, &SourceOptions::default()));
            assert!(rej.is_empty(), "{doc}: {rej:?}");
            assert_eq!(
                acc,
                vec![(
                    "indicator--20".to_string(),
                    Kind::Hostname,
                    "c2.malware.test".to_string(),
                    Tlp::Green
                )]
            );
        }
        let benign20 = v20.replace("malicious-activity", "benign");
        let (_, rej) = split(&run(&benign20, &SourceOptions::default()));
        assert_eq!(rej[0].1, Category::Skipped);
    }

    #[test]
    fn malformed_documents_are_one_clear_reject() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"type": "bundle", "objects": [{"type": "indic"#,
                "truncated JSON (EOF while parsing a string) at line 1 column 46",
            ),
            (
                "not json",
                "not valid JSON (expected ident) at line 1 column 2",
            ),
            (
                r#"{"type": "bundle", "objects": {}}"#,
                "`objects` is an object",
            ),
            (r#"{"hello": 1}"#, "not a STIX bundle"),
            ("42", "not a STIX bundle: the document is a number"),
        ];
        for (doc, msg) in cases {
            let (acc, rej) = split(&run(doc, &SourceOptions::default()));
            assert!(acc.is_empty());
            assert_eq!(rej.len(), 1, "{doc}");
            assert_eq!(
                (rej[0].0.as_str(), rej[0].1),
                ("file", Category::Invalid),
                "{doc}"
            );
            assert!(rej[0].2.contains(msg), "{doc}: {}", rej[0].2);
        }
        let (acc, rej) = split(&run(
            r#"{"type": "bundle", "id": "bundle--e"}"#,
            &SourceOptions::default(),
        ));
        assert!(acc.is_empty() && rej.is_empty());
        let (_, rej) = split(&run(
            r#"[{"type": "indicator", "pattern": "[a:b = 1]"}]"#,
            &SourceOptions::default(),
        ));
        assert_eq!(
            rej,
            vec![(
                "objects[0]".to_string(),
                Category::Invalid,
                "indicator has no `id`".to_string()
            )]
        );
    }

    #[test]
    fn pattern_errors_become_rejects() {
        let cases: &[(&str, Category, &str)] = &[
            (
                r#""[file:size = ]""#,
                Category::Invalid,
                "E_SYNTAX at line 1 column 14: ",
            ),
            (
                r#""[url:value = 'a\\x41']""#,
                Category::Invalid,
                "E_BAD_ESCAPE at line 1 column 16: ",
            ),
            (
                r#""[process:name = 'x']""#,
                Category::Unsupported,
                "E_UNSUPPORTED_PATH: ",
            ),
            (
                r#""[file:hashes.'SHA-256' = 'f00']""#,
                Category::Invalid,
                "E_INVALID_VALUE: ",
            ),
            (
                "42",
                Category::Invalid,
                "pattern is a number, expected a string",
            ),
            ("null", Category::Invalid, "no pattern"),
        ];
        for (pattern, cat, msg) in cases {
            let json = bundle(&[indicator_json(&format!(r#", "pattern": {pattern}"#))]);
            let (acc, rej) = split(&run(&json, &SourceOptions::default()));
            assert!(acc.is_empty(), "{pattern}");
            assert_eq!(rej[0].1, *cat, "{pattern}: {:?}", rej[0]);
            assert!(rej[0].2.starts_with(msg), "{pattern}: {}", rej[0].2);
        }
    }
}
