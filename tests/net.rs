//! The hub over loopback QUIC: mutual TLS, roles, snapshot push and swap, streaming, routed
//! notifications, resume after reconnect and restart, and `cwn config check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cwn::hub::StartFrom;
use cwn::index::IndexBuilder;
use cwn::index::snapshot::keys;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::net::client::{Client, ClientError, Subscription, stream_files};
use cwn::net::config::HubConfig;
use cwn::net::pki;
use cwn::net::server::Server;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;

const REGISTRY: &str = r#"
[[entities]]
id = "ncsc"
name = "NCSC"
roles = ["publisher"]

[[entities]]
id = "msp"
name = "MSP"
roles = ["partner"]

[[entities]]
id = "hospital"
name = "Hospital"
roles = ["subscriber"]
prefixes = ["198.51.100.0/24"]

[[entities]]
id = "water"
name = "Waterboard"
roles = ["subscriber"]
prefixes = ["203.0.113.0/24"]
"#;

/// A PKI, a registry, signing keys, a first snapshot and a hub configuration in a temporary
/// directory.
struct Net {
    dir: tempfile::TempDir,
    cfg: HubConfig,
    signing: ed25519_dalek::SigningKey,
}

fn snapshot(version: u64, values: &[(&str, Tlp)], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let mut set = IndicatorSet::new();
    let source: Arc<str> = Arc::from("test-feed");
    for (i, (v, tlp)) in values.iter().enumerate() {
        let _ = set.insert(Indicator::new(
            format!("ind-{i}"),
            Kind::Domain,
            *v,
            source.clone(),
            *tlp,
        ));
    }
    IndexBuilder::new()
        .set_version(version)
        .created_at(1_700_000_000)
        .build(&set)
        .unwrap()
        .to_snapshot(Some(key))
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let pki_dir = p.join("pki");
        pki::init(&pki_dir, &pki::CaOptions::default()).unwrap();
        for (id, role) in [
            ("hub", "hub"),
            ("ncsc", "publisher"),
            ("msp", "partner"),
            ("hospital", "subscriber"),
            ("water", "subscriber"),
            ("stranger", "subscriber"),
        ] {
            pki::issue(
                &pki_dir,
                &pki::IssueOptions {
                    entity: id.into(),
                    roles: vec![role.into()],
                    dns: vec![],
                    ips: vec![],
                    days: 30,
                    force: false,
                },
            )
            .unwrap();
        }
        std::fs::write(p.join("registry.toml"), REGISTRY).unwrap();
        let signing = keys::generate().unwrap();
        std::fs::write(
            p.join("verify.pem"),
            keys::verify_pem(&signing.verifying_key()).unwrap(),
        )
        .unwrap();
        let hub_key = keys::generate().unwrap();
        std::fs::write(
            p.join("hub-signing.pem"),
            keys::signing_pem(&hub_key).unwrap(),
        )
        .unwrap();
        std::fs::write(
            p.join("hub-verify.pem"),
            keys::verify_pem(&hub_key.verifying_key()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            p.join("set.cwnsnap"),
            snapshot(
                1,
                &[("evil.example", Tlp::Green), ("secret.example", Tlp::Amber)],
                &signing,
            ),
        )
        .unwrap();
        let toml = r#"
listen = "127.0.0.1:0"
registry = "registry.toml"
data_dir = "var"

[tls]
cert = "pki/hub.pem"
key = "pki/hub.key"
ca = "pki/ca.pem"

[snapshot]
path = "set.cwnsnap"
verify_key = "verify.pem"
sign_key = "hub-signing.pem"

[limits]
idle_timeout = "10s"
keep_alive_interval = "1s"
queue_size = 64
"#;
        let cfg = HubConfig::from_toml(toml, "hub.toml", p).unwrap();
        Net { dir, cfg, signing }
    }

    fn id(&self, entity: &str) -> Identity {
        Identity::from_pki_dir(&self.dir.path().join("pki"), entity).unwrap()
    }

    fn telemetry(&self, name: &str, rows: &[(&str, &str)]) -> PathBuf {
        let p = self.dir.path().join(name);
        let text: String = rows
            .iter()
            .map(|(q, c)| format!("{{\"query\":\"{q}\",\"client\":\"{c}\"}}\n"))
            .collect();
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn fields() -> FieldMap {
    FieldMap::from_specs([
        "query=domain".parse().unwrap(),
        "client=ip".parse().unwrap(),
    ])
    .unwrap()
}

async fn stream(net: &Net, hub: &str, file: &Path) -> Vec<cwn::net::batch::HitLine> {
    stream_files(hub, &net.id("msp"), &fields(), None, &[file.to_path_buf()])
        .await
        .unwrap()
        .0
}

/// Receives `n` notifications, acknowledging each; panics if they take over 5 s.
async fn take(sub: &mut Subscription, n: usize) -> Vec<(u64, serde_json::Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (offset, note) = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("notification in time")
            .unwrap()
            .expect("subscription open");
        sub.ack(offset).await.unwrap();
        out.push((offset, serde_json::from_slice(&note.payload).unwrap()));
    }
    out
}

/// Nothing more arrives within a short while.
async fn quiet(sub: &mut Subscription) {
    let r = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(r.is_err(), "unexpected notification: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_cert_or_from_another_ca() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let good = net.id("hospital");

    // No certificate at all.
    let anonymous = Identity {
        chain: vec![],
        key: good.key.clone_key(),
        roots: good.roots.clone(),
    };
    let r = async {
        Client::connect(&hub, &anonymous)
            .await?
            .subscribe(StartFrom::Acked)
            .await
    }
    .await;
    assert!(matches!(r, Err(ClientError::Connection(_))), "{r:?}");

    // A certificate from another CA, for an entity that exists.
    let other = tempfile::tempdir().unwrap();
    pki::init(other.path(), &pki::CaOptions::default()).unwrap();
    pki::issue(
        other.path(),
        &pki::IssueOptions {
            entity: "hospital".into(),
            roles: vec!["subscriber".into()],
            dns: vec![],
            ips: vec![],
            days: 30,
            force: false,
        },
    )
    .unwrap();
    let mut forged = Identity::from_pki_dir(other.path(), "hospital").unwrap();
    forged.roots = good.roots.clone();
    let r = async {
        Client::connect(&hub, &forged)
            .await?
            .subscribe(StartFrom::Acked)
            .await
    }
    .await;
    assert!(matches!(r, Err(ClientError::Connection(_))), "{r:?}");

    // A good certificate for an entity the registry does not know.
    let r = async {
        Client::connect(&hub, &net.id("stranger"))
            .await?
            .subscribe(StartFrom::Acked)
            .await
    }
    .await;
    assert!(r.as_ref().is_err_and(|e| e.is_forbidden()), "{r:?}");

    // The client checks the hub too: a hub certificate from another CA is refused.
    let mut trusting_other = good.clone();
    trusting_other.roots = cwn::net::tls::load_roots(&other.path().join(pki::CA_CERT)).unwrap();
    assert!(Client::connect(&hub, &trusting_other).await.is_err());

    // And the right certificate works.
    let sub = Client::connect(&hub, &good)
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    sub.close().await;
    assert!(
        server
            .stats()
            .forbidden
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_from_the_registry() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let v2 = snapshot(2, &[("evil.example", Tlp::Green)], &net.signing);

    // A partner cannot push a snapshot, a subscriber cannot stream, a publisher cannot pull.
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let r = c.push_snapshot(&v2).await;
    assert!(r.as_ref().is_err_and(|e| e.is_forbidden()), "{r:?}");
    let mut c = Client::connect(&hub, &net.id("hospital")).await.unwrap();
    let r = c.send_batch(0, vec![]).await;
    let r = match r {
        Ok(()) => c.recv_hits().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.as_ref().is_err_and(|e| e.is_forbidden()), "{r:?}");
    let mut c = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    let r = c.pull_snapshot(0).await;
    assert!(r.as_ref().is_err_and(|e| e.is_forbidden()), "{r:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_swaps_the_index_and_streams_see_new_indicators() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("fresh.example", "198.51.100.21"),
        ],
    );
    let hits = stream(&net, &hub, &t).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].indicator.as_str(),
            hits[0].value.as_str(),
            hits[0].row
        ),
        ("evil.example", "www.evil.example", 0)
    );

    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    // A snapshot signed with another key is refused, as is one that is not newer.
    let stranger = keys::generate().unwrap();
    let r = publisher
        .push_snapshot(&snapshot(5, &[("x.example", Tlp::Green)], &stranger))
        .await;
    assert!(matches!(r, Err(ClientError::Rejected { .. })), "{r:?}");
    let r = publisher
        .push_snapshot(&snapshot(1, &[("x.example", Tlp::Green)], &net.signing))
        .await;
    assert!(matches!(r, Err(ClientError::Rejected { .. })), "{r:?}");
    let v2 = snapshot(
        2,
        &[("evil.example", Tlp::Green), ("fresh.example", Tlp::Clear)],
        &net.signing,
    );
    assert_eq!(publisher.push_snapshot(&v2).await.unwrap(), 2);
    publisher.close().await;

    let hits = stream(&net, &hub, &t).await;
    let got: Vec<&str> = hits.iter().map(|h| h.indicator.as_str()).collect();
    assert_eq!(got, ["evil.example", "fresh.example"]);
    server.shutdown().await;

    // The pushed snapshot survives a restart.
    let server = Server::start(&net.cfg).await.unwrap();
    let hits = stream(&net, &server.local_addr().to_string(), &t).await;
    assert_eq!(hits.len(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_gives_the_partner_its_clearance_cut_signed_by_the_hub() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let bytes = c.pull_snapshot(0).await.unwrap();
    c.close().await;
    let vk = keys::read_verify(&net.dir.path().join("hub-verify.pem")).unwrap();
    let cut = cwn::index::CompiledIndex::from_snapshot(&bytes, Some(&vk)).unwrap();
    // GREEN is for the community; AMBER only for those the source named.
    assert_eq!(cut.len(), 1);
    assert_eq!(cut.meta().value(0), "evil.example");
    assert_eq!(cut.header().set_version, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_only_the_victim_and_resume_after_reconnect() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();

    let mut hospital = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let mut water = Client::connect(&hub, &net.id("water"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();

    let first = net.telemetry(
        "a.jsonl",
        &[
            ("a.evil.example", "198.51.100.1"),
            ("b.evil.example", "198.51.100.2"),
            // AMBER: the victim may know, the partner (not affected) may not.
            ("secret.example", "198.51.100.3"),
            ("benign.example", "198.51.100.4"),
        ],
    );
    let hits = stream(&net, &hub, &first).await;
    assert_eq!(hits.len(), 2, "the partner sees GREEN only: {hits:?}");
    let got = take(&mut hospital, 3).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(got[0].1["value"], "a.evil.example");
    assert_eq!(got[0].1["partner"], "msp");
    assert_eq!(got[2].1["tlp"], "AMBER");
    // The waterboard's constituency was not touched: nothing for it.
    quiet(&mut water).await;
    quiet(&mut hospital).await;
    hospital.close().await;

    // While the hospital is away, more hits are published for it (and one for the water
    // board).
    let second = net.telemetry(
        "b.jsonl",
        &[
            ("c.evil.example", "198.51.100.5"),
            ("d.evil.example", "203.0.113.9"),
            ("e.evil.example", "198.51.100.6"),
        ],
    );
    assert_eq!(stream(&net, &hub, &second).await.len(), 3);
    let w = take(&mut water, 1).await;
    assert_eq!(w[0].1["value"], "d.evil.example");

    // Reconnecting resumes after the last ack: exactly the missed ones, nothing twice.
    let mut hospital = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let got = take(&mut hospital, 2).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(got[0].1["value"], "c.evil.example");
    assert_eq!(got[1].1["value"], "e.evil.example");
    quiet(&mut hospital).await;
    hospital.close().await;

    // `--from` replays.
    let mut again = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Offset(1))
        .await
        .unwrap();
    assert_eq!(take(&mut again, 1).await[0].0, 1);
    again.close().await;
    water.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_loses_nothing_it_acknowledged() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut sub = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let t = net.telemetry(
        "a.jsonl",
        &(0..20)
            .map(|_| ("x.evil.example", "198.51.100.7"))
            .collect::<Vec<_>>(),
    );
    // The hub answered the batch: its 20 notifications are on disk.
    assert_eq!(stream(&net, &hub, &t).await.len(), 20);
    let got = take(&mut sub, 5).await;
    assert_eq!(got.last().unwrap().0, 4);
    sub.close().await;
    // Drop the hub and start a new one on the same data directory.
    server.shutdown().await;
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut sub = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let got = take(&mut sub, 15).await;
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        (5..20).collect::<Vec<_>>()
    );
    quiet(&mut sub).await;
    sub.close().await;
    server.shutdown().await;
}

#[test]
fn config_check_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hub.toml");
    std::fs::write(
        &p,
        "listen = \"0.0.0.0:4433\"\nregistry = \"r.toml\"\ndata_dir = \"var\"\n\n[tls]\ncert = \"c\"\nkey = \"k\"\nca = \"ca\"\n\n[snapshot]\nverify_key = \"v\"\n\n[limits]\nmax_conections = 10\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["config", "check"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "{}:14: limits.max_conections: unknown key (did you mean max_connections?)",
            p.display()
        )
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/hub.example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["config", "check"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let mut net = Net::new();
    net.cfg.limits.max_connections = 1;
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let first = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let second = async {
        Client::connect(&hub, &net.id("water"))
            .await?
            .subscribe(StartFrom::Acked)
            .await
    }
    .await;
    assert!(
        matches!(second, Err(ClientError::Connection(_))),
        "{second:?}"
    );
    first.close().await;
    server.shutdown().await;
}

#[cfg(unix)]
#[test]
fn serve_stops_gracefully_on_sigterm() {
    use std::io::BufRead as _;
    let net = Net::new();
    let cfg_path = net.dir.path().join("hub.toml");
    std::fs::write(
        &cfg_path,
        "listen = \"127.0.0.1:0\"\nregistry = \"registry.toml\"\ndata_dir = \"var\"\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "cwn serve ended early"
        );
    }
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("cwn: hub listening on ADDR")
        .to_string();
    // A subscriber is connected when the signal comes: it is told Close, not cut off.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let id = net.id("hospital");
    let ended = rt.block_on(async {
        let mut sub = Client::connect(&addr, &id)
            .await
            .unwrap()
            .subscribe(StartFrom::Acked)
            .await
            .unwrap();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        tokio::time::timeout(Duration::from_secs(5), sub.next()).await
    });
    assert!(matches!(ended, Ok(Ok(None))), "{ended:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_pins_certificates_by_fingerprint() {
    let net = Net::new();
    let pem = std::fs::read_to_string(net.dir.path().join("pki/hospital.pem")).unwrap();
    let der = pki::pem_certs(&pem).remove(0);
    let real = pki::fingerprint(&der);
    let hex = |fp: &[u8; 32]| fp.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let registry = net.dir.path().join("registry.toml");
    for (fp, ok) in [([7u8; 32], false), (real, true)] {
        let text = REGISTRY.replace(
            "prefixes = [\"198.51.100.0/24\"]",
            &format!(
                "prefixes = [\"198.51.100.0/24\"]\nfingerprint = \"{}\"\nsubject = \"CN=hospital,OU=subscriber,O=cwn\"",
                hex(&fp)
            ),
        );
        std::fs::write(&registry, text).unwrap();
        let server = Server::start(&net.cfg).await.unwrap();
        let hub = server.local_addr().to_string();
        let r = async {
            Client::connect(&hub, &net.id("hospital"))
                .await?
                .subscribe(StartFrom::Acked)
                .await
        }
        .await;
        match (ok, r) {
            (true, Ok(sub)) => sub.close().await,
            (false, Err(e)) if e.is_forbidden() => {}
            (ok, r) => panic!("fingerprint ok={ok}: {r:?}"),
        }
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stay_with_their_entity_when_the_registry_is_reordered() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let t = net.telemetry("a.jsonl", &[("x.evil.example", "198.51.100.1")]);
    assert_eq!(stream(&net, &hub, &t).await.len(), 1);
    server.shutdown().await;
    // The water board now comes before the hospital in the file.
    let (head, hospital) =
        REGISTRY.split_at(REGISTRY.find("[[entities]]\nid = \"hospital\"").unwrap());
    let (hospital, water) =
        hospital.split_at(hospital.find("[[entities]]\nid = \"water\"").unwrap());
    std::fs::write(
        net.dir.path().join("registry.toml"),
        format!("{head}{water}\n{hospital}"),
    )
    .unwrap();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut water = Client::connect(&hub, &net.id("water"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    quiet(&mut water).await;
    let mut hospital = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    assert_eq!(take(&mut hospital, 1).await[0].1["value"], "x.evil.example");
    water.close().await;
    hospital.close().await;
    server.shutdown().await;
}
