//! Compiling a parsed STIX pattern into the observables it arms (FORMATS.md §3.5.2, §3.5.3).
//!
//! cwn matches one telemetry event at a time against one value per indicator. A pattern can be
//! armed when it is an `OR` of bracketed observations whose comparison expressions, brought into
//! disjunctive normal form (`IN` sets expanded), are `OR`s of `AND`-groups that each reduce to
//! *one* [`Observable`]: an address or network, a host name, a URL, a digest, an e-mail address
//! or a User-Agent — optionally with the port and direction of a `network-traffic` endpoint.
//! [`compile`] returns one observable per group, in pattern order.
//!
//! Everything else is refused with a [`Refusal`] listing every reason found, the most
//! fundamental first ([`Code`] order): `AND`/`FOLLOWEDBY` between observations, qualifiers,
//! operators other than `=`, `IN` and `ISSUBSET`, object paths outside the table, groups that
//! need two observables at once, and values that do not normalise. Nothing is approximated
//! silently: the only conjuncts dropped from a group are endpoint type guards (checked against
//! the value first) and, beside a file digest, further digests and the file name — the
//! digest identifies the content, so these are kept as context tags rather than conditions.
//!
//! ```
//! use cwn::indicator::Kind;
//! use cwn::ingest::stix::{compile::{compile, Code}, pattern::parse};
//!
//! let p = parse("[domain-name:value = 'c2.malware.test' OR url:value = 'http://c2.malware.test/x']").unwrap();
//! let arms = compile(&p).unwrap();
//! assert_eq!((arms[0].kind, arms[0].value.as_str()), (Kind::Hostname, "c2.malware.test"));
//! assert_eq!(arms[1].kind, Kind::Url);
//!
//! let p = parse("[process:name = 'x.exe'] WITHIN 60 SECONDS").unwrap();
//! let refusal = compile(&p).unwrap_err();
//! assert_eq!(refusal.code(), Code::UnsupportedQualifier);
//! assert!(refusal.to_string().contains("also E_UNSUPPORTED_PATH"));
//! ```

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::pattern::{
    Comparison, ComparisonExpr, Literal, ObservationExpr, ObservationOp, Operand, Operator, Pattern,
};
use crate::indicator::normalize::{self, NormalizeError, Note};
use crate::indicator::{Direction, Kind};
use crate::ingest::Category;

/// Most `AND`-groups one pattern may expand to.
pub const MAX_GROUPS: usize = 256;

/// Why a pattern (or part of it) cannot be armed. The order is the order of report: the first
/// code present is the one a refusal is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// `E_UNSUPPORTED_OBSERVATION_OPERATOR`: `AND` or `FOLLOWEDBY` between observations.
    UnsupportedObservationOperator,
    /// `E_UNSUPPORTED_QUALIFIER`: `WITHIN`, `REPEATS`, `START … STOP`.
    UnsupportedQualifier,
    /// `E_UNSUPPORTED_OPERATOR`: anything but `=`, `IN`, `ISSUBSET`, or a `NOT`.
    UnsupportedOperator,
    /// `E_UNSUPPORTED_PATH`: an object path cwn does not match, or one that only constrains.
    UnsupportedPath,
    /// `E_UNSATISFIABLE_AND`: an `AND`-group that does not reduce to one observable.
    UnsatisfiableAnd,
    /// `E_INVALID_VALUE`: a value that is not what its path holds (bad address, hash length).
    InvalidValue,
    /// `E_TOO_COMPLEX`: more than [`MAX_GROUPS`] groups.
    TooComplex,
}

impl Code {
    /// The code as reports write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::UnsupportedObservationOperator => "E_UNSUPPORTED_OBSERVATION_OPERATOR",
            Code::UnsupportedQualifier => "E_UNSUPPORTED_QUALIFIER",
            Code::UnsupportedOperator => "E_UNSUPPORTED_OPERATOR",
            Code::UnsupportedPath => "E_UNSUPPORTED_PATH",
            Code::UnsatisfiableAnd => "E_UNSATISFIABLE_AND",
            Code::InvalidValue => "E_INVALID_VALUE",
            Code::TooComplex => "E_TOO_COMPLEX",
        }
    }

    /// The ingest category a refusal with this code is counted in: a bad value is the feed's
    /// mistake (`invalid`); the rest is valid STIX that cwn does not match (`unsupported`).
    pub const fn category(self) -> Category {
        match self {
            Code::InvalidValue => Category::Invalid,
            _ => Category::Unsupported,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a pattern cannot be armed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of reason.
    pub code: Code,
    /// The reason in words, with the line and column it concerns.
    pub message: String,
}

impl Problem {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// Every reason a pattern cannot be armed, ordered by [`Code`] (never empty).
///
/// Displayed as `CODE: message; also CODE: message`, one entry per code; further problems
/// with the same code are counted, not repeated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The problems, sorted by code, in pattern order within a code.
    pub problems: Vec<Problem>,
}

impl Refusal {
    fn new(mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.code);
        problems.dedup();
        Refusal { problems }
    }

    /// The first (most fundamental) code.
    pub fn code(&self) -> Code {
        self.problems
            .first()
            .map_or(Code::UnsupportedPath, |p| p.code)
    }

    /// The ingest category of the refusal, decided by its first code.
    pub fn category(&self) -> Category {
        self.code().category()
    }

    /// Whether any problem has this code.
    pub fn has(&self, code: Code) -> bool {
        self.problems.iter().any(|p| p.code == code)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        while i < self.problems.len() {
            let p = &self.problems[i];
            let same = self.problems[i..]
                .iter()
                .take_while(|q| q.code == p.code)
                .count();
            if i > 0 {
                f.write_str("; also ")?;
            }
            write!(f, "{}: {}", p.code, p.message)?;
            if same > 1 {
                write!(f, " (and {} more like it)", same - 1)?;
            }
            i += same;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

/// The one value an `AND`-group arms, with the conditions that travel with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observable {
    /// The kind.
    pub kind: Kind,
    /// The canonical value (FORMATS.md §6).
    pub value: String,
    /// For `network-traffic` endpoints: which end the value was.
    pub direction: Option<Direction>,
    /// A port the same event must show beside a network or host name ([`Kind::IpPort`]
    /// values carry their port in the value instead).
    pub port: Option<u16>,
    /// Conjuncts kept as context rather than conditions (`file:name = 'x.exe'` beside a digest),
    /// written as pattern text.
    pub context: Vec<String>,
    /// What normalisation changed.
    pub notes: Vec<Note>,
}

/// Compiles a parsed pattern into the observables it arms, one per `AND`-group of its
/// disjunctive normal form.
///
/// # Errors
///
/// A [`Refusal`] with every problem found when any part of the pattern cannot be armed: an
/// indicator is armed whole or not at all.
pub fn compile(pattern: &Pattern) -> Result<Vec<Observable>, Refusal> {
    let mut problems = Vec::new();
    let mut observations = Vec::new();
    walk(&pattern.root, &mut observations, &mut problems);
    let mut groups: Vec<Vec<Atom<'_>>> = Vec::new();
    for cmp in observations {
        let dnf = match dnf(cmp, &mut problems) {
            Ok(d) => d,
            Err(p) => return Err(Refusal::new(vec![p])),
        };
        if groups.len() + dnf.len() > MAX_GROUPS {
            return Err(Refusal::new(vec![too_complex()]));
        }
        groups.extend(dnf);
    }
    if !problems.is_empty() {
        return Err(Refusal::new(problems));
    }
    let mut out = Vec::with_capacity(groups.len());
    for group in &groups {
        match reduce(group) {
            Ok(o) => out.push(o),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Refusal::new(problems))
    }
}

fn too_complex() -> Problem {
    Problem::new(
        Code::TooComplex,
        format!(
            "the pattern expands to more than {MAX_GROUPS} alternatives (AND-groups); split it into several indicators"
        ),
    )
}

/// Collects the bracketed observations under `OR`s, and a problem for every other operator
/// and every qualifier (still descending, so that all problems are reported).
fn walk<'a>(
    expr: &'a ObservationExpr,
    observations: &mut Vec<&'a ComparisonExpr>,
    problems: &mut Vec<Problem>,
) {
    match expr {
        ObservationExpr::Observation(c) => observations.push(c),
        ObservationExpr::Combined {
            op,
            operands,
            position,
        } => {
            match op {
                ObservationOp::Or => {}
                ObservationOp::And => problems.push(Problem::new(
                    Code::UnsupportedObservationOperator,
                    format!(
                        "`AND` between observation expressions ({position}) needs several events; cwn matches each event on its own (conditions on one event go inside one `[…]`)"
                    ),
                )),
                ObservationOp::FollowedBy => problems.push(Problem::new(
                    Code::UnsupportedObservationOperator,
                    format!(
                        "`FOLLOWEDBY` ({position}) needs several events in sequence; cwn matches each event on its own"
                    ),
                )),
            }
            for o in operands {
                walk(o, observations, problems);
            }
        }
        ObservationExpr::Qualified {
            expr,
            qualifier,
            position,
        } => {
            problems.push(Problem::new(
                Code::UnsupportedQualifier,
                format!(
                    "`{qualifier}` ({position}) constrains observations over time; cwn matches each event on its own"
                ),
            ));
            walk(expr, observations, problems);
        }
    }
}

/// The endpoint of a `network-traffic` object.
fn side_index(d: Direction) -> usize {
    match d {
        Direction::Dst => 0,
        Direction::Src => 1,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowPart {
    Value,
    Type,
    Port,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EmailRole {
    Address,
    From,
    To,
}

/// What a supported object path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// `ipv4-addr:value`, `ipv6-addr:value`.
    Addr(Family),
    /// `network-traffic:{dst,src}_ref.{value,type}`, `network-traffic:{dst,src}_port`.
    Flow(Direction, FlowPart),
    /// `domain-name:value`.
    DomainName,
    /// `domain-name:resolves_to_refs[*].value`.
    ResolvesTo,
    /// `url:value`.
    Url,
    /// `file:hashes.<KEY>`.
    FileHash(Kind),
    /// `file:name`.
    FileName,
    /// `x509-certificate:hashes.<KEY>`.
    CertHash(Kind),
    /// `email-addr:value`, `email-message:from_ref.value`, `email-message:to_refs[*].value`.
    Email(EmailRole),
    /// `network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'`.
    UserAgent,
}

impl Field {
    /// Whether the field holds addresses, so that `ISSUBSET` applies.
    fn is_address(self) -> bool {
        matches!(
            self,
            Field::Addr(_) | Field::Flow(_, FlowPart::Value) | Field::ResolvesTo
        )
    }
}

const SUPPORTED_PATHS: &str = "cwn matches ipv4-addr:value, ipv6-addr:value, domain-name:value, url:value, email-addr:value, email-message:from_ref.value and to_refs[*].value, file:hashes (MD5, SHA-1, SHA-256, SHA-512), x509-certificate:hashes, network-traffic:dst_ref/src_ref.value (with dst_port/src_port) and the HTTP User-Agent request header";

fn hash_kind(key: &str) -> Option<Kind> {
    let norm: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_uppercase();
    match norm.as_str() {
        "MD5" => Some(Kind::Md5),
        "SHA1" => Some(Kind::Sha1),
        "SHA256" => Some(Kind::Sha256),
        "SHA512" => Some(Kind::Sha512),
        _ => None,
    }
}

fn classify(c: &Comparison) -> Result<Field, Problem> {
    use super::pattern::PathStep;
    let path = &c.path;
    let hash_key = || match path.steps.as_slice() {
        [PathStep::Key(h), PathStep::Key(alg)] if h == "hashes" => Some(alg.as_str()),
        _ => None,
    };
    let unsupported = |why: String| Err(Problem::new(Code::UnsupportedPath, why));
    let field = match path.object_type.as_str() {
        "ipv4-addr" if path.steps_are(&["value"]) => Field::Addr(Family::V4),
        "ipv6-addr" if path.steps_are(&["value"]) => Field::Addr(Family::V6),
        "domain-name" if path.steps_are(&["value"]) => Field::DomainName,
        "domain-name" if path.steps_are(&["resolves_to_refs", "*", "value"]) => Field::ResolvesTo,
        "url" if path.steps_are(&["value"]) => Field::Url,
        "email-addr" if path.steps_are(&["value"]) => Field::Email(EmailRole::Address),
        "email-message" if path.steps_are(&["from_ref", "value"]) => Field::Email(EmailRole::From),
        "email-message" if path.steps_are(&["to_refs", "*", "value"]) => {
            Field::Email(EmailRole::To)
        }
        "file" if path.steps_are(&["name"]) => Field::FileName,
        "file" | "x509-certificate" if hash_key().is_some() => {
            let key = hash_key().unwrap_or_default();
            let Some(kind) = hash_kind(key) else {
                return unsupported(format!(
                    "`{path}` ({}): hash algorithm `{key}` is not matched by cwn (supported: MD5, SHA-1, SHA-256, SHA-512)",
                    c.position
                ));
            };
            if path.object_type == "file" {
                Field::FileHash(kind)
            } else {
                Field::CertHash(kind)
            }
        }
        "network-traffic" => {
            let flow = |side, part| Field::Flow(side, part);
            if path.steps_are(&["dst_ref", "value"]) {
                flow(Direction::Dst, FlowPart::Value)
            } else if path.steps_are(&["src_ref", "value"]) {
                flow(Direction::Src, FlowPart::Value)
            } else if path.steps_are(&["dst_ref", "type"]) {
                flow(Direction::Dst, FlowPart::Type)
            } else if path.steps_are(&["src_ref", "type"]) {
                flow(Direction::Src, FlowPart::Type)
            } else if path.steps_are(&["dst_port"]) {
                flow(Direction::Dst, FlowPart::Port)
            } else if path.steps_are(&["src_port"]) {
                flow(Direction::Src, FlowPart::Port)
            } else if matches!(path.steps.as_slice(),
                [PathStep::Key(e), PathStep::Key(x), PathStep::Key(h), PathStep::Key(ua)]
                    if e == "extensions" && x == "http-request-ext" && h == "request_header"
                        && ua.eq_ignore_ascii_case("user-agent"))
            {
                Field::UserAgent
            } else {
                return unsupported(format!(
                    "`{path}` ({}) is not a path cwn matches; {SUPPORTED_PATHS}",
                    c.position
                ));
            }
        }
        _ => {
            return unsupported(format!(
                "`{path}` ({}) is not a path cwn matches; {SUPPORTED_PATHS}",
                c.position
            ));
        }
    };
    Ok(field)
}

/// The operator problem of a comparison, if any, given its field (when supported).
fn operator_problem(c: &Comparison, field: Option<Field>) -> Option<Problem> {
    let at = c.position;
    let path = &c.path;
    if c.negated {
        return Some(Problem::new(
            Code::UnsupportedOperator,
            format!(
                "`NOT {}` on `{path}` ({at}): a negation matches almost every event, so it cannot select indicators",
                c.operator
            ),
        ));
    }
    let why = match c.operator {
        Operator::Equal | Operator::In => return None,
        Operator::IsSubset => match field {
            Some(f) if !f.is_address() => {
                "ISSUBSET compares addresses with networks, and this path holds no address"
            }
            _ => return None,
        },
        Operator::Matches => "regular expressions are not matched (cost and ReDoS risk)",
        Operator::Like => "wildcard patterns are not matched",
        Operator::IsSuperset => {
            "ISSUPERSET asks for a network containing the value, which telemetry does not report"
        }
        Operator::Exists => "EXISTS holds for almost every event, so it cannot select indicators",
        Operator::NotEqual
        | Operator::Greater
        | Operator::Less
        | Operator::GreaterOrEqual
        | Operator::LessOrEqual => {
            "only `=`, `IN` and `ISSUBSET` select values an index can look up"
        }
    };
    Some(Problem::new(
        Code::UnsupportedOperator,
        format!("`{}` on `{path}` ({at}): {why}", c.operator),
    ))
}

/// One conjunct of an `AND`-group: a comparison with one literal (an `IN` contributes one atom
/// per member to different groups).
#[derive(Clone, Copy, Debug)]
struct Atom<'a> {
    cmp: &'a Comparison,
    field: Field,
    literal: &'a Literal,
}

/// Disjunctive normal form of a comparison expression. Comparisons with problems record them
/// and contribute a neutral empty group, so that the walk goes on collecting problems.
///
/// # Errors
///
/// Only [`Code::TooComplex`], which stops everything.
fn dnf<'a>(
    expr: &'a ComparisonExpr,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Vec<Atom<'a>>>, Problem> {
    match expr {
        ComparisonExpr::Test(c) => {
            let field = match classify(c) {
                Ok(f) => Some(f),
                Err(p) => {
                    problems.push(p);
                    None
                }
            };
            if let Some(p) = operator_problem(c, field) {
                problems.push(p);
                return Ok(vec![Vec::new()]);
            }
            let Some(field) = field else {
                return Ok(vec![Vec::new()]);
            };
            match &c.operand {
                Operand::Literal(literal) => Ok(vec![vec![Atom {
                    cmp: c,
                    field,
                    literal,
                }]]),
                Operand::Set(items) if items.is_empty() => {
                    problems.push(Problem::new(
                        Code::InvalidValue,
                        format!(
                            "`{}` ({}) tests an empty set, which never matches",
                            c.path, c.position
                        ),
                    ));
                    Ok(vec![Vec::new()])
                }
                Operand::Set(items) => {
                    if items.len() > MAX_GROUPS {
                        return Err(too_complex());
                    }
                    Ok(items
                        .iter()
                        .map(|literal| {
                            vec![Atom {
                                cmp: c,
                                field,
                                literal,
                            }]
                        })
                        .collect())
                }
                // EXISTS was refused above.
                Operand::Absent => Ok(vec![Vec::new()]),
            }
        }
        ComparisonExpr::Or(xs) => {
            let mut out = Vec::new();
            for x in xs {
                let d = dnf(x, problems)?;
                if out.len() + d.len() > MAX_GROUPS {
                    return Err(too_complex());
                }
                out.extend(d);
            }
            Ok(out)
        }
        ComparisonExpr::And(xs) => {
            let mut acc: Vec<Vec<Atom<'a>>> = vec![Vec::new()];
            for x in xs {
                let d = dnf(x, problems)?;
                if acc.len().saturating_mul(d.len()) > MAX_GROUPS {
                    return Err(too_complex());
                }
                let mut next = Vec::with_capacity(acc.len() * d.len());
                for left in &acc {
                    for right in &d {
                        let mut g = left.clone();
                        g.extend_from_slice(right);
                        next.push(g);
                    }
                }
                acc = next;
            }
            Ok(acc)
        }
    }
}

/// The atoms of one group, sorted by field.
#[derive(Default)]
struct Slots<'g, 'a> {
    addr: Vec<&'g Atom<'a>>,
    flow_value: [Vec<&'g Atom<'a>>; 2],
    flow_type: [Vec<&'g Atom<'a>>; 2],
    flow_port: [Vec<&'g Atom<'a>>; 2],
    domain: Vec<&'g Atom<'a>>,
    resolves: Vec<&'g Atom<'a>>,
    url: Vec<&'g Atom<'a>>,
    file_hash: Vec<&'g Atom<'a>>,
    file_name: Vec<&'g Atom<'a>>,
    cert_hash: Vec<&'g Atom<'a>>,
    email: [Vec<&'g Atom<'a>>; 3],
    user_agent: Vec<&'g Atom<'a>>,
}

/// Which observable a group arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Addr,
    Flow(Direction),
    Domain,
    Resolves,
    Url,
    File,
    Cert,
    Email(usize),
    UserAgent,
}

fn reduce(group: &[Atom<'_>]) -> Result<Observable, Problem> {
    let mut s = Slots::default();
    for a in group {
        match a.field {
            Field::Addr(_) => s.addr.push(a),
            Field::Flow(d, FlowPart::Value) => s.flow_value[side_index(d)].push(a),
            Field::Flow(d, FlowPart::Type) => s.flow_type[side_index(d)].push(a),
            Field::Flow(d, FlowPart::Port) => s.flow_port[side_index(d)].push(a),
            Field::DomainName => s.domain.push(a),
            Field::ResolvesTo => s.resolves.push(a),
            Field::Url => s.url.push(a),
            Field::FileHash(_) => s.file_hash.push(a),
            Field::FileName => s.file_name.push(a),
            Field::CertHash(_) => s.cert_hash.push(a),
            Field::Email(role) => s.email[role as usize].push(a),
            Field::UserAgent => s.user_agent.push(a),
        }
    }
    let slots: [(Which, &Vec<&Atom<'_>>); 12] = [
        (Which::Addr, &s.addr),
        (Which::Flow(Direction::Dst), &s.flow_value[0]),
        (Which::Flow(Direction::Src), &s.flow_value[1]),
        (Which::Domain, &s.domain),
        (Which::Resolves, &s.resolves),
        (Which::Url, &s.url),
        (Which::File, &s.file_hash),
        (Which::Cert, &s.cert_hash),
        (Which::Email(0), &s.email[0]),
        (Which::Email(1), &s.email[1]),
        (Which::Email(2), &s.email[2]),
        (Which::UserAgent, &s.user_agent),
    ];
    let present: Vec<(Which, &Atom<'_>)> = slots
        .iter()
        .filter_map(|(which, atoms)| atoms.first().map(|a| (*which, *a)))
        .collect();

    let (which, first) = match present.as_slice() {
        [] => return Err(constraint_alone(group)),
        [one] => *one,
        [a, b, ..] => {
            let (a, b) = (a.1, b.1);
            let at = a.cmp.position;
            let message = if present.iter().any(|p| p.0 == Which::Domain)
                && present.iter().any(|p| p.0 == Which::Resolves)
            {
                format!(
                    "`{}` with `{}` ({at}) pairs a DNS query with its answer; cwn arms one value per indicator, and arming either alone would alert on more than the pattern says",
                    a.cmp.path, b.cmp.path
                )
            } else {
                format!(
                    "an AND-group ({at}) needs both `{}` and `{}` in one event; cwn arms one value per indicator, and arming either alone would alert on more than the pattern says (use OR if either alone should alert)",
                    a.cmp.path, b.cmp.path
                )
            };
            return Err(Problem::new(Code::UnsatisfiableAnd, message));
        }
    };

    // Constraints must belong to the observable.
    let flow_side = match which {
        Which::Flow(d) => Some(d),
        _ => None,
    };
    for d in [Direction::Dst, Direction::Src] {
        let i = side_index(d);
        let constraint = s.flow_port[i].first().copied().or_else(|| {
            // A type guard on the other end of the same flow is harmless: every flow has both.
            if flow_side.is_some() {
                None
            } else {
                s.flow_type[i].first().copied()
            }
        });
        if let Some(c) = constraint
            && flow_side != Some(d)
        {
            return Err(Problem::new(
                Code::UnsatisfiableAnd,
                format!(
                    "`{}` ({}) constrains `network-traffic:{}_ref.value`, which this AND-group does not give; cwn pairs a port only with the address on its own end",
                    c.cmp.path,
                    c.cmp.position,
                    if d == Direction::Dst { "dst" } else { "src" }
                ),
            ));
        }
    }
    if which != Which::File
        && let Some(c) = s.file_name.first()
    {
        return Err(Problem::new(
            Code::UnsatisfiableAnd,
            format!(
                "`{}` ({}) is only used beside a file digest, and `{}` is not one",
                c.cmp.path, c.cmp.position, first.cmp.path
            ),
        ));
    }

    let mut obs = Observable {
        kind: Kind::Url,
        value: String::new(),
        direction: None,
        port: None,
        context: Vec::new(),
        notes: Vec::new(),
    };
    match which {
        Which::Addr => {
            let (net, notes) = address(&s.addr)?;
            set_net(&mut obs, net, notes);
        }
        Which::Flow(d) => flow(&mut obs, d, &s)?,
        Which::Domain => {
            let v = same(&s.domain, |a, raw| {
                normalize::domain(raw).map_err(|e| invalid_value(a, raw, &e))
            })?;
            (obs.kind, obs.value) = (Kind::Hostname, v);
        }
        Which::Resolves => {
            return Err(Problem::new(
                Code::UnsupportedPath,
                format!(
                    "`{}` ({}) is an address from a DNS answer without the name queried; cwn cannot arm it on its own (use ipv4-addr:value if any traffic to the address should alert)",
                    first.cmp.path, first.cmp.position
                ),
            ));
        }
        Which::Url => {
            let mut notes = Vec::new();
            let v = same(&s.url, |a, raw| {
                let n = normalize::indicator_value(Kind::Url, raw)
                    .map_err(|e| invalid_value(a, raw, &e))?;
                notes.extend(n.notes);
                Ok(n.value)
            })?;
            (obs.kind, obs.value, obs.notes) = (Kind::Url, v, notes);
        }
        Which::File => digests(&mut obs, &s.file_hash, &s.file_name)?,
        Which::Cert => digests(&mut obs, &s.cert_hash, &[])?,
        Which::Email(i) => {
            let v = same(&s.email[i], |a, raw| {
                normalize::email(raw).map_err(|e| invalid_value(a, raw, &e))
            })?;
            (obs.kind, obs.value) = (Kind::Email, v);
        }
        Which::UserAgent => {
            let v = same(&s.user_agent, |a, raw| {
                normalize::normalize_as(Kind::UserAgent, raw)
                    .map(|n| n.value)
                    .map_err(|e| invalid_value(a, raw, &e))
            })?;
            (obs.kind, obs.value) = (Kind::UserAgent, v);
        }
    }
    obs.notes.dedup();
    Ok(obs)
}

/// The problem of a group made only of constraints (a port, a type guard, a file name).
fn constraint_alone(group: &[Atom<'_>]) -> Problem {
    let message = match group.first() {
        Some(a) => format!(
            "`{}` ({}) alone is not an indicator: a port, endpoint type or file name only narrows an address, network or digest in the same AND-group",
            a.cmp.path, a.cmp.position
        ),
        None => "an empty AND-group selects nothing".to_string(),
    };
    Problem::new(Code::UnsupportedPath, message)
}

fn invalid_value(a: &Atom<'_>, raw: &str, e: &NormalizeError) -> Problem {
    Problem::new(
        Code::InvalidValue,
        format!(
            "`{}` in `{}` ({}): {e}",
            crate::ingest::plain::shorten(raw),
            a.cmp.path,
            a.cmp.position
        ),
    )
}

fn string_of<'a>(a: &Atom<'a>) -> Result<&'a str, Problem> {
    match a.literal {
        Literal::String(s) => Ok(s),
        other => Err(Problem::new(
            Code::InvalidValue,
            format!(
                "`{}` ({}) is compared with {} (`{other}`); it holds text, so the value must be a string '…'",
                a.cmp.path,
                a.cmp.position,
                other.describe()
            ),
        )),
    }
}

/// Normalises every atom of one slot and requires them to agree: one object cannot have two
/// different values for one property.
fn same(
    atoms: &[&Atom<'_>],
    mut norm: impl FnMut(&Atom<'_>, &str) -> Result<String, Problem>,
) -> Result<String, Problem> {
    let mut value: Option<(String, &Atom<'_>)> = None;
    for a in atoms {
        let v = norm(a, string_of(a)?)?;
        match &value {
            None => value = Some((v, a)),
            Some((prev, pa)) if *prev != v => {
                return Err(Problem::new(
                    Code::UnsatisfiableAnd,
                    format!(
                        "`{}` cannot be both `{}` ({}) and `{}` ({}) in one observation",
                        a.cmp.path,
                        crate::ingest::plain::shorten(prev),
                        pa.cmp.position,
                        crate::ingest::plain::shorten(&v),
                        a.cmp.position
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    value
        .map(|(v, _)| v)
        .ok_or_else(|| Problem::new(Code::UnsupportedPath, "no value in the AND-group"))
}

/// The address or network all address atoms of one slot agree on: the narrowest of nested
/// ones (`ISSUBSET '…/24' AND = '…'` is the address).
fn address(atoms: &[&Atom<'_>]) -> Result<(IpNet, Vec<Note>), Problem> {
    let mut acc: Option<(IpNet, &Atom<'_>)> = None;
    let mut notes = Vec::new();
    for a in atoms {
        let raw = string_of(a)?;
        let n = normalize::ip_or_cidr(raw).map_err(|e| invalid_value(a, raw, &e))?;
        if let Field::Addr(family) = a.field {
            let v6 = raw.contains(':');
            if (family == Family::V4) == v6 {
                return Err(Problem::new(
                    Code::InvalidValue,
                    format!(
                        "`{}` in `{}` ({}) is an {} address",
                        crate::ingest::plain::shorten(raw),
                        a.cmp.path,
                        a.cmp.position,
                        if v6 { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
        }
        let net = match n.kind {
            Kind::Cidr => n.value.parse::<IpNet>().ok(),
            _ => n.value.parse::<IpAddr>().ok().map(IpNet::from),
        }
        .ok_or_else(|| {
            Problem::new(
                Code::InvalidValue,
                format!(
                    "`{}` in `{}` ({}) is not an address",
                    n.value, a.cmp.path, a.cmp.position
                ),
            )
        })?;
        if a.cmp.operator == Operator::Equal && n.kind == Kind::Cidr {
            return Err(Problem::new(
                Code::UnsupportedOperator,
                format!(
                    "`=` with the network `{}` on `{}` ({}) compares with the network itself; use ISSUBSET to match the addresses in it",
                    n.value, a.cmp.path, a.cmp.position
                ),
            ));
        }
        notes.extend(n.notes);
        acc = Some(match acc {
            None => (net, *a),
            Some((prev, pa)) => {
                if prev.contains(&net) {
                    (net, *a)
                } else if net.contains(&prev) {
                    (prev, pa)
                } else {
                    return Err(Problem::new(
                        Code::UnsatisfiableAnd,
                        format!(
                            "`{}` cannot be in both `{prev}` ({}) and `{net}` ({}) in one observation",
                            a.cmp.path, pa.cmp.position, a.cmp.position
                        ),
                    ));
                }
            }
        });
    }
    acc.map(|(net, _)| (net, notes))
        .ok_or_else(|| Problem::new(Code::UnsupportedPath, "no address in the AND-group"))
}

fn set_net(obs: &mut Observable, net: IpNet, notes: Vec<Note>) {
    if net.prefix_len() == net.max_prefix_len() {
        obs.kind = if net.addr().is_ipv4() {
            Kind::Ipv4
        } else {
            Kind::Ipv6
        };
        obs.value = net.addr().to_string();
    } else {
        obs.kind = Kind::Cidr;
        obs.value = net.to_string();
    }
    obs.notes = notes;
}

/// A `network-traffic` endpoint: address, network or host name, with its type guard checked
/// and its port attached.
fn flow(obs: &mut Observable, d: Direction, s: &Slots<'_, '_>) -> Result<(), Problem> {
    let i = side_index(d);
    obs.direction = Some(d);
    let guard = if s.flow_type[i].is_empty() {
        None
    } else {
        Some(same(&s.flow_type[i], |_, raw| Ok(raw.to_string()))?)
    };
    for other in &s.flow_type[1 - i] {
        check_guard(other, string_of(other)?)?;
    }
    if let (Some(g), Some(a)) = (&guard, s.flow_type[i].first()) {
        check_guard(a, g)?;
    }
    if !s.flow_port[i].is_empty() {
        // Ports may be integers or (as misp-stix writes them) numeric strings.
        let mut port: Option<(u16, &Atom<'_>)> = None;
        for a in &s.flow_port[i] {
            let raw = match a.literal {
                Literal::Int(n) => n.to_string(),
                Literal::String(t) => t.clone(),
                other => {
                    return Err(Problem::new(
                        Code::InvalidValue,
                        format!(
                            "`{}` ({}) is compared with {}; a port is an integer",
                            a.cmp.path,
                            a.cmp.position,
                            other.describe()
                        ),
                    ));
                }
            };
            let p = normalize::port(&raw).map_err(|e| invalid_value(a, &raw, &e))?;
            match port {
                Some((prev, pa)) if prev != p => {
                    return Err(Problem::new(
                        Code::UnsatisfiableAnd,
                        format!(
                            "`{}` cannot be both {prev} ({}) and {p} ({}) in one flow",
                            a.cmp.path, pa.cmp.position, a.cmp.position
                        ),
                    ));
                }
                _ => port = Some((p, a)),
            }
        }
        obs.port = port.map(|(p, _)| p);
    }
    let values = &s.flow_value[i];
    let first = values[0];
    let is_name = match guard.as_deref() {
        Some("domain-name") => true,
        Some(_) => false,
        // No guard: the value decides. Anything address-like is read as an address, so that a
        // mistyped address is reported as one rather than as a strange host name.
        None => {
            let raw = string_of(first)?;
            !(raw.contains(':')
                || raw
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'/')
                || normalize::ip_or_cidr(raw).is_ok())
        }
    };
    if is_name {
        if let Some(a) = values.iter().find(|a| a.cmp.operator == Operator::IsSubset) {
            return Err(Problem::new(
                Code::UnsupportedOperator,
                format!(
                    "`ISSUBSET` on `{}` ({}) needs an address, and this endpoint is a domain name",
                    a.cmp.path, a.cmp.position
                ),
            ));
        }
        obs.kind = Kind::Hostname;
        obs.value = same(values, |a, raw| {
            normalize::domain(raw).map_err(|e| invalid_value(a, raw, &e))
        })?;
        return Ok(());
    }
    let (net, notes) = address(values)?;
    let want_v6 = match guard.as_deref() {
        Some("ipv4-addr") => Some(false),
        Some("ipv6-addr") => Some(true),
        _ => None,
    };
    if let Some(v6) = want_v6
        && net.addr().is_ipv6() != v6
    {
        return Err(Problem::new(
            Code::UnsatisfiableAnd,
            format!(
                "`{}` ({}) is an {} address, but the endpoint type says `{}`",
                first.cmp.path,
                first.cmp.position,
                if net.addr().is_ipv6() { "IPv6" } else { "IPv4" },
                guard.as_deref().unwrap_or_default()
            ),
        ));
    }
    match obs.port {
        Some(port) if net.prefix_len() == net.max_prefix_len() => {
            obs.kind = Kind::IpPort;
            obs.value = normalize::format_ip_port(net.addr(), port);
            obs.port = None;
            obs.notes = notes;
        }
        port => {
            set_net(obs, net, notes);
            obs.port = port;
        }
    }
    Ok(())
}

fn check_guard(a: &Atom<'_>, value: &str) -> Result<(), Problem> {
    match value {
        "ipv4-addr" | "ipv6-addr" | "domain-name" => Ok(()),
        "mac-addr" => Err(Problem::new(
            Code::UnsupportedPath,
            format!(
                "`{}` ({}) names a MAC address endpoint, which cwn does not match",
                a.cmp.path, a.cmp.position
            ),
        )),
        other => Err(Problem::new(
            Code::InvalidValue,
            format!(
                "`{}` ({}) is `{}`; a network-traffic endpoint is an ipv4-addr, ipv6-addr, domain-name or mac-addr",
                a.cmp.path,
                a.cmp.position,
                crate::ingest::plain::shorten(other)
            ),
        )),
    }
}

/// The digest a group of digests of one object arms: SHA-256, else SHA-1, MD5, SHA-512 (the
/// order of how often telemetry carries them). The other digests and the file name are context.
fn digests(obs: &mut Observable, hashes: &[&Atom<'_>], names: &[&Atom<'_>]) -> Result<(), Problem> {
    let mut by_kind: Vec<(Kind, String, &Atom<'_>)> = Vec::new();
    for a in hashes {
        let (Field::FileHash(kind) | Field::CertHash(kind)) = a.field else {
            continue;
        };
        let raw = string_of(a)?;
        let v = normalize::hash(kind, raw).map_err(|e| invalid_value(a, raw, &e))?;
        match by_kind.iter().find(|(k, _, _)| *k == kind) {
            Some((_, prev, pa)) if *prev != v => {
                return Err(Problem::new(
                    Code::UnsatisfiableAnd,
                    format!(
                        "one object cannot have two {kind} digests `{prev}` ({}) and `{v}` ({})",
                        pa.cmp.position, a.cmp.position
                    ),
                ));
            }
            Some(_) => {}
            None => by_kind.push((kind, v, a)),
        }
    }
    let rank = |k: Kind| match k {
        Kind::Sha256 => 0,
        Kind::Sha1 => 1,
        Kind::Md5 => 2,
        _ => 3,
    };
    by_kind.sort_by_key(|(k, _, _)| rank(*k));
    let mut it = by_kind.into_iter();
    let Some((kind, value, _)) = it.next() else {
        return Err(Problem::new(
            Code::UnsupportedPath,
            "no digest in the AND-group",
        ));
    };
    obs.kind = kind;
    obs.value = value;
    obs.context = it
        .map(|(_, _, a)| a.cmp.to_string())
        .chain(names.iter().map(|a| a.cmp.to_string()))
        .collect();
    obs.context.dedup();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::pattern::parse;
    use super::*;

    type Arm = (Kind, String, Option<Direction>, Option<u16>);

    fn arm(p: &str) -> Vec<Arm> {
        let tree = parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        compile(&tree)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .into_iter()
            .map(|o| (o.kind, o.value, o.direction, o.port))
            .collect()
    }

    fn refuse(p: &str) -> Refusal {
        let tree = parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        match compile(&tree) {
            Ok(o) => panic!("{p} armed {o:?}"),
            Err(r) => r,
        }
    }

    #[test]
    fn supported_patterns_arm_one_observable_per_group() {
        use Direction::*;
        use Kind::*;
        let s = |v: &str| v.to_string();
        let cases: Vec<(&str, Vec<Arm>)> = vec![
            (
                "[ipv4-addr:value = '198.51.100.23']",
                vec![(Ipv4, s("198.51.100.23"), None, None)],
            ),
            (
                "[ipv4-addr:value = '198.51.100.1/32']",
                vec![(Ipv4, s("198.51.100.1"), None, None)],
            ),
            (
                "[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
                vec![(Cidr, s("198.51.100.0/24"), None, None)],
            ),
            (
                "[ipv6-addr:value = '2001:0db8:dead:beef:dead:beef:dead:0001/128']",
                vec![(Ipv6, s("2001:db8:dead:beef:dead:beef:dead:1"), None, None)],
            ),
            (
                "[domain-name:value = 'Bad-Login.Example.com' OR domain-name:value = 'login-verify.example.net']",
                vec![
                    (Hostname, s("bad-login.example.com"), None, None),
                    (Hostname, s("login-verify.example.net"), None, None),
                ],
            ),
            (
                r"[url:value = 'https://files.example.org/get?name=o\'brien.zip']",
                vec![(
                    Url,
                    s("https://files.example.org/get?name=o%27brien.zip"),
                    None,
                    None,
                )],
            ),
            (
                "[file:hashes.'SHA-256' = '68ECB6C8573B658705EC3432DCDDC6C2CF82B97C1A4818F355A8E0F7AEE6E5E5' OR file:hashes.MD5 = 'e69894213ec071803808fb5c7e66ab8d'] OR [file:hashes.SHA1 = 'affad9f0e9e8c1ae6b5b4e8ab3bd7b5fe3e25990']",
                vec![
                    (
                        Sha256,
                        s("68ecb6c8573b658705ec3432dcddc6c2cf82b97c1a4818f355a8e0f7aee6e5e5"),
                        None,
                        None,
                    ),
                    (Md5, s("e69894213ec071803808fb5c7e66ab8d"), None, None),
                    (
                        Sha1,
                        s("affad9f0e9e8c1ae6b5b4e8ab3bd7b5fe3e25990"),
                        None,
                        None,
                    ),
                ],
            ),
            (
                "[x509-certificate:hashes.'SHA-256' = '57b02e3d4be8c7dba2d0b4a8ac1d8c4c5d6f7e8a9b0c1d2e3f4a5b6c7d8e1d78']",
                vec![(
                    Sha256,
                    s("57b02e3d4be8c7dba2d0b4a8ac1d8c4c5d6f7e8a9b0c1d2e3f4a5b6c7d8e1d78"),
                    None,
                    None,
                )],
            ),
            (
                "[email-addr:value = 'Phisher@Example.ORG' OR email-message:from_ref.value = 'a@example.org' OR email-message:to_refs[*].value = 'b@example.org']",
                vec![
                    (Email, s("phisher@example.org"), None, None),
                    (Email, s("a@example.org"), None, None),
                    (Email, s("b@example.org"), None, None),
                ],
            ),
            (
                "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value ISSUBSET '203.0.113.0/28' AND network-traffic:dst_port = 8443]",
                vec![(Cidr, s("203.0.113.0/28"), Some(Dst), Some(8443))],
            ),
            (
                "[network-traffic:dst_ref.value = '203.0.113.45' AND network-traffic:dst_port = '8443']",
                vec![(IpPort, s("203.0.113.45:8443"), Some(Dst), None)],
            ),
            (
                "[network-traffic:src_ref.type = 'ipv6-addr' AND network-traffic:src_ref.value = '2001:db8:bad::10' AND network-traffic:dst_ref.type = 'ipv4-addr']",
                vec![(Ipv6, s("2001:db8:bad::10"), Some(Src), None)],
            ),
            (
                "[network-traffic:dst_ref.value = 'cafe.be']",
                vec![(Hostname, s("cafe.be"), Some(Dst), None)],
            ),
            (
                "[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'C2.malware.test' AND network-traffic:dst_port = 4443]",
                vec![(Hostname, s("c2.malware.test"), Some(Dst), Some(4443))],
            ),
            (
                "[network-traffic:dst_ref.value IN ('198.51.100.1', '198.51.100.2') AND network-traffic:dst_port IN (80, 443)]",
                vec![
                    (IpPort, s("198.51.100.1:80"), Some(Dst), None),
                    (IpPort, s("198.51.100.1:443"), Some(Dst), None),
                    (IpPort, s("198.51.100.2:80"), Some(Dst), None),
                    (IpPort, s("198.51.100.2:443"), Some(Dst), None),
                ],
            ),
            (
                "[ipv4-addr:value ISSUBSET '198.51.100.0/24' AND ipv4-addr:value = '198.51.100.7']",
                vec![(Ipv4, s("198.51.100.7"), None, None)],
            ),
            (
                "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = ' Mozilla/5.0 (compatible; SyntheticLoader/1.0) ']",
                vec![(
                    UserAgent,
                    s("Mozilla/5.0 (compatible; SyntheticLoader/1.0)"),
                    None,
                    None,
                )],
            ),
        ];
        for (p, want) in cases {
            assert_eq!(arm(p), want, "{p}");
        }
    }

    #[test]
    fn file_digest_groups_keep_the_rest_as_context() {
        let p = parse(
            "[file:name = 'svc-update.exe' AND file:hashes.MD5 = 'e69894213ec071803808fb5c7e66ab8d' AND file:hashes.'SHA-256' = 'a668a668a668a668a668a668a668a668a668a668a668a668a668a668a661bc0c']",
        )
        .unwrap();
        let o = compile(&p).unwrap().remove(0);
        assert_eq!(o.kind, Kind::Sha256);
        assert_eq!(
            o.context,
            vec![
                "file:hashes.MD5 = 'e69894213ec071803808fb5c7e66ab8d'".to_string(),
                "file:name = 'svc-update.exe'".to_string()
            ]
        );
    }

    #[test]
    fn unsupported_patterns_say_why_first_reason_first() {
        use Code::*;
        let cases: &[(&str, Code, &[Code], &str)] = &[
            (
                "([ipv4-addr:value = '192.0.2.66'] FOLLOWEDBY [domain-name:value = 'stage2.malware.test']) WITHIN 600 SECONDS",
                UnsupportedObservationOperator,
                &[UnsupportedQualifier],
                "`FOLLOWEDBY` (line 1 column 35)",
            ),
            (
                "[a:b = 1] AND [ipv4-addr:value = '192.0.2.1']",
                UnsupportedObservationOperator,
                &[UnsupportedPath],
                "`AND` between observation expressions",
            ),
            (
                "[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES",
                UnsupportedQualifier,
                &[],
                "`REPEATS 5 TIMES` (line 1 column 33)",
            ),
            (
                "[ipv4-addr:value != '192.0.2.1']",
                UnsupportedOperator,
                &[],
                "`!=` on `ipv4-addr:value`",
            ),
            (
                "[url:value MATCHES '^http']",
                UnsupportedOperator,
                &[],
                "regular expressions",
            ),
            (
                "[domain-name:value LIKE '%.test']",
                UnsupportedOperator,
                &[],
                "wildcard",
            ),
            (
                "[network-traffic:src_port NOT IN (80, 443)]",
                UnsupportedOperator,
                &[],
                "`NOT IN`",
            ),
            (
                "[EXISTS ipv4-addr:value]",
                UnsupportedOperator,
                &[],
                "EXISTS",
            ),
            (
                "[url:value ISSUBSET '198.51.100.0/24']",
                UnsupportedOperator,
                &[],
                "holds no address",
            ),
            (
                "[ipv4-addr:value = '198.51.100.0/24']",
                UnsupportedOperator,
                &[],
                "use ISSUBSET",
            ),
            (
                "[process:name = 'x.exe']",
                UnsupportedPath,
                &[],
                "`process:name` (line 1 column 2) is not a path cwn matches",
            ),
            (
                "[file:hashes.SSDEEP = '3:a:b']",
                UnsupportedPath,
                &[],
                "hash algorithm `SSDEEP`",
            ),
            ("[file:hashes.TLSH = 'T1']", UnsupportedPath, &[], "`TLSH`"),
            (
                "[network-traffic:dst_port = 8443]",
                UnsupportedPath,
                &[],
                "alone is not an indicator",
            ),
            (
                "[file:name = 'invoice.pdf.exe']",
                UnsupportedPath,
                &[],
                "alone is not an indicator",
            ),
            (
                "[domain-name:resolves_to_refs[*].value = '198.51.100.1']",
                UnsupportedPath,
                &[],
                "DNS answer",
            ),
            (
                "[domain-name:value = 'www.5z8.info' AND domain-name:resolves_to_refs[*].value = '198.51.100.1/32']",
                UnsatisfiableAnd,
                &[],
                "pairs a DNS query with its answer",
            ),
            (
                "[ipv4-addr:value = '192.0.2.1' AND file:name = 'x']",
                UnsatisfiableAnd,
                &[],
                "only used beside a file digest",
            ),
            (
                "[ipv4-addr:value = '192.0.2.1' AND url:value = 'http://a.example/']",
                UnsatisfiableAnd,
                &[],
                "needs both `ipv4-addr:value` and `url:value`",
            ),
            (
                "[ipv4-addr:value = '192.0.2.1' AND ipv4-addr:value = '192.0.2.2']",
                UnsatisfiableAnd,
                &[],
                "cannot be in both",
            ),
            (
                "[(domain-name:value = 'a.example.com' OR domain-name:value = 'b.example.com') AND domain-name:value = 'a.example.com']",
                UnsatisfiableAnd,
                &[],
                "cannot be both `b.example.com` (line 1 column 42) and `a.example.com` (line 1 column 83)",
            ),
            (
                "[network-traffic:dst_ref.value = '192.0.2.1' AND network-traffic:src_port = 4444]",
                UnsatisfiableAnd,
                &[],
                "only with the address on its own end",
            ),
            (
                "[network-traffic:dst_ref.value = '192.0.2.1' AND network-traffic:src_ref.value = '192.0.2.2']",
                UnsatisfiableAnd,
                &[],
                "needs both",
            ),
            (
                "[network-traffic:dst_ref.type = 'ipv6-addr' AND network-traffic:dst_ref.value = '192.0.2.1']",
                UnsatisfiableAnd,
                &[],
                "endpoint type says `ipv6-addr`",
            ),
            (
                "[file:hashes.MD5 = 'e69894213ec071803808fb5c7e66ab8d' AND file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
                UnsatisfiableAnd,
                &[],
                "two md5 digests",
            ),
            (
                "[file:hashes.'SHA-256' = 'f00']",
                InvalidValue,
                &[],
                "3 hex digits, expected 64",
            ),
            (
                "[ipv4-addr:value = '999.1.1.1']",
                InvalidValue,
                &[],
                "`999.1.1.1` in `ipv4-addr:value`",
            ),
            (
                "[ipv4-addr:value = '2001:db8::1']",
                InvalidValue,
                &[],
                "is an IPv6 address",
            ),
            (
                "[network-traffic:dst_ref.value = '192.0.2.1' AND network-traffic:dst_port = 70000]",
                InvalidValue,
                &[],
                "port",
            ),
            (
                "[ipv4-addr:value = 3232235521]",
                InvalidValue,
                &[],
                "must be a string",
            ),
            ("[url:value IN ()]", InvalidValue, &[], "empty set"),
            (
                "[ipv4-addr:value ISSUBSET '10.0.0.0/4']",
                InvalidValue,
                &[],
                "too broad",
            ),
            (
                "[process:name MATCHES 'x'] FOLLOWEDBY [url:value = 'http://a.example/'] WITHIN 5 SECONDS",
                UnsupportedObservationOperator,
                &[UnsupportedQualifier, UnsupportedOperator, UnsupportedPath],
                "FOLLOWEDBY",
            ),
        ];
        for (p, first, also, msg) in cases {
            let r = refuse(p);
            assert_eq!(r.code(), *first, "{p}: {r}");
            for code in *also {
                assert!(r.has(*code), "{p}: {r} lacks {code}");
            }
            let text = r.to_string();
            assert!(text.starts_with(first.as_str()), "{p}: {text}");
            assert!(text.contains(msg), "{p}: {text}");
        }
    }

    #[test]
    fn refusal_text_lists_every_code_once() {
        let r = refuse(
            "([ipv4-addr:value = '192.0.2.66'] FOLLOWEDBY [domain-name:value = 'stage2.malware.test']) WITHIN 600 SECONDS",
        );
        assert_eq!(
            r.to_string(),
            "E_UNSUPPORTED_OBSERVATION_OPERATOR: `FOLLOWEDBY` (line 1 column 35) needs several events in sequence; cwn matches each event on its own; also E_UNSUPPORTED_QUALIFIER: `WITHIN 600 SECONDS` (line 1 column 91) constrains observations over time; cwn matches each event on its own"
        );
        assert_eq!(r.category(), Category::Unsupported);
        let r = refuse("[process:name = 'a'] OR [process:pid = 1] OR [process:cwd = 'c']");
        assert!(r.to_string().ends_with("(and 2 more like it)"), "{r}");
        assert_eq!(
            refuse("[ipv4-addr:value = 'x']").category(),
            Category::Invalid
        );
    }

    #[test]
    fn dnf_explosion_is_refused() {
        let or = |n: usize| {
            (0..n)
                .map(|i| format!("ipv4-addr:value = '192.0.2.{}'", i % 250 + 1))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        // 16 × 16 = 256 groups is the limit…
        let ok = format!("[({}) AND ({})]", or(16), or(16));
        assert_eq!(refuse(&ok).code(), Code::UnsatisfiableAnd);
        // …17 × 16 is over it.
        let big = format!("[({}) AND ({})]", or(17), or(16));
        assert_eq!(refuse(&big).code(), Code::TooComplex);
        let many = (0..300)
            .map(|i| format!("[ipv4-addr:value = '192.0.2.{}']", i % 250 + 1))
            .collect::<Vec<_>>()
            .join(" OR ");
        assert_eq!(refuse(&many).code(), Code::TooComplex);
        let chain = format!(
            "[{}]",
            vec!["(ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2')"; 40]
                .join(" AND ")
        );
        assert_eq!(refuse(&chain).code(), Code::TooComplex);
    }
}
