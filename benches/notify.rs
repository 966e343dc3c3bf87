//! Delivery throughput of `cwn subscribe --deliver`, the figure of issue 21: at least 5,000
//! notifications a second to a local webhook, 1,000 to a local SMTP server in digest mode.
//!
//! 20,000 hub notifications, each a different indicator (so each one alert: the worst case
//! for aggregation), go through the subscriber's outbox as its receive loop hands them over
//! (groups of 1,024: aggregated, spooled, fsynced, state stored); then a webhook target and an
//! SMTP target in digest mode (a 1 s interval; a digest also goes once 10,000 alerts are held)
//! each deliver all 20,000 alerts from the spool
//! to a minimal receiver on loopback (HTTP/1.1 keep-alive answering 204; SMTP answering 250),
//! timed from start until the target's status counts them all.
//!
//! `cargo bench --bench notify`

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cwn::hub::EntityId;
use cwn::hub::notification::{Notification, NotificationId, NotificationKind};
use cwn::indicator::Tlp;
use cwn::notify::deliver::{Target, TargetConfig, start};
use cwn::notify::outbox::Outbox;
use cwn::notify::smtp::SmtpConfig;

const N: u64 = 20_000;

fn hit(i: u64) -> Notification {
    Notification {
        id: NotificationId(u128::from(i) + 1),
        created_at_ms: 1_780_000_000_000 + i,
        entity: EntityId(1),
        tlp: Tlp::Green,
        kind: NotificationKind::Hit,
        payload: serde_json::to_vec(&serde_json::json!({
            "indicator_id": format!("ind-{i}"), "kind": "domain",
            "indicator": format!("bad-{i}.example"), "field": "query",
            "value": format!("www.bad-{i}.example"), "row": i,
            "event_time": "2026-12-07T08:00:00Z", "tlp": "GREEN", "source": "feed",
            "tags": ["malware:x"], "partner": "msp", "rule": "r", "capacity": ["victim"],
            "victim": [{"field": "client", "value": format!("10.0.{}.{}", i / 250 % 250, i % 250)}],
        }))
        .unwrap(),
    }
}

/// A webhook receiver: HTTP/1.1 keep-alive, 204 for every request.
fn http_sink() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if w.write_all(ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// An SMTP receiver: 250 to everything, 354 to DATA, reads each message to its end.
fn smtp_sink() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                w.write_all(b"220 sink\r\n").unwrap();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let answer: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if cmd == "DATA" {
                        w.write_all(b"354 go on\r\n").unwrap();
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).unwrap_or(0) == 0 {
                                return;
                            }
                            if l == ".\r\n" {
                                break;
                            }
                        }
                        b"250 kept\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(target: Target) -> TargetConfig {
    TargetConfig {
        secret: Some(b"bench-secret".to_vec()),
        mail: Some(SmtpConfig {
            server: String::new(),
            from: "cwn@ncsc.example".into(),
            to: vec!["soc@entity.example".into()],
            require_tls: false,
            auth: None,
            ca: None,
        }),
        digest_every: Some(Duration::from_secs(1)),
        ..TargetConfig::new(target)
    }
}

/// Delivers the spool's `N` alerts through `target`; alerts a second.
fn deliver(outbox: &Outbox, target: Target) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let running = start(outbox.spool().clone(), config(target), stop.clone()).unwrap();
    while running.status.delivered.load(Ordering::Relaxed) < N {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "not delivered in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rate = N as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    outbox.spool().wake();
    running.join();
    rate
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(
        dir.path(),
        "bench",
        900_000,
        false,
        true,
        Default::default(),
    )
    .unwrap();
    let notes: Vec<(u64, Notification)> = (0..N).map(|i| (i, hit(i))).collect();
    let t = Instant::now();
    for group in notes.chunks(1024) {
        outbox.take(group, 1_780_000_000_000).unwrap();
    }
    let taken = t.elapsed();
    println!(
        "outbox: {N} notifications aggregated, spooled and stored in {:.2?}: {:.0}/s",
        taken,
        N as f64 / taken.as_secs_f64()
    );
    let webhook = deliver(&outbox, Target::Webhook(http_sink()));
    println!("webhook (batches of up to 200, HMAC-signed): {webhook:.0} alerts/s (goal >= 5,000)");
    let smtp = deliver(&outbox, Target::Smtp(smtp_sink()));
    println!(
        "smtp digest (1 s interval, 1,000 alerts per e-mail): {smtp:.0} alerts/s (goal >= 1,000)"
    );
}
