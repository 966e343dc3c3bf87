//! The entity registry: who takes part in the network, in which roles, with which constituency
//! (address prefixes and domains), sharing groups and certificate identity.
//!
//! The registry is read from a TOML file ([`Registry::from_toml`]) of `[[entities]]` tables.
//! Unknown keys are refused, and every problem is reported with the file, the TOML line, the
//! key path and the value, e.g. `registry.toml:14: entities[3].prefixes[1]: "10.0.0.0/33" is
//! not a prefix`. All problems of a file are reported at once, not only the first.
//!
//! Nothing here reads files or knows about certificates beyond their identifiers: the caller
//! hands in the text and looks peers up by [`Registry::by_fingerprint`] or
//! [`Registry::by_subject`].
//!
//! ```
//! use cwn::route::registry::{Registry, Role};
//!
//! let reg = Registry::from_toml(r#"
//! [[entities]]
//! id = "msp-a"
//! name = "MSP A"
//! roles = ["partner"]
//! on_behalf_of = ["hospital-b"]
//!
//! [[entities]]
//! id = "hospital-b"
//! name = "Hospital B"
//! roles = ["subscriber"]
//! sector = "health"
//! prefixes = ["198.51.100.0/24", "2001:db8:b::/48"]
//! domains = ["hospital-b.example"]
//! "#, "registry.toml").unwrap();
//! let msp = reg.by_id("msp-a").unwrap();
//! assert!(reg.entity(msp).roles.contains(Role::Partner));
//! assert_eq!(reg.entity(msp).on_behalf_of, [reg.by_id("hospital-b").unwrap()]);
//!
//! let err = Registry::from_toml("[[entities]]\nid = \"x\"\nname = \"X\"\nroles = [\"subscriber\"]\nprefixes = [\"10.0.0.0/33\"]\n", "registry.toml").unwrap_err();
//! assert_eq!(err.to_string(), "registry.toml:5: entities[0].prefixes[0]: \"10.0.0.0/33\" is not a prefix");
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::indicator::normalize;

/// Shortest IPv4 prefix accepted in a constituency: anything wider is a typo, not a network
/// one organisation answers for.
pub const MIN_PREFIX_V4: u8 = 8;
/// Shortest IPv6 prefix accepted in a constituency.
pub const MIN_PREFIX_V6: u8 = 16;

/// Ordinal of an entity inside one [`Registry`]: its position in the file.
///
/// Routing works on roaring bitmaps of these; they are only meaningful with the registry that
/// issued them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EntityOrd(u32);

impl EntityOrd {
    /// The ordinal `n`.
    pub const fn new(n: u32) -> Self {
        EntityOrd(n)
    }

    /// The ordinal as a `u32` (a bitmap member).
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The ordinal as a `usize`, for indexing.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for EntityOrd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an entity does in the network (ARCHITECTURE.md, roles). One entity may hold several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ingests indicators, compiles and signs snapshots; its analysts handle internal cases
    /// and it receives aggregated sightings.
    Publisher,
    /// Streams telemetry (an MSP, sectoral CERT, ISP) and receives the hits of its batches.
    Partner,
    /// Receives notifications of hits that concern its constituency.
    Subscriber,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Publisher, Role::Partner, Role::Subscriber];

    /// The name used in the registry file.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Partner => "partner",
            Role::Subscriber => "subscriber",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Role::Publisher => 1,
            Role::Partner => 2,
            Role::Subscriber => 4,
        }
    }
}

/// A set of [`Role`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const fn empty() -> Self {
        Roles(0)
    }

    /// The set with the given roles.
    pub fn of(roles: &[Role]) -> Self {
        roles.iter().fold(Roles::empty(), |r, &x| r.with(x))
    }

    /// This set with `role` added.
    pub const fn with(self, role: Role) -> Self {
        Roles(self.0 | role.bit())
    }

    /// Whether `role` is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles in the set, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |&r| self.contains(r))
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Role::name)).finish()
    }
}

/// One participant of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    /// Stable identifier (`ncsc`, `msp-a`, `hospital-b`), unique in the registry.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What the entity does; never empty.
    pub roles: Roles,
    /// NIS2 sector, for reach statistics.
    pub sector: Option<String>,
    /// Address space the entity answers for (host bits clear). Prefixes of different entities
    /// may nest: a provider's /16 and its customer's /24 both belong to their holders.
    pub prefixes: Vec<IpNet>,
    /// Domains the entity owns, canonical (FORMATS.md §6.2); each covers its subdomains.
    pub domains: Vec<String>,
    /// MISP sharing groups (uuid or name) the entity is a member of. With distribution 4 and
    /// for TLP:RED these are the entity's clearances.
    pub sharing_groups: Vec<String>,
    /// SHA-256 of the entity's client certificate (DER).
    pub fingerprint: Option<[u8; 32]>,
    /// Subject of the entity's client certificate, as the CA issues it.
    pub subject: Option<String>,
    /// For partners: the entities whose telemetry this partner streams (an MSP's customers).
    /// Such a partner is part of the affected party for TLP:AMBER hits on those entities,
    /// and its telemetry may notify them.
    pub on_behalf_of: Vec<EntityOrd>,
    /// Partners whose telemetry may notify this entity although they do not stream on its
    /// behalf (a sectoral CERT's sensor, say).
    pub trusts: Vec<EntityOrd>,
    /// For partners: a national sensor (such as the NDN) whose telemetry may notify every
    /// entity. Without it (or `on_behalf_of`, or the victim's `trusts`) a partner's rows
    /// notify no one but itself: otherwise any partner could make the hub send an entity
    /// AMBER intelligence by streaming a made-up row with that entity's address.
    pub trusted_by_all: bool,
}

impl Entity {
    /// An entity with the given id, name and roles and everything else empty.
    pub fn new(id: impl Into<String>, name: impl Into<String>, roles: Roles) -> Self {
        Entity {
            id: id.into(),
            name: name.into(),
            roles,
            sector: None,
            prefixes: Vec::new(),
            domains: Vec::new(),
            sharing_groups: Vec::new(),
            fingerprint: None,
            subject: None,
            on_behalf_of: Vec::new(),
            trusts: Vec::new(),
            trusted_by_all: false,
        }
    }

    /// Whether the entity is a member of `group` (uuids and names compare ignoring ASCII case).
    pub fn in_sharing_group(&self, group: &str) -> bool {
        let group = group.trim();
        self.sharing_groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// One problem in a registry: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the registry came from a file.
    pub line: Option<usize>,
    /// The key path (`entities[3].prefixes[1]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Why a registry was refused: every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    /// The file name used in messages.
    pub file: String,
    /// The problems; never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{line}: ", self.file)?,
                None => write!(f, "{}: ", self.file)?,
            }
            if p.path.is_empty() {
                f.write_str(&p.message)?;
            } else {
                write!(f, "{}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    entities: Vec<Spanned<RawEntity>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    id: Spanned<String>,
    name: Spanned<String>,
    roles: Spanned<Vec<Role>>,
    #[serde(default)]
    sector: Option<Spanned<String>>,
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    sharing_groups: Vec<Spanned<String>>,
    #[serde(default)]
    fingerprint: Option<Spanned<String>>,
    #[serde(default)]
    subject: Option<Spanned<String>>,
    #[serde(default)]
    on_behalf_of: Vec<Spanned<String>>,
    #[serde(default)]
    trusts: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_by_all: Option<Spanned<bool>>,
}

/// The registry: entities in file order, addressed by [`EntityOrd`], with lookups by id and
/// certificate identity. Immutable once built.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entities: Vec<Entity>,
    by_id: HashMap<String, EntityOrd>,
    by_fingerprint: HashMap<[u8; 32], EntityOrd>,
    by_subject: HashMap<String, EntityOrd>,
}

/// Collects problems with their positions while a file is checked.
struct Problems<'a> {
    text: &'a str,
    list: Vec<(usize, Problem)>,
}

impl Problems<'_> {
    fn at(&mut self, span: Range<usize>, path: String, message: String) {
        let line = line_of(self.text, span.start);
        self.list.push((
            span.start,
            Problem {
                line: Some(line),
                path,
                message,
            },
        ));
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    memchr::memchr_iter(b'\n', &text.as_bytes()[..end]).count() + 1
}

/// The key path of the innermost key or value of `doc` that contains `offset`.
///
/// Parents are not pruned by their spans: the span of an array-of-tables element covers only
/// its `[[header]]`, not its keys.
fn path_at(doc: &toml::de::DeTable<'_>, offset: usize) -> String {
    fn in_table(t: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
        t.iter().find_map(|(k, v)| {
            let key = k.get_ref();
            if k.span().contains(&offset) {
                return Some(key.to_string());
            }
            match in_value(v, offset) {
                Some(sub) if sub.starts_with('[') => Some(format!("{key}{sub}")),
                Some(sub) => Some(format!("{key}.{sub}")),
                None => v.span().contains(&offset).then(|| key.to_string()),
            }
        })
    }
    fn in_value(v: &Spanned<toml::de::DeValue<'_>>, offset: usize) -> Option<String> {
        match v.get_ref() {
            toml::de::DeValue::Table(t) => in_table(t, offset),
            toml::de::DeValue::Array(a) => {
                a.iter()
                    .enumerate()
                    .find_map(|(i, e)| match in_value(e, offset) {
                        Some(sub) if sub.starts_with('[') => Some(format!("[{i}]{sub}")),
                        Some(sub) => Some(format!("[{i}].{sub}")),
                        None => e.span().contains(&offset).then(|| format!("[{i}]")),
                    })
            }
            _ => None,
        }
    }
    in_table(doc, offset).unwrap_or_default()
}

/// A syntax or schema error from the TOML deserialiser, placed and named.
fn serde_problem(text: &str, e: &toml::de::Error) -> Problem {
    let Some(span) = e.span() else {
        return Problem {
            line: None,
            path: String::new(),
            message: e.message().to_string(),
        };
    };
    let path = match toml::de::DeTable::parse(text) {
        Ok(doc) => path_at(doc.get_ref(), span.start),
        Err(_) => String::new(),
    };
    Problem {
        line: Some(line_of(text, span.start)),
        path,
        message: e.message().trim_end().to_string(),
    }
}

fn parse_prefix(raw: &str) -> Result<IpNet, String> {
    let s = raw.trim();
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            // A bare address is its own host prefix.
            Ok(a) => IpNet::from(a),
            Err(_) => return Err(format!("{raw:?} is not a prefix")),
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{raw:?} has host bits set (the network is {})",
            net.trunc()
        ));
    }
    let min = match net {
        IpNet::V4(_) => MIN_PREFIX_V4,
        IpNet::V6(_) => MIN_PREFIX_V6,
    };
    if net.prefix_len() < min {
        return Err(format!(
            "{raw:?} is too broad for a constituency (shortest accepted: /{MIN_PREFIX_V4} IPv4, /{MIN_PREFIX_V6} IPv6)"
        ));
    }
    Ok(net)
}

fn parse_fingerprint(raw: &str) -> Result<[u8; 32], String> {
    let hex: Vec<u8> = raw
        .trim()
        .bytes()
        .filter(|&b| b != b':' && b != b' ')
        .collect();
    let bad =
        || format!("{raw:?} is not a SHA-256 fingerprint (64 hex digits, `:` separators allowed)");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The fingerprint as 64 lower-case hex digits.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

impl Registry {
    /// Reads a registry from TOML text; `file` names it in error messages.
    ///
    /// # Errors
    /// Every problem found: TOML syntax, unknown or missing keys, a value of the wrong type or
    /// an unknown role, a bad id, prefix, domain or fingerprint, a duplicate id, fingerprint or
    /// subject, an `on_behalf_of` naming an unknown entity, the entity itself, or set on an
    /// entity that is not a partner.
    pub fn from_toml(text: &str, file: &str) -> Result<Registry, RegistryError> {
        let fail = |problems: Vec<Problem>| RegistryError {
            file: file.to_string(),
            problems,
        };
        let raw: RawRegistry =
            toml::from_str(text).map_err(|e| fail(vec![serde_problem(text, &e)]))?;
        let mut problems = Problems {
            text,
            list: Vec::new(),
        };
        let mut entities = Vec::with_capacity(raw.entities.len());
        // First pass: ids, so that references may point forward.
        let mut ids: HashMap<&str, (EntityOrd, usize)> = HashMap::new();
        for (i, e) in raw.entities.iter().enumerate() {
            let e = e.get_ref();
            let id = e.id.get_ref().as_str();
            let path = format!("entities[{i}].id");
            if !valid_id(id) {
                problems.at(
                    e.id.span(),
                    path,
                    format!("{id:?} is not an id (1-128 of letters, digits, `-`, `_`, `.`, `:`)"),
                );
                continue;
            }
            match ids.entry(id) {
                Entry::Occupied(o) => {
                    let first = line_of(text, o.get().1);
                    problems.at(
                        e.id.span(),
                        path,
                        format!("duplicate id {id:?} (first at line {first})"),
                    );
                }
                Entry::Vacant(v) => {
                    v.insert((EntityOrd(i as u32), e.id.span().start));
                }
            }
        }
        let mut fingerprints: HashMap<[u8; 32], usize> = HashMap::new();
        let mut subjects: HashMap<String, usize> = HashMap::new();
        for (i, spanned) in raw.entities.iter().enumerate() {
            let e = spanned.get_ref();
            let at = |key: &str| format!("entities[{i}].{key}");
            let roles = Roles::of(e.roles.get_ref());
            if roles.is_empty() {
                problems.at(
                    e.roles.span(),
                    at("roles"),
                    "no role (publisher, partner, subscriber)".into(),
                );
            }
            let name = e.name.get_ref().trim();
            if name.is_empty() {
                problems.at(e.name.span(), at("name"), "empty name".into());
            }
            let mut entity = Entity::new(e.id.get_ref().clone(), name, roles);
            entity.sector = e
                .sector
                .as_ref()
                .map(|s| s.get_ref().trim().to_string())
                .filter(|s| !s.is_empty());
            for (j, p) in e.prefixes.iter().enumerate() {
                match parse_prefix(p.get_ref()) {
                    Ok(net) => entity.prefixes.push(net),
                    Err(m) => problems.at(p.span(), format!("entities[{i}].prefixes[{j}]"), m),
                }
            }
            for (j, d) in e.domains.iter().enumerate() {
                match normalize::domain(d.get_ref()) {
                    Ok(name) => entity.domains.push(name),
                    Err(err) => problems.at(
                        d.span(),
                        format!("entities[{i}].domains[{j}]"),
                        format!("{:?} is not a domain: {err}", d.get_ref()),
                    ),
                }
            }
            for (j, g) in e.sharing_groups.iter().enumerate() {
                let g_str = g.get_ref().trim();
                if g_str.is_empty() {
                    problems.at(
                        g.span(),
                        format!("entities[{i}].sharing_groups[{j}]"),
                        "empty sharing group".into(),
                    );
                } else {
                    entity.sharing_groups.push(g_str.to_string());
                }
            }
            if let Some(fp) = &e.fingerprint {
                match parse_fingerprint(fp.get_ref()) {
                    Ok(bytes) => match fingerprints.entry(bytes) {
                        Entry::Occupied(o) => problems.at(
                            fp.span(),
                            at("fingerprint"),
                            format!(
                                "fingerprint already used by entities[{}] (line {})",
                                o.get(),
                                line_of(text, raw.entities[*o.get()].span().start)
                            ),
                        ),
                        Entry::Vacant(v) => {
                            v.insert(i);
                            entity.fingerprint = Some(bytes);
                        }
                    },
                    Err(m) => problems.at(fp.span(), at("fingerprint"), m),
                }
            }
            if let Some(s) = &e.subject {
                let subject = s.get_ref().trim().to_string();
                if subject.is_empty() {
                    problems.at(s.span(), at("subject"), "empty subject".into());
                } else {
                    match subjects.entry(subject.clone()) {
                        Entry::Occupied(o) => problems.at(
                            s.span(),
                            at("subject"),
                            format!("subject already used by entities[{}]", o.get()),
                        ),
                        Entry::Vacant(v) => {
                            v.insert(i);
                            entity.subject = Some(subject);
                        }
                    }
                }
            }
            if !e.on_behalf_of.is_empty() && !roles.contains(Role::Partner) {
                problems.at(
                    e.on_behalf_of[0].span(),
                    at("on_behalf_of"),
                    "only a partner streams telemetry on behalf of others (add \"partner\" to roles)"
                        .into(),
                );
            }
            for (j, r) in e.on_behalf_of.iter().enumerate() {
                let path = format!("entities[{i}].on_behalf_of[{j}]");
                match ids.get(r.get_ref().as_str()) {
                    None => problems.at(r.span(), path, format!("no entity {:?}", r.get_ref())),
                    Some(&(ord, _)) if ord.as_usize() == i => problems.at(
                        r.span(),
                        path,
                        "an entity cannot act on its own behalf".into(),
                    ),
                    Some(&(ord, _)) => {
                        if !entity.on_behalf_of.contains(&ord) {
                            entity.on_behalf_of.push(ord);
                        }
                    }
                }
            }
            if let Some(t) = &e.trusted_by_all {
                entity.trusted_by_all = *t.get_ref();
                if entity.trusted_by_all && !roles.contains(Role::Partner) {
                    problems.at(
                        t.span(),
                        at("trusted_by_all"),
                        "only a partner's telemetry can be trusted (add \"partner\" to roles)"
                            .into(),
                    );
                }
            }
            for (j, r) in e.trusts.iter().enumerate() {
                let path = format!("entities[{i}].trusts[{j}]");
                match ids.get(r.get_ref().as_str()) {
                    None => problems.at(r.span(), path, format!("no entity {:?}", r.get_ref())),
                    Some(&(ord, _)) if ord.as_usize() == i => problems.at(
                        r.span(),
                        path,
                        "an entity's own telemetry always concerns it; trust others".into(),
                    ),
                    Some(&(ord, _)) => {
                        if !entity.trusts.contains(&ord) {
                            entity.trusts.push(ord);
                        }
                    }
                }
            }
            entities.push(entity);
        }
        if !problems.list.is_empty() {
            let mut list = problems.list;
            list.sort_by_key(|(offset, _)| *offset);
            return Err(fail(list.into_iter().map(|(_, p)| p).collect()));
        }
        Registry::from_entities(entities).map_err(|mut e| {
            e.file = file.to_string();
            e
        })
    }

    /// A registry of entities built in code (tests, [`Registry::synthetic`]); ordinals are
    /// positions in `entities`.
    ///
    /// # Errors
    /// Duplicate ids, fingerprints or subjects; an `on_behalf_of` ordinal out of range or on
    /// an entity that is not a partner; an entity without a role. Problems carry no line.
    pub fn from_entities(entities: Vec<Entity>) -> Result<Registry, RegistryError> {
        let mut problems = Vec::new();
        let mut reg = Registry {
            by_id: HashMap::with_capacity(entities.len()),
            ..Registry::default()
        };
        for (i, e) in entities.iter().enumerate() {
            let ord = EntityOrd(i as u32);
            let mut problem = |path: &str, message: String| {
                problems.push(Problem {
                    line: None,
                    path: format!("entities[{i}]{path}"),
                    message,
                })
            };
            if !valid_id(&e.id) {
                problem(".id", format!("{:?} is not an id", e.id));
            }
            if reg.by_id.insert(e.id.clone(), ord).is_some() {
                problem(".id", format!("duplicate id {:?}", e.id));
            }
            if e.roles.is_empty() {
                problem(".roles", "no role".into());
            }
            if let Some(fp) = e.fingerprint
                && reg.by_fingerprint.insert(fp, ord).is_some()
            {
                problem(".fingerprint", "duplicate fingerprint".into());
            }
            if let Some(s) = &e.subject
                && reg.by_subject.insert(s.clone(), ord).is_some()
            {
                problem(".subject", format!("duplicate subject {s:?}"));
            }
            if !e.on_behalf_of.is_empty() && !e.roles.contains(Role::Partner) {
                problem(
                    ".on_behalf_of",
                    "set on an entity that is not a partner".into(),
                );
            }
            if e.on_behalf_of
                .iter()
                .any(|o| o.as_usize() >= entities.len())
            {
                problem(".on_behalf_of", "ordinal out of range".into());
            }
        }
        if u32::try_from(entities.len()).is_err() {
            problems.push(Problem {
                line: None,
                path: "entities".into(),
                message: "more entities than u32 ordinals".into(),
            });
        }
        if !problems.is_empty() {
            return Err(RegistryError {
                file: "<registry>".into(),
                problems,
            });
        }
        reg.entities = entities;
        Ok(reg)
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The entity with ordinal `ord`.
    ///
    /// # Panics
    /// If `ord` was not issued by this registry.
    pub fn entity(&self, ord: EntityOrd) -> &Entity {
        &self.entities[ord.as_usize()]
    }

    /// The entity with ordinal `ord`, if there is one.
    pub fn get(&self, ord: EntityOrd) -> Option<&Entity> {
        self.entities.get(ord.as_usize())
    }

    /// Every entity with its ordinal.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (EntityOrd, &Entity)> {
        self.entities
            .iter()
            .enumerate()
            .map(|(i, e)| (EntityOrd(i as u32), e))
    }

    /// The entity with this id.
    pub fn by_id(&self, id: &str) -> Option<EntityOrd> {
        self.by_id.get(id).copied()
    }

    /// The entity whose client certificate has this SHA-256 fingerprint.
    pub fn by_fingerprint(&self, fp: &[u8; 32]) -> Option<EntityOrd> {
        self.by_fingerprint.get(fp).copied()
    }

    /// The entity whose client certificate has this subject.
    pub fn by_subject(&self, subject: &str) -> Option<EntityOrd> {
        self.by_subject.get(subject).copied()
    }

    /// The entities with role `role`, ascending.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = EntityOrd> + '_ {
        self.iter()
            .filter(move |(_, e)| e.roles.contains(role))
            .map(|(o, _)| o)
    }

    /// A registry of `n` generated entities for tests, benchmarks and the demo, the same for
    /// the same `(n, seed)`:
    ///
    /// - entity 0 (`ncsc`) is the publisher;
    /// - about 5 % are *providers* with an IPv4 /16 (`10.0.0.0/8` upwards), an IPv6 /48 and a
    ///   hosting domain, each followed by one to four *customers* whose /24, /64 and domain
    ///   (`shopN.<provider domain>` beside their own) nest inside the provider's;
    /// - the others hold disjoint /24s from `16.0.0.0` upwards and /64s inside
    ///   `2001:db8:8000::/33`;
    /// - about 3 % are partners (MSPs) streaming on behalf of up to three earlier entities;
    /// - every entity has a sector, the sharing group of its sector, a fingerprint and a
    ///   subject. Domains end in `.test`.
    ///
    /// # Panics
    /// If `n` is 0 or above 2^23 (the address plan's room).
    pub fn synthetic(n: usize, seed: u64) -> Registry {
        assert!(
            n > 0 && n <= 1 << 23,
            "synthetic registry of 1..=2^23 entities"
        );
        const SECTORS: [&str; 8] = [
            "energy",
            "health",
            "finance",
            "water",
            "transport",
            "digital-infrastructure",
            "public-administration",
            "food",
        ];
        let mut rng = SplitMix(seed ^ 0x5eed_c0de_0000_0000);
        let mut entities = Vec::with_capacity(n);
        let identity = |e: &mut Entity| {
            e.fingerprint = Some(*blake3::hash(format!("{seed}/{}", e.id).as_bytes()).as_bytes());
            e.subject = Some(format!("CN={},O=cwn-synthetic", e.id));
        };
        let mut ncsc = Entity::new(
            "ncsc",
            "Nationaal Cyber Security Centrum (synthetic)",
            Roles::of(&[Role::Publisher, Role::Subscriber]),
        );
        ncsc.sector = Some("public-administration".into());
        ncsc.prefixes.push("192.0.2.0/24".parse().expect("literal"));
        ncsc.domains.push("ncsc.test".into());
        ncsc.sharing_groups = vec!["sg-national".into()];
        identity(&mut ncsc);
        entities.push(ncsc);
        let mut providers = 0u32;
        let mut independents = 0u32;
        while entities.len() < n {
            let i = entities.len() as u32;
            let sector = SECTORS[rng.below(SECTORS.len() as u64) as usize];
            // 1024 provider /16s fit below the independents' 16.0.0.0.
            let make_provider = providers < 1024 && rng.below(20) == 0;
            if make_provider {
                let p = providers;
                providers += 1;
                let id = format!("prov-{i}");
                let domain = format!("hoster{p}.test");
                let mut e =
                    Entity::new(id, format!("Provider {p}"), Roles::of(&[Role::Subscriber]));
                e.sector = Some("digital-infrastructure".into());
                let v4 = Ipv4Addr::from(0x0A00_0000u32 + (p << 16));
                e.prefixes
                    .push(Ipv4Net::new(v4, 16).expect("valid length").into());
                let v6 = Ipv6Addr::new(0x2001, 0x0db8, p as u16, 0, 0, 0, 0, 0);
                e.prefixes
                    .push(Ipv6Net::new(v6, 48).expect("valid length").into());
                e.domains.push(domain.clone());
                e.sharing_groups.push("sg-digital-infrastructure".into());
                identity(&mut e);
                entities.push(e);
                let customers = 1 + rng.below(4) as u32;
                for c in 1..=customers {
                    if entities.len() >= n {
                        break;
                    }
                    let i = entities.len() as u32;
                    let sector = SECTORS[rng.below(SECTORS.len() as u64) as usize];
                    let mut e = Entity::new(
                        format!("cust-{i}"),
                        format!("Customer {c} of provider {p}"),
                        Roles::of(&[Role::Subscriber]),
                    );
                    e.sector = Some(sector.into());
                    let v4 = Ipv4Addr::from(0x0A00_0000u32 + (p << 16) + (c << 8));
                    e.prefixes
                        .push(Ipv4Net::new(v4, 24).expect("valid length").into());
                    let v6 = Ipv6Addr::new(0x2001, 0x0db8, p as u16, c as u16, 0, 0, 0, 0);
                    e.prefixes
                        .push(Ipv6Net::new(v6, 64).expect("valid length").into());
                    e.domains.push(format!("shop{c}.{domain}"));
                    e.domains.push(format!("cust{i}.test"));
                    e.sharing_groups.push(format!("sg-{sector}"));
                    identity(&mut e);
                    entities.push(e);
                }
                continue;
            }
            let k = independents;
            independents += 1;
            let partner = i > 4 && rng.below(33) == 0;
            let mut e = if partner {
                let mut e = Entity::new(
                    format!("msp-{i}"),
                    format!("Managed security provider {i}"),
                    Roles::of(&[Role::Partner, Role::Subscriber]),
                );
                for _ in 0..1 + rng.below(3) {
                    let o = EntityOrd(1 + rng.below(u64::from(i) - 1) as u32);
                    if !e.on_behalf_of.contains(&o) {
                        e.on_behalf_of.push(o);
                    }
                }
                e.sharing_groups.push("sg-partners".into());
                e
            } else {
                Entity::new(
                    format!("ent-{i}"),
                    format!("Entity {i}"),
                    Roles::of(&[Role::Subscriber]),
                )
            };
            e.sector = Some(sector.into());
            let v4 = Ipv4Addr::from(0x1000_0000u32 + (k << 8));
            e.prefixes
                .push(Ipv4Net::new(v4, 24).expect("valid length").into());
            let v6 = Ipv6Addr::new(
                0x2001,
                0x0db8,
                0x8000 | (k >> 16) as u16,
                k as u16,
                0,
                0,
                0,
                0,
            );
            e.prefixes
                .push(Ipv6Net::new(v6, 64).expect("valid length").into());
            e.domains.push(format!("{}.test", e.id));
            e.sharing_groups.push(format!("sg-{sector}"));
            identity(&mut e);
            entities.push(e);
        }
        Registry::from_entities(entities).expect("the synthetic plan is consistent")
    }
}

/// splitmix64: deterministic generation without a `rand` dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests;
