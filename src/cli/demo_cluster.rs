//! `cwn demo --cluster` (feature `cluster`): no single point of failure, shown live.
//!
//! In a temporary directory it starts three `nats-server` nodes (a JetStream cluster,
//! replicas 3) and two `cwn serve` edges on it, subscribes every subscriber with both edges'
//! addresses (half of them the first edge first, half the second), and streams paced partner
//! telemetry through the first edge while it kills, with SIGKILL, first that edge and then the
//! NATS node leading the notification stream, restarting each a few seconds later. At the end
//! it counts: every notification acknowledged to the partner must have reached its
//! subscriber, once per id, and nothing else anywhere.

use std::collections::{HashMap, HashSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use cwn::hub::StartFrom;
use cwn::index::IndexBuilder;
use cwn::index::snapshot::keys;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::net::client::{Client, StreamOptions};
use cwn::net::local_nats::LocalNats;
use cwn::net::pki;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;

/// Settings of `cwn demo --cluster`.
#[derive(Clone, Debug)]
pub struct ClusterDemo {
    /// Subscribers.
    pub subscribers: usize,
    /// Notifications per second the partner's telemetry makes.
    pub rate: u64,
    /// Seconds of streaming.
    pub duration: u64,
    /// The `nats-server` to run.
    pub nats_server: PathBuf,
}

/// Rows per partner batch.
const BATCH: usize = 50;

/// An edge: `cwn serve` on a fixed port, so that it comes back where clients look for it.
struct Edge {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Edge {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting cwn serve")?;
        let mut err = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        let mut said = String::new();
        let mut log = log;
        loop {
            line.clear();
            if err.read_line(&mut line)? == 0 {
                // What it said, here: the directory (and its log) goes when the demo ends.
                anyhow::bail!(
                    "an edge ended before it listened ({}): {}",
                    self.log.display(),
                    said.trim_end()
                );
            }
            said.push_str(&line);
            std::io::Write::write_all(&mut log, line.as_bytes())?;
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut log));
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The row that hits subscriber `s`: a subdomain of one of the demo's indicators, from an
/// address in `s`'s constituency.
fn row(n: u64, subscribers: usize) -> (String, String) {
    let s = (n % subscribers as u64) as usize;
    (
        format!("r{n}.c2-{}.demo-threat.example", n % 7),
        format!("10.{}.{}.{}", s / 256, s % 256, 1 + n % 200),
    )
}

/// What the subscribers received: per subscriber, the ids seen and the rows they named.
#[derive(Default)]
struct Received {
    /// (subscriber, row) → distinct notification ids.
    ids: HashMap<(usize, u64), HashSet<String>>,
    /// Deliveries, repeats included.
    deliveries: u64,
    /// Notifications at a subscriber the row does not belong to.
    misdelivered: u64,
    /// When each subscriber last received one.
    last: HashMap<usize, Instant>,
}

/// Runs the demo; returns its report and whether nothing was lost.
pub fn run(demo: &ClusterDemo) -> anyhow::Result<(serde_json::Value, bool)> {
    let tmp = super::demo_hub::TempDir::new()?;
    let dir = tmp.0.clone();
    eprintln!(
        "cwn demo --cluster: three NATS nodes, two edges, in {}",
        dir.display()
    );
    let mut nats = LocalNats::start(&demo.nats_server, &dir.join("nats"), 3)?;
    let spec = |s: &str| s.parse().map_err(anyhow::Error::msg);
    let fields = FieldMap::from_specs([spec("query=domain")?, spec("client=ip")?])
        .map_err(anyhow::Error::msg)?;
    setup(&dir, demo.subscribers)?;
    let ports = [free_udp_port()?, free_udp_port()?];
    let nats_list: Vec<String> = nats.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let mut edges = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = dir.join(format!("edge{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nregistry = \"registry.toml\"\ndata_dir = \"edge{i}\"\n\
                 [tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n\
                 [snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n\
                 [cluster]\nnats = [{}]\nreplicas = 3\n",
                nats_list.join(", ")
            ),
        )?;
        let mut e = Edge {
            config,
            log: dir.join(format!("edge{i}.log")),
            child: None,
        };
        e.start()?;
        edges.push(e);
    }
    let addrs = ports.map(|p| format!("127.0.0.1:{p}"));
    let lists = [
        format!("{},{}", addrs[0], addrs[1]),
        format!("{},{}", addrs[1], addrs[0]),
    ];
    eprintln!(
        "  edges on {} and {}; NATS on {}",
        addrs[0],
        addrs[1],
        nats.urls().join(", ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let received: Arc<Mutex<Received>> = Default::default();
    // Subscribers: each reconnects by itself (both addresses), de-duplicates by id.
    for s in 0..demo.subscribers {
        let id = Identity::from_pki_dir(&dir.join("pki"), &format!("s{s}"))?;
        let (list, received) = (lists[s % 2].clone(), received.clone());
        let n_subs = demo.subscribers as u64;
        rt.spawn(async move {
            loop {
                let sub = async {
                    let c = Client::connect(&list, &id).await?;
                    c.subscribe(StartFrom::Acked).await
                }
                .await;
                if let Ok(mut sub) = sub {
                    while let Ok(Some((offset, n))) = sub.next().await {
                        let payload: serde_json::Value =
                            serde_json::from_slice(&n.payload).unwrap_or_default();
                        let value = payload["value"].as_str().unwrap_or_default();
                        let row: Option<u64> = value
                            .strip_prefix('r')
                            .and_then(|v| v.split('.').next())
                            .and_then(|v| v.parse().ok());
                        {
                            let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
                            r.deliveries += 1;
                            r.last.insert(s, Instant::now());
                            match row {
                                Some(row) if (row % n_subs) as usize == s => {
                                    r.ids.entry((s, row)).or_default().insert(n.id.to_string());
                                }
                                _ => r.misdelivered += 1,
                            }
                        }
                        if sub.ack(offset).await.is_err() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    // The partner: paced batches through the first edge first, riding out its death.
    let acked_rows: Arc<Mutex<Vec<(u64, Instant)>>> = Default::default();
    let total_rows = demo.rate * demo.duration;
    let batches = total_rows.div_ceil(BATCH as u64);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let period = Duration::from_secs_f64(BATCH as f64 / demo.rate.max(1) as f64);
    let producer_dir = dir.clone();
    let producer_fields = fields.clone();
    let subscribers = demo.subscribers;
    rt.spawn(async move {
        let mut tick = tokio::time::interval(period);
        for b in 0..batches {
            tick.tick().await;
            let rows: String = (b * BATCH as u64..((b + 1) * BATCH as u64).min(total_rows))
                .map(|n| {
                    let (q, c) = row(n, subscribers);
                    format!("{{\"query\":\"{q}\",\"client\":\"{c}\"}}\n")
                })
                .collect();
            let f = producer_dir.join("batch.jsonl");
            let encoded = std::fs::write(&f, rows)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let tb = cwn::telemetry::open(&f, None, &producer_fields)
                        .map_err(|e| e.to_string())?
                        .next()
                        .ok_or("no rows")?
                        .map_err(|e| e.to_string())?;
                    cwn::net::batch::encode_telemetry(
                        &tb.batch,
                        &producer_fields,
                        "demo.jsonl",
                        b * BATCH as u64,
                    )
                    .map_err(|e| e.to_string())
                })
                .map_err(cwn::net::client::ClientError::Input);
            if tx.send(encoded).await.is_err() {
                return;
            }
        }
    });
    let partner_id = Identity::from_pki_dir(&dir.join("pki"), "msp")?;
    let acked = acked_rows.clone();
    let partner = rt.spawn({
        let list = lists[0].clone();
        async move {
            let opts = StreamOptions {
                retry_for: Duration::from_secs(90),
                ..StreamOptions::default()
            };
            cwn::net::client::stream_channel_with(&list, &partner_id, rx, &opts, |b, _| {
                acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((b, Instant::now()));
            })
            .await
        }
    });
    // The failures, on a timeline.
    let t0 = Instant::now();
    let at = |frac: f64| Duration::from_secs_f64(demo.duration as f64 * frac);
    let mut edge_killed: Option<Instant> = None;
    let mut leader_killed: Option<(usize, Instant)> = None;
    let mut restarted = (false, false);
    let mut edge_back: Option<std::thread::JoinHandle<anyhow::Result<Edge>>> = None;
    let mut last_print = Duration::ZERO;
    while !partner.is_finished() {
        let now = t0.elapsed();
        if edge_killed.is_none() && now >= at(0.25) {
            edges[0].kill();
            edge_killed = Some(Instant::now());
            eprintln!("  {:>5.1} s  edge 0 killed (SIGKILL)", now.as_secs_f64());
        }
        if leader_killed.is_none()
            && now >= at(0.55)
            && let Some(l) = nats.stream_leader("CWN_N", Duration::from_secs(5))
        {
            nats.kill(l);
            leader_killed = Some((l, Instant::now()));
            eprintln!(
                "  {:>5.1} s  NATS node {} (leader of the notification stream) killed (SIGKILL)",
                t0.elapsed().as_secs_f64(),
                nats.names()[l]
            );
        }
        if let Some(k) = edge_killed
            && !restarted.0
            && k.elapsed() > Duration::from_secs(4)
        {
            // Off this loop: an edge starting while the stream elects a leader waits for it.
            let mut e = edges.remove(0);
            edge_back = Some(std::thread::spawn(move || e.start().map(|()| e)));
            restarted.0 = true;
            eprintln!("  {:>5.1} s  edge 0 restarting", t0.elapsed().as_secs_f64());
        }
        if let Some((l, k)) = leader_killed
            && !restarted.1
            && k.elapsed() > Duration::from_secs(4)
        {
            nats.restart(l)?;
            restarted.1 = true;
            eprintln!(
                "  {:>5.1} s  NATS node {} restarted",
                t0.elapsed().as_secs_f64(),
                nats.names()[l]
            );
        }
        if now >= last_print + Duration::from_secs(2) {
            last_print = now;
            let acked = acked_rows.lock().unwrap_or_else(|p| p.into_inner()).len();
            let r = received.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!(
                "  {:>5.1} s  batches acknowledged {acked}/{batches}, notifications received {}",
                now.as_secs_f64(),
                r.ids.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let streamed = rt.block_on(partner)?;
    let streamed = streamed.context("the partner's stream")?;
    let acked: Vec<(u64, Instant)> = acked_rows.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let want: Vec<(usize, u64)> = acked
        .iter()
        .flat_map(|&(b, _)| b * BATCH as u64..((b + 1) * BATCH as u64).min(total_rows))
        .map(|n| ((n % demo.subscribers as u64) as usize, n))
        .collect();
    // Everything acknowledged arrives, or the demo reports what did not after a minute.
    let t = Instant::now();
    loop {
        let done = {
            let r = received.lock().unwrap_or_else(|p| p.into_inner());
            want.iter().all(|k| r.ids.contains_key(k))
        };
        if done || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(h) = edge_back {
        match h.join() {
            Ok(Ok(e)) => edges.push(e),
            Ok(Err(e)) => eprintln!("  edge 0 did not come back: {e:#}"),
            Err(_) => eprintln!("  edge 0 did not come back"),
        }
    }
    let r = received.lock().unwrap_or_else(|p| p.into_inner());
    let lost = want.iter().filter(|k| !r.ids.contains_key(k)).count();
    let duplicates: usize = r.ids.values().map(|ids| ids.len() - 1).sum();
    // Failover figures: the first batch answered after the leader's death; the first
    // notification each of edge 0's subscribers got after that edge's death.
    let resumed = leader_killed.and_then(|(_, k)| {
        acked
            .iter()
            .filter(|&&(_, at)| at > k)
            .map(|&(_, at)| at - k)
            .min()
    });
    let edge_failover = edge_killed.map(|k| {
        (0..demo.subscribers)
            .step_by(2)
            .filter_map(|s| r.last.get(&s).filter(|&&at| at > k).map(|&at| at - k))
            .min()
    });
    let report = serde_json::json!({
        "batches": streamed,
        "acknowledged": want.len(),
        "delivered": want.iter().filter(|k| r.ids.contains_key(k)).count(),
        "deliveries": r.deliveries,
        "lost": lost,
        "misdelivered": r.misdelivered,
        "duplicates_after_dedup": duplicates,
        "leader_failover_secs": resumed.map(|d| d.as_secs_f64()),
        "edge_failover_secs": edge_failover.flatten().map(|d| d.as_secs_f64()),
    });
    let ok = lost == 0 && r.misdelivered == 0 && duplicates == 0;
    drop(r);
    rt.shutdown_background();
    for mut e in edges {
        e.kill();
    }
    drop(nats);
    drop(tmp);
    Ok((report, ok))
}

/// The PKI, registry, keys and snapshot of the demo in `dir`.
fn setup(dir: &Path, subscribers: usize) -> anyhow::Result<()> {
    let pki_dir = dir.join("pki");
    pki::init(&pki_dir, &pki::CaOptions::default())?;
    let mut registry = String::from(
        "[[entities]]\nid = \"ncsc\"\nname = \"NCSC\"\nroles = [\"publisher\"]\n\n[[entities]]\nid = \"msp\"\nname = \"Demo MSP\"\nroles = [\"partner\"]\ntrusted_by_all = true\n",
    );
    let ids = [("hub", "hub"), ("ncsc", "publisher"), ("msp", "partner")]
        .into_iter()
        .map(|(i, r)| (i.to_string(), r))
        .chain((0..subscribers).map(|s| (format!("s{s}"), "subscriber")));
    for (id, role) in ids {
        pki::issue(
            &pki_dir,
            &pki::IssueOptions {
                entity: id,
                roles: vec![role.into()],
                dns: vec![],
                ips: vec![],
                days: 1,
                force: false,
            },
        )?;
    }
    for s in 0..subscribers {
        registry.push_str(&format!(
            "\n[[entities]]\nid = \"s{s}\"\nname = \"Demo subscriber {s}\"\nroles = [\"subscriber\"]\nprefixes = [\"10.{}.{}.0/24\"]\n",
            s / 256,
            s % 256
        ));
    }
    std::fs::write(dir.join("registry.toml"), registry)?;
    let key = keys::generate()?;
    std::fs::write(
        dir.join("verify.pem"),
        keys::verify_pem(&key.verifying_key())?,
    )?;
    let mut set = IndicatorSet::new();
    for k in 0..7 {
        let _ = set.insert(Indicator::new(
            format!("demo-c2-{k}"),
            Kind::Domain,
            format!("c2-{k}.demo-threat.example"),
            Arc::from("demo"),
            Tlp::Green,
        ));
    }
    let snap = IndexBuilder::new()
        .set_version(1)
        .build(&set)?
        .to_snapshot(Some(&key));
    std::fs::write(dir.join("set.cwnsnap"), snap)?;
    Ok(())
}

/// Prints the report for a person.
pub fn print(v: &serde_json::Value) {
    let secs = |k: &str| {
        v[k].as_f64()
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2} s"))
    };
    outln!("\ncwn demo --cluster: 3 NATS nodes (replicas 3), 2 edges");
    outln!("  partner batches acknowledged   {}", v["batches"]);
    outln!("  notifications acknowledged     {}", v["acknowledged"]);
    outln!("  delivered (distinct)           {}", v["delivered"]);
    outln!("  deliveries incl. repeats       {}", v["deliveries"]);
    outln!("  lost                           {}", v["lost"]);
    outln!("  misdelivered                   {}", v["misdelivered"]);
    outln!(
        "  duplicates after dedup by id   {}",
        v["duplicates_after_dedup"]
    );
    outln!(
        "  edge 0 killed -> its subscribers heard again after {}",
        secs("edge_failover_secs")
    );
    outln!(
        "  stream leader killed -> batches acknowledged again after {}",
        secs("leader_failover_secs")
    );
}
