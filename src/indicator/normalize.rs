//! Normalisation of indicator and telemetry values (FORMATS.md §6).
//!
//! Indicators and telemetry go through the *same* functions so that a match is a comparison of
//! canonical forms. The one exception is [`refang`], which only ever applies to indicator input:
//! telemetry is never defanged.
//!
//! Every function takes a `&str` and returns the canonical form or a [`NormalizeError`] whose
//! text says what is wrong; none panics on any input (a property test and a fuzz target hold
//! them to that).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Kind;

/// Shortest IPv4 prefix accepted as an indicator; anything broader is rejected as too broad.
pub const MIN_PREFIX_V4: u8 = 8;
/// Shortest IPv6 prefix accepted as an indicator.
pub const MIN_PREFIX_V6: u8 = 24;
/// Longest value accepted at all (a URL or User-Agent longer than this is not an indicator).
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// Why a value could not be normalised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// Nothing left after trimming.
    #[error("empty value")]
    Empty,
    /// Longer than [`MAX_VALUE_LEN`].
    #[error("value is {0} bytes long, more than the {MAX_VALUE_LEN} accepted")]
    TooLong(usize),
    /// The value is not a valid instance of the kind.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// What the value was meant to be.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A network so wide that matching it would flood recipients.
    #[error(
        "network {0} is too broad to be an indicator (shortest accepted: /{MIN_PREFIX_V4} IPv4, /{MIN_PREFIX_V6} IPv6)"
    )]
    TooBroad(IpNet),
    /// The value is a pattern (regular expression or glob), not a literal.
    #[error("`{0}` looks like a pattern, not a literal value; lists hold literal values")]
    Pattern(String),
}

fn invalid(kind: &'static str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Invalid {
        kind,
        reason: reason.into(),
    }
}

/// Something worth reporting about a value that was nevertheless accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// The value was written defanged and has been refanged.
    Refanged,
    /// A CIDR had host bits set; they were cleared.
    HostBitsCleared,
    /// An IPv4-mapped IPv6 address was turned into IPv4.
    MappedToIpv4,
}

/// A value in canonical form, with its (possibly refined) kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The kind after normalisation: a `/32` CIDR becomes [`Kind::Ipv4`], `::ffff:a.b.c.d`
    /// becomes [`Kind::Ipv4`].
    pub kind: Kind,
    /// The canonical text.
    pub value: String,
    /// What was changed on the way, for reports.
    pub notes: Vec<Note>,
}

impl Normalized {
    fn new(kind: Kind, value: String) -> Self {
        Normalized {
            kind,
            value,
            notes: Vec::new(),
        }
    }

    fn note(mut self, note: Note) -> Self {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        self
    }
}

fn prepare(raw: &str) -> Result<&str, NormalizeError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if s.len() > MAX_VALUE_LEN {
        return Err(NormalizeError::TooLong(s.len()));
    }
    Ok(s)
}

/// Rewrites defanged forms back into their live form (FORMATS.md §6.1): `hxxp`/`hxtp`/`htxp`/
/// `h[tt]p`/`fxp` schemes, `[.]`, `(.)`, `{.}`, `[dot]`, `(dot)`, `[@]`, `[at]`, `[:]`, `[/]`,
/// `[://]`. IPv6 brackets in URLs are left alone. Returns `Cow::Borrowed` when nothing changed.
pub fn refang(raw: &str) -> Cow<'_, str> {
    const TOKENS: &[(&str, &str)] = &[
        ("[://]", "://"),
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("[@]", "@"),
        ("[at]", "@"),
        ("(at)", "@"),
        ("[:]", ":"),
        ("[/]", "/"),
    ];
    let lower_start: String = raw
        .trim_start()
        .chars()
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    let scheme_fix = [
        ("[hxxp", "http"),
        ("hxxp", "http"),
        ("hxtp", "http"),
        ("htxp", "http"),
        ("h[tt]p", "http"),
        ("fxp", "ftp"),
    ]
    .into_iter()
    .find(|(bad, _)| {
        // Only a scheme: `fxp.example.com` and `hxxp-free.example` are names, not URLs.
        lower_start.strip_prefix(bad).is_some_and(|rest| {
            let rest = rest.strip_prefix('s').unwrap_or(rest);
            ["://", "[://]", "[:]//", ":]//"]
                .iter()
                .any(|sep| rest.starts_with(sep))
        })
    });
    let has_token = raw.contains(['[', '(', '{']);
    if scheme_fix.is_none() && !has_token {
        return Cow::Borrowed(raw);
    }
    let mut s = raw.trim_start().to_string();
    if let Some((bad, good)) = scheme_fix {
        let mut rest = s[bad.len()..].to_string();
        // `[hxxp://]` wraps the whole scheme: drop its closing bracket.
        if bad.starts_with('[') {
            if let Some(r) = rest.strip_prefix("s://]") {
                rest = format!("s://{r}");
            } else if let Some(r) = rest.strip_prefix("://]") {
                rest = format!("://{r}");
            }
        }
        s = format!("{good}{rest}");
    }
    if has_token {
        for (bad, good) in TOKENS {
            if s.contains(bad) {
                s = s.replace(bad, good);
            }
            // Upper-case variants such as `[DOT]` and `[AT]`.
            let upper = bad.to_ascii_uppercase();
            if upper != *bad && s.contains(&upper) {
                s = s.replace(&upper, good);
            }
        }
    }
    if s == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(s)
    }
}

/// Parses one IP address strictly: dotted-quad IPv4 without leading zeros, or IPv6 (a zone id
/// `%eth0` is dropped). An IPv4-mapped IPv6 address is returned as IPv4.
pub fn ip(raw: &str) -> Result<IpAddr, NormalizeError> {
    let s = prepare(raw)?;
    ip_parsed(s).ok_or_else(|| {
        if s.contains(':') {
            let s = s.split_once('%').map_or(s, |(a, _)| a);
            invalid("IPv6 address", format!("`{s}` is not an IPv6 address"))
        } else {
            // std rejects leading zeros (`010.0.0.1` is ambiguous: octal or decimal), as §6.3
            // asks.
            invalid(
                "IPv4 address",
                format!("`{s}` is not a dotted-quad IPv4 address"),
            )
        }
    })
}

/// [`ip`] without the reason: `None` where it fails, and nothing allocated either way — for
/// telemetry, where most values tried as an address (a DNS answer that is a name, a Host with a
/// port) are not one.
pub fn ip_parsed(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    if s.contains(':') {
        let s = s.split_once('%').map_or(s, |(a, _)| a);
        let v6: Ipv6Addr = s.parse().ok()?;
        Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        })
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// [`ip`] for a plain dotted quad, straight from the bytes: no trimming, no error values.
/// `Some` only where [`ip`] gives the same address; `None` means "ask [`ip`]" (IPv6, spaces,
/// leading zeros, anything unusual), not "invalid".
#[inline]
pub fn ipv4_fast(raw: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&raw.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut val: u32 = 0;
    let mut digits = 0;
    for &b in raw {
        match b {
            b'0'..=b'9' => {
                // std rejects leading zeros (`01`) and more than three digits.
                if digits == 3 || (digits == 1 && val == 0) {
                    return None;
                }
                val = val * 10 + u32::from(b - b'0');
                digits += 1;
            }
            b'.' => {
                if digits == 0 || val > 255 || part == 3 {
                    return None;
                }
                octets[part] = val as u8;
                part += 1;
                val = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 || val > 255 {
        return None;
    }
    octets[3] = val as u8;
    Some(Ipv4Addr::from(octets))
}

/// Whether `raw` begins and ends with a byte that `str::trim` keeps, so that trimming it is a
/// no-op (non-ASCII edges answer `false`: they might be Unicode white space).
#[inline]
pub fn untrimmed(raw: &[u8]) -> bool {
    let keeps = |b: u8| b.is_ascii() && !char::from(b).is_whitespace();
    matches!((raw.first(), raw.last()), (Some(&a), Some(&z)) if keeps(a) && keeps(z))
}

/// Parses a network in CIDR notation. Host bits are cleared (reported as
/// [`Note::HostBitsCleared`]); a host-length prefix (`/32`, `/128`) yields an address kind;
/// IPv4-mapped IPv6 networks become IPv4 networks.
pub fn cidr(raw: &str) -> Result<Normalized, NormalizeError> {
    let s = prepare(raw)?;
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| invalid("CIDR", format!("`{s}` has no `/prefix`")))?;
    let len: u8 = len
        .trim()
        .parse()
        .map_err(|_| invalid("CIDR", format!("prefix length `{len}` is not a number")))?;
    let mut notes = Vec::new();
    let addr_ip = ip(addr)?;
    let raw_is_v6 = addr.contains(':');
    let net: IpNet = match addr_ip {
        IpAddr::V4(v4) => {
            // A mapped IPv6 network `::ffff:a.b.c.d/120` is the IPv4 network `/24`.
            let len = if raw_is_v6 {
                notes.push(Note::MappedToIpv4);
                len.checked_sub(96).ok_or_else(|| {
                    invalid("CIDR", format!("prefix /{len} is wider than ::ffff:0:0/96"))
                })?
            } else {
                len
            };
            Ipv4Net::new(v4, len)
                .map_err(|_| invalid("CIDR", format!("prefix /{len} is longer than 32")))?
                .into()
        }
        IpAddr::V6(v6) => Ipv6Net::new(v6, len)
            .map_err(|_| invalid("CIDR", format!("prefix /{len} is longer than 128")))?
            .into(),
    };
    let trunc = net.trunc();
    if trunc != net {
        notes.push(Note::HostBitsCleared);
    }
    let min = match trunc {
        IpNet::V4(_) => MIN_PREFIX_V4,
        IpNet::V6(_) => MIN_PREFIX_V6,
    };
    if trunc.prefix_len() < min {
        return Err(NormalizeError::TooBroad(trunc));
    }
    let out = if trunc.prefix_len() == trunc.max_prefix_len() {
        match trunc.addr() {
            IpAddr::V4(a) => Normalized::new(Kind::Ipv4, a.to_string()),
            IpAddr::V6(a) => Normalized::new(Kind::Ipv6, a.to_string()),
        }
    } else {
        Normalized::new(Kind::Cidr, trunc.to_string())
    };
    Ok(notes.into_iter().fold(out, Normalized::note))
}

/// An address, or a network when the value has a `/prefix`.
pub fn ip_or_cidr(raw: &str) -> Result<Normalized, NormalizeError> {
    let s = prepare(raw)?;
    if s.contains('/') {
        return cidr(s);
    }
    let mapped = s.contains(':');
    Ok(match ip(s)? {
        IpAddr::V4(a) => {
            let n = Normalized::new(Kind::Ipv4, a.to_string());
            if mapped {
                n.note(Note::MappedToIpv4)
            } else {
                n
            }
        }
        IpAddr::V6(a) => Normalized::new(Kind::Ipv6, a.to_string()),
    })
}

/// A port number 1–65535 (numeric strings accepted, as MISP and misp-stix write them).
pub fn port(raw: &str) -> Result<u16, NormalizeError> {
    let s = prepare(raw)?;
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(invalid(
            "port",
            format!("`{s}` is not a port number 1-65535"),
        )),
    }
}

/// Formats an address and port canonically: `a.b.c.d:p` or `[v6]:p`.
pub fn format_ip_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Parses `198.51.100.23:80`, `[2001:db8::1]:80`, `198.51.100.23|80` (MISP) into the canonical
/// `ip:port` form.
pub fn ip_port(raw: &str) -> Result<Normalized, NormalizeError> {
    let s = prepare(raw)?;
    let (addr, p) = if let Some(rest) = s.strip_prefix('[') {
        let (a, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("ip:port", "unclosed `[` around the IPv6 address"))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| invalid("ip:port", "expected `:port` after `]`"))?;
        (a, p)
    } else if let Some((a, p)) = s.split_once('|') {
        (a, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| invalid("ip:port", format!("`{s}` has no `:port`")))?
    };
    if addr.contains('/') {
        return Err(invalid("ip:port", "a network cannot carry a port"));
    }
    let a = ip(addr)?;
    let p = port(p)?;
    let out = Normalized::new(Kind::IpPort, format_ip_port(a, p));
    Ok(if a.is_ipv4() && addr.contains(':') {
        out.note(Note::MappedToIpv4)
    } else {
        out
    })
}

/// Splits a canonical `ip:port` value back into its parts.
pub fn split_ip_port(value: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = value.rsplit_once(':')?;
    let a = a
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(a);
    Some((a.parse().ok()?, p.parse().ok()?))
}

fn valid_label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Normalises a DNS name (FORMATS.md §6.2): trimmed, trailing dots removed, lower-cased, IDN
/// converted to A-labels (punycode), then validated (≤ 253 bytes, labels 1–63 of letters,
/// digits, `-`, `_`). Single-label names are rejected: a TLD is never an indicator.
pub fn domain(raw: &str) -> Result<String, NormalizeError> {
    let s = prepare(raw)?;
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return Err(invalid("domain", "only dots"));
    }
    let ascii: Cow<'_, str> = if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(idna::domain_to_ascii(s).map_err(|_| {
            invalid(
                "domain",
                format!("`{s}` cannot be converted to an A-label (IDNA)"),
            )
        })?)
    };
    let d = ascii.as_ref();
    if d.len() > 253 {
        return Err(invalid(
            "domain",
            format!("{} bytes long, more than 253", d.len()),
        ));
    }
    let mut labels = 0;
    for label in d.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err(invalid("domain", format!("`{d}` has an empty label")));
        }
        if label.len() > 63 {
            return Err(invalid(
                "domain",
                format!("label `{label}` is longer than 63 bytes"),
            ));
        }
        if let Some(bad) = label.bytes().find(|&b| !valid_label_byte(b)) {
            return Err(invalid(
                "domain",
                format!("`{d}` contains `{}`", char::from(bad).escape_default()),
            ));
        }
    }
    if labels < 2 {
        return Err(invalid(
            "domain",
            format!("`{d}` is a single label (a TLD or local name), too broad to be an indicator"),
        ));
    }
    Ok(ascii.into_owned())
}

/// [`domain`] for a name that is already canonical (lower-case ASCII labels, no trailing dot,
/// no surrounding space): `Some(raw)` exactly when [`domain`] would return `raw` unchanged;
/// `None` means "ask [`domain`]".
#[inline]
pub fn domain_fast(raw: &str) -> Option<&str> {
    let b = raw.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return None;
    }
    let (mut labels, mut len) = (1, 0);
    for &c in b {
        if c == b'.' {
            if len == 0 {
                return None;
            }
            labels += 1;
            len = 0;
        } else if valid_label_byte(c) {
            len += 1;
            if len > 63 {
                return None;
            }
        } else {
            return None;
        }
    }
    (len > 0 && labels >= 2).then_some(raw)
}

/// A URL in canonical form with the match keys of FORMATS.md §6.4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalUrl {
    /// Lower-case scheme (`http` when none was given).
    pub scheme: String,
    /// Whether the input carried a scheme.
    pub scheme_given: bool,
    /// Canonical host: a lower-case A-label name, dotted-quad IPv4 or `[v6]`.
    pub host: String,
    /// Port when it is not the scheme's default.
    pub port: Option<u16>,
    /// Path, dot segments resolved, unreserved escapes decoded, other escapes upper-cased.
    pub path: String,
    /// Query without the `?`, byte order kept.
    pub query: Option<String>,
}

impl CanonicalUrl {
    /// `K1`: scheme + host + non-default port + path + query.
    pub fn k1(&self) -> String {
        let mut s = String::with_capacity(self.scheme.len() + 3 + self.k2_len());
        s.push_str(&self.scheme);
        s.push_str("://");
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        self.push_path_query(&mut s);
        s
    }

    fn k2_len(&self) -> usize {
        self.host.len() + self.path.len() + self.query.as_ref().map_or(0, |q| q.len() + 1) + 6
    }

    fn push_path_query(&self, s: &mut String) {
        s.push_str(&self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
    }

    /// `K2`: host + path + query (scheme and port ignored): the scheme-insensitive key.
    pub fn k2(&self) -> String {
        let mut s = String::with_capacity(self.k2_len());
        s.push_str(&self.host);
        self.push_path_query(&mut s);
        s
    }

    /// `K2d`: `K2` with every `%XX` escape decoded once (Zeek logs decoded URIs).
    pub fn k2d(&self) -> String {
        let k2 = self.k2();
        let bytes = percent_decode_all(k2.as_bytes());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `K3`: host + path, query dropped (reduced confidence).
    pub fn k3(&self) -> String {
        format!("{}{}", self.host, self.path)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX` escape once; malformed escapes stay as they are.
pub fn percent_decode_all(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex_val(input[i + 1]), hex_val(input[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Step 8 of §6.4: upper-case the hex of every escape and decode escapes of unreserved
/// characters (`A–Z a–z 0–9 - . _ ~`).
fn normalize_escapes(s: &str) -> String {
    let mut cur = normalize_escapes_once(s);
    // Decoding can make a new escape of a literal `%` and what follows it (`%%335` gives
    // `%35`, `%a%41` gives `%aA`): repeat to a fixed point, so that a canonical URL is its own
    // canonical form. Each pass that changes something decodes (shorter) or upper-cases a
    // hex digit, so this ends; one more pass confirms.
    loop {
        let next = normalize_escapes_once(&cur);
        if next == cur {
            return cur;
        }
        cur = next;
    }
}

fn normalize_escapes_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            let c = h << 4 | l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push(char::from(b[i + 1].to_ascii_uppercase()));
                out.push(char::from(b[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        // Multi-byte UTF-8 is copied whole: the url crate has already escaped it, so this is
        // only reached for ASCII, but stay correct regardless.
        let ch_len = utf8_len(b[i]);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn has_scheme(s: &str) -> bool {
    let Some(idx) = s.find("://") else {
        return false;
    };
    let scheme = &s[..idx];
    !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Canonicalises a URL (FORMATS.md §6.4 steps 1–9, refanging excepted: call [`refang`] first
/// on indicator input). Input without a scheme is read as `http://…` with
/// [`CanonicalUrl::scheme_given`] false.
pub fn url(raw: &str) -> Result<CanonicalUrl, NormalizeError> {
    let s = prepare(raw)?;
    let cleaned: Cow<'_, str> = if s.contains(['\t', '\r', '\n']) {
        Cow::Owned(s.replace(['\t', '\r', '\n'], ""))
    } else {
        Cow::Borrowed(s)
    };
    let scheme_given = has_scheme(&cleaned);
    let parsed = if scheme_given {
        url::Url::parse(&cleaned)
    } else {
        url::Url::parse(&format!("http://{cleaned}"))
    }
    .map_err(|e| invalid("URL", format!("`{cleaned}`: {e}")))?;
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            // Without its trailing dots the host may read as a number (`1.11..` is `1.11`,
            // which WHATWG reads as the IPv4 address 1.0.0.11): parse it again so that the
            // canonical form parses back to itself.
            match url::Host::parse(d) {
                Ok(url::Host::Ipv4(a)) => a.to_string(),
                // `lan.1..` trimmed is `lan.1`, which ends in a number and so must be an IPv4
                // address, and is not: no canonical form parses back, refuse it.
                Err(e) => return Err(invalid("URL", format!("host `{d}`: {e}"))),
                // The url crate has lower-cased and IDNA-mapped the host; still validate it
                // as a DNS name so that `http://a..b/` and friends are refused consistently.
                Ok(_) => domain(d).map_err(|e| invalid("URL", format!("host: {e}")))?,
            }
        }
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{a}]"),
        },
        None => return Err(invalid("URL", format!("`{cleaned}` has no host"))),
    };
    let path = normalize_escapes(parsed.path());
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    Ok(CanonicalUrl {
        scheme: parsed.scheme().to_string(),
        scheme_given,
        host,
        port: parsed.port(),
        path,
        query: parsed.query().map(normalize_escapes),
    })
}

/// [`hash`] for a digest already in canonical form (lower-case hex of the kind's length):
/// `Some(raw)` exactly when [`hash`] would return `raw`; `None` means "ask [`hash`]".
#[inline]
pub fn hash_fast(kind: Kind, raw: &str) -> Option<&str> {
    let want = match kind {
        Kind::Md5 | Kind::Ja3 | Kind::Ja3s => 32,
        Kind::Sha1 => 40,
        Kind::Sha256 => 64,
        Kind::Sha512 => 128,
        _ => return None,
    };
    let ok = raw.len() == want
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(raw)
}

/// Normalises a digest of the given hash kind: whitespace, `0x` and `:` separators removed,
/// lower-cased, length checked against the algorithm.
pub fn hash(kind: Kind, raw: &str) -> Result<String, NormalizeError> {
    let want = match kind {
        Kind::Md5 | Kind::Ja3 | Kind::Ja3s => 32,
        Kind::Sha1 => 40,
        Kind::Sha256 => 64,
        Kind::Sha512 => 128,
        _ => return Err(invalid("hash", format!("{kind} is not a digest kind"))),
    };
    let s = prepare(raw)?;
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let mut out = String::with_capacity(want);
    for c in s.chars() {
        if c.is_ascii_hexdigit() {
            out.push(c.to_ascii_lowercase());
        } else if c == ':' || c.is_whitespace() {
            continue;
        } else {
            return Err(invalid(
                kind.name(),
                format!("`{}` is not a hex digit", c.escape_default()),
            ));
        }
    }
    if out.len() != want {
        return Err(invalid(
            kind.name(),
            format!("{} hex digits, expected {want}", out.len()),
        ));
    }
    Ok(out)
}

/// A digest whose algorithm is decided by its length (32 MD5, 40 SHA-1, 64 SHA-256,
/// 128 SHA-512).
pub fn hash_by_length(raw: &str) -> Result<Normalized, NormalizeError> {
    let s = prepare(raw)?;
    let digits = s.chars().filter(|c| c.is_ascii_hexdigit()).count();
    let kind = match digits {
        32 => Kind::Md5,
        40 => Kind::Sha1,
        64 => Kind::Sha256,
        128 => Kind::Sha512,
        n => {
            return Err(invalid(
                "hash",
                format!("{n} hex digits match no supported algorithm (32, 40, 64 or 128)"),
            ));
        }
    };
    Ok(Normalized::new(kind, hash(kind, s)?))
}

/// Normalises a JA4 fingerprint: `a_b_c` with a 10-character first part and two 12-digit hex
/// hashes, lower-cased.
pub fn ja4(raw: &str) -> Result<String, NormalizeError> {
    let s = prepare(raw)?.to_ascii_lowercase();
    let parts: Vec<&str> = s.split('_').collect();
    let ok = parts.len() == 3
        && parts[0].len() == 10
        && parts[0].bytes().all(|b| b.is_ascii_alphanumeric())
        && parts[1..]
            .iter()
            .all(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(s)
    } else {
        Err(invalid(
            "JA4",
            format!("`{s}` is not of the form t13d1516h2_8daaf6152771_e5627efa2ab1"),
        ))
    }
}

/// Normalises an e-mail address (FORMATS.md §6.6): display name and angle brackets removed,
/// local part and domain lower-cased, the domain normalised as a DNS name.
pub fn email(raw: &str) -> Result<String, NormalizeError> {
    let s = prepare(raw)?;
    let addr = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let addr = addr.trim().trim_start_matches("mailto:");
    let (local, dom) = addr
        .rsplit_once('@')
        .ok_or_else(|| invalid("e-mail address", format!("`{addr}` has no `@`")))?;
    if local.is_empty() || local.len() > 64 || local.contains(char::is_whitespace) {
        return Err(invalid(
            "e-mail address",
            format!("local part `{local}` is empty, too long or contains spaces"),
        ));
    }
    let dom = domain(dom).map_err(|e| invalid("e-mail address", format!("domain: {e}")))?;
    Ok(format!("{}@{dom}", local.to_lowercase()))
}

/// Normalises a value whose kind the source states (MISP attribute type, STIX path). Indicator
/// input only: the value is refanged first.
pub fn indicator_value(kind: Kind, raw: &str) -> Result<Normalized, NormalizeError> {
    let refanged = refang(raw);
    let was_defanged = matches!(refanged, Cow::Owned(_));
    let out = normalize_as(kind, &refanged)?;
    Ok(if was_defanged {
        out.note(Note::Refanged)
    } else {
        out
    })
}

/// Normalises a value of a known kind without refanging (shared by indicators and telemetry).
pub fn normalize_as(kind: Kind, raw: &str) -> Result<Normalized, NormalizeError> {
    Ok(match kind {
        Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => ip_or_cidr(raw)?,
        Kind::IpPort => ip_port(raw)?,
        Kind::Domain | Kind::Hostname => Normalized::new(kind, domain(raw)?),
        Kind::Url => Normalized::new(Kind::Url, url(raw)?.k1()),
        Kind::UrlSubstring | Kind::Uri | Kind::UserAgent => {
            let s = prepare(raw)?;
            Normalized::new(kind, s.to_string())
        }
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 | Kind::Sha512 | Kind::Ja3 | Kind::Ja3s => {
            Normalized::new(kind, hash(kind, raw)?)
        }
        Kind::Ja4 => Normalized::new(Kind::Ja4, ja4(raw)?),
        Kind::Email => Normalized::new(Kind::Email, email(raw)?),
    })
}

fn looks_like_pattern(s: &str) -> bool {
    s.contains(['\\', '*', '{', '}', '(', ')', '|', '^', '$'])
        || (s.contains('[') && !s.starts_with('['))
}

/// Guesses the kind of a bare value from a plain list and normalises it: URL (with or without
/// scheme), path (`/gate.php` → [`Kind::Uri`]), `ip:port`, IP, CIDR, digest (by length),
/// e-mail address, domain. Refangs first. Patterns (regular expressions, globs) are refused
/// with [`NormalizeError::Pattern`].
pub fn guess(raw: &str) -> Result<Normalized, NormalizeError> {
    let refanged = refang(raw);
    let was_defanged = matches!(refanged, Cow::Owned(_));
    let s = prepare(&refanged)?;
    let out = guess_refanged(s)?;
    Ok(if was_defanged {
        out.note(Note::Refanged)
    } else {
        out
    })
}

fn guess_refanged(s: &str) -> Result<Normalized, NormalizeError> {
    let b = s.as_bytes();
    if has_scheme(s) {
        return Ok(Normalized::new(Kind::Url, url(s)?.k1()));
    }
    if b[0] == b'/' {
        // A request path is matched as a literal substring: `*`, `(`, `$` are ordinary
        // characters in paths (`/(null).armv4` is a real Mirai download path).
        return Ok(Normalized::new(Kind::Uri, s.to_string()));
    }
    // `.example.com` and `*.example.com`: "this domain and everything below it", which is
    // what the domain kind means.
    if let Some(rest) = s.strip_prefix("*.").or_else(|| s.strip_prefix('.'))
        && !rest.starts_with('.')
        && !rest.contains(['/', '@', ':'])
    {
        if looks_like_pattern(rest) {
            return Err(NormalizeError::Pattern(s.to_string()));
        }
        return Ok(Normalized::new(Kind::Domain, domain(rest)?));
    }
    // `[v6]:port`
    if b[0] == b'[' {
        return ip_port(s);
    }
    let first_slash = memchr::memchr2(b'/', b'?', b);
    let host_part = &s[..first_slash.unwrap_or(s.len())];
    let all_ipish = host_part
        .bytes()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, b'.' | b':'));
    if all_ipish && !host_part.is_empty() {
        let colons = memchr::memchr_iter(b':', host_part.as_bytes()).count();
        let is_v4ish = host_part
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b':'));
        if is_v4ish && host_part.contains('.') {
            match (colons, first_slash.map(|i| b[i])) {
                (0, None) => return ip_or_cidr(s),
                (0, Some(b'/')) if s[host_part.len() + 1..].bytes().all(|c| c.is_ascii_digit()) => {
                    return cidr(s);
                }
                (1, None) => return ip_port(s),
                (n, None) if n > 1 => {
                    return Err(invalid("ip:port", format!("`{s}` has more than one `:`")));
                }
                _ => {}
            }
        } else if colons >= 2 {
            // IPv6 address or network.
            match first_slash.map(|i| b[i]) {
                None => return ip_or_cidr(s),
                Some(b'/') => return cidr(s),
                _ => {}
            }
        } else if colons == 0 && first_slash.is_none() && !host_part.contains('.') {
            return hash_by_length(s);
        }
    }
    if first_slash.is_some() {
        if looks_like_pattern(host_part) {
            return Err(NormalizeError::Pattern(s.to_string()));
        }
        return Ok(Normalized::new(Kind::Url, url(s)?.k1()));
    }
    if s.contains('@') {
        return Ok(Normalized::new(Kind::Email, email(s)?));
    }
    if looks_like_pattern(s) {
        return Err(NormalizeError::Pattern(s.to_string()));
    }
    if let Some((h, p)) = s.rsplit_once(':')
        && p.bytes().all(|c| c.is_ascii_digit())
    {
        // `host.example:8080` is a host with a port: there is no host:port kind, so keep the
        // URL form, which matches HTTP telemetry to that port.
        let _ = h;
        return Ok(Normalized::new(Kind::Url, url(s)?.k1()));
    }
    Ok(Normalized::new(Kind::Domain, domain(s)?))
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Note::Refanged => "value was defanged; refanged",
            Note::HostBitsCleared => "host bits were set; cleared",
            Note::MappedToIpv4 => "IPv4-mapped IPv6 address; stored as IPv4",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The allocation-free address parse the matcher uses agrees with [`ip`] on anything
        /// address-like: dotted quads with leading zeros or spaces, IPv6 with zones and
        /// mapped IPv4, names.
        #[test]
        fn ip_parsed_agrees_with_ip(s in "[ 0-9a-fA-F:.%x]{0,46}") {
            proptest::prop_assert_eq!(ip_parsed(&s), ip(&s).ok());
        }
    }

    #[test]
    fn ip_parsed_agrees_with_ip_on_the_usual_forms() {
        for s in [
            "10.0.0.1",
            " 10.0.0.1 ",
            "010.0.0.1",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "2001:db8::1",
            "",
            " ",
            "1.2.3",
            "a.example",
            "[::1]",
            "1.2.3.4:80",
        ] {
            assert_eq!(ip_parsed(s), ip(s).ok(), "{s:?}");
        }
    }

    #[test]
    fn refang_table() {
        let cases = [
            (
                "hxxps://bad-login[.]example[.]com/owa",
                "https://bad-login.example.com/owa",
            ),
            ("c2[dot]malware[.]test", "c2.malware.test"),
            ("phisher[@]example[.]org", "phisher@example.org"),
            ("198[.]51[.]100[.]23", "198.51.100.23"),
            (
                "hXXp[:]//update.example.net/check.php",
                "http://update.example.net/check.php",
            ),
            ("evil(.)example(.)com", "evil.example.com"),
            ("[hxxp://]evil.example.com/x", "http://evil.example.com/x"),
            ("fxp://files.example.org/a", "ftp://files.example.org/a"),
            ("http://[2001:db8::1]/a", "http://[2001:db8::1]/a"),
            ("fxp.example.com", "fxp.example.com"),
            ("hxxp-free.example", "hxxp-free.example"),
            ("hxxps[://]evil.example/x", "https://evil.example/x"),
        ];
        for (input, want) in cases {
            assert_eq!(refang(input), want, "{input}");
        }
        assert!(matches!(refang("example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn ips_strict_and_mapped() {
        assert_eq!(ip("198.51.100.23").unwrap().to_string(), "198.51.100.23");
        assert_eq!(
            ip("::ffff:198.51.100.23").unwrap().to_string(),
            "198.51.100.23"
        );
        assert_eq!(ip("2001:0DB8::0001").unwrap().to_string(), "2001:db8::1");
        assert_eq!(ip("fe80::1%eth0").unwrap().to_string(), "fe80::1");
        for bad in [
            "192.000.002.023",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "",
            "x",
        ] {
            assert!(ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let n = cidr("203.0.113.7/28").unwrap();
        assert_eq!(n.value, "203.0.113.0/28");
        assert_eq!(n.kind, Kind::Cidr);
        assert_eq!(n.notes, vec![Note::HostBitsCleared]);
        let host = cidr("198.51.100.23/32").unwrap();
        assert_eq!(
            (host.kind, host.value.as_str()),
            (Kind::Ipv4, "198.51.100.23")
        );
        let v6 = cidr("2001:DB8:bad::/48").unwrap();
        assert_eq!(v6.value, "2001:db8:bad::/48");
        let mapped = cidr("::ffff:198.51.100.0/120").unwrap();
        assert_eq!(mapped.value, "198.51.100.0/24");
        assert!(matches!(
            cidr("10.0.0.0/4"),
            Err(NormalizeError::TooBroad(_))
        ));
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0.0/").is_err());
    }

    #[test]
    fn ip_ports() {
        let cases = [
            ("198.51.100.23:80", "198.51.100.23:80"),
            ("203.0.113.45|8443", "203.0.113.45:8443"),
            ("[2001:DB8::1]:443", "[2001:db8::1]:443"),
            ("[::ffff:45.62.198.73]:53", "45.62.198.73:53"),
        ];
        for (input, want) in cases {
            assert_eq!(ip_port(input).unwrap().value, want, "{input}");
        }
        for bad in [
            "1.2.3.4:0",
            "1.2.3.4:65536",
            "1.2.3.4",
            "[::1]80",
            "1.2.3.0/24:80",
        ] {
            assert!(ip_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            split_ip_port("[2001:db8::1]:443"),
            Some(("2001:db8::1".parse().unwrap(), 443))
        );
    }

    #[test]
    fn domains() {
        let cases = [
            ("Bad-Login.Example.COM.", "bad-login.example.com"),
            ("bücher.example.com", "xn--bcher-kva.example.com"),
            ("_dmarc.example.org", "_dmarc.example.org"),
            (" c2.malware.test ", "c2.malware.test"),
        ];
        for (input, want) in cases {
            assert_eq!(domain(input).unwrap(), want, "{input}");
        }
        for bad in [
            "com",
            "a..b",
            ".",
            "a b.com",
            &"a".repeat(64),
            "exa$mple.com",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_match_formats_table() {
        let cases = [
            (
                "HTTPS://Bad-Login.Example.COM:443/owa/./auth.php?id=1#x",
                "https://bad-login.example.com/owa/auth.php?id=1",
            ),
            (
                "http://bad-login.example.com:8080/owa/%61uth.php?id=1",
                "http://bad-login.example.com:8080/owa/auth.php?id=1",
            ),
            ("http://update.example.net", "http://update.example.net/"),
            (
                "https://files.example.org/get?name=o'brien.zip",
                "https://files.example.org/get?name=o%27brien.zip",
            ),
            (
                "http://example.com@evil.test/login",
                "http://evil.test/login",
            ),
            ("http://0xc6.51.100.23/x", "http://198.51.100.23/x"),
            ("http://3325256727/x", "http://198.51.100.23/x"),
            (
                "http://[2001:0DB8::0001]:80/a/../b",
                "http://[2001:db8::1]/b",
            ),
            ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
            // Found by the fuzzer: a numeric host behind trailing dots is an IPv4 address.
            ("http://1.11../x", "http://1.0.0.11/x"),
        ];
        for (input, want) in cases {
            assert_eq!(url(input).unwrap().k1(), want, "{input}");
        }
        let u = url("http://bad-login.example.com:8080/owa/%61uth.php?id=1").unwrap();
        assert_eq!(u.k2(), "bad-login.example.com/owa/auth.php?id=1");
        assert_eq!(u.k3(), "bad-login.example.com/owa/auth.php");
        let d = url("example.com/a%20b").unwrap();
        assert!(!d.scheme_given);
        assert_eq!(d.k2d(), "example.com/a b");
    }

    #[test]
    fn hashes() {
        assert_eq!(
            hash(Kind::Md5, "D41D8CD98F00B204E9800998ECF8427E").unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            hash(
                Kind::Sha1,
                "AF:FA:D9:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:59:90"
            )
            .unwrap(),
            "affad900000000000000000000000000000059 90".replace(' ', "")
        );
        assert!(hash(Kind::Sha256, "f00").is_err());
        assert!(hash(Kind::Md5, "g41d8cd98f00b204e9800998ecf8427e").is_err());
        assert_eq!(hash_by_length(&"a".repeat(64)).unwrap().kind, Kind::Sha256);
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("\"X\" <Phisher@Example.ORG>").unwrap(),
            "phisher@example.org"
        );
        assert!(email("no-at-sign").is_err());
        assert!(email("@example.org").is_err());
    }

    #[test]
    fn guesses_kinds_of_maltrail_lines() {
        let cases = [
            ("celasllc.com", Kind::Domain, "celasllc.com"),
            ("185.142.236.226", Kind::Ipv4, "185.142.236.226"),
            ("45.83.64.0/24", Kind::Cidr, "45.83.64.0/24"),
            ("185.142.236.226:8080", Kind::IpPort, "185.142.236.226:8080"),
            (
                "[0:0:0:0:0:ffff:2d3e:c649]:53",
                Kind::IpPort,
                "45.62.198.73:53",
            ),
            (
                "apshenyihl.com/include/arc.speclist.class.php",
                Kind::Url,
                "http://apshenyihl.com/include/arc.speclist.class.php",
            ),
            ("/add_outstuk.php", Kind::Uri, "/add_outstuk.php"),
            ("/(null).armv4", Kind::Uri, "/(null).armv4"),
            (".co.at.lv", Kind::Domain, "co.at.lv"),
            ("*.evil.example", Kind::Domain, "evil.example"),
            (
                "hxxp://evil[.]example[.]com/x",
                Kind::Url,
                "http://evil.example.com/x",
            ),
            ("2001:db8::10", Kind::Ipv6, "2001:db8::10"),
            // UTS #46 (what browsers resolve) accepts U+00AC, so the name is live in punycode.
            (
                "support\u{ac}forum.org",
                Kind::Domain,
                "xn--supportforum-tqa.org",
            ),
            ("2001:db8::/32", Kind::Cidr, "2001:db8::/32"),
            (
                "d41d8cd98f00b204e9800998ecf8427e",
                Kind::Md5,
                "d41d8cd98f00b204e9800998ecf8427e",
            ),
            ("a@example.org", Kind::Email, "a@example.org"),
            ("1.2.3.4?x=1", Kind::Url, "http://1.2.3.4/?x=1"),
        ];
        for (input, kind, value) in cases {
            let n = guess(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((n.kind, n.value.as_str()), (kind, value), "{input}");
        }
        for bad in [
            "backdates[0-9]{1,2}\\.(com|net)",
            "161.35.41.9:53:53",
            "vh[0-9]{6}\\.eurodir\\.ru",
            ".reporttask",
        ] {
            assert!(guess(bad).is_err(), "{bad}");
        }
    }
}
