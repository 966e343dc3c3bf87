//! The hub on NATS JetStream (issue 19): the JetStream store checked against the naive
//! delivery model, edges sharing one cluster, snapshots pushed to any edge, and the chaos
//! test, all on the local 3-node cluster of [`super::nats`].
//!
//! A test that needs NATS fails when `nats-server` is missing, naming the install command,
//! unless `CWN_SKIP_NATS=1` says to skip it deliberately.

use std::time::{Duration, Instant};

pub(crate) use super::nats::{NatsCluster, nats_server};

/// The harness the chaos test stands on: three nodes form a JetStream cluster, a new meta
/// leader is elected within seconds of the old one's SIGKILL, and the killed node rejoins.
#[test]
fn a_local_jetstream_cluster_elects_a_new_leader_when_the_old_one_is_killed() {
    let Some(bin) = nats_server() else { return };
    let mut c = NatsCluster::start(bin);
    assert_eq!(c.urls().len(), 3);
    let first = c.wait_for_leader(Duration::from_secs(20));
    c.kill(first);
    let t = Instant::now();
    // NATS elects within a few seconds; the bound leaves room for a loaded CI machine.
    let second = c.wait_for_leader(Duration::from_secs(20));
    assert_ne!(second, first, "a running node leads");
    eprintln!("meta leader re-elected in {:?}", t.elapsed());
    c.restart(first);
    // Back with its data: all three agree on a leader again.
    let t = Instant::now();
    loop {
        let back = c.monitor(first, "/jsz");
        if back.is_some_and(|j| j["meta_cluster"]["leader"].as_str().is_some()) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "node rejoins");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_for_leader(Duration::from_secs(20));
}

/// The hub core over the JetStream store on a 3-replica cluster behaves as the naive model
/// says, as it does over the file and memory stores: every notification delivered in order,
/// acked offsets kept, and a hub opened afresh on the cluster (a restart, or another edge)
/// finds every entity's log and acked offset where they were.
#[cfg(feature = "cluster")]
#[test]
fn the_jetstream_store_matches_the_naive_model() {
    use cwn::hub::Hub;
    use cwn::hub::store::jetstream::{JetStreamConfig, JetStreamStore};
    use proptest::test_runner::{Config, TestRunner};

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let urls = cluster.urls();
    runner
        .run(&proptest::collection::vec(super::hub::op(), 1..40), |ops| {
            // A stream and buckets of its own per case.
            let k = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut cfg = JetStreamConfig::new(urls.clone());
            cfg.stream = format!("CWN_N_{k}");
            cfg.subject_prefix = format!("cwn.t{k}.n");
            cfg.acked_bucket = format!("CWN_ACKED_{k}");
            cfg.entities_bucket = format!("CWN_ENTITIES_{k}");
            let open = move |now| {
                let store = JetStreamStore::open(cfg.clone()).expect("the cluster store opens");
                Hub::with_store(store, super::hub::model_config(), now).unwrap()
            };
            let hub = open(0);
            super::hub::run_model(hub, Box::new(move |_, now| open(now)), &ops);
            Ok(())
        })
        .unwrap();
    // Not vacuous: the cases' streams are in the cluster, replicated, holding what they sent.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let jsz = cluster.monitor(leader, "/jsz").expect("the leader answers");
    eprintln!(
        "cluster after the model: {} streams, {} messages",
        jsz["streams"], jsz["messages"]
    );
    assert!(jsz["streams"].as_u64().unwrap() >= 24, "{jsz}");
    assert!(jsz["messages"].as_u64().unwrap() > 0, "{jsz}");
}

/// The test network's hub configuration as one edge on `cluster`, with its own data folder.
#[cfg(feature = "cluster")]
fn edge_config(
    net: &super::net::Net,
    cluster: &NatsCluster,
    name: &str,
) -> cwn::net::config::HubConfig {
    let mut cfg = net.cfg.clone();
    cfg.data_dir = net.dir.path().join(name);
    cfg.audit_log = cfg.data_dir.join("audit.jsonl");
    cfg.cluster = Some(cwn::net::config::ClusterConfig {
        nats: cluster.urls(),
        replicas: 3,
        stream: "CWN_N".into(),
        subject_prefix: "cwn.n".into(),
        acked_bucket: "CWN_ACKED".into(),
        entities_bucket: "CWN_ENTITIES".into(),
        credentials: None,
        tls_ca: None,
        tls_client: None,
    });
    cfg
}

/// Two edges (`edge1`, `edge2`, data folders of their own) on `cluster`, each configuration
/// changed by `tune` first; the servers and their addresses.
#[cfg(feature = "cluster")]
async fn two_edges(
    net: &super::net::Net,
    cluster: &NatsCluster,
    tune: impl Fn(&mut cwn::net::config::HubConfig),
) -> (
    cwn::net::server::Server,
    cwn::net::server::Server,
    String,
    String,
) {
    let start = |name: &str| {
        let mut c = edge_config(net, cluster, name);
        tune(&mut c);
        async move { cwn::net::server::Server::start(&c).await.unwrap() }
    };
    let edge1 = start("edge1").await;
    let edge2 = start("edge2").await;
    let (a1, a2) = (
        edge1.local_addr().to_string(),
        edge2.local_addr().to_string(),
    );
    (edge1, edge2, a1, a2)
}

/// `cwn serve` with `[cluster]`: notifications, acked offsets and entity numbers live in
/// JetStream, so another edge — its own empty data folder, the first edge gone — serves the
/// subscriber from where it stopped, with what was published through either edge.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_on_the_cluster_takes_over_where_another_left() {
    use super::net::{Net, quiet, stream, take};
    use cwn::hub::StartFrom;
    use cwn::net::client::Client;
    use cwn::net::server::Server;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let cfg = edge_config(&net, &cluster, "edge1");
    let edge1 = Server::start(&cfg).await.unwrap();
    let hub1 = edge1.local_addr().to_string();
    let mut hospital = Client::connect(&hub1, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let t = net.telemetry(
        "a.jsonl",
        &[
            ("a.evil.example", "198.51.100.1"),
            ("b.evil.example", "198.51.100.2"),
        ],
    );
    stream(&net, &hub1, &t).await;
    let got = take(&mut hospital, 2).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1]);
    hospital.close().await;
    edge1.shutdown().await;

    // Another edge on the same cluster, with a data folder of its own.
    let edge2 = Server::start(&edge_config(&net, &cluster, "edge2"))
        .await
        .unwrap();
    let hub2 = edge2.local_addr().to_string();
    let t2 = net.telemetry("b.jsonl", &[("c.evil.example", "198.51.100.5")]);
    stream(&net, &hub2, &t2).await;
    let mut hospital = Client::connect(&hub2, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let got = take(&mut hospital, 1).await;
    assert_eq!(got[0].0, 2, "after the last ack taken on the other edge");
    assert_eq!(got[0].1["value"], "c.evil.example");
    quiet(&mut hospital).await;
    hospital.close().await;
    edge2.shutdown().await;
    // The disclosures are on record in the cluster, not only in an edge's file.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let jsz = cluster
        .monitor(leader, "/jsz?streams=true")
        .expect("the leader answers");
    let audit = jsz["account_details"][0]["stream_detail"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == "CWN_N_AUDIT")
        .unwrap_or_else(|| panic!("an audit stream: {jsz}"));
    assert!(audit["state"]["messages"].as_u64().unwrap() >= 2, "{audit}");
    drop(cluster);
}

/// Two edges running at once on one cluster: a subscriber connected to one hears, live and
/// once each, what partners stream through either (the edge's feed of the stream).
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_edge_hears_live_what_another_edge_takes() {
    use super::net::{Net, quiet, stream, take};
    use cwn::hub::StartFrom;
    use cwn::net::client::Client;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let (edge1, edge2, hub1, hub2) = two_edges(&net, &cluster, |_| {}).await;
    let mut hospital = Client::connect(&hub2, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let rows = |name: &str, value: &str| net.telemetry(name, &[(value, "198.51.100.7")]);
    stream(&net, &hub1, &rows("a.jsonl", "a.evil.example")).await;
    let got = take(&mut hospital, 1).await;
    assert_eq!(
        (got[0].0, got[0].1["value"].as_str()),
        (0, Some("a.evil.example"))
    );
    stream(&net, &hub2, &rows("b.jsonl", "b.evil.example")).await;
    stream(&net, &hub1, &rows("c.jsonl", "c.evil.example")).await;
    let got = take(&mut hospital, 2).await;
    let values: Vec<_> = got.iter().map(|g| (g.0, g.1["value"].clone())).collect();
    assert_eq!(
        values,
        [
            (1, serde_json::json!("b.evil.example")),
            (2, serde_json::json!("c.evil.example"))
        ]
    );
    quiet(&mut hospital).await;
    hospital.close().await;
    edge1.shutdown().await;
    edge2.shutdown().await;
    drop(cluster);
}

// ---- chaos -----------------------------------------------------------------------------

#[cfg(all(feature = "cluster", unix))]
mod chaos_parts {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::NatsCluster;
    use crate::net::Net;

    pub(super) const PARTNERS: usize = 2;
    pub(super) const SUBSCRIBERS: usize = 4;
    pub(super) const BATCHES: usize = 60;
    pub(super) const ROWS: usize = 10;
    /// A partner sends a batch this often: a round streams for about three seconds.
    pub(super) const PACE: Duration = Duration::from_millis(50);

    /// What is killed in a round (then restarted).
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Victim {
        StreamLeader,
        Edge,
        Both,
    }

    /// A row's key: (partner, batch, row); its subscriber is `key_subscriber`.
    pub(super) type Key = (usize, usize, usize);

    /// The subscriber a row's client address belongs to; every fifth row is benign.
    pub(super) fn row(p: usize, b: usize, r: usize) -> (String, String, Option<usize>) {
        let k = (p + b + r) % SUBSCRIBERS;
        let client = format!("10.{k}.{b}.{r}");
        if (b * ROWS + r) % 5 == 4 {
            (format!("p{p}b{b}r{r}.benign.example"), client, None)
        } else {
            (format!("p{p}b{b}r{r}.evil.example"), client, Some(k))
        }
    }

    /// The key a notification's value names.
    pub(super) fn key_of(value: &str) -> Option<Key> {
        let label = value.strip_suffix(".evil.example")?.strip_prefix('p')?;
        let (p, rest) = label.split_once('b')?;
        let (b, r) = rest.split_once('r')?;
        Some((p.parse().ok()?, b.parse().ok()?, r.parse().ok()?))
    }

    pub(super) fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Adds the chaos entities to `net`: their certificates and the registry.
    pub(super) fn setup(net: &Net) {
        let pki_dir = net.dir.path().join("pki");
        let ids = (0..PARTNERS)
            .map(|p| (format!("p{p}"), "partner"))
            .chain((0..SUBSCRIBERS).map(|s| (format!("s{s}"), "subscriber")));
        for (id, role) in ids {
            cwn::net::pki::issue(
                &pki_dir,
                &cwn::net::pki::IssueOptions {
                    entity: id,
                    roles: vec![role.into()],
                    dns: vec![],
                    ips: vec![],
                    days: 30,
                    force: false,
                },
            )
            .unwrap();
        }
        // The publisher, the partners, and the subscribers, each owning `10.K.0.0/16` and
        // trusting both partners.
        let mut registry =
            String::from("[[entities]]\nid = \"ncsc\"\nname = \"NCSC\"\nroles = [\"publisher\"]\n");
        for p in 0..PARTNERS {
            registry += &format!(
                "\n[[entities]]\nid = \"p{p}\"\nname = \"Partner {p}\"\nroles = [\"partner\"]\n"
            );
        }
        let trusts: Vec<String> = (0..PARTNERS).map(|p| format!("\"p{p}\"")).collect();
        for k in 0..SUBSCRIBERS {
            registry += &format!(
                "\n[[entities]]\nid = \"s{k}\"\nname = \"Subscriber {k}\"\nroles = [\"subscriber\"]\nprefixes = [\"10.{k}.0.0/16\"]\ntrusts = [{}]\n",
                trusts.join(", ")
            );
        }
        std::fs::write(net.dir.path().join("registry.toml"), registry).unwrap();
    }

    /// A `cwn serve` edge of round `round`, on a fixed port so that it comes back where
    /// clients look for it.
    pub(super) struct Edge {
        pub(super) config: PathBuf,
        pub(super) log: PathBuf,
        pub(super) child: Option<Child>,
    }

    impl Edge {
        pub(super) fn new(
            net: &Net,
            cluster: &NatsCluster,
            round: usize,
            i: usize,
            port: u16,
        ) -> Edge {
            let name = format!("r{round}-edge{i}");
            let nats: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
            let config = net.dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{port}\"\nregistry = \"registry.toml\"\ndata_dir = \"{name}\"\naudit_log = \"{name}/audit.jsonl\"\n\
                     [tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n\
                     [snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n\
                     [cluster]\nnats = [{}]\nreplicas = 3\nstream = \"CHAOS{round}\"\nsubject_prefix = \"chaos{round}.n\"\n\
                     acked_bucket = \"CHAOS{round}_ACKED\"\nentities_bucket = \"CHAOS{round}_ENTITIES\"\n",
                    nats.join(", ")
                ),
            )
            .unwrap();
            Edge {
                config,
                log: net.dir.path().join(format!("{name}.log")),
                child: None,
            }
        }

        /// Starts it and waits until it listens.
        pub(super) fn start(&mut self) {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let before = std::fs::read_to_string(&self.log).unwrap_or_default().len();
            let child = Command::new(env!("CARGO_BIN_EXE_cwn"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            self.child = Some(child);
            let t = Instant::now();
            loop {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if text[before.min(text.len())..].contains("listening on") {
                    return;
                }
                if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("edge {} ended ({st}):\n{text}", self.config.display());
                }
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "edge {} did not listen within 60 s:\n{text}",
                    self.config.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        /// SIGKILL, as a machine that dies.
        pub(super) fn kill(&mut self) {
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

    /// `cwn subscribe` for subscriber `s`, writing to `out`, trying `hubs` in its order.
    pub(super) fn subscriber(net: &Net, s: usize, hubs: &str, out: &Path, log: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(["subscribe", "--hub", hubs, "--pki"])
            .arg(net.dir.path().join("pki"))
            .args(["--entity", &format!("s{s}"), "--output"])
            .arg(out)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    /// Partner `p`'s batches, encoded.
    pub(super) fn batches(net: &Net, round: usize, p: usize) -> Vec<Vec<u8>> {
        let fields = cwn::telemetry::FieldMap::from_specs([
            "query=domain".parse().unwrap(),
            "client=ip".parse().unwrap(),
        ])
        .unwrap();
        (0..BATCHES)
            .map(|b| {
                let rows: Vec<(String, String, Option<usize>)> =
                    (0..ROWS).map(|r| row(p, b, r)).collect();
                let refs: Vec<(&str, &str)> = rows
                    .iter()
                    .map(|(q, c, _)| (q.as_str(), c.as_str()))
                    .collect();
                let file = net.telemetry(&format!("r{round}-p{p}-b{b}.jsonl"), &refs);
                let tb = cwn::telemetry::open(&file, None, &fields)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap();
                cwn::net::batch::encode_telemetry(
                    &tb.batch,
                    &fields,
                    &format!("p{p}.jsonl"),
                    (b * ROWS) as u64,
                )
                .unwrap()
            })
            .collect()
    }

    /// When each batch of each partner was answered.
    pub(super) type Answered = Arc<Mutex<BTreeMap<(usize, usize), Instant>>>;

    /// Streams partner `p`'s batches at [`PACE`] to `hubs`, riding out failovers; notes each
    /// answer in `answered`.
    pub(super) async fn partner(
        id: cwn::net::tls::Identity,
        p: usize,
        hubs: String,
        batches: Vec<Vec<u8>>,
        answered: Answered,
    ) -> anyhow::Result<u64> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let producer = tokio::spawn(async move {
            for b in batches {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
                tokio::time::sleep(PACE).await;
            }
        });
        let opts = cwn::net::client::StreamOptions {
            transport: cwn::net::endpoint::Transport::default(),
            retry_for: Duration::from_secs(90),
        };
        let n = cwn::net::client::stream_channel_with(&hubs, &id, rx, &opts, |b, _hits| {
            answered
                .lock()
                .unwrap()
                .insert((p, b as usize), Instant::now());
        })
        .await;
        producer.abort();
        n
    }

    /// One subscriber's output: `(offset, id, value)` per line.
    pub(super) fn received(out: &Path) -> Vec<(u64, String, String)> {
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["offset"].as_u64().unwrap(),
                    v["id"].as_str().unwrap().to_owned(),
                    v["payload"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    /// The round's tally.
    #[derive(Debug, Default)]
    pub(super) struct Tally {
        pub(super) acknowledged: usize,
        pub(super) delivered: usize,
        pub(super) lost: usize,
        pub(super) misdelivered: usize,
        pub(super) duplicates: usize,
        pub(super) out_of_order: Vec<String>,
    }

    /// Counts what the subscribers' files hold against what the partners were answered.
    pub(super) fn tally(
        answered: &BTreeMap<(usize, usize), Instant>,
        outs: &[PathBuf],
    ) -> (Tally, Vec<Key>) {
        let mut t = Tally::default();
        let mut want: Vec<BTreeSet<Key>> = vec![BTreeSet::new(); SUBSCRIBERS];
        for &(p, b) in answered.keys() {
            for r in 0..ROWS {
                if let (_, _, Some(k)) = row(p, b, r) {
                    want[k].insert((p, b, r));
                    t.acknowledged += 1;
                }
            }
        }
        let mut lost = Vec::new();
        for (s, out) in outs.iter().enumerate() {
            let lines = received(out);
            let mut ids_of_key: HashMap<Key, BTreeSet<String>> = HashMap::new();
            let mut last: Option<u64> = None;
            for (offset, id, value) in &lines {
                if let Some(l) = last
                    && *offset <= l
                {
                    t.out_of_order
                        .push(format!("s{s}: offset {offset} after {l}"));
                }
                last = Some(*offset);
                let Some(key) = key_of(value) else {
                    t.misdelivered += 1;
                    continue;
                };
                if row(key.0, key.1, key.2).2 != Some(s) {
                    t.misdelivered += 1;
                    continue;
                }
                ids_of_key.entry(key).or_default().insert(id.clone());
            }
            t.delivered += ids_of_key.len();
            t.duplicates += ids_of_key.values().map(|ids| ids.len() - 1).sum::<usize>();
            for k in &want[s] {
                if !ids_of_key.contains_key(k) {
                    lost.push(*k);
                }
            }
        }
        t.lost = lost.len();
        (t, lost)
    }
}

/// The chaos test (issue 19): a 3-node JetStream cluster (replicas 3), two edges, two
/// partners streaming and four subscribers spread over both edges; each round kills with
/// SIGKILL the node leading the notification stream, one edge, or both (in turns), restarts
/// them, and checks that every notification acknowledged to a partner reached its entity,
/// exactly once after de-duplication by id, in order, and nowhere else. Partners and
/// subscribers move to the surviving edge by themselves (`--hub A,B`).
///
/// `CWN_CHAOS_ROUNDS=N` runs N rounds (default 3: one of each kind); `CWN_CHAOS_LOGS=1` prints
/// the warnings and errors of the edges and subscribers after each round.
#[cfg(all(feature = "cluster", unix))]
#[test]
fn chaos() {
    use chaos_parts::*;
    let rounds: usize = std::env::var("CWN_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let Some(bin) = nats_server() else { return };
    let mut cluster = NatsCluster::start(bin);
    let net = super::net::Net::new();
    setup(&net);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ports = [free_udp_port(), free_udp_port()];
    let addrs = ports.map(|p| format!("127.0.0.1:{p}"));
    // Edge 0 first for p0, s0, s1; edge 1 first for p1, s2, s3.
    let hubs = [
        format!("{},{}", addrs[0], addrs[1]),
        format!("{},{}", addrs[1], addrs[0]),
    ];
    let mut failovers: Vec<String> = Vec::new();
    for round in 0..rounds {
        let victim = [Victim::StreamLeader, Victim::Edge, Victim::Both][round % 3];
        let mut edges: Vec<Edge> = (0..2)
            .map(|i| Edge::new(&net, &cluster, round, i, ports[i]))
            .collect();
        for e in &mut edges {
            e.start();
        }
        let outs: Vec<std::path::PathBuf> = (0..SUBSCRIBERS)
            .map(|s| net.dir.path().join(format!("r{round}-s{s}.jsonl")))
            .collect();
        let mut subs: Vec<std::process::Child> = (0..SUBSCRIBERS)
            .map(|s| {
                let log = net.dir.path().join(format!("r{round}-s{s}.log"));
                subscriber(&net, s, &hubs[s / 2], &outs[s], &log)
            })
            .collect();
        let answered: Answered = Default::default();
        let partners: Vec<_> = (0..PARTNERS)
            .map(|p| {
                let (b, a, h) = (batches(&net, round, p), answered.clone(), hubs[p].clone());
                let id = net.id(&format!("p{p}"));
                rt.spawn(async move { partner(id, p, h, b, a).await })
            })
            .collect();
        // Kill mid-stream: between 0.5 s and 2 s into it.
        let mut seed = [0u8; 2];
        getrandom::fill(&mut seed).unwrap();
        let kill_after = Duration::from_millis(500 + u64::from(u16::from_le_bytes(seed)) % 1500);
        std::thread::sleep(kill_after);
        let leader = match victim {
            Victim::StreamLeader | Victim::Both => {
                let name = format!("CHAOS{round}");
                Some(cluster.stream_leader(&name, Duration::from_secs(10)))
            }
            Victim::Edge => None,
        };
        let killed_at = Instant::now();
        let answered_before = answered.lock().unwrap().len();
        let heard_before: Vec<usize> = outs.iter().map(|o| received(o).len()).collect();
        if let Some(l) = leader {
            cluster.kill(l);
        }
        if matches!(victim, Victim::Edge | Victim::Both) {
            edges[0].kill();
        }
        // Measure s0 and s1 (on edge 0 first) hearing something new; restart what was
        // killed after 2 s, the edge on a thread of its own (an edge starting while the
        // stream elects a leader waits for it, and this loop keeps measuring meanwhile).
        let mut heard_again: Option<Duration> = None;
        let mut restarted = false;
        let mut edge_back: Option<std::thread::JoinHandle<Edge>> = None;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) && (heard_again.is_none() || !restarted) {
            if heard_again.is_none() && (0..2).all(|s| received(&outs[s]).len() > heard_before[s]) {
                heard_again = Some(killed_at.elapsed());
            }
            if !restarted && killed_at.elapsed() > Duration::from_secs(2) {
                restarted = true;
                if let Some(l) = leader {
                    cluster.restart(l);
                }
                if matches!(victim, Victim::Edge | Victim::Both) {
                    let mut e = edges.remove(0);
                    edge_back = Some(std::thread::spawn(move || {
                        e.start();
                        e
                    }));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every partner finishes: each batch answered, through whichever edge.
        for (p, h) in partners.into_iter().enumerate() {
            let n = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(120), h).await })
                .unwrap_or_else(|_| panic!("round {round}: partner p{p} did not finish in 120 s"))
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: partner p{p}: {e}"));
            assert_eq!(n as usize, BATCHES, "round {round}: p{p}'s batches");
        }
        if let Some(h) = edge_back {
            edges.insert(0, h.join().expect("edge 0 restarted"));
        }
        let answered = answered.lock().unwrap().clone();
        assert!(
            answered_before < PARTNERS * BATCHES,
            "round {round}: the kill after {kill_after:?} came after the stream ended"
        );
        // Everything acknowledged arrives (or the round fails after a minute).
        let t = Instant::now();
        let (tally, lost) = loop {
            let (tally, lost) = tally(&answered, &outs);
            if (tally.lost == 0 && tally.delivered >= tally.acknowledged)
                || t.elapsed() > Duration::from_secs(60)
            {
                break (tally, lost);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for s in &mut subs {
            let _ = s.kill();
            let _ = s.wait();
        }
        for e in &mut edges {
            e.kill();
        }
        println!(
            "chaos round {round}: acknowledged {}, delivered {}, lost {}, misdelivered {}, duplicates-after-dedup {}",
            tally.acknowledged, tally.delivered, tally.lost, tally.misdelivered, tally.duplicates
        );
        // Per partner, the longest pause between answers from the kill on (a batch in
        // flight may be answered just after it): how long publishing stopped for it.
        let pause_of = |p: Option<usize>| {
            let mut times: Vec<Instant> = answered
                .iter()
                .filter(|&(&(q, _), &at)| p.is_none_or(|p| p == q) && at > killed_at)
                .map(|(_, &at)| at)
                .collect();
            times.sort_unstable();
            let mut prev = killed_at;
            let mut longest = Duration::ZERO;
            for at in times {
                longest = longest.max(at - prev);
                prev = at;
            }
            longest
        };
        let per_partner: Vec<String> = (0..PARTNERS)
            .map(|p| format!("p{p} {:.2} s", pause_of(Some(p)).as_secs_f64()))
            .collect();
        let line = format!(
            "round {round} ({victim:?}, killed after {kill_after:?}): answers paused for {:.2} s at most ({}), s0/s1 heard again after {}",
            pause_of(None).as_secs_f64(),
            per_partner.join(", "),
            heard_again.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
        );
        eprintln!("{line}");
        failovers.push(line);
        if std::env::var("CWN_CHAOS_LOGS").as_deref() == Ok("1") {
            // What the edges and subscribers said, but the routine.
            let mut logs: Vec<std::path::PathBuf> = edges.iter().map(|e| e.log.clone()).collect();
            logs.extend(
                (0..SUBSCRIBERS).map(|s| net.dir.path().join(format!("r{round}-s{s}.log"))),
            );
            for l in logs {
                let text = std::fs::read_to_string(&l).unwrap_or_default();
                for line in text
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                {
                    eprintln!("  {}: {line}", l.file_name().unwrap().to_string_lossy());
                }
            }
        }
        let logs = || {
            let mut all = String::new();
            for e in &edges {
                all += &format!("--- {}\n", e.log.display());
                all += &std::fs::read_to_string(&e.log).unwrap_or_default();
            }
            all
        };
        assert!(
            tally.lost == 0,
            "round {round}: {} acknowledged notifications lost, e.g. {:?}\n{}",
            tally.lost,
            &lost[..lost.len().min(10)],
            logs()
        );
        assert_eq!(tally.misdelivered, 0, "round {round}: misdelivered");
        assert_eq!(
            tally.duplicates, 0,
            "round {round}: the same row under two ids"
        );
        assert!(
            tally.out_of_order.is_empty(),
            "round {round}: out of order: {:?}",
            tally.out_of_order
        );
        assert_eq!(tally.delivered, tally.acknowledged, "round {round}");
    }
    eprintln!("failovers:\n{}", failovers.join("\n"));
}

/// `cwn push` to one edge of a cluster: the snapshot is stored in the cluster and every edge
/// swaps it in — one already running (it watches), one started afterwards with an empty data
/// folder (it takes it before serving) — and no edge takes a version that is not newer.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_pushed_to_one_edge_is_used_by_every_edge() {
    use super::net::{Net, snapshot, stream};
    use cwn::indicator::Tlp;
    use cwn::net::client::{Client, ClientError};
    use cwn::net::server::Server;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let (edge1, edge2, hub1, hub2) = two_edges(&net, &cluster, |_| {}).await;
    let t = net.telemetry("dns.jsonl", &[("www.fresh.example", "198.51.100.21")]);
    assert!(
        stream(&net, &hub2, &t).await.is_empty(),
        "not yet an indicator"
    );

    let v2 = snapshot(
        2,
        &[("evil.example", Tlp::Green), ("fresh.example", Tlp::Clear)],
        &net.signing,
    );
    let mut publisher = Client::connect(&hub1, &net.id("ncsc")).await.unwrap();
    assert_eq!(publisher.push_snapshot(&v2).await.unwrap(), 2);
    publisher.close().await;
    // The other edge swaps it in within moments.
    let t0 = Instant::now();
    loop {
        if stream(&net, &hub2, &t).await.len() == 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "edge 2 never used the snapshot pushed to edge 1"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("edge 2 used it after {:?}", t0.elapsed());
    // The same version again, now to edge 2: not newer than the cluster's.
    let mut publisher = Client::connect(&hub2, &net.id("ncsc")).await.unwrap();
    let r = publisher.push_snapshot(&v2).await;
    assert!(
        matches!(&r, Err(ClientError::Rejected { reason, .. }) if reason.contains("not newer")),
        "{r:?}"
    );
    publisher.close().await;
    // A new edge with nothing of its own serves the cluster's snapshot from its first batch.
    let edge3 = Server::start(&edge_config(&net, &cluster, "edge3"))
        .await
        .unwrap();
    let hits = stream(&net, &edge3.local_addr().to_string(), &t).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].indicator, "fresh.example");
    for e in [edge1, edge2, edge3] {
        e.shutdown().await;
    }
    drop(cluster);
}

/// A delta pushed to one edge of a cluster joins the cluster's chain: the other edge, running,
/// applies it; a new edge takes the snapshot and the whole chain before serving; a delta that
/// does not follow the cluster's head is refused wherever it is pushed.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_pushed_to_one_edge_is_applied_by_every_edge() {
    use super::net::{Net, domains, stream};
    use cwn::index::delta::Delta;
    use cwn::index::{CompiledIndex, IndexBuilder};
    use cwn::net::client::{Client, ClientError};
    use cwn::net::server::Server;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let (edge1, edge2, hub1, hub2) = two_edges(&net, &cluster, |_| {}).await;
    let builder = |v: u64| {
        IndexBuilder::new()
            .set_version(v)
            .created_at(1_700_000_000 + v as i64)
    };
    let v2 = builder(2)
        .build(&domains(&["evil.example"]))
        .unwrap()
        .to_snapshot(Some(&net.signing));
    let s2 = CompiledIndex::from_snapshot(&v2, None).unwrap();
    let (d3, _) = Delta::compute(
        &s2,
        &domains(&["evil.example", "fresh.example"]),
        &builder(3),
    )
    .unwrap();
    let d3 = d3.to_bytes(Some(&net.signing));
    let s3 = s2.apply(&Delta::from_bytes(&d3, None).unwrap()).unwrap();
    let (d4, _) = Delta::compute(
        &s3,
        &domains(&["fresh.example", "later.example"]),
        &builder(4),
    )
    .unwrap();
    let d4 = d4.to_bytes(Some(&net.signing));
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("www.fresh.example", "198.51.100.21"),
            ("www.later.example", "198.51.100.22"),
        ],
    );
    let hits_on = |hub: String| {
        let (net, t) = (&net, &t);
        async move {
            let mut got: Vec<String> = stream(net, &hub, t)
                .await
                .into_iter()
                .map(|h| h.indicator)
                .collect();
            got.sort();
            got
        }
    };
    // Edge 2 reaches `want` within moments.
    let settles = |hub: String, want: &'static [&'static str], what: &'static str| async move {
        let t0 = Instant::now();
        while hits_on(hub.clone()).await != want {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("settled after {:?}", t0.elapsed());
    };

    let mut p1 = Client::connect(&hub1, &net.id("ncsc")).await.unwrap();
    assert_eq!(p1.push_snapshot(&v2).await.unwrap(), 2);
    settles(hub2.clone(), &["evil.example"], "edge 2 never took v2").await;
    // v3 as a delta to edge 2: edge 1 follows.
    let mut p2 = Client::connect(&hub2, &net.id("ncsc")).await.unwrap();
    assert_eq!(p2.push_snapshot(&d3).await.unwrap(), 3);
    settles(
        hub1.clone(),
        &["evil.example", "fresh.example"],
        "edge 1 never applied the delta pushed to edge 2",
    )
    .await;
    // The same delta again, to edge 1: it follows v2, the cluster is at v3.
    let r = p1.push_snapshot(&d3).await;
    assert!(
        matches!(&r, Err(ClientError::Rejected { reason, .. }) if reason.contains("at set version 3")),
        "{r:?}"
    );
    // v4 to edge 1 removes evil.example and adds later.example: edge 2 follows.
    assert_eq!(p1.push_snapshot(&d4).await.unwrap(), 4);
    settles(
        hub2.clone(),
        &["fresh.example", "later.example"],
        "edge 2 never applied the delta pushed to edge 1",
    )
    .await;
    p1.close().await;
    p2.close().await;
    // A new edge with an empty data folder: the cluster's snapshot and both deltas, before
    // its first batch.
    let edge3 = Server::start(&edge_config(&net, &cluster, "edge3"))
        .await
        .unwrap();
    assert_eq!(
        hits_on(edge3.local_addr().to_string()).await,
        ["fresh.example", "later.example"]
    );
    for e in [edge1, edge2, edge3] {
        e.shutdown().await;
    }
    drop(cluster);
}

/// `[cluster]` with `tls_ca`, `tls_cert` and `tls_key`: the store reaches a NATS server that
/// requires TLS and verifies client certificates (certificates from `cwn pki`); without the
/// client certificate, or trusting another CA, it is refused.
#[cfg(feature = "cluster")]
#[test]
fn the_store_reaches_nats_over_mutual_tls() {
    use cwn::hub::store::Store as _;
    use cwn::hub::store::jetstream::{JetStreamConfig, JetStreamStore};
    use cwn::net::pki;

    let Some(bin) = nats_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, &pki::CaOptions::default()).unwrap();
    for (id, role) in [("nats", "hub"), ("edge", "partner")] {
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
    }
    let other = dir.path().join("other");
    pki::init(&other, &pki::CaOptions::default()).unwrap();
    let port = super::nats::free_tcp_port();
    let f = |n: &str| pki_dir.join(n);
    let mut server = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path().join("js"))
        .arg("--tls")
        .arg("--tlscert")
        .arg(f("nats.pem"))
        .arg("--tlskey")
        .arg(f("nats.key"))
        .arg("--tlscacert")
        .arg(f("ca.pem"))
        .arg("--tlsverify")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "nats-server listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = |ca: std::path::PathBuf, client: bool| {
        let mut c = JetStreamConfig::new(vec![format!("tls://127.0.0.1:{port}")]);
        c.replicas = 1;
        c.append_for = Duration::from_secs(1);
        c.tls_ca = Some(ca);
        c.tls_client = client.then(|| (f("edge.pem"), f("edge.key")));
        c
    };
    let mut store = JetStreamStore::open(cfg(f("ca.pem"), true)).expect("mutual TLS");
    let n = store.number_entities(&["hospital", "water"]).unwrap();
    assert_eq!(n.len(), 2);
    assert_ne!(n[0], n[1]);
    drop(store);
    let e = JetStreamStore::open(cfg(f("ca.pem"), false)).unwrap_err();
    eprintln!("without a client certificate: {e}");
    let e = JetStreamStore::open(cfg(other.join("ca.pem"), true)).unwrap_err();
    eprintln!("trusting another CA: {e}");
    let _ = server.kill();
    let _ = server.wait();
}

/// Sightings on a cluster: each edge appends its aggregate to the publisher's subject in the
/// replicated stream, so the publisher, subscribed at either edge, hears the counts of both.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_hears_the_sightings_of_every_edge() {
    use super::net::{Net, stream, take};
    use cwn::hub::StartFrom;
    use cwn::net::client::Client;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let (edge1, edge2, hub1, hub2) = two_edges(&net, &cluster, |c| {
        c.limits.sightings_interval = Duration::from_millis(200);
    })
    .await;
    let t1 = net.telemetry(
        "a.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("a.evil.example", "198.51.100.21"),
        ],
    );
    let t2 = net.telemetry("b.jsonl", &[("c.evil.example", "198.51.100.22")]);
    assert_eq!(stream(&net, &hub1, &t1).await.len(), 2);
    assert_eq!(stream(&net, &hub2, &t2).await.len(), 1);
    let mut publisher = Client::connect(&hub2, &net.id("ncsc"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let got = take(&mut publisher, 2).await;
    let mut counts: Vec<u64> = got
        .iter()
        .map(|(_, n)| {
            let rows = n["sightings"].as_array().unwrap();
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0]["partner"], "msp");
            rows[0]["count"].as_u64().unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2], "one aggregate from each edge");
    publisher.close().await;
    edge1.shutdown().await;
    edge2.shutdown().await;
    drop(cluster);
}
