//! MISP feeds and event files (FORMATS.md §1, effective TLP per §4.3).
//!
//! This module owns reading MISP's native JSON: a feed directory ([`feed_manifest`],
//! [`feed_event_files`]) and event documents ([`parse_events`]). It turns every attribute —
//! top-level or inside an `Object` — into zero or more [`Indicator`]s or one [`Reject`](super::Reject), and
//! never panics on data. It does not apply warninglists or remove duplicates; the driver in
//! [`crate::ingest`] does.
//!
//! Accepted documents: `{"Event": {...}}`, `{"response": [{"Event": {...}}, ...]}`, a JSON
//! array of either, and a bare event object. Parsing is lenient (unknown keys are ignored,
//! numbers may be strings, `null` is absent) and validation strict: a field of the wrong type
//! rejects the attribute, object or event it belongs to, with a reason naming the field.
//!
//! Per attribute, in this order (the first rule that applies decides):
//!
//! | condition | outcome |
//! |---|---|
//! | not an object, no `uuid`, a field of the wrong type | `invalid` |
//! | `deleted: true` on the attribute or its object | `skipped`: revoked |
//! | event `published: false` (absent counts as published) | `skipped` |
//! | `link`, `comment`, `port`, `filename`, … | `skipped`: context, reason per type |
//! | `snort`, `yara`, `sigma`, `pattern-in-*`, … | `unsupported`: `E_RULE_TYPE` |
//! | `ssdeep`, `sha384`, `jarm-fingerprint`, … | `unsupported`: no telemetry field yet |
//! | a type cwn does not know | `unsupported`, naming the type |
//! | `to_ids: false` (absent: MISP's default for the type) | `skipped`: context only |
//! | the value does not normalise | `invalid`, with the normaliser's reason |
//!
//! Identity: an indicator's id is the attribute `uuid`; `domain|ip` gives two indicators,
//! `<uuid>` (the domain) and `<uuid>#2` (the address). Its source is the event uuid and its
//! origin `Orgc.name` (else `Orgc.uuid`). Tags are the event, object and attribute tag names
//! verbatim, then `misp:type=<type>`, `misp:category=<category>`, for object members
//! `misp:object=<name>`, `misp:object_uuid=<uuid>`, `misp:object_relation=<relation>`, and
//! what a composite carried besides the matched value: `filename:<name>`, `port:<n>`, and
//! `x509` for certificate digests.
//!
//! TLP (§4.3): the maximum of the TLP tags on the event, the object and the attribute (so an
//! attribute can only raise its event's level); several levels on one entity warn
//! `W_TLP_CONFLICT`; `tlp:ex:chr` sets `no_attribution`; no label at all gives
//! [`SourceOptions::default_tlp`]. RED indicators are kept, labelled RED: arming is decided
//! later. Distribution (§1.8): the most restrictive of event, object and attribute, `5`
//! inheriting, with `0 < 1 < 4 (sharing group) < 2 < 3`; two different sharing groups cannot
//! be intersected here, so they give distribution 0 (own organisation only), with a warning.
//!
//! A document whose single event's `uuid` differs from its `<uuid>.json` file name is one
//! `invalid` reject for the event (§1.1); its attributes are not read, and neither are those
//! of an event or object with a malformed field of its own.

mod feed;
mod fields;
mod types;

pub use feed::{FeedManifest, ManifestEntry, feed_event_files, feed_manifest};

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;

use self::fields::{Obj, describe};
use self::types::Handling;
use super::plain::{category_of, shorten};
use super::{Batch, Category, SourceOptions};
use crate::indicator::normalize::{self, Note};
use crate::indicator::{Direction, Indicator, Kind, Tlp};

/// Parses a MISP event document, a `response` list of them, a JSON array of events or a bare
/// event, adding one item per indicator or rejected record to `out`.
///
/// `file` names the source in reports and, when it is `<uuid>.json`, must match the uuid of
/// the event inside. Input that is not UTF-8 JSON is one `invalid` reject with record `file`
/// and the position of the error.
pub fn parse_events(bytes: &[u8], file: &Arc<str>, opts: &SourceOptions, out: &mut Batch) {
    let doc = match parse_document(bytes) {
        Ok(doc) => doc,
        Err(reason) => {
            out.reject(file, "file", Category::Invalid, reason);
            return;
        }
    };
    let (events, single) = match locate_events(&doc) {
        Ok(found) => found,
        Err(reason) => {
            out.reject(file, "file", Category::Invalid, reason);
            return;
        }
    };
    let named = if single {
        uuid_in_file_name(file)
    } else {
        None
    };
    for (i, event) in events.into_iter().enumerate() {
        let record = format!("event {}", i + 1);
        match event {
            Ok(ev) => read_event(ev, &record, named.as_deref(), file, opts, out),
            Err(reason) => out.reject(file, record, Category::Invalid, reason),
        }
    }
}

/// Checks UTF-8 (to say where it breaks) and parses JSON.
fn parse_document(bytes: &[u8]) -> Result<Value, String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = memchr::memchr_iter(b'\n', before).count() + 1;
        let column = at - memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1) + 1;
        return Err(format!(
            "not valid UTF-8 at line {line} column {column} (byte offset {at}); MISP JSON must be UTF-8"
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            format!("not valid JSON: {e} (the file ends early: truncated?)")
        } else {
            format!("not valid JSON: {e}")
        }
    })
}

type Located<'a> = (Vec<Result<&'a Obj, String>>, bool);

/// Finds the events of a document; the flag says whether the document is one event (and so
/// subject to the file-name check).
fn locate_events(doc: &Value) -> Result<Located<'_>, String> {
    const EXPECTED: &str =
        "expected {\"Event\": {...}}, {\"response\": [...]}, a list of events or an event object";
    match doc {
        Value::Object(o) => {
            if let Some(ev) = o.get("Event") {
                return Ok((vec![event_object(ev)], true));
            }
            if let Some(resp) = o.get("response") {
                return match resp {
                    Value::Array(items) => Ok((items.iter().map(list_element).collect(), false)),
                    Value::Object(_) => Ok((vec![list_element(resp)], false)),
                    other => Err(format!(
                        "`response` is {}, expected an array of events",
                        describe(other)
                    )),
                };
            }
            if is_bare_event(o) {
                return Ok((vec![Ok(o)], true));
            }
            Err(format!("no MISP event in the document: {EXPECTED}"))
        }
        Value::Array(items) => Ok((items.iter().map(list_element).collect(), false)),
        other => Err(format!("the document is {}: {EXPECTED}", describe(other))),
    }
}

fn event_object(v: &Value) -> Result<&Obj, String> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(format!(
            "`Event` is {}, expected an object",
            describe(other)
        )),
    }
}

fn list_element(v: &Value) -> Result<&Obj, String> {
    match v {
        Value::Object(o) => match o.get("Event") {
            Some(ev) => event_object(ev),
            None if is_bare_event(o) => Ok(o),
            None => Err("list element is neither {\"Event\": {...}} nor an event object".into()),
        },
        other => Err(format!(
            "list element is {}, expected an event",
            describe(other)
        )),
    }
}

fn is_bare_event(o: &Obj) -> bool {
    o.contains_key("uuid")
        && ["Attribute", "Object", "info", "Orgc"]
            .iter()
            .any(|k| o.contains_key(*k))
}

/// The uuid a file is named after (`<uuid>.json`, `<uuid>.json.gz`), if it is.
fn uuid_in_file_name(file: &str) -> Option<String> {
    let name = Path::new(file).file_name()?.to_str()?;
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let stem = name.strip_suffix(".json")?;
    fields::looks_like_uuid(stem).then(|| stem.to_ascii_lowercase())
}

/// Where a distribution may go: MISP `distribution` and, with 4, the sharing group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Audience {
    distribution: Option<u8>,
    sharing_group: Option<Arc<str>>,
}

/// How far a distribution reaches, for "most restrictive": own org (0) < community (1) <
/// sharing group (4) < connected communities (2) < all (3).
fn reach(distribution: u8) -> u8 {
    match distribution {
        0 => 0,
        1 => 1,
        4 => 2,
        2 => 3,
        _ => 4,
    }
}

impl Audience {
    /// The audience of a child that declares `own` (`None` distribution = inherit).
    fn narrow(&self, own: &Audience, file: &str, who: &str) -> Audience {
        let (Some(parent), Some(child)) = (self.distribution, own.distribution) else {
            return if own.distribution.is_some() {
                own.clone()
            } else {
                self.clone()
            };
        };
        match reach(child).cmp(&reach(parent)) {
            std::cmp::Ordering::Less => own.clone(),
            std::cmp::Ordering::Greater => self.clone(),
            std::cmp::Ordering::Equal => match (&self.sharing_group, &own.sharing_group) {
                (Some(a), Some(b)) if a != b => {
                    tracing::warn!(
                        file,
                        record = who,
                        "sharing groups `{a}` and `{b}` both apply and cannot be intersected; \
                         treated as distribution 0 (own organisation only)"
                    );
                    Audience {
                        distribution: Some(0),
                        sharing_group: None,
                    }
                }
                (None, Some(_)) => own.clone(),
                _ => self.clone(),
            },
        }
    }
}

/// What one entity (event, object or attribute) says about itself besides its values.
#[derive(Clone, Debug, Default)]
struct Scope {
    tags: Vec<Arc<str>>,
    tlp: Option<Tlp>,
    no_attribution: bool,
    audience: Audience,
    deleted: bool,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
}

impl Scope {
    /// A child's scope: tags added, TLP raised, audience narrowed, deletion and seen-times
    /// inherited where the child does not say.
    fn child(&self, own: Scope, file: &str, who: &str) -> Scope {
        let mut tags = self.tags.clone();
        for t in own.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Scope {
            tags,
            tlp: self.tlp.max(own.tlp),
            no_attribution: self.no_attribution || own.no_attribution,
            audience: self.audience.narrow(&own.audience, file, who),
            deleted: self.deleted || own.deleted,
            first_seen: own.first_seen.or(self.first_seen),
            last_seen: own.last_seen.or(self.last_seen),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Event,
    Object,
    Attribute,
}

/// Reads an entity's tags, TLP, distribution, `deleted` and seen-times.
fn read_scope(o: &Obj, level: Level, file: &str, who: &str) -> Result<Scope, String> {
    let mut scope = Scope::default();
    read_tags(o, &mut scope, file, who)?;
    let distribution = fields::distribution(o, level != Level::Event)?;
    let sharing_group = if distribution == Some(4) {
        let sg = sharing_group(o)?;
        if sg.is_none() {
            tracing::warn!(
                file,
                record = who,
                "distribution 4 (sharing group) without `SharingGroup` or `sharing_group_id`: \
                 no recipient can be checked against it"
            );
        }
        sg
    } else {
        None
    };
    scope.audience = Audience {
        distribution,
        sharing_group,
    };
    if level != Level::Event {
        scope.deleted = fields::flag(o, "deleted")?.unwrap_or(false);
        scope.first_seen = seen(o, "first_seen", file, who);
        scope.last_seen = seen(o, "last_seen", file, who);
    }
    Ok(scope)
}

/// Tag names, verbatim, and the TLP they carry.
fn read_tags(o: &Obj, scope: &mut Scope, file: &str, who: &str) -> Result<(), String> {
    let mut levels: Vec<Tlp> = Vec::new();
    for (i, t) in fields::array(o, "Tag")?.iter().enumerate() {
        let name = match t {
            Value::String(s) => s.as_str(),
            Value::Object(m) => match fields::string(m, "name") {
                Ok(Some(n)) => n,
                Ok(None) => return Err(format!("`Tag[{i}]` has no `name`")),
                Err(e) => return Err(format!("`Tag[{i}]`: {e}")),
            },
            other => {
                return Err(format!(
                    "`Tag[{i}]` is {}, expected an object with a `name`",
                    describe(other)
                ));
            }
        };
        let trimmed = name.trim();
        if let Some(level) = Tlp::from_misp_tag(trimmed) {
            if !levels.contains(&level) {
                levels.push(level);
            }
        } else if trimmed.eq_ignore_ascii_case("tlp:ex:chr") {
            scope.no_attribution = true;
        } else if trimmed.len() > 4
            && trimmed
                .as_bytes()
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"tlp:"))
        {
            tracing::warn!(
                file,
                record = who,
                tag = trimmed,
                "not a TLP level (tlp:unclear or unknown); ignored"
            );
        }
        let name: Arc<str> = Arc::from(name);
        if !scope.tags.contains(&name) {
            scope.tags.push(name);
        }
    }
    scope.tlp = levels.iter().copied().max();
    if levels.len() > 1 {
        let list: Vec<&str> = levels.iter().map(|l| l.name()).collect();
        tracing::warn!(
            code = "W_TLP_CONFLICT",
            file,
            record = who,
            labels = %list.join(", "),
            "several TLP tags on one entity; the most restrictive applies"
        );
    }
    Ok(())
}

/// The sharing group of a distribution-4 entity: `SharingGroup.uuid`, else its `name`, else
/// the instance-local `sharing_group_id`.
fn sharing_group(o: &Obj) -> Result<Option<Arc<str>>, String> {
    if let Some(sg) = fields::object(o, "SharingGroup")? {
        if let Some(u) = fields::uuid(sg, "uuid").map_err(|e| format!("`SharingGroup`: {e}"))? {
            return Ok(Some(Arc::from(u)));
        }
        if let Some(n) = fields::string(sg, "name").map_err(|e| format!("`SharingGroup`: {e}"))?
            && !n.trim().is_empty()
        {
            return Ok(Some(Arc::from(n.trim())));
        }
    }
    Ok(match fields::uint(o, "sharing_group_id")? {
        None | Some(0) => None,
        Some(id) => Some(Arc::from(id.to_string())),
    })
}

/// `first_seen` / `last_seen`: hints only, so an unreadable one is dropped with a warning.
/// A time without offset is read as UTC, a bare date as its midnight UTC.
fn seen(o: &Obj, key: &str, file: &str, who: &str) -> Option<Timestamp> {
    let v = fields::get(o, key)?;
    let parsed = match v {
        Value::String(s) => {
            let s = s.trim();
            s.parse::<Timestamp>().ok().or_else(|| {
                s.parse::<jiff::civil::DateTime>()
                    .ok()
                    .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp())
            })
        }
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(
            file,
            record = who,
            "`{key}` is {}, not an ISO 8601 time; ignored",
            describe(v)
        );
    }
    parsed
}

/// What an event gives all its attributes.
struct Event<'a> {
    file: &'a Arc<str>,
    opts: &'a SourceOptions,
    uuid: String,
    source: Arc<str>,
    origin: Option<Arc<str>>,
    published: bool,
    scope: Scope,
}

/// What an object gives its attributes, besides its scope.
struct ObjectInfo {
    record: String,
    name: Option<String>,
    uuid: Option<String>,
    deleted: bool,
}

fn read_event(
    ev: &Obj,
    position: &str,
    named: Option<&str>,
    file: &Arc<str>,
    opts: &SourceOptions,
    out: &mut Batch,
) {
    let uuid = match fields::uuid(ev, "uuid") {
        Ok(Some(u)) => u,
        Ok(None) => {
            out.reject(
                file,
                position,
                Category::Invalid,
                "event has no `uuid`, so its attributes cannot be attributed; none were read",
            );
            return;
        }
        Err(e) => {
            out.reject(
                file,
                position,
                Category::Invalid,
                format!("event {e}; none of its attributes were read"),
            );
            return;
        }
    };
    if let Some(want) = named
        && want != uuid
    {
        out.reject(
            file,
            uuid.as_str(),
            Category::Invalid,
            format!(
                "event uuid {uuid} differs from the file name {want}.json; a feed names each \
                 event file after its event (FORMATS.md §1.1), so none of its attributes were read"
            ),
        );
        return;
    }
    let header = (|| -> Result<_, String> {
        let published = fields::flag(ev, "published")?.unwrap_or(true);
        let origin = match fields::object(ev, "Orgc")? {
            None => None,
            Some(org) => {
                let name = fields::string(org, "name").map_err(|e| format!("`Orgc`: {e}"))?;
                let org_uuid = fields::string(org, "uuid").map_err(|e| format!("`Orgc`: {e}"))?;
                name.map(str::trim)
                    .filter(|n| !n.is_empty())
                    .or(org_uuid.map(str::trim).filter(|u| !u.is_empty()))
                    .map(Arc::from)
            }
        };
        let scope = read_scope(ev, Level::Event, file, &uuid)?;
        let attributes = fields::array(ev, "Attribute")?;
        let objects = fields::array(ev, "Object")?;
        Ok((published, origin, scope, attributes, objects))
    })();
    let (published, origin, scope, attributes, objects) = match header {
        Ok(h) => h,
        Err(e) => {
            out.reject(
                file,
                uuid.as_str(),
                Category::Invalid,
                format!("event {e}; none of its attributes were read"),
            );
            return;
        }
    };
    let event = Event {
        file,
        opts,
        source: Arc::from(uuid.as_str()),
        uuid,
        origin,
        published,
        scope,
    };
    for (i, a) in attributes.iter().enumerate() {
        let position = format!("event {} attribute {}", event.uuid, i + 1);
        event.attribute(a, &position, &event.scope, None, out);
    }
    for (j, o) in objects.iter().enumerate() {
        event.object(o, j + 1, out);
    }
}

/// An attribute's own fields, checked.
struct Attr<'a> {
    misp_type: &'a str,
    value: &'a str,
    category: Option<&'a str>,
    to_ids: Option<bool>,
    object_relation: Option<&'a str>,
}

fn read_attr(a: &Obj) -> Result<Attr<'_>, String> {
    let misp_type = fields::string(a, "type")?.ok_or("attribute has no `type`")?;
    let value = fields::string(a, "value")?.ok_or("attribute has no `value`")?;
    Ok(Attr {
        misp_type,
        value,
        category: fields::string(a, "category")?,
        to_ids: fields::flag(a, "to_ids")?,
        object_relation: fields::string(a, "object_relation")?,
    })
}

/// Everything an indicator of one attribute shares with the attribute's other indicators.
struct Common<'a> {
    scope: &'a Scope,
    tags: Vec<Arc<str>>,
    direction: Option<Direction>,
}

impl Event<'_> {
    fn object(&self, o: &Value, n: usize, out: &mut Batch) {
        let position = format!("event {} object {n}", self.uuid);
        let file = self.file;
        let Value::Object(o) = o else {
            out.reject(
                file,
                position,
                Category::Invalid,
                format!("object is {}, expected an object", describe(o)),
            );
            return;
        };
        let read = (|| -> Result<_, String> {
            let uuid = fields::uuid(o, "uuid")?;
            let record = uuid.clone().unwrap_or_else(|| position.clone());
            let name = fields::string(o, "name")?.map(str::to_string);
            let own = read_scope(o, Level::Object, file, &record)?;
            let attributes = fields::array(o, "Attribute")?;
            Ok((uuid, record, name, own, attributes))
        })();
        let (uuid, record, name, own, attributes) = match read {
            Ok(r) => r,
            Err(e) => {
                let record = fields::uuid(o, "uuid").ok().flatten().unwrap_or(position);
                out.reject(
                    file,
                    record,
                    Category::Invalid,
                    format!("object {e}; none of its attributes were read"),
                );
                return;
            }
        };
        let info = ObjectInfo {
            deleted: own.deleted,
            record,
            name,
            uuid,
        };
        let scope = self.scope.child(own, file, &info.record);
        let label = info.uuid.clone().unwrap_or_else(|| n.to_string());
        for (k, a) in attributes.iter().enumerate() {
            let position = format!("event {} object {label} attribute {}", self.uuid, k + 1);
            self.attribute(a, &position, &scope, Some(&info), out);
        }
    }

    fn attribute(
        &self,
        a: &Value,
        position: &str,
        parent: &Scope,
        object: Option<&ObjectInfo>,
        out: &mut Batch,
    ) {
        let file = self.file;
        let Value::Object(a) = a else {
            out.reject(
                file,
                position,
                Category::Invalid,
                format!("attribute is {}, expected an object", describe(a)),
            );
            return;
        };
        let record = match fields::uuid(a, "uuid") {
            Ok(Some(u)) => u,
            Ok(None) => {
                out.reject(file, position, Category::Invalid, "attribute has no `uuid`");
                return;
            }
            Err(e) => {
                out.reject(file, position, Category::Invalid, format!("attribute {e}"));
                return;
            }
        };
        let checked = read_attr(a).and_then(|attr| {
            let own = read_scope(a, Level::Attribute, file, &record)?;
            Ok((attr, own))
        });
        let (attr, own) = match checked {
            Ok(c) => c,
            Err(e) => {
                out.reject(file, record, Category::Invalid, e);
                return;
            }
        };
        let own_deleted = own.deleted;
        let scope = parent.child(own, file, &record);
        let t = attr.misp_type.trim();

        let skip = |out: &mut Batch, reason: String| {
            out.reject(file, record.as_str(), Category::Skipped, reason)
        };
        if scope.deleted {
            let reason = match object {
                Some(o) if o.deleted && !own_deleted => format!(
                    "deleted (revoked) attribute: its object {} is deleted",
                    o.record
                ),
                _ => "deleted (revoked) attribute".to_string(),
            };
            return skip(out, reason);
        }
        if !self.published {
            return skip(out, format!("event {} not published", self.uuid));
        }
        let handling = types::handling(t);
        let unsupported = |out: &mut Batch, reason: String| {
            out.reject(file, record.as_str(), Category::Unsupported, reason)
        };
        match handling {
            Handling::Context(why) => return skip(out, format!("`{t}`: {why}")),
            Handling::Rule => {
                return unsupported(
                    out,
                    format!(
                        "E_RULE_TYPE: `{t}` is rule text, not an indicator value; cwn has no rule engine"
                    ),
                );
            }
            Handling::NoTelemetry(why) => {
                return unsupported(out, format!("MISP type `{t}` is not matched: {why}"));
            }
            Handling::Unknown => {
                return unsupported(out, format!("unknown MISP attribute type `{}`", shorten(t)));
            }
            _ => {}
        }
        match attr.to_ids {
            Some(false) => return skip(out, "to_ids is false: context only".to_string()),
            None if !types::default_to_ids(t) => {
                return skip(
                    out,
                    format!("to_ids is absent and MISP's default for `{t}` is false: context only"),
                );
            }
            _ => {}
        }

        let mut tags = scope.tags.clone();
        let mut tag = |s: String| {
            let s: Arc<str> = Arc::from(s);
            if !tags.contains(&s) {
                tags.push(s);
            }
        };
        tag(format!("misp:type={t}"));
        if let Some(c) = attr.category.map(str::trim).filter(|c| !c.is_empty()) {
            tag(format!("misp:category={c}"));
        }
        if let Some(o) = object {
            if let Some(n) = &o.name {
                tag(format!("misp:object={n}"));
            }
            if let Some(u) = &o.uuid {
                tag(format!("misp:object_uuid={u}"));
            }
            if let Some(r) = attr
                .object_relation
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                tag(format!("misp:object_relation={r}"));
            }
        }
        let mut common = Common {
            scope: &scope,
            tags,
            direction: None,
        };
        let value = attr.value;
        match handling {
            Handling::Single {
                kind,
                direction,
                tag,
            } => {
                if let Some(t) = tag {
                    common.tags.push(Arc::from(t));
                }
                common.direction = direction;
                self.emit(out, &common, record.clone(), None, kind, value);
            }
            Handling::IpPort(direction) => {
                common.direction = Some(direction);
                self.emit(out, &common, record.clone(), None, Kind::IpPort, value);
            }
            Handling::DomainIp => {
                let Some((domain, ip)) = value.split_once('|') else {
                    return out.reject(
                        file,
                        record.as_str(),
                        Category::Invalid,
                        format!(
                            "`{}` has no `|`: `domain|ip` needs `domain|ip`",
                            shorten(value)
                        ),
                    );
                };
                self.emit(
                    out,
                    &common,
                    record.clone(),
                    Some("domain part"),
                    Kind::Domain,
                    domain,
                );
                self.emit(
                    out,
                    &common,
                    format!("{record}#2"),
                    Some("IP part"),
                    Kind::Ipv4,
                    ip,
                );
            }
            Handling::HostnamePort => {
                let Some((host, port)) = value.split_once('|') else {
                    return out.reject(
                        file,
                        record.as_str(),
                        Category::Invalid,
                        format!(
                            "`{}` has no `|`: `hostname|port` needs `hostname|port`",
                            shorten(value)
                        ),
                    );
                };
                match normalize::port(port) {
                    Ok(p) => {
                        common.tags.push(Arc::from(format!("port:{p}")));
                        self.emit(out, &common, record.clone(), None, Kind::Hostname, host);
                    }
                    Err(e) => out.reject(
                        file,
                        record.as_str(),
                        Category::Invalid,
                        format!("port part `{}`: {e}", shorten(port)),
                    ),
                }
            }
            Handling::FilenameDigest(kind) => {
                // File names may contain `|`; digests never do.
                let Some((name, digest)) = value.rsplit_once('|') else {
                    return out.reject(
                        file,
                        record.as_str(),
                        Category::Invalid,
                        format!(
                            "`{}` has no `|`: `{t}` needs `filename|digest`",
                            shorten(value)
                        ),
                    );
                };
                let name = name.trim();
                if name.len() > normalize::MAX_VALUE_LEN {
                    return out.reject(
                        file,
                        record.as_str(),
                        Category::Invalid,
                        format!(
                            "file name part `{}`: {}",
                            shorten(name),
                            normalize::NormalizeError::TooLong(name.len())
                        ),
                    );
                }
                if !name.is_empty() {
                    common.tags.push(Arc::from(format!("filename:{name}")));
                }
                self.emit(out, &common, record.clone(), None, kind, digest);
            }
            Handling::Context(_)
            | Handling::Rule
            | Handling::NoTelemetry(_)
            | Handling::Unknown => {}
        }
    }

    /// Normalises one value and adds the indicator, or the reason it is not one.
    fn emit(
        &self,
        out: &mut Batch,
        common: &Common<'_>,
        id: String,
        part: Option<&str>,
        kind: Kind,
        raw: &str,
    ) {
        let n = match normalize::indicator_value(kind, raw) {
            Ok(n) => n,
            Err(e) => {
                let what = part.map_or(String::new(), |p| format!("{p} "));
                out.reject(
                    self.file,
                    id,
                    category_of(&e),
                    format!("{what}`{}`: {e}", shorten(raw.trim())),
                );
                return;
            }
        };
        let scope = common.scope;
        let mut ind = Indicator::new(
            id.clone(),
            n.kind,
            n.value,
            Arc::clone(&self.source),
            scope.tlp.unwrap_or(self.opts.default_tlp),
        );
        ind.origin = self.origin.clone();
        ind.tags = common.tags.clone();
        ind.no_attribution = scope.no_attribution;
        ind.distribution = scope.audience.distribution;
        ind.sharing_group = scope
            .audience
            .sharing_group
            .clone()
            .filter(|_| scope.audience.distribution == Some(4));
        ind.first_seen = scope.first_seen;
        ind.last_seen = scope.last_seen;
        ind.direction = common.direction;
        ind.defanged = n.notes.contains(&Note::Refanged);
        out.accept(self.file, id, ind, n.notes);
    }
}

#[cfg(test)]
mod tests;
