//! One generated network event ([`Flow`]) in neutral form, the background pools it is drawn
//! from, and the planting of indicator values.
//!
//! Background values come from fixed pools drawn once per run from internal (RFC 1918, ULA)
//! and documentation or benchmarking space (198.18.0.0/15, 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32, `example.*`, `*.test`); every pool value is looked up in
//! the index exactly as `cwn match` would and re-drawn on a hit, so that only planted rows
//! hit. Rows pick pool values by Zipf rank: a few hot talkers, a long tail.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::super::rng::{Rng, Zipf};
use super::super::values;
use super::preset::Preset;
use crate::index::CompiledIndex;
use crate::indicator::normalize;
use crate::indicator::{IndicatorId, Kind};
use crate::matcher::Matcher;
use crate::telemetry::{FieldKind, FieldMap};

/// What kind of event a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// A connection without an application record.
    Conn,
    /// A DNS query or response.
    Dns,
    /// An HTTP request.
    Http,
    /// A TLS handshake.
    Tls,
    /// A file transferred over HTTP.
    File,
    /// An SMTP transaction.
    Smtp,
}

/// One network event in neutral form; a [`Preset`] lays it out as columns.
#[derive(Clone, Debug)]
pub struct Flow<'a> {
    /// Event time, Unix microseconds.
    pub ts_us: i64,
    /// Zeek connection uid.
    pub uid: String,
    /// Suricata flow id.
    pub flow_id: i64,
    /// What the row records.
    pub app: App,
    /// UDP rather than TCP.
    pub udp: bool,
    /// Originator address.
    pub src: Cow<'a, str>,
    /// Originator port.
    pub src_port: u16,
    /// Responder address.
    pub dst: Cow<'a, str>,
    /// Responder port.
    pub dst_port: u16,
    /// Service of a bare connection (`ssh`, `rdp`, …).
    pub service: Option<&'static str>,
    /// Seconds.
    pub duration: f64,
    /// Bytes from the originator.
    pub orig_bytes: i64,
    /// Bytes from the responder.
    pub resp_bytes: i64,
    /// Zeek connection state.
    pub conn_state: &'static str,
    /// DNS query name.
    pub dns_query: Option<Cow<'a, str>>,
    /// DNS query type.
    pub dns_qtype: &'static str,
    /// DNS response code.
    pub dns_rcode: &'static str,
    /// DNS answers (addresses).
    pub answers: Vec<Cow<'a, str>>,
    /// HTTP method.
    pub http_method: &'static str,
    /// HTTP host.
    pub http_host: Option<Cow<'a, str>>,
    /// HTTP request path and query.
    pub http_path: Option<Cow<'a, str>>,
    /// The full URL (ECS `url.full`; an absolute-form proxy target for Suricata).
    pub http_url: Option<Cow<'a, str>>,
    /// HTTP status.
    pub http_status: u16,
    /// User-Agent.
    pub user_agent: Option<Cow<'a, str>>,
    /// TLS version (`TLSv12`, `TLSv13`).
    pub tls_version: &'static str,
    /// TLS SNI.
    pub sni: Option<Cow<'a, str>>,
    /// JA3 fingerprint.
    pub ja3: Option<Cow<'a, str>>,
    /// File name.
    pub file_name: Option<Cow<'a, str>>,
    /// MIME type.
    pub mime: &'static str,
    /// File size.
    pub file_size: i64,
    /// File MD5.
    pub md5: Option<Cow<'a, str>>,
    /// File SHA-1.
    pub sha1: Option<Cow<'a, str>>,
    /// File SHA-256.
    pub sha256: Option<Cow<'a, str>>,
    /// SMTP envelope sender.
    pub mail_from: Option<Cow<'a, str>>,
    /// SMTP recipients.
    pub rcpt_to: Vec<Cow<'a, str>>,
    /// The indicator kind planted in this row, if any.
    pub planted: Option<Kind>,
}

/// A pool of background values with a Zipf rank distribution.
#[derive(Debug)]
struct Pool<T> {
    items: Vec<T>,
    zipf: Zipf,
}

impl<T> Pool<T> {
    fn new(items: Vec<T>, exponent: f64) -> Self {
        let zipf = Zipf::new(items.len().max(1), exponent);
        Pool { items, zipf }
    }

    fn draw(&self, rng: &mut Rng) -> &T {
        &self.items[self.zipf.sample(rng)]
    }
}

#[derive(Debug)]
struct FileItem {
    name: String,
    mime: &'static str,
    size: i64,
    md5: String,
    sha1: String,
    sha256: String,
}

#[derive(Debug)]
struct UrlItem {
    host: String,
    path: String,
    full: String,
}

/// The values background rows are made of, each checked to miss the index.
#[derive(Debug)]
struct Pools {
    clients_v4: Pool<String>,
    clients_v6: Pool<String>,
    resolvers: Vec<String>,
    servers_v4: Pool<String>,
    servers_v6: Pool<String>,
    names: Pool<String>,
    urls: Pool<UrlItem>,
    user_agents: Pool<String>,
    ja3: Pool<String>,
    files: Pool<FileItem>,
    senders: Pool<String>,
    recipients: Pool<String>,
}

/// How many pool values were dropped because they hit the index.
#[derive(Clone, Debug, Default)]
pub struct PoolStats {
    /// Values drawn.
    pub drawn: u64,
    /// Values that hit and were re-drawn.
    pub dropped: u64,
}

/// Indicators that can be planted, by kind.
#[derive(Debug, Default)]
struct Candidates {
    kinds: Vec<Kind>,
    weights: Vec<u32>,
    ords: Vec<Vec<IndicatorId>>,
    zipf: Vec<Zipf>,
}

/// Relative frequency with which planted hits use each kind (of those present).
const PLANT_WEIGHTS: &[(Kind, u32)] = &[
    (Kind::Ipv4, 25),
    (Kind::Ipv6, 4),
    (Kind::Cidr, 6),
    (Kind::IpPort, 6),
    (Kind::Domain, 18),
    (Kind::Hostname, 10),
    (Kind::Url, 10),
    (Kind::Md5, 4),
    (Kind::Sha1, 3),
    (Kind::Sha256, 5),
    (Kind::Email, 3),
    (Kind::Ja3, 3),
    (Kind::UserAgent, 3),
];

/// Builds rows: background from pools, planted values from the index.
#[derive(Debug)]
pub struct FlowSource<'i> {
    index: &'i CompiledIndex,
    matcher: Matcher<'i>,
    preset: Preset,
    pools: Pools,
    candidates: Candidates,
    /// Stats of the pool checks.
    pub pool_stats: PoolStats,
}

/// Checks background values against the index the way `cwn match` looks them up.
struct Checker<'m, 'i> {
    matcher: &'m Matcher<'i>,
    /// Addresses of `ip:port` indicators: any port of theirs would hit, so they are avoided
    /// outright.
    pair_addrs: HashSet<IpAddr>,
    stats: PoolStats,
    out: Vec<u32>,
}

impl Checker<'_, '_> {
    fn clean(&mut self, kind: &FieldKind, v: &str) -> bool {
        self.out.clear();
        self.matcher.lookup(kind, v, None, &mut self.out);
        let mut ok = self.out.is_empty();
        if ok
            && *kind == FieldKind::Ip
            && let Ok(ip) = normalize::ip(v)
        {
            ok = !self.pair_addrs.contains(&ip);
        }
        ok
    }

    /// Draws `n` distinct values that miss the index; fewer if the space runs dry.
    fn pool(
        &mut self,
        n: usize,
        rng: &mut Rng,
        kinds: &[FieldKind],
        mut draw: impl FnMut(&mut Rng) -> String,
    ) -> Vec<String> {
        let mut seen = HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        let mut attempts = 0usize;
        while out.len() < n && attempts < n * 20 + 1000 {
            attempts += 1;
            let v = draw(rng);
            self.stats.drawn += 1;
            if seen.contains(&v) {
                continue;
            }
            if !kinds.iter().all(|k| self.clean(k, &v)) {
                self.stats.dropped += 1;
                continue;
            }
            seen.insert(v.clone());
            out.push(v);
        }
        out
    }
}

/// Background could not be made to miss the index.
#[derive(Debug, thiserror::Error)]
#[error(
    "no background {what} misses the index (every value drawn from the reserved ranges hits an indicator)"
)]
pub struct NoBackground {
    /// Which pool ran dry.
    pub what: &'static str,
}

fn nonempty<T>(v: Vec<T>, what: &'static str) -> Result<Vec<T>, NoBackground> {
    if v.is_empty() {
        Err(NoBackground { what })
    } else {
        Ok(v)
    }
}

fn v4(a: u32) -> String {
    Ipv4Addr::from(a).to_string()
}

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "cloud",
    "data",
    "edge",
    "files",
    "gateway",
    "home",
    "intra",
    "jobs",
    "kiosk",
    "lab",
    "media",
    "news",
    "office",
    "portal",
    "queue",
    "report",
    "shop",
    "travel",
    "users",
    "video",
    "weather",
    "xray",
    "yellow",
    "zone",
    "assets",
    "backup",
    "calendar",
    "docs",
    "events",
    "forum",
    "git",
    "help",
    "images",
    "jira",
    "kb",
    "login",
    "mail",
    "maps",
    "metrics",
    "music",
    "photos",
    "search",
    "status",
    "support",
    "sync",
    "telemetry",
    "update",
    "wiki",
];

const RESERVED_BASES: &[&str] = &["example.com", "example.net", "example.org"];
const RESERVED_TLDS: &[&str] = &["example", "test", "invalid"];

fn background_name(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(32);
    if rng.chance(0.7) {
        s.push_str(rng.pick(values::HOST_LABELS));
        if rng.chance(0.3) {
            let _ = write!(s, "{}", rng.range(1, 40));
        }
        s.push('.');
    }
    if rng.chance(0.5) {
        s.push_str(rng.pick(WORDS));
        if rng.chance(0.5) {
            let _ = write!(s, "{}", rng.range(1, 999));
        }
        s.push('.');
        s.push_str(rng.pick(RESERVED_BASES));
    } else {
        s.push_str(rng.pick(WORDS));
        s.push('-');
        s.push_str(rng.pick(WORDS));
        s.push('.');
        s.push_str(rng.pick(RESERVED_TLDS));
    }
    s
}

fn background_path(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(40);
    match rng.below(6) {
        0 => s.push('/'),
        1 => {
            let _ = write!(s, "/static/js/{}.", rng.pick(WORDS));
            values::push_hex(rng, &mut s, 8);
            s.push_str(".js");
        }
        2 => {
            let _ = write!(
                s,
                "/api/v{}/{}?id={}",
                rng.range(1, 3),
                rng.pick(WORDS),
                rng.below(100_000)
            );
        }
        3 => {
            let _ = write!(s, "/images/{}-{}.png", rng.pick(WORDS), rng.below(500));
        }
        4 => {
            let _ = write!(s, "/search?q={}+{}", rng.pick(WORDS), rng.pick(WORDS));
        }
        _ => {
            let _ = write!(s, "/{}/{}.html", rng.pick(WORDS), rng.pick(WORDS));
        }
    }
    s
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Microsoft-CryptoAPI/10.0",
    "Windows-Update-Agent/10.0.10011.16384 Client-Protocol/2.50",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "Debian APT-HTTP/1.3 (2.6.1)",
];

const MIMES: &[&str] = &[
    "application/pdf",
    "application/zip",
    "image/png",
    "application/x-dosexec",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text/html",
];

impl<'i> FlowSource<'i> {
    /// Draws the background pools (checked against `index`) and collects the indicators that
    /// can be planted in `preset` rows.
    pub fn new(
        index: &'i CompiledIndex,
        fields: &'i FieldMap,
        preset: Preset,
        seed: u64,
        now: i64,
        internal: &[IpNet],
    ) -> Result<Self, NoBackground> {
        let matcher = Matcher::new(index, fields, now);
        let meta = index.meta();
        let mut pair_addrs = HashSet::new();
        let mut by_kind: BTreeMap<Kind, Vec<IndicatorId>> = BTreeMap::new();
        for ord in meta.ords() {
            let kind = meta.kind(ord);
            if kind == Kind::IpPort
                && let Some((a, _)) = normalize::split_ip_port(meta.value(ord))
            {
                pair_addrs.insert(a);
            }
            // Networks with a port constraint (STIX) need the port too; leave them out.
            if meta.port(ord).is_some() {
                continue;
            }
            if kind == Kind::Url && !preset.carries_urls() {
                continue;
            }
            if PLANT_WEIGHTS.iter().any(|(k, _)| *k == kind) {
                by_kind.entry(kind).or_default().push(ord);
            }
        }
        let mut candidates = Candidates::default();
        let mut shuffle = Rng::derive(seed, 20, 0);
        for (kind, mut ords) in by_kind {
            // Which indicators are the hot ones is random, not ordinal order.
            shuffle.shuffle(&mut ords);
            candidates.weights.push(
                PLANT_WEIGHTS
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(1, |w| w.1),
            );
            candidates.zipf.push(Zipf::new(ords.len(), 0.8));
            candidates.kinds.push(kind);
            candidates.ords.push(ords);
        }

        let mut ck = Checker {
            matcher: &matcher,
            pair_addrs,
            stats: PoolStats::default(),
            out: Vec::new(),
        };
        let ip = [FieldKind::Ip];
        let mut r = Rng::derive(seed, 21, 0);
        let (nets_v4, nets_v6): (Vec<IpNet>, Vec<IpNet>) =
            internal.iter().partition(|n| matches!(n, IpNet::V4(_)));
        let clients_v4 = if nets_v4.is_empty() {
            ck.pool(4_000, &mut r, &ip, |r| match r.below(10) {
                0..=5 => v4(0x0a00_0000 | (r.next_u32() & 0x00ff_ffff)),
                6..=7 => v4(0xac10_0000 | (r.next_u32() & 0x000f_ffff)),
                _ => v4(0xc0a8_0000 | (r.next_u32() & 0xffff)),
            })
        } else {
            ck.pool(4_000, &mut r, &ip, |r| {
                random_in(nets_v4[r.below(nets_v4.len() as u64) as usize], r).to_string()
            })
        };
        let mut r = Rng::derive(seed, 21, 1);
        let clients_v6 = if nets_v6.is_empty() {
            ck.pool(500, &mut r, &ip, |r| {
                let prefix: u128 = 0xfd12_3456_789a << 80;
                Ipv6Addr::from(prefix | u128::from(r.next_u64())).to_string()
            })
        } else {
            ck.pool(500, &mut r, &ip, |r| {
                random_in(nets_v6[r.below(nets_v6.len() as u64) as usize], r).to_string()
            })
        };
        let mut r = Rng::derive(seed, 21, 2);
        let resolvers = ck.pool(3, &mut r, &ip, |r| {
            let net = r.pick(&[0x0a00_0000u32, 0xac10_0000, 0xc0a8_0000]);
            let host = r.next_u32()
                & if net == 0x0a00_0000 {
                    0x00ff_ff00
                } else {
                    0xff00
                };
            v4(net | host | 0x35)
        });
        let mut r = Rng::derive(seed, 21, 3);
        let servers_v4 = ck.pool(50_000, &mut r, &ip, |r| match r.below(20) {
            0 => v4(0xc000_0200 | r.range(1, 254) as u32),
            1 => v4(0xc633_6400 | r.range(1, 254) as u32),
            2 => v4(0xcb00_7100 | r.range(1, 254) as u32),
            _ => v4(0xc612_0000 | (r.next_u32() & 0x1_ffff)),
        });
        let mut r = Rng::derive(seed, 21, 4);
        let servers_v6 = ck.pool(5_000, &mut r, &ip, |r| {
            let prefix: u128 = 0x2001_0db8 << 96;
            let host = if r.chance(0.5) {
                u128::from(r.range(1, 0xfff))
            } else {
                u128::from(r.next_u64())
            };
            Ipv6Addr::from(prefix | (u128::from(r.next_u32() & 0xffff) << 80) | host).to_string()
        });
        let mut r = Rng::derive(seed, 21, 5);
        let names = ck.pool(20_000, &mut r, &[FieldKind::Domain], background_name);
        let names = nonempty(names, "host names")?;
        let mut r = Rng::derive(seed, 21, 6);
        let paths = ck.pool(5_000, &mut r, &[FieldKind::Url], background_path);
        let paths = nonempty(paths, "URL paths")?;
        let mut r = Rng::derive(seed, 21, 7);
        let mut urls = Vec::with_capacity(20_000);
        for _ in 0..20_000 * 2 {
            if urls.len() == 20_000 {
                break;
            }
            let host = &names[Zipf::new(names.len(), 1.0).sample(&mut r)];
            let path = r.pick_ref(&paths);
            let scheme = if r.chance(0.8) { "https" } else { "http" };
            let full = format!("{scheme}://{host}{path}");
            ck.stats.drawn += 1;
            if ck.clean(&FieldKind::Url, &full) {
                urls.push(UrlItem {
                    host: host.clone(),
                    path: path.clone(),
                    full,
                });
            } else {
                ck.stats.dropped += 1;
            }
        }
        let urls = nonempty(urls, "URLs")?;
        let mut r = Rng::derive(seed, 21, 8);
        let mut ua_iter = BROWSERS.iter().cycle();
        let user_agents = ck.pool(BROWSERS.len() * 3, &mut r, &[FieldKind::UserAgent], |r| {
            let base = ua_iter.next().copied().unwrap_or(BROWSERS[0]);
            if r.chance(0.6) {
                base.to_string()
            } else {
                // Minor version drift, as a fleet shows.
                base.replacen(
                    ".0.0.0",
                    &format!(".0.{}.{}", r.below(7000), r.below(200)),
                    1,
                )
            }
        });
        let user_agents = nonempty(user_agents, "User-Agents")?;
        let mut r = Rng::derive(seed, 21, 9);
        let ja3 = ck.pool(300, &mut r, &[FieldKind::Ja3], |r| values::hex(r, 32));
        let ja3 = nonempty(ja3, "JA3 fingerprints")?;
        let mut r = Rng::derive(seed, 21, 10);
        let mut files = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let item = FileItem {
                name: format!(
                    "{}-{}.{}",
                    r.pick(WORDS),
                    r.below(10_000),
                    r.pick(&["pdf", "zip", "png", "exe", "docx", "html"])
                ),
                mime: r.pick(MIMES),
                size: r.log_uniform(200, 50_000_000) as i64,
                md5: values::hex(&mut r, 32),
                sha1: values::hex(&mut r, 40),
                sha256: values::hex(&mut r, 64),
            };
            ck.stats.drawn += 1;
            if ck.clean(&FieldKind::Md5, &item.md5)
                && ck.clean(&FieldKind::Sha1, &item.sha1)
                && ck.clean(&FieldKind::Sha256, &item.sha256)
            {
                files.push(item);
            } else {
                ck.stats.dropped += 1;
            }
        }
        let files = nonempty(files, "file digests")?;
        let mut r = Rng::derive(seed, 21, 11);
        let senders = ck.pool(3_000, &mut r, &[FieldKind::Email], |r| {
            format!(
                "{}.{}{}@{}",
                r.pick(WORDS),
                r.pick(WORDS),
                r.below(100),
                r.pick(RESERVED_BASES)
            )
        });
        let senders = nonempty(senders, "mail senders")?;
        let mut r = Rng::derive(seed, 21, 12);
        let recipients = ck.pool(1_000, &mut r, &[FieldKind::Email], |r| {
            format!("{}{}@corp.example", r.pick(WORDS), r.below(1000))
        });
        let recipients = nonempty(recipients, "mail recipients")?;

        let pool_stats = ck.stats.clone();
        let pools = Pools {
            clients_v4: Pool::new(nonempty(clients_v4, "client addresses")?, 1.0),
            clients_v6: Pool::new(nonempty(clients_v6, "IPv6 client addresses")?, 1.0),
            resolvers: nonempty(resolvers, "resolver addresses")?,
            servers_v4: Pool::new(nonempty(servers_v4, "server addresses")?, 1.1),
            servers_v6: Pool::new(nonempty(servers_v6, "IPv6 server addresses")?, 1.1),
            names: Pool::new(names, 1.1),
            urls: Pool::new(urls, 1.1),
            user_agents: Pool::new(user_agents, 1.3),
            ja3: Pool::new(ja3, 1.3),
            files: Pool::new(files, 1.2),
            senders: Pool::new(senders, 1.1),
            recipients: Pool::new(recipients, 1.0),
        };
        Ok(FlowSource {
            index,
            matcher,
            preset,
            pools,
            candidates,
            pool_stats,
        })
    }

    /// The kinds that can be planted, with the number of indicators of each.
    pub fn plantable(&self) -> Vec<(Kind, usize)> {
        self.candidates
            .kinds
            .iter()
            .zip(&self.candidates.ords)
            .map(|(k, o)| (*k, o.len()))
            .collect()
    }

    /// A Zeek-style connection uid.
    fn uid(rng: &mut Rng) -> String {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut s = String::with_capacity(18);
        s.push('C');
        for _ in 0..17 {
            s.push(char::from(B62[rng.index(B62.len())]));
        }
        s
    }

    /// A background row of the given application at `ts_us`.
    pub fn background(&self, rng: &mut Rng, ts_us: i64, app: App) -> Flow<'_> {
        let p = &self.pools;
        let v6 = rng.chance(0.08);
        let (src, dst) = if v6 {
            (p.clients_v6.draw(rng), p.servers_v6.draw(rng))
        } else {
            (p.clients_v4.draw(rng), p.servers_v4.draw(rng))
        };
        let mut f = Flow {
            ts_us,
            uid: Self::uid(rng),
            flow_id: (rng.next_u64() >> 12) as i64,
            app,
            udp: false,
            src: Cow::Borrowed(src),
            src_port: rng.range(32_768, 60_999) as u16,
            dst: Cow::Borrowed(dst),
            dst_port: 443,
            service: None,
            duration: (rng.log_uniform(1, 600_000) as f64) / 1000.0,
            orig_bytes: rng.log_uniform(40, 200_000) as i64,
            resp_bytes: rng.log_uniform(40, 5_000_000) as i64,
            conn_state: "SF",
            dns_query: None,
            dns_qtype: "A",
            dns_rcode: "NOERROR",
            answers: Vec::new(),
            http_method: "GET",
            http_host: None,
            http_path: None,
            http_url: None,
            http_status: 200,
            user_agent: None,
            tls_version: "TLSv13",
            sni: None,
            ja3: None,
            file_name: None,
            mime: "",
            file_size: 0,
            md5: None,
            sha1: None,
            sha256: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            planted: None,
        };
        match app {
            App::Conn => {
                let (port, udp, svc) = rng.pick(&[
                    (443u16, false, None),
                    (443, true, Some("quic")),
                    (80, false, None),
                    (22, false, Some("ssh")),
                    (3389, false, Some("rdp")),
                    (123, true, Some("ntp")),
                    (8443, false, None),
                    (5222, false, None),
                ]);
                f.dst_port = port;
                f.udp = udp;
                f.service = svc;
                f.conn_state = rng.pick(&["SF", "SF", "SF", "S0", "REJ", "RSTO", "SH"]);
            }
            App::Dns => {
                f.udp = true;
                f.dst = Cow::Borrowed(rng.pick_ref(&p.resolvers).as_str());
                f.dst_port = 53;
                f.duration /= 1000.0;
                f.orig_bytes = rng.range(30, 80) as i64;
                f.resp_bytes = rng.range(60, 400) as i64;
                f.dns_query = Some(Cow::Borrowed(p.names.draw(rng)));
                f.dns_qtype = rng.pick(&["A", "A", "A", "AAAA", "HTTPS"]);
                if rng.chance(0.1) {
                    f.dns_rcode = "NXDOMAIN";
                } else if f.dns_qtype != "HTTPS" && rng.chance(0.7) {
                    let servers = if f.dns_qtype == "AAAA" {
                        &p.servers_v6
                    } else {
                        &p.servers_v4
                    };
                    for _ in 0..rng.range(1, 3) {
                        f.answers.push(Cow::Borrowed(servers.draw(rng).as_str()));
                    }
                }
            }
            App::Http | App::File => {
                let u = p.urls.draw(rng);
                f.dst_port = if u.full.starts_with("https") { 443 } else { 80 };
                f.http_host = Some(Cow::Borrowed(&u.host));
                f.http_path = Some(Cow::Borrowed(&u.path));
                f.http_url = Some(Cow::Borrowed(&u.full));
                f.http_method = rng.pick(&["GET", "GET", "GET", "POST", "HEAD"]);
                f.http_status = rng.pick(&[200, 200, 200, 204, 301, 302, 304, 404, 500]);
                f.user_agent = Some(Cow::Borrowed(p.user_agents.draw(rng)));
                if app == App::File {
                    let file = p.files.draw(rng);
                    f.file_name = Some(Cow::Borrowed(&file.name));
                    f.mime = file.mime;
                    f.file_size = file.size;
                    f.resp_bytes = file.size;
                    f.md5 = Some(Cow::Borrowed(&file.md5));
                    f.sha1 = Some(Cow::Borrowed(&file.sha1));
                    f.sha256 = Some(Cow::Borrowed(&file.sha256));
                }
            }
            App::Tls => {
                f.sni = Some(Cow::Borrowed(p.names.draw(rng)));
                f.ja3 = Some(Cow::Borrowed(p.ja3.draw(rng)));
                f.tls_version = if rng.chance(0.7) { "TLSv13" } else { "TLSv12" };
            }
            App::Smtp => {
                f.dst_port = rng.pick(&[25, 587]);
                f.mail_from = Some(Cow::Borrowed(p.senders.draw(rng)));
                for _ in 0..rng.range(1, 3) {
                    f.rcpt_to
                        .push(Cow::Borrowed(p.recipients.draw(rng).as_str()));
                }
            }
        }
        f
    }

    /// A background application, by the mix a perimeter sensor sees.
    pub fn background_app(rng: &mut Rng) -> App {
        [
            App::Conn,
            App::Dns,
            App::Http,
            App::Tls,
            App::File,
            App::Smtp,
        ][rng.weighted(&[35, 30, 12, 18, 3, 2])]
    }

    /// A row carrying one indicator valid at `ts_us`, or `None` when none could be planted
    /// (no candidates, or none valid at that time after a few tries).
    pub fn planted(&self, rng: &mut Rng, ts_us: i64) -> Option<Flow<'_>> {
        let c = &self.candidates;
        if c.kinds.is_empty() {
            return None;
        }
        let at = ts_us.div_euclid(1_000_000);
        let meta = self.index.meta();
        for _ in 0..32 {
            let k = rng.weighted(&c.weights);
            let ord = c.ords[k][c.zipf[k].sample(rng)];
            if !meta.valid_at(ord, at) {
                continue;
            }
            if let Some(f) = self.plant(rng, ts_us, c.kinds[k], ord) {
                return Some(f);
            }
        }
        None
    }

    /// Builds a row carrying indicator `ord` and checks that `cwn match` finds it there.
    fn plant(&self, rng: &mut Rng, ts_us: i64, kind: Kind, ord: IndicatorId) -> Option<Flow<'_>> {
        let value = self.index.meta().value(ord);
        let direction_src =
            self.index.meta().direction(ord) == Some(crate::indicator::Direction::Src);
        let owned = |s: String| Some(Cow::<str>::Owned(s));
        let (mut f, field, probe, port) = match kind {
            Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr | Kind::IpPort => {
                let (addr, port) = match kind {
                    Kind::Cidr => (random_in(value.parse::<IpNet>().ok()?, rng), None),
                    Kind::IpPort => {
                        let (a, p) = normalize::split_ip_port(value)?;
                        (a, Some(p))
                    }
                    _ => (value.parse::<IpAddr>().ok()?, None),
                };
                let text = addr.to_string();
                if port.is_none() && !direction_src && rng.chance(0.2) {
                    // A resolution to the bad address, seen in a DNS answer.
                    let mut f = self.background(rng, ts_us, App::Dns);
                    f.dns_rcode = "NOERROR";
                    f.dns_qtype = if addr.is_ipv6() { "AAAA" } else { "A" };
                    f.answers = vec![Cow::Owned(text.clone())];
                    (f, FieldKind::Ip, text, None)
                } else {
                    let app = rng.pick(&[App::Conn, App::Tls, App::Conn]);
                    let mut f = self.background(rng, ts_us, app);
                    // Keep one address family per flow.
                    let internal = if addr.is_ipv6() {
                        self.pools.clients_v6.draw(rng)
                    } else {
                        self.pools.clients_v4.draw(rng)
                    };
                    if direction_src {
                        // Inbound: the listed source connects to one of ours.
                        f.src = Cow::Owned(text.clone());
                        f.dst = Cow::Borrowed(internal);
                        f.dst_port = rng.pick(&[22u16, 443, 3389, 445, 8080]);
                        if let Some(p) = port {
                            f.src_port = p;
                        }
                    } else {
                        f.src = Cow::Borrowed(internal);
                        f.dst = Cow::Owned(text.clone());
                        if let Some(p) = port {
                            f.dst_port = p;
                        }
                    }
                    (f, FieldKind::Ip, text, port)
                }
            }
            Kind::Domain | Kind::Hostname => {
                let name = if kind == Kind::Domain && rng.chance(0.6) {
                    format!(
                        "{}.{value}",
                        rng.pick(&["www", "mail", "cdn", "api", "login", "x7", "a1b2"])
                    )
                } else {
                    value.to_string()
                };
                let app = [App::Dns, App::Tls, App::Http][rng.weighted(&[60, 25, 15])];
                let mut f = self.background(rng, ts_us, app);
                match app {
                    App::Dns => f.dns_query = owned(name.clone()),
                    App::Tls => f.sni = owned(name.clone()),
                    _ => {
                        let path = f.http_path.clone().unwrap_or(Cow::Borrowed("/"));
                        f.http_url = owned(format!("https://{name}{path}"));
                        f.http_host = owned(name.clone());
                    }
                }
                (f, FieldKind::Domain, name, None)
            }
            Kind::Url => {
                let u = normalize::url(value).ok()?;
                let mut f = self.background(rng, ts_us, App::Http);
                f.http_url = owned(value.to_string());
                f.http_host = owned(u.host.clone());
                let mut path = u.path.clone();
                if let Some(q) = &u.query {
                    path.push('?');
                    path.push_str(q);
                }
                f.http_path = owned(path);
                (f, FieldKind::Url, value.to_string(), None)
            }
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
                let mut f = self.background(rng, ts_us, App::File);
                // The file is new: its other digests too.
                f.md5 = owned(values::hex(rng, 32));
                f.sha1 = owned(values::hex(rng, 40));
                f.sha256 = owned(values::hex(rng, 64));
                let fk = match kind {
                    Kind::Md5 => {
                        f.md5 = owned(value.to_string());
                        FieldKind::Md5
                    }
                    Kind::Sha1 => {
                        f.sha1 = owned(value.to_string());
                        FieldKind::Sha1
                    }
                    _ => {
                        f.sha256 = owned(value.to_string());
                        FieldKind::Sha256
                    }
                };
                (f, fk, value.to_string(), None)
            }
            Kind::Email => {
                let mut f = self.background(rng, ts_us, App::Smtp);
                f.mail_from = owned(value.to_string());
                (f, FieldKind::Email, value.to_string(), None)
            }
            Kind::Ja3 => {
                let mut f = self.background(rng, ts_us, App::Tls);
                f.ja3 = owned(value.to_string());
                (f, FieldKind::Ja3, value.to_string(), None)
            }
            Kind::UserAgent => {
                let mut f = self.background(rng, ts_us, App::Http);
                f.user_agent = owned(value.to_string());
                (f, FieldKind::UserAgent, value.to_string(), None)
            }
            _ => return None,
        };
        // Check that the planted value hits its own indicator the way `cwn match` looks up.
        let mut out = Vec::new();
        self.matcher.lookup(&field, &probe, port, &mut out);
        if !out.contains(&ord.as_u32()) {
            return None;
        }
        f.planted = Some(kind);
        Some(f)
    }

    /// The preset rows are laid out for.
    pub fn preset(&self) -> Preset {
        self.preset
    }
}

/// A uniformly random address inside `net`.
fn random_in(net: IpNet, rng: &mut Rng) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host_bits = 32 - u32::from(n.prefix_len());
            let mask = if host_bits == 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            IpAddr::V4(Ipv4Addr::from(
                n.network().to_bits() | (rng.next_u32() & mask),
            ))
        }
        IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from(n.network().to_bits() | (r & mask)))
        }
    }
}
