//! Values that look like the indicators national feeds carry: public addresses and networks,
//! registrable domains with subdomains, URLs, digests, JA3 fingerprints, mail senders and odd
//! User-Agents.
//!
//! Indicator values never come from the ranges [`super::telemetry`] draws background traffic
//! from (RFC 1918, documentation and benchmarking networks, `example.*`, `*.test`), so that
//! generated telemetry misses a generated feed except where a hit is planted.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::rng::Rng;

/// IPv4 networks no indicator address is drawn from: private, shared, loopback, link-local,
/// documentation, benchmarking, multicast and reserved space (RFC 6890).
const NOT_PUBLIC_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8
    (0x0a00_0000, 8),  // 10.0.0.0/8
    (0x6440_0000, 10), // 100.64.0.0/10
    (0x7f00_0000, 8),  // 127.0.0.0/8
    (0xa9fe_0000, 16), // 169.254.0.0/16
    (0xac10_0000, 12), // 172.16.0.0/12
    (0xc000_0000, 24), // 192.0.0.0/24
    (0xc000_0200, 24), // 192.0.2.0/24
    (0xc058_6300, 24), // 192.88.99.0/24
    (0xc0a8_0000, 16), // 192.168.0.0/16
    (0xc612_0000, 15), // 198.18.0.0/15
    (0xc633_6400, 24), // 198.51.100.0/24
    (0xcb00_7100, 24), // 203.0.113.0/24
    (0xe000_0000, 3),  // 224.0.0.0/3
];

/// Whether `a` lies in public unicast IPv4 space.
pub fn is_public_v4(a: u32) -> bool {
    !NOT_PUBLIC_V4
        .iter()
        .any(|&(net, len)| (a ^ net) >> (32 - u32::from(len)) == 0)
}

/// A public unicast IPv4 address.
pub fn public_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        let a = rng.next_u32();
        // Skip network and broadcast-looking hosts too: feeds rarely list x.y.z.0 or .255.
        if is_public_v4(a) && !matches!(a & 0xff, 0 | 255) {
            return Ipv4Addr::from(a);
        }
    }
}

/// A public IPv4 network of prefix length `len` (8–32) that overlaps none of the reserved
/// ranges, as its network address.
pub fn public_v4_net(rng: &mut Rng, len: u8) -> u32 {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    loop {
        let net = public_v4(rng).to_bits() & mask;
        let overlaps = NOT_PUBLIC_V4.iter().any(|&(n, l)| {
            let shorter = l.min(len);
            (net ^ n) >> (32 - u32::from(shorter)) == 0
        });
        if !overlaps {
            return net;
        }
    }
}

/// First 16 bits of real regional-registry allocations (RIPE 2a0x, ARIN 26xx, APNIC 240x,
/// LACNIC 280x, AFRINIC 2c0f): far from 2001:db8::/32, which telemetry uses.
const V6_PREFIXES: &[u16] = &[
    0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2a05, 0x2a06, 0x2a0b, 0x2a10, 0x2600, 0x2602, 0x2604, 0x2606,
    0x2607, 0x2400, 0x2401, 0x2402, 0x2404, 0x2800, 0x2803, 0x2c0f,
];

/// A public IPv6 network prefix of `bits` bits (32 or 48) as the high 64 bits of an address.
pub fn public_v6_prefix(rng: &mut Rng, bits: u32) -> u64 {
    let top = u64::from(rng.pick(V6_PREFIXES)) << 48;
    let rest = rng.next_u64() & ((1u64 << 48) - 1);
    let v = top | rest;
    v & !((1u64 << (64 - bits)) - 1)
}

/// A public IPv6 host address; half of them have a short interface id (`…::1`, `…::a3`) as
/// servers do.
pub fn public_v6(rng: &mut Rng) -> Ipv6Addr {
    let hi = public_v6_prefix(rng, 64) | (rng.next_u64() & 0xffff);
    let lo = if rng.chance(0.5) {
        rng.range(1, 0x1ff)
    } else {
        rng.next_u64()
    };
    Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo))
}

const SYLLABLES: &[&str] = &[
    "ab", "ac", "ad", "al", "am", "an", "ar", "as", "ba", "be", "bi", "bo", "ca", "ce", "co", "cu",
    "da", "de", "di", "do", "el", "en", "er", "es", "fa", "fi", "fo", "ga", "ge", "go", "ha", "he",
    "hi", "ja", "ka", "ke", "ki", "ko", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "na",
    "ne", "ni", "no", "or", "pa", "pe", "pi", "po", "ra", "re", "ri", "ro", "sa", "se", "si", "so",
    "ta", "te", "ti", "to", "tu", "va", "ve", "vi", "vo", "xa", "ze", "zo", "qu", "ly", "ny", "ry",
    "ty", "kr", "tr", "st", "vx", "zk", "qx", "wy",
];

/// Words that phishing and malware domains are built from.
const LURES: &[&str] = &[
    "secure", "login", "verify", "account", "update", "support", "billing", "invoice", "auth",
    "portal", "online", "service", "cloud", "docs", "drive", "mail", "pay", "bank", "track",
    "parcel", "delivery", "wallet", "office", "sso", "id", "help", "client", "sync", "cdn",
    "static", "files", "share", "web", "app", "connect", "check", "safe", "alert", "notice",
];

const TLDS: &[(&str, u32)] = &[
    ("com", 34),
    ("net", 10),
    ("org", 5),
    ("ru", 6),
    ("top", 6),
    ("xyz", 6),
    ("info", 5),
    ("online", 4),
    ("site", 4),
    ("nl", 4),
    ("cn", 3),
    ("io", 3),
    ("biz", 2),
    ("club", 2),
    ("shop", 2),
    ("cc", 2),
    ("pw", 1),
    ("su", 1),
];

/// Host labels below a registrable domain.
pub const HOST_LABELS: &[&str] = &[
    "www", "mail", "cdn", "api", "update", "c2", "srv1", "srv2", "ns1", "ns2", "login", "portal",
    "dl", "static", "files", "owa", "vpn", "secure", "m", "img", "panel", "gate", "app", "auth",
];

fn push_word(rng: &mut Rng, s: &mut String, syllables: u64) {
    for _ in 0..syllables {
        s.push_str(rng.pick(SYLLABLES));
    }
}

/// A registrable domain (`secure-kolari.com`, `tavexo.top`, `account-verify-mesi.ru`).
pub fn domain(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(24);
    match rng.below(4) {
        0 => {
            s.push_str(rng.pick(LURES));
            s.push('-');
            {
                let n = rng.range(2, 3);
                push_word(rng, &mut s, n)
            };
        }
        1 => {
            {
                let n = rng.range(2, 3);
                push_word(rng, &mut s, n)
            };
            s.push('-');
            s.push_str(rng.pick(LURES));
        }
        2 => {
            s.push_str(rng.pick(LURES));
            s.push('-');
            s.push_str(rng.pick(LURES));
            s.push('-');
            push_word(rng, &mut s, 2);
        }
        _ => {
            let n = rng.range(3, 4);
            push_word(rng, &mut s, n)
        }
    }
    if rng.chance(0.3) {
        let _ = write!(s, "{}", rng.below(100));
    }
    s.push('.');
    let tlds: Vec<u32> = TLDS.iter().map(|t| t.1).collect();
    s.push_str(TLDS[rng.weighted(&tlds)].0);
    s
}

/// A host name below `base` (`login.secure-kolari.com`, `cdn3.tavexo.top`).
pub fn host_under(rng: &mut Rng, base: &str) -> String {
    let mut s = String::with_capacity(base.len() + 8);
    s.push_str(rng.pick(HOST_LABELS));
    if rng.chance(0.25) {
        let _ = write!(s, "{}", rng.range(1, 20));
    }
    s.push('.');
    s.push_str(base);
    s
}

const PATHS: &[&str] = &[
    "/wp-content/plugins/",
    "/wp-includes/js/",
    "/owa/",
    "/admin/",
    "/api/v1/",
    "/api/v2/",
    "/secure/",
    "/login/",
    "/invoice/",
    "/download/",
    "/files/",
    "/static/",
    "/update/",
    "/gate/",
    "/panel/",
    "/",
];

const FILES: &[&str] = &[
    "auth.php",
    "gate.php",
    "index.php",
    "login.html",
    "verify.aspx",
    "payload.bin",
    "update.exe",
    "invoice.zip",
    "document.pdf.exe",
    "setup.msi",
    "loader.js",
    "config.bin",
    "check.php",
    "beacon",
    "submit",
    "track.php",
];

/// A URL on `host` (`https://login.tavexo.top/owa/auth.php?id=4711`).
pub fn url_on(rng: &mut Rng, host: &str) -> String {
    let mut s = String::with_capacity(host.len() + 40);
    s.push_str(if rng.chance(0.7) {
        "https://"
    } else {
        "http://"
    });
    s.push_str(host);
    if rng.chance(0.05) {
        let _ = write!(s, ":{}", rng.pick(&[8080u16, 8443, 8000, 4443]));
    }
    s.push_str(rng.pick(PATHS));
    if rng.chance(0.4) {
        push_word(rng, &mut s, 2);
        s.push('/');
    }
    s.push_str(rng.pick(FILES));
    match rng.below(4) {
        0 => {
            let _ = write!(s, "?id={}", rng.below(100_000));
        }
        1 => {
            s.push_str("?u=");
            push_hex(rng, &mut s, 12);
        }
        _ => {}
    }
    s
}

/// Appends `digits` random lower-case hex digits.
pub fn push_hex(rng: &mut Rng, s: &mut String, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = 0u64;
    for i in 0..digits {
        if i % 16 == 0 {
            bits = rng.next_u64();
        }
        s.push(char::from(HEX[(bits & 15) as usize]));
        bits >>= 4;
    }
}

/// `digits` random lower-case hex digits (an MD5 is 32, a SHA-1 40, a SHA-256 64).
pub fn hex(rng: &mut Rng, digits: usize) -> String {
    let mut s = String::with_capacity(digits);
    push_hex(rng, &mut s, digits);
    s
}

const MAIL_LOCALS: &[&str] = &[
    "invoice",
    "billing",
    "noreply",
    "no-reply",
    "support",
    "hr",
    "payroll",
    "it-helpdesk",
    "security",
    "admin",
    "info",
    "accounts",
    "service",
    "notification",
    "delivery",
];

/// A phishing sender on `domain` (`payroll.kelo@secure-kolari.com`).
pub fn email_on(rng: &mut Rng, domain: &str) -> String {
    let mut s = String::with_capacity(domain.len() + 16);
    s.push_str(rng.pick(MAIL_LOCALS));
    if rng.chance(0.5) {
        s.push('.');
        push_word(rng, &mut s, 2);
    }
    if rng.chance(0.2) {
        let _ = write!(s, "{}", rng.below(1000));
    }
    s.push('@');
    s.push_str(domain);
    s
}

const TOOL_NAMES: &[&str] = &[
    "Loader", "Updater", "Agent", "Client", "Beacon", "Fetch", "Stager", "Bot", "Sync", "Helper",
];

/// A User-Agent only malware sends (`Mozilla/5.0 (compatible; KoraviBot/2.3)`,
/// `TesaloUpdater/1.0.4`): long and specific, so that it is no substring of a browser's.
pub fn user_agent(rng: &mut Rng) -> String {
    let mut name = String::new();
    {
        let n = rng.range(2, 3);
        push_word(rng, &mut name, n)
    };
    let mut cs = name.chars();
    let name: String = cs
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(cs)
        .collect();
    let tool = rng.pick(TOOL_NAMES);
    let (major, minor) = (rng.range(1, 9), rng.below(20));
    match rng.below(3) {
        0 => format!("Mozilla/5.0 (compatible; {name}{tool}/{major}.{minor})"),
        1 => format!("{name}{tool}/{major}.{minor}.{}", rng.below(10)),
        _ => format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) {name}{tool}/{major}.{minor} (KHTML, like Gecko)"
        ),
    }
}

const FILE_STEMS: &[&str] = &[
    "invoice", "factuur", "order", "payment", "scan", "document", "update", "setup", "report",
    "offerte", "contract", "shipping", "receipt",
];

const FILE_EXTS: &[&str] = &[
    ".pdf.exe", ".exe", ".dll", ".zip", ".iso", ".lnk", ".js", ".docm", ".xlsm", ".msi", ".hta",
];

/// A malware sample's file name (`factuur_2025_0412.pdf.exe`).
pub fn file_name(rng: &mut Rng) -> String {
    format!(
        "{}_{}_{:04}{}",
        rng.pick(FILE_STEMS),
        rng.range(2019, 2025),
        rng.below(10_000),
        rng.pick(FILE_EXTS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::normalize;

    #[test]
    fn public_space_excludes_reserved_ranges() {
        for a in [
            "10.1.2.3",
            "192.168.1.1",
            "198.51.100.7",
            "198.19.0.1",
            "203.0.113.9",
        ] {
            let v: Ipv4Addr = a.parse().unwrap();
            assert!(!is_public_v4(u32::from(v)), "{a}");
        }
        assert!(is_public_v4(u32::from(Ipv4Addr::new(8, 8, 8, 8))));
        let mut r = Rng::new(5);
        for _ in 0..10_000 {
            assert!(is_public_v4(u32::from(public_v4(&mut r))));
            let v6 = public_v6(&mut r);
            assert_ne!(v6.segments()[0..2], [0x2001, 0x0db8]);
        }
    }

    #[test]
    fn generated_values_normalise_to_themselves() {
        let mut r = Rng::new(9);
        for _ in 0..2_000 {
            let d = domain(&mut r);
            assert_eq!(normalize::domain(&d).unwrap(), d);
            let h = host_under(&mut r, &d);
            assert_eq!(normalize::domain(&h).unwrap(), h);
            let u = url_on(&mut r, &h);
            assert_eq!(normalize::url(&u).unwrap().k1(), u, "{u}");
            let e = email_on(&mut r, &d);
            assert_eq!(normalize::email(&e).unwrap(), e);
            let ua = user_agent(&mut r);
            assert_eq!(normalize::refang(&ua), ua.as_str());
            assert_eq!(hex(&mut r, 40).len(), 40);
        }
    }
}
