//! The network the hub benches run against: a PKI, a registry of a publisher, a partner and
//! `subscribers` subscribers (one address each, see [`addr`]), and a signed snapshot holding one
//! domain indicator, `evil.example`, in a fresh directory (`CWN_BENCH_DIR` picks its parent;
//! `/dev/shm` takes the disk's fsync out of the figures).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cwn::index::IndexBuilder;
use cwn::index::snapshot::keys;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::net::pki;

/// A numeric setting from the environment, else `default`.
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
