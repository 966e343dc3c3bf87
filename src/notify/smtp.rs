//! A small SMTP submission client (RFC 5321) for the `smtp:HOST:PORT` target: EHLO, STARTTLS
//! when the server offers it (or always, when required), AUTH PLAIN when credentials are
//! given (only over TLS, or to a loopback server), one message per call, and the MIME message
//! itself (RFC 5322 / 2045: multipart/alternative, plain text and HTML, base64, the subject
//! RFC 2047-encoded when it is not ASCII).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::Alert;
use super::render;

/// How to reach and use the mail server.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// `HOST:PORT`.
    pub server: String,
    /// Envelope and header sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// STARTTLS required (else used when offered).
    pub require_tls: bool,
    /// User and password for AUTH PLAIN.
    pub auth: Option<(String, String)>,
    /// CA certificates (PEM) to trust for STARTTLS instead of the web PKI roots.
    pub ca: Option<Vec<u8>>,
}

/// A stream that is plain TCP or TLS after STARTTLS.
enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

impl Conn {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(r) => r.get_mut().write_all(b),
            Conn::Tls(r) => {
                r.get_mut().write_all(b)?;
                r.get_mut().flush()
            }
        }
    }

    fn read_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        // Bounded: a server line longer than 4 KiB is an error, not an allocation.
        let r: &mut dyn std::io::BufRead = match self {
            Conn::Plain(r) => r,
            Conn::Tls(r) => &mut **r,
        };
        let n = r.take(4096).read_line(out)?;
        if n == 4096 && !out.ends_with('\n') {
            return Err(std::io::Error::other("a reply line longer than 4 KiB"));
        }
        Ok(n)
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {reason}")]
pub struct SmtpError {
    server: String,
    reason: String,
}

struct Session<'a> {
    cfg: &'a SmtpConfig,
    conn: Conn,
}

impl Session<'_> {
    fn fail(&self, reason: impl std::fmt::Display) -> SmtpError {
        SmtpError {
            server: self.cfg.server.clone(),
            reason: reason.to_string(),
        }
    }

    /// Reads one reply (all its lines); its code and text.
    fn reply(&mut self) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        for _ in 0..64 {
            let mut line = String::new();
            let n = self.conn.read_line(&mut line).map_err(|e| self.fail(e))?;
            if n == 0 {
                return Err(self.fail("the server closed the connection"));
            }
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| self.fail(format!("not an SMTP reply: {:?}", line.trim_end())))?;
            text.push_str(line.get(4..).unwrap_or("").trim_end());
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
        Err(self.fail("a reply of more than 64 lines"))
    }

    /// Sends `cmd` and expects a reply in `want` (e.g. 2xx: 200..300).
    fn command(&mut self, cmd: &str, want: std::ops::Range<u16>) -> Result<String, SmtpError> {
        self.conn
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| self.fail(e))?;
        let (code, text) = self.reply()?;
        if !want.contains(&code) {
            let shown = if cmd.starts_with("AUTH") {
                "AUTH …"
            } else {
                cmd
            };
            return Err(self.fail(format!("{shown}: {code} {}", text.trim_end())));
        }
        Ok(text)
    }
}

pub(crate) fn tls_config(ca: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem) {
                let c = c.map_err(|e| e.to_string())?;
                roots.add(c).map_err(|e| e.to_string())?;
            }
            if roots.is_empty() {
                return Err("no PEM certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Sends one message with `alerts` (one alert, or a digest) to every recipient.
///
/// # Errors
/// The server cannot be reached, refuses TLS that is required, a command, a recipient or the
/// message.
pub fn send(cfg: &SmtpConfig, alerts: &[Alert]) -> Result<(), SmtpError> {
    let fail = |reason: String| SmtpError {
        server: cfg.server.clone(),
        reason,
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(cfg.server.as_str())
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .and_then(|()| tcp.set_write_timeout(Some(Duration::from_secs(60))))
        .map_err(|e| fail(e.to_string()))?;
    let host = cfg
        .server
        .rsplit_once(':')
        .map_or(cfg.server.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut s = Session {
        cfg,
        conn: Conn::Plain(BufReader::new(
            tcp.try_clone().map_err(|e| fail(e.to_string()))?,
        )),
    };
    let (code, greeting) = s.reply()?;
    if code != 220 {
        return Err(s.fail(format!("greeting {code} {}", greeting.trim_end())));
    }
    let helo = "EHLO cwn.invalid";
    let mut caps = s.command(helo, 200..300)?;
    let offers = |caps: &str, what: &str| {
        caps.lines().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(what))
        })
    };
    let mut tls = false;
    if offers(&caps, "STARTTLS") {
        s.command("STARTTLS", 220..221)?;
        let config = tls_config(cfg.ca.as_deref()).map_err(|e| fail(format!("--smtp-ca: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| fail(format!("{host}: {e}")))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| fail(e.to_string()))?;
        s.conn = Conn::Tls(Box::new(BufReader::new(rustls::StreamOwned::new(
            conn, tcp,
        ))));
        caps = s.command(helo, 200..300)?;
        tls = true;
    } else if cfg.require_tls {
        return Err(s.fail("the server does not offer STARTTLS, and TLS is required"));
    }
    if let Some((user, pass)) = &cfg.auth {
        let loopback = addr.ip().is_loopback();
        if !tls && !loopback {
            return Err(s.fail("no password is sent without TLS"));
        }
        if !caps.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|a| a.eq_ignore_ascii_case("AUTH"))
                && w.any(|m| m.eq_ignore_ascii_case("PLAIN"))
        }) {
            return Err(s.fail("the server does not offer AUTH PLAIN"));
        }
        let token =
            crate::ingest::stix::pattern::encode_base64(format!("\0{user}\0{pass}").as_bytes());
        s.command(&format!("AUTH PLAIN {token}"), 235..236)?;
    }
    s.command(&format!("MAIL FROM:<{}>", cfg.from), 250..251)?;
    for to in &cfg.to {
        s.command(&format!("RCPT TO:<{to}>"), 250..252)?;
    }
    s.command("DATA", 354..355)?;
    let msg = message(cfg, alerts);
    s.conn
        .write_all(&dot_stuffed(&msg))
        .map_err(|e| s.fail(e))?;
    s.command(".", 250..251)?;
    let _ = s.command("QUIT", 200..300);
    Ok(())
}

/// `msg` with CRLF line ends, leading dots doubled, and the end-of-data line left to the
/// caller.
fn dot_stuffed(msg: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    for line in msg.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A header value: as is when printable ASCII, else RFC 2047 base64 words.
fn header_text(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_string();
    }
    // Words of at most 45 bytes of UTF-8 (60 base64 characters), cut at character bounds.
    let mut words = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let mut end = (start + 45).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?UTF-8?B?{}?=",
            crate::ingest::stix::pattern::encode_base64(&s.as_bytes()[start..end])
        ));
        start = end;
    }
    words.join("\r\n ")
}

/// Base64 in lines of 76 characters.
fn base64_lines(b: &[u8]) -> String {
    let all = crate::ingest::stix::pattern::encode_base64(b);
    let mut out = String::with_capacity(all.len() + all.len() / 76 * 2 + 2);
    for chunk in all.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// The whole message: headers and a multipart/alternative body.
pub fn message(cfg: &SmtpConfig, alerts: &[Alert]) -> String {
    let now = jiff::Timestamp::now();
    let date =
        jiff::fmt::rfc2822::to_string(&now.to_zoned(jiff::tz::TimeZone::UTC)).unwrap_or_default();
    let key = alerts
        .iter()
        .map(|a| format!("{}.{}", a.id, a.revision))
        .collect::<Vec<_>>()
        .join("|");
    let id = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()));
    let boundary = format!("cwn-{id}");
    let tlp = render::tlp_of_all(alerts);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{id}@cwn.invalid>\r\nMIME-Version: 1.0\r\nX-Cwn-TLP: TLP:{tlp}\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{text}--{boundary}\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {html}--{boundary}--\r\n",
        from = cfg.from,
        to = cfg.to.join(", "),
        subject = header_text(&render::subject(alerts)),
        tlp = tlp.name(),
        text = base64_lines(render::text(alerts).as_bytes()),
        html = base64_lines(render::html(alerts).as_bytes()),
    )
}
