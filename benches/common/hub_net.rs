//! The network the hub benches run against: a PKI, a registry of a publisher, a partner and
//! `subscribers` subscribers (one address each, see [`addr`]), and a signed snapshot holding one
//! domain indicator, `evil.example`, in a fresh directory (`CWN_BENCH_DIR` picks its parent;
//! `/dev/shm` takes the disk's fsync out of the figures).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cwn::net::client::Client;
use cwn::net::tls::Identity;

use cwn::index::IndexBuilder;
use cwn::index::snapshot::keys;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::net::pki;

/// A numeric setting from the environment, else `default`.
/// How long the benches' subscribers hold their acks: `CWN_BENCH_ACK_MS`, by default as long
/// as `cwn subscribe` holds them ([`SUBSCRIBE_ACK_DELAY`](cwn::net::client::SUBSCRIBE_ACK_DELAY));
/// 0: each at once.
pub fn ack_delay() -> Duration {
    let default = cwn::net::client::SUBSCRIBE_ACK_DELAY.as_millis() as usize;
    Duration::from_millis(env("CWN_BENCH_ACK_MS", default) as u64)
}

pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The one address in subscriber `i`'s constituency.
pub fn addr(i: usize) -> String {
    format!("198.18.{}.{}", i / 256, i % 256)
}

/// The directory holding `pki/`, `registry.toml`, `verify.pem` and `set.cwnsnap`.
pub struct BenchNet {
    /// Removed on drop.
    pub dir: tempfile::TempDir,
    /// `dir/pki`.
    pub pki_dir: PathBuf,
}

impl BenchNet {
    /// Issues every certificate and writes the registry and the snapshot.
    pub fn new(subscribers: usize) -> Self {
        let dir = match std::env::var_os("CWN_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let p = dir.path();
        let pki_dir = p.join("pki");
        pki::init(&pki_dir, &pki::CaOptions::default()).unwrap();
        let issue = |id: &str, role: &str| {
            pki::issue(
                &pki_dir,
                &pki::IssueOptions {
                    entity: id.into(),
                    roles: vec![role.into()],
                    dns: vec![],
                    ips: vec![],
                    days: 2,
                    force: false,
                },
            )
            .unwrap();
        };
        issue("hub", "hub");
        issue("msp", "partner");
        let mut registry = String::from(
            "[[entities]]\nid = \"ncsc\"\nname = \"NCSC\"\nroles = [\"publisher\"]\n\n[[entities]]\nid = \"msp\"\nname = \"MSP\"\nroles = [\"partner\"]\ntrusted_by_all = true\n",
        );
        for i in 0..subscribers {
            issue(&format!("s{i}"), "subscriber");
            registry.push_str(&format!(
                "\n[[entities]]\nid = \"s{i}\"\nname = \"S{i}\"\nroles = [\"subscriber\"]\nprefixes = [\"{}\"]\n",
                addr(i)
            ));
        }
        std::fs::write(p.join("registry.toml"), registry).unwrap();
        let key = keys::generate().unwrap();
        std::fs::write(
            p.join("verify.pem"),
            keys::verify_pem(&key.verifying_key()).unwrap(),
        )
        .unwrap();
        let mut set = IndicatorSet::new();
        let _ = set.insert(Indicator::new(
            "c2",
            Kind::Domain,
            "evil.example",
            Arc::from("bench"),
            Tlp::Green,
        ));
        let snap = IndexBuilder::new()
            .set_version(1)
            .build(&set)
            .unwrap()
            .to_snapshot(Some(&key));
        std::fs::write(p.join("set.cwnsnap"), snap).unwrap();
        BenchNet { dir, pki_dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Connects and subscribes subscribers `s0..s{n-1}` (from `pki_dir`), 64 handshakes at a time:
/// subscriber `i` to `hubs[i % hubs.len()]` first and the others after it, as `--hub A,B` would,
/// over `sockets` shared client sockets per hub (0: a socket each, as separate machines would
/// have).
#[allow(dead_code)] // not every bench that shares this module holds subscribers
pub async fn subscribe_all(
    pki_dir: &Path,
    hubs: &[String],
    n: usize,
    sockets: usize,
) -> Vec<cwn::net::client::Subscription> {
    use cwn::net::client::Client;
    use cwn::net::tls::Identity;
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let endpoints: Vec<Vec<quinn::Endpoint>> = hubs
        .iter()
        .map(|h| {
            let remote: std::net::SocketAddr = h.parse().unwrap();
            (0..sockets)
                .map(|_| cwn::net::endpoint::shared_client_endpoint(remote).unwrap())
                .collect()
        })
        .collect();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let id = Identity::from_pki_dir(pki_dir, &format!("s{i}")).unwrap();
        let own = i % hubs.len();
        let list: Vec<String> = (0..hubs.len())
            .map(|k| hubs[(own + k) % hubs.len()].clone())
            .collect();
        let list = list.join(",");
        let gate = gate.clone();
        let eps = &endpoints[own];
        let ep = (!eps.is_empty()).then(|| eps[i % eps.len()].clone());
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let transport = cwn::net::endpoint::Transport::default();
            let client = match &ep {
                Some(ep) => Client::connect_on(ep, &list, &id, &transport).await,
                None => Client::connect_with(&list, &id, &transport).await,
            };
            client
                .unwrap()
                .subscribe(cwn::hub::StartFrom::Acked)
                .await
                .unwrap()
        }));
    }
    let mut subs = Vec::with_capacity(n);
    for t in pending {
        subs.push(t.await.unwrap());
    }
    subs
}

/// One partner batch: the JSON lines `text` written to `dir`, read back as `cwn stream` reads
/// telemetry (one batch of every line) and encoded for the wire, its first row `first_row`.
#[allow(dead_code)] // not every bench that shares this module streams
pub fn encode_batch(
    dir: &Path,
    fields: &cwn::telemetry::FieldMap,
    text: &str,
    first_row: usize,
) -> Vec<u8> {
    let f = dir.join("batch.jsonl");
    std::fs::write(&f, text).unwrap();
    let tb = cwn::telemetry::open(&f, None, fields)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        tb.batch.num_rows(),
        text.lines().count(),
        "one batch of every line"
    );
    cwn::net::batch::encode_telemetry(&tb.batch, fields, "t.jsonl", first_row as u64).unwrap()
}

/// The encoded size of a notification [`run`]'s subscribers received (0 before the first).
#[allow(dead_code)]
pub static NOTIFICATION_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// `VmHWM` and `VmRSS` of a process, KiB.
#[allow(dead_code)]
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Wall-clock milliseconds since the Unix epoch (the clock `created_at_ms` is on).
#[allow(dead_code)]
pub fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond() as u64
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
#[allow(dead_code)]
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: field 14 utime, 15 stime (1-based).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// The `q` quantile of sorted samples (0 when there are none).
#[allow(dead_code)]
pub fn pct(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q) as usize]
}

/// `hub.toml` after its `listen` and `data_dir` lines: the bench network's files and limits
/// for `subscribers` connections.
#[allow(dead_code)]
pub fn hub_toml_rest(subscribers: usize) -> String {
    format!(
        "registry = \"registry.toml\"\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n[limits]\nmax_connections = {}\nqueue_size = 1024\nsend_window = \"256KiB\"\nidle_timeout = \"120s\"\nkeep_alive_interval = \"20s\"\n",
        subscribers + 16
    )
}

/// A ladder step's partner batches, encoded in `dir`: row i of batch k hits subscriber
/// (k * batch_rows + i) mod `subscribers`; every step's rows differ (so that no resend is
/// answered from memory).
#[allow(dead_code)]
pub fn step_batches(
    dir: &Path,
    fields: &cwn::telemetry::FieldMap,
    subscribers: usize,
    batch_rows: usize,
    step: usize,
    batches: usize,
) -> Vec<Vec<u8>> {
    (0..batches)
        .map(|k| {
            let text: String = (0..batch_rows)
                .map(|i| {
                    format!(
                        "{{\"q\":\"s{step}-{k}-{i}.evil.example\",\"c\":\"{}\"}}\n",
                        addr((k * batch_rows + i) % subscribers)
                    )
                })
                .collect();
            encode_batch(dir, fields, &text, k * batch_rows)
        })
        .collect()
}

/// Starts `cwn serve --config cfg`; returns it and its address once it listens.
#[allow(dead_code)]
pub fn serve(cfg: &Path) -> (std::process::Child, String) {
    serve_with(Path::new(env!("CARGO_BIN_EXE_cwn")), cfg, false)
}

/// [`serve`] with the `cwn` binary at `bin` (an earlier commit's, to compare side by side);
/// with `show_log`, the hub's log goes on to this process's stderr instead of being dropped.
#[allow(dead_code)]
pub fn serve_with(bin: &Path, cfg: &Path, show_log: bool) -> (std::process::Child, String) {
    let mut hub = std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(hub.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "cwn serve ended early"
        );
    }
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    std::thread::spawn(move || {
        if show_log {
            std::io::copy(&mut err, &mut std::io::stderr())
        } else {
            std::io::copy(&mut err, &mut std::io::sink())
        }
    });
    (hub, addr)
}

/// One rate's figures.
#[allow(dead_code)]
pub struct RateResult {
    /// The paced rate, notifications/s.
    pub rate: usize,
    /// Notifications received per second, from the rate's start to its last receipt.
    pub delivered_per_s: f64,
    /// Latency percentiles, ms.
    pub p50: u32,
    /// 99th percentile, ms.
    pub p99: u32,
    /// Notifications sent and not received within 60 s.
    pub missing: u64,
    /// CPU ms of the measured hub processes per 1,000 received.
    pub hub_cpu_per_1000: f64,
    /// CPU ms of the measured NATS servers per 1,000 received.
    pub nats_cpu_per_1000: f64,
    /// Peak resident memory (`VmHWM`) so far of the hub processes, then the NATS servers, MiB.
    pub peak_mib: (u64, u64),
}

/// Connects every subscriber (to `hubs[i % hubs.len()]` first, the others after it), then
/// streams the rate ladder through `partner_hub`; `hub_pids` and `nats_pids` are measured.
#[allow(clippy::too_many_arguments, dead_code)]
pub fn run(
    label: &str,
    rt: &tokio::runtime::Runtime,
    pki_dir: &Path,
    hubs: &[String],
    partner_hub: &str,
    hub_pids: &[u32],
    nats_pids: &[u32],
    subscribers: usize,
    rates: &[usize],
    secs: usize,
    batch_rows: usize,
    sockets: usize,
    batches_of: &dyn Fn(usize, usize) -> Vec<Vec<u8>>,
) -> (f64, Vec<RateResult>) {
    rt.block_on(async {
        let t_connect = Instant::now();
        // Samples: (created_at_ms, latency ms, subscriber).
        let samples: Arc<Mutex<Vec<(u64, u32, usize)>>> = Default::default();
        let subs = subscribe_all(pki_dir, hubs, subscribers, sockets).await;
        let connect_secs = t_connect.elapsed().as_secs_f64();
        println!(
            "{label}/connect: {subscribers} subscribers over {} hub process(es) connected and subscribed in {connect_secs:.2} s",
            hubs.len()
        );
        // Every subscriber receives, notes latency and acks what arrived together, with its
        // acks held as `cwn subscribe` holds them (`CWN_BENCH_ACK_MS`, default
        // `SUBSCRIBE_ACK_DELAY`; 0: each at once), until the connection ends (the hub it is
        // on is killed: then it stops; the failover step reconnects those it needs).
        let ack_delay = ack_delay();
        for (i, mut sub) in subs.into_iter().enumerate() {
            let samples = samples.clone();
            sub.set_ack_delay(ack_delay);
            tokio::spawn(async move {
                while let Ok(Some((off, n))) = sub.next().await {
                    let now = now_ms();
                    if NOTIFICATION_BYTES.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                        NOTIFICATION_BYTES
                            .store(n.encoded_len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut mine = vec![(n.created_at_ms, now.saturating_sub(n.created_at_ms) as u32, i)];
                    let mut last = off;
                    while let Ok(Ok(Some((o, n)))) =
                        tokio::time::timeout(Duration::ZERO, sub.next()).await
                    {
                        let now = now_ms();
                        mine.push((n.created_at_ms, now.saturating_sub(n.created_at_ms) as u32, i));
                        last = o;
                    }
                    samples.lock().unwrap().extend(mine);
                    if sub.ack(last).await.is_err() {
                        break;
                    }
                }
            });
        }
        let partner_id = Identity::from_pki_dir(pki_dir, "msp").unwrap();
        let mut results = Vec::new();
        for (step, &rate) in rates.iter().enumerate() {
            let batches = (rate * secs).div_ceil(batch_rows);
            let ipc = batches_of(step, batches);
            let rows = (batches * batch_rows) as u64;
            let cpu0: (f64, f64) = (
                hub_pids.iter().map(|&p| cpu_secs(p)).sum(),
                nats_pids.iter().map(|&p| cpu_secs(p)).sum(),
            );
            let start_ms = now_ms();
            samples.lock().unwrap().clear();
            let mut partner = Client::connect(partner_hub, &partner_id).await.unwrap();
            let period = Duration::from_secs_f64(batch_rows as f64 / rate as f64);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for b in ipc {
                    tick.tick().await;
                    if tx.send(Ok(b)).await.is_err() {
                        break;
                    }
                }
            });
            let answered = partner.stream_channel(rx, |_, _| {}).await.unwrap();
            assert_eq!(answered as usize, batches);
            partner.close().await;
            // Wait for the deliveries (at most 60 s after the stream).
            let t = Instant::now();
            while (samples.lock().unwrap().len() as u64) < rows && t.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let got: Vec<(u64, u32, usize)> = samples.lock().unwrap().clone();
            let last_receipt = got
                .iter()
                .map(|&(c, l, _)| c + u64::from(l))
                .max()
                .unwrap_or(start_ms);
            let mut lat: Vec<u32> = got.iter().map(|g| g.1).collect();
            lat.sort_unstable();
            let cpu1: (f64, f64) = (
                hub_pids.iter().map(|&p| cpu_secs(p)).sum(),
                nats_pids.iter().map(|&p| cpu_secs(p)).sum(),
            );
            let n = got.len().max(1) as f64;
            let r = RateResult {
                rate,
                delivered_per_s: got.len() as f64
                    / ((last_receipt.saturating_sub(start_ms)).max(1) as f64 / 1000.0),
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                missing: rows.saturating_sub(got.len() as u64),
                hub_cpu_per_1000: (cpu1.0 - cpu0.0) * 1000.0 / n * 1000.0,
                nats_cpu_per_1000: (cpu1.1 - cpu0.1) * 1000.0 / n * 1000.0,
                peak_mib: (
                    hub_pids.iter().map(|&p| memory_kib(p).0).sum::<u64>() / 1024,
                    nats_pids.iter().map(|&p| memory_kib(p).0).sum::<u64>() / 1024,
                ),
            };
            println!(
                "{label}/rate {rate}/s: delivered {:.0}/s, p50 {} ms, p99 {} ms, missing {}, CPU per 1,000: cwn serve {:.0} ms, nats-server {:.0} ms; peak memory {} MiB",
                r.delivered_per_s, r.p50, r.p99, r.missing, r.hub_cpu_per_1000, r.nats_cpu_per_1000, r.peak_mib.0 + r.peak_mib.1
            );
            results.push(r);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (connect_secs, results)
    })
}
