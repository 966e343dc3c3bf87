//! The status listener's HTTP/1.1, without IO: parse a request head, route it, build the
//! response bytes.
//!
//! Deliberately small: `GET` and `HEAD` only, no request bodies, no keep-alive (every
//! response says `Connection: close`), a hard limit on the head size. That is all a
//! Prometheus scraper, a browser and `curl` need, and it leaves little to attack. Kept by hand
//! rather than on hyper on purpose: hyper's strength is what this listener refuses (keep-alive,
//! pipelining, bodies, upgrades), and it would bring five crates and a connection state
//! machine for a parser of about sixty lines that is table-tested and fuzzed
//! (`fuzz/fuzz_targets/http_request.rs`).

use jiff::Timestamp;

use super::metrics::Metrics;
use super::{page, prometheus};

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A request method the listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the headers of a `GET`, no body.
    Head,
}

/// A parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The path, without query string.
    pub path: &'a str,
}

/// Why a request head could not be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is not complete yet; read more bytes.
    #[error("incomplete request head")]
    Incomplete,
    /// The head exceeds [`MAX_REQUEST_HEAD`].
    #[error("request head larger than {MAX_REQUEST_HEAD} bytes")]
    TooLarge,
    /// Not an HTTP/1.x request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A method other than `GET` or `HEAD`.
    #[error("method not allowed")]
    MethodNotAllowed,
}

/// Parses the request head at the start of `buf`.
///
/// Returns [`RequestError::Incomplete`] until `buf` holds the blank line that ends the head.
///
/// ```
/// use cwn::status::http::{parse_request, Method, RequestError};
///
/// let req = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
/// assert_eq!((req.method, req.path), (Method::Get, "/metrics"));
/// assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Err(RequestError::Incomplete));
/// ```
pub fn parse_request(buf: &[u8]) -> Result<Request<'_>, RequestError> {
    let Some(end) = find_head_end(buf) else {
        return Err(if buf.len() >= MAX_REQUEST_HEAD {
            RequestError::TooLarge
        } else {
            RequestError::Incomplete
        });
    };
    if end > MAX_REQUEST_HEAD {
        return Err(RequestError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| RequestError::Malformed("request head is not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Malformed("HTTP version"));
    }
    for header in lines.filter(|l| !l.is_empty()) {
        let Some((name, _)) = header.split_once(':') else {
            return Err(RequestError::Malformed("header line"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(RequestError::Malformed("header name"));
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(RequestError::MethodNotAllowed);
        }
        _ => return Err(RequestError::Malformed("method")),
    };
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("request target"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request { method, path })
}

/// The length of the head up to and including the blank line, if it is all there.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_REQUEST_HEAD + 4);
    let buf = &buf[..limit];
    memchr::memmem::find(buf, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(buf, b"\n\n").map(|i| i + 2))
}

/// A response about to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body (sent unless the request was `HEAD`).
    pub body: Vec<u8>,
    /// Whether to leave the body out (`HEAD`).
    pub head_only: bool,
}

/// The page's content security policy: nothing from anywhere but this listener, so a page
/// that accidentally referenced a CDN would show up broken in tests rather than leak.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            head_only: false,
        }
    }

    /// A plain-text error response for a request that could not be parsed.
    pub fn for_error(e: RequestError) -> Self {
        let status = match e {
            RequestError::Incomplete | RequestError::Malformed(_) => 400,
            RequestError::TooLarge => 431,
            RequestError::MethodNotAllowed => 405,
        };
        Response::new(status, "text/plain; charset=utf-8", format!("{e}\n"))
    }

    /// `408 Request Timeout`.
    pub fn timeout() -> Self {
        Response::new(408, "text/plain; charset=utf-8", "request timeout\n")
    }

    /// The bytes on the wire: status line, headers, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Content-Security-Policy: {CSP}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The entity id of a drill-down path (`/entity/<id>`, or `/api/entity/<id>.json` with
/// `true`), percent-decoded.
fn entity_path(path: &str) -> Option<(String, bool)> {
    let (raw, json) = match path.strip_prefix("/api/entity/") {
        Some(rest) => (rest.strip_suffix(".json")?, true),
        None => (path.strip_prefix("/entity/")?, false),
    };
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let id = String::from_utf8(out).ok()?;
    (!id.is_empty() && !id.contains('/')).then_some((id, json))
}

/// The response to `req` with the figures of `metrics` at `now`.
pub fn respond(metrics: &Metrics, req: &Request<'_>, now: Timestamp) -> Response {
    let mut resp = match req.path {
        "/" | "/index.html" => Response::new(
            200,
            "text/html; charset=utf-8",
            page::render(&metrics.status(now)),
        ),
        "/metrics" => Response::new(
            200,
            prometheus::CONTENT_TYPE,
            prometheus::render(&metrics.status(now)),
        ),
        "/api/status.json" => Response::new(
            200,
            "application/json",
            serde_json::to_vec(&metrics.status(now)).unwrap_or_default(),
        ),
        path => match entity_path(path) {
            Some((id, json)) => match metrics.entity(&id, now) {
                Some(d) if json => Response::new(
                    200,
                    "application/json",
                    serde_json::to_vec(&d).unwrap_or_default(),
                ),
                Some(d) => Response::new(200, "text/html; charset=utf-8", page::render_entity(&d)),
                None => Response::new(404, "text/plain; charset=utf-8", "no such entity\n"),
            },
            None => Response::new(404, "text/plain; charset=utf-8", "not found\n"),
        },
    };
    resp.head_only = req.method == Method::Head;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        type Case<'a> = (&'a [u8], Result<(Method, &'a str), RequestError>);
        let table: &[Case<'_>] = &[
            (b"GET / HTTP/1.1\r\n\r\n", Ok((Method::Get, "/"))),
            (
                b"HEAD /metrics HTTP/1.0\n\n",
                Ok((Method::Head, "/metrics")),
            ),
            (
                b"GET /api/status.json?t=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nbody",
                Ok((Method::Get, "/api/status.json")),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n",
                Err(RequestError::Incomplete),
            ),
            (b"", Err(RequestError::Incomplete)),
            (
                b"POST / HTTP/1.1\r\n\r\n",
                Err(RequestError::MethodNotAllowed),
            ),
            (
                b"get / HTTP/1.1\r\n\r\n",
                Err(RequestError::Malformed("method")),
            ),
            (
                b"GET / HTTP/2\r\n\r\n",
                Err(RequestError::Malformed("HTTP version")),
            ),
            (
                b"GET  / HTTP/1.1\r\n\r\n",
                Err(RequestError::Malformed("request line")),
            ),
            (
                b"GET http://a/ HTTP/1.1\r\n\r\n",
                Err(RequestError::Malformed("request target")),
            ),
            (
                b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
                Err(RequestError::Malformed("header line")),
            ),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                Err(RequestError::Malformed("header name")),
            ),
            (
                b"GET /\xff HTTP/1.1\r\n\r\n",
                Err(RequestError::Malformed("request head is not UTF-8")),
            ),
        ];
        for (input, want) in table {
            let got = parse_request(input).map(|r| (r.method, r.path));
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST_HEAD, b'a');
        assert_eq!(parse_request(&big), Err(RequestError::TooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&big), Err(RequestError::TooLarge));
        assert_eq!(Response::for_error(RequestError::TooLarge).status, 431);
    }

    #[test]
    fn routes() {
        let m = Metrics::default();
        let now = Timestamp::from_second(1_750_000_000).unwrap();
        let get = |path| {
            respond(
                &m,
                &Request {
                    method: Method::Get,
                    path,
                },
                now,
            )
        };
        let page = get("/");
        assert_eq!(page.status, 200);
        assert!(page.content_type.starts_with("text/html"));
        let metrics = get("/metrics");
        assert_eq!(metrics.content_type, prometheus::CONTENT_TYPE);
        let json = get("/api/status.json");
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(v["time"], 1_750_000_000);
        assert_eq!(get("/nope").status, 404);

        let head = respond(
            &m,
            &Request {
                method: Method::Head,
                path: "/metrics",
            },
            now,
        );
        let bytes = String::from_utf8(head.to_bytes()).unwrap();
        assert!(bytes.ends_with("\r\n\r\n"), "{bytes}");
        assert!(bytes.contains(&format!("Content-Length: {}\r\n", metrics.body.len())));
        assert!(bytes.contains("Connection: close\r\n"));
        let refused =
            String::from_utf8(Response::for_error(RequestError::MethodNotAllowed).to_bytes())
                .unwrap();
        assert!(refused.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(refused.contains("Allow: GET, HEAD\r\n"));
    }
}
