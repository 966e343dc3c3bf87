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
trusts = ["msp"]

[[entities]]
id = "water"
name = "Waterboard"
roles = ["subscriber"]
prefixes = ["203.0.113.0/24"]
trusts = ["msp"]
"#;

/// A PKI, a registry, signing keys, a first snapshot and a hub configuration in a temporary
/// directory.
pub(crate) struct Net {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cfg: HubConfig,
    pub(crate) signing: ed25519_dalek::SigningKey,
}

/// Domains with their TLP, as a feed lists them: ids `ind-0`, `ind-1`, … in order.
pub(crate) fn indicator_set(values: &[(&str, Tlp)]) -> IndicatorSet {
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
    set
}

pub(crate) fn snapshot(
    version: u64,
    values: &[(&str, Tlp)],
    key: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    let set = indicator_set(values);
    IndexBuilder::new()
        .set_version(version)
        .created_at(1_700_000_000)
        .build(&set)
        .unwrap()
        .to_snapshot(Some(key))
}

impl Net {
    pub(crate) fn new() -> Net {
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
            ("shop", "subscriber"),
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

    pub(crate) fn id(&self, entity: &str) -> Identity {
        Identity::from_pki_dir(&self.dir.path().join("pki"), entity).unwrap()
    }

    pub(crate) fn telemetry(&self, name: &str, rows: &[(&str, &str)]) -> PathBuf {
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

pub(crate) async fn stream(net: &Net, hub: &str, file: &Path) -> Vec<cwn::net::batch::HitLine> {
    stream_files(hub, &net.id("msp"), &fields(), None, &[file.to_path_buf()])
        .await
        .unwrap()
        .hits
}

/// Receives `n` notifications, acknowledging each; panics if they take over 5 s.
pub(crate) async fn take(sub: &mut Subscription, n: usize) -> Vec<(u64, serde_json::Value)> {
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

/// `entity`'s subscription, from its acknowledged offset.
pub(crate) async fn subscribe(net: &Net, hub: &str, entity: &str) -> Subscription {
    Client::connect(hub, &net.id(entity))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap()
}

/// Nothing more arrives within a short while.
pub(crate) async fn quiet(sub: &mut Subscription) {
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

/// Several hub addresses (the edges of one hub, `--hub A,B`) are raced with a stagger: a dead
/// first address costs a quarter second, not its connect timeout, and the live one serves;
/// with none alive, the error names every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_several_hub_addresses_uses_the_first_that_answers() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let live = server.local_addr().to_string();
    // Addresses that take packets and never answer, as a dead edge's machine would.
    let silent = [
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
    ];
    let dead: Vec<String> = silent
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let transport = cwn::net::endpoint::Transport {
        connect_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let c = Client::connect_with(&format!("{},{live}", dead[0]), &net.id("msp"), &transport)
        .await
        .unwrap();
    assert_eq!(c.connection().remote_address().to_string(), live);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the live edge answered after {:?}: the dead one was waited for",
        t.elapsed()
    );
    let transport = cwn::net::endpoint::Transport {
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let Err(err) = Client::connect_with(&dead.join(","), &net.id("msp"), &transport).await else {
        panic!("no address answers, yet a connection was made");
    };
    let err = err.to_string();
    assert!(
        err.contains(&dead[0]) && err.contains(&dead[1]),
        "every address named: {err}"
    );
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
async fn pushed_deltas_are_applied_in_order_a_gap_is_refused_and_the_chain_survives_a_restart() {
    use cwn::index::delta::Delta;
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("fresh.example", "198.51.100.21"),
            ("later.example", "198.51.100.22"),
        ],
    );
    // The hub's state: the configured snapshot (v1). Two deltas on it, as `cwn sync` makes
    // them: v2 adds fresh.example, v3 adds later.example.
    let base = cwn::index::CompiledIndex::from_snapshot(
        &std::fs::read(net.dir.path().join("set.cwnsnap")).unwrap(),
        None,
    )
    .unwrap();
    let set = |values: &[&str]| {
        let mut set = IndicatorSet::new();
        let source: Arc<str> = Arc::from("test-feed");
        for (i, v) in values.iter().enumerate() {
            let tlp = if *v == "secret.example" {
                Tlp::Amber
            } else {
                Tlp::Green
            };
            let _ = set.insert(Indicator::new(
                format!("ind-{i}"),
                Kind::Domain,
                *v,
                source.clone(),
                tlp,
            ));
        }
        set
    };
    let builder = |v: u64| IndexBuilder::new().set_version(v).created_at(1_700_000_000);
    let (d2, _) = Delta::compute(
        &base,
        &set(&["evil.example", "secret.example", "fresh.example"]),
        &builder(2),
    )
    .unwrap();
    let d2 = d2.to_bytes(Some(&net.signing));
    let s2 = base.apply(&Delta::from_bytes(&d2, None).unwrap()).unwrap();
    let (d3, _) = Delta::compute(
        &s2,
        &set(&[
            "evil.example",
            "secret.example",
            "fresh.example",
            "later.example",
        ]),
        &builder(3),
    )
    .unwrap();
    let d3 = d3.to_bytes(Some(&net.signing));

    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    // v3 before v2: a gap, refused with the version the hub is at.
    match publisher.push_snapshot(&d3).await {
        Err(ClientError::Rejected { reason, .. }) => assert!(
            reason.contains("the hub is at set version 1")
                && reason.contains("applies to set version 2"),
            "{reason}"
        ),
        r => panic!("a gap was not refused: {r:?}"),
    }
    // Signed with another key: refused.
    let stranger = keys::generate().unwrap();
    let forged = Delta::from_bytes(&d2, None)
        .unwrap()
        .to_bytes(Some(&stranger));
    assert!(matches!(
        publisher.push_snapshot(&forged).await,
        Err(ClientError::Rejected { .. })
    ));
    assert_eq!(publisher.push_snapshot(&d2).await.unwrap(), 2);
    assert_eq!(publisher.push_snapshot(&d3).await.unwrap(), 3);
    // Again: not newer.
    assert!(matches!(
        publisher.push_snapshot(&d3).await,
        Err(ClientError::Rejected { .. })
    ));
    publisher.close().await;
    let hits = stream(&net, &hub, &t).await;
    let got: Vec<&str> = hits.iter().map(|h| h.indicator.as_str()).collect();
    assert_eq!(got, ["evil.example", "fresh.example", "later.example"]);
    // The partner's pull is the cut of the state with the deltas applied.
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let cut =
        cwn::index::CompiledIndex::from_snapshot(&c.pull_snapshot(0).await.unwrap(), None).unwrap();
    c.close().await;
    assert_eq!((cut.header().set_version, cut.len()), (3, 3));
    server.shutdown().await;

    // The chain is stored beside the snapshot: a restarted hub is at v3.
    let server = Server::start(&net.cfg).await.unwrap();
    let hits = stream(&net, &server.local_addr().to_string(), &t).await;
    assert_eq!(hits.len(), 3);
    server.shutdown().await;
}

/// Domains as a feed lists them, each its own id; `secret*` ones are AMBER (the partner "msp"
/// is not cleared for them), the others GREEN.
pub(crate) fn domains(values: &[&str]) -> IndicatorSet {
    let mut set = IndicatorSet::new();
    let source: Arc<str> = Arc::from("test-feed");
    for v in values {
        let tlp = if v.starts_with("secret") {
            Tlp::Amber
        } else {
            Tlp::Green
        };
        let _ = set.insert(Indicator::new(*v, Kind::Domain, *v, source.clone(), tlp));
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_since_brings_a_partner_only_the_cut_deltas_it_lacks_and_hides_what_it_may_not_see() {
    use cwn::index::CompiledIndex;
    use cwn::index::delta::Delta;
    let net = Net::new();
    let p = net.dir.path().to_path_buf();
    let hub_vk = keys::read_verify(&p.join("hub-verify.pem")).unwrap();
    let pull = |hub: &str, since: u64, dir: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(["pull", "--hub", hub, "--pki"])
            .arg(p.join("pki"))
            .args(["--entity", "msp", "--since", &since.to_string(), "-o"])
            .arg(p.join(dir))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        err
    };
    let files = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(p.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    // The partner's state: its chain applied, as `cwn match --index … --delta …` loads it.
    let held = |dir: &str| {
        let mut chain = files(dir).into_iter();
        let base = chain.next().unwrap();
        let mut s = CompiledIndex::from_snapshot(
            &std::fs::read(p.join(dir).join(base)).unwrap(),
            Some(&hub_vk),
        )
        .unwrap();
        for d in chain {
            let d = Delta::read(&p.join(dir).join(d), Some(&hub_vk)).unwrap();
            s = s.apply(&d).unwrap();
        }
        let m = s.meta();
        let mut values: Vec<String> = m.ords().map(|o| m.value(o).to_string()).collect();
        values.sort();
        (s.header().set_version, values)
    };
    let cut_delta = |dir: &str, v: u64| {
        let d = Delta::read(
            &p.join(dir).join(format!("set-v{v}.cwndelta")),
            Some(&hub_vk),
        )
        .unwrap();
        let a = d.added();
        let added: Vec<String> = a.ords().map(|o| a.value(o).to_string()).collect();
        (added, d.removed().len())
    };
    let builder = |v: u64| {
        IndexBuilder::new()
            .set_version(v)
            .created_at(1_700_000_000 + v as i64)
    };
    // The hub's snapshot, v1: the feed's first version.
    let base = builder(1)
        .build(&domains(&["evil.example", "secret.example"]))
        .unwrap()
        .to_snapshot(Some(&net.signing));
    std::fs::write(p.join("set.cwnsnap"), &base).unwrap();
    let base = CompiledIndex::from_snapshot(&base, None).unwrap();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();

    // Nothing held: the cut of the hub's snapshot (evil.example; secret.example is AMBER).
    let err = tokio::task::block_in_place(|| pull(&hub, 0, "chain"));
    assert!(err.contains("at set version 1"), "{err}");
    assert_eq!(files("chain"), ["set-v1.cwnsnap"]);
    assert_eq!(held("chain"), (1, vec!["evil.example".to_string()]));

    // v2 adds fresh.example and secret-two.example: the partner's delta adds the first only.
    let (d2, _) = Delta::compute(
        &base,
        &domains(&[
            "evil.example",
            "secret.example",
            "fresh.example",
            "secret-two.example",
        ]),
        &builder(2),
    )
    .unwrap();
    let d2 = d2.to_bytes(Some(&net.signing));
    let s2 = base.apply(&Delta::from_bytes(&d2, None).unwrap()).unwrap();
    // v3 removes evil.example and secret.example, adds later.example: the partner learns of
    // the removal it held, never of the AMBER one.
    let (d3, _) = Delta::compute(
        &s2,
        &domains(&["fresh.example", "secret-two.example", "later.example"]),
        &builder(3),
    )
    .unwrap();
    let d3 = d3.to_bytes(Some(&net.signing));
    let s3 = s2.apply(&Delta::from_bytes(&d3, None).unwrap()).unwrap();
    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    assert_eq!(publisher.push_snapshot(&d2).await.unwrap(), 2);
    let err = tokio::task::block_in_place(|| pull(&hub, 1, "chain"));
    assert!(err.contains("at set version 2: 1 file(s)"), "{err}");
    assert_eq!(
        cut_delta("chain", 2),
        (vec!["fresh.example".to_string()], 0)
    );
    assert_eq!(publisher.push_snapshot(&d3).await.unwrap(), 3);
    publisher.close().await;
    let err = tokio::task::block_in_place(|| pull(&hub, 2, "chain"));
    assert!(err.contains("at set version 3: 1 file(s)"), "{err}");
    assert!(err.contains("--delta"), "{err}");
    assert_eq!(
        cut_delta("chain", 3),
        (vec!["later.example".to_string()], 1)
    );
    assert_eq!(
        files("chain"),
        ["set-v1.cwnsnap", "set-v2.cwndelta", "set-v3.cwndelta"]
    );
    let want = (
        3,
        vec!["fresh.example".to_string(), "later.example".to_string()],
    );
    assert_eq!(held("chain"), want);
    // The same as a plain pull of the cut of the hub's state.
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let whole = CompiledIndex::from_snapshot(&c.pull_snapshot(0).await.unwrap(), None).unwrap();
    c.close().await;
    let m = whole.meta();
    let mut values: Vec<String> = m.ords().map(|o| m.value(o).to_string()).collect();
    values.sort();
    assert_eq!(values, want.1);
    // Up to date: nothing to fetch.
    let err = tokio::task::block_in_place(|| pull(&hub, 3, "chain"));
    assert!(err.contains("up to date at set version 3"), "{err}");
    server.shutdown().await;

    // A restarted hub computes the same chain: it knows the partner's state and goes on.
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let (d4, _) = Delta::compute(
        &s3,
        &domains(&[
            "fresh.example",
            "secret-two.example",
            "later.example",
            "newest.example",
        ]),
        &builder(4),
    )
    .unwrap();
    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    assert_eq!(
        publisher
            .push_snapshot(&d4.to_bytes(Some(&net.signing)))
            .await
            .unwrap(),
        4
    );
    publisher.close().await;
    let err = tokio::task::block_in_place(|| pull(&hub, 3, "chain"));
    assert!(err.contains("at set version 4: 1 file(s)"), "{err}");
    assert_eq!(
        cut_delta("chain", 4),
        (vec!["newest.example".to_string()], 0)
    );
    assert_eq!(held("chain").1.len(), 3);
    // A directory without the state named: the whole chain, and nothing of another one left.
    std::fs::create_dir(p.join("other")).unwrap();
    std::fs::write(p.join("other/set-v0.cwndelta"), b"left over").unwrap();
    let err = tokio::task::block_in_place(|| pull(&hub, 2, "other"));
    assert!(err.contains("holds no set version 2"), "{err}");
    assert_eq!(files("other"), files("chain"));
    assert_eq!(held("other"), held("chain"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_indicator_finds_the_victim_of_telemetry_received_23_hours_earlier_once() {
    use cwn::index::CompiledIndex;
    use cwn::index::delta::Delta;
    let net = Net::new();
    let mut cfg = net.cfg.clone();
    cfg.retro = Some(cwn::net::config::RetroConfig {
        keep: Duration::from_secs(86_400),
        max_bytes: 1 << 30,
    });
    let p = net.dir.path();
    let now = jiff::Timestamp::now().as_second();
    let fields = FieldMap::from_specs([
        "query=domain".parse().unwrap(),
        "client=ip".parse().unwrap(),
        "ts=time".parse().unwrap(),
    ])
    .unwrap();
    let rows = |name: &str, query: &str, client: &str, ts: i64| {
        let path = p.join(name);
        std::fs::write(
            &path,
            format!(
                "{{\"ts\":{ts},\"query\":\"{query}\",\"client\":\"{client}\"}}\n\
                 {{\"ts\":{ts},\"query\":\"benign.example\",\"client\":\"{client}\"}}\n"
            ),
        )
        .unwrap();
        path
    };
    let kept = || {
        let mut v: Vec<String> = std::fs::read_dir(p.join("var/retro"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.ends_with(".parquet"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let server = Server::start(&cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    // Yesterday's telemetry, streamed while nothing was known about either name: the
    // hospital's client asked for old-bad.test 23 hours ago, the water board's for
    // older-bad.test 25 hours ago.
    let day_old = now - 23 * 3600;
    for (name, query, client, ts) in [
        ("a.jsonl", "old-bad.test", "198.51.100.20", day_old),
        ("b.jsonl", "older-bad.test", "203.0.113.9", now - 25 * 3600),
    ] {
        let want = kept().len() + 1;
        let r = stream_files(
            &hub,
            &net.id("msp"),
            &fields,
            None,
            &[rows(name, query, client, ts)],
        )
        .await
        .unwrap();
        assert!(r.hits.is_empty());
        for _ in 0..100 {
            if kept().len() == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(kept().len(), want, "each batch is kept");
    }
    server.shutdown().await;
    // The batches as if they had come 23 and 25 hours ago (the store's names carry the time
    // each came): one day is kept.
    let kept_now = kept();
    for (name, age) in kept_now.iter().zip([23, 25]) {
        let (_, digest) = name.trim_end_matches(".parquet").split_once('-').unwrap();
        let then = (now - age * 3600) * 1000;
        for ext in ["parquet", "sum"] {
            let from = p.join("var/retro").join(name.replace("parquet", ext));
            std::fs::rename(from, p.join(format!("var/retro/{then:013}-{digest}.{ext}"))).unwrap();
        }
    }
    let server = Server::start(&cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    assert_eq!(kept().len(), 1, "the batch older than a day is gone");
    let mut hospital = subscribe(&net, &hub, "hospital").await;
    let mut water = subscribe(&net, &hub, "water").await;
    // Today both names are published, in a delta.
    let base =
        CompiledIndex::from_snapshot(&std::fs::read(p.join("set.cwnsnap")).unwrap(), None).unwrap();
    let mut values = vec![
        ("evil.example", Tlp::Green),
        ("secret.example", Tlp::Amber),
        ("old-bad.test", Tlp::Green),
        ("older-bad.test", Tlp::Green),
    ];
    let set = indicator_set(&values);
    let (d, _) = Delta::compute(
        &base,
        &set,
        &IndexBuilder::new().set_version(2).created_at(1_700_000_000),
    )
    .unwrap();
    let pushed = std::time::Instant::now();
    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    assert_eq!(
        publisher
            .push_snapshot(&d.to_bytes(Some(&net.signing)))
            .await
            .unwrap(),
        2
    );
    publisher.close().await;
    let (offset, note) = tokio::time::timeout(Duration::from_secs(60), hospital.next())
        .await
        .expect("the retro-hunt's notification within 60 s")
        .unwrap()
        .expect("subscription open");
    hospital.ack(offset).await.unwrap();
    assert!(pushed.elapsed() < Duration::from_secs(60));
    let n: serde_json::Value = serde_json::from_slice(&note.payload).unwrap();
    assert_eq!(n["indicator"], "old-bad.test", "{n}");
    assert_eq!(n["retro"], true, "{n}");
    assert_eq!(n["partner"], "msp", "{n}");
    assert_eq!(
        n["event_time"],
        jiff::Timestamp::from_second(day_old).unwrap().to_string(),
        "the row's own time: {n}"
    );
    assert_eq!(n["victim"][0]["value"], "198.51.100.20", "{n}");
    // Once; and nothing from the batch that fell out of the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    quiet(&mut hospital).await;
    quiet(&mut water).await;

    // A full snapshot (v3) that also holds benign.example: the hunt looks for what v2 did
    // not hold, and finds the same row's other query — old-bad.test is not news again.
    values.push(("benign.example", Tlp::Green));
    let v3 = IndexBuilder::new()
        .set_version(3)
        .created_at(1_700_000_000)
        .build(&indicator_set(&values))
        .unwrap()
        .to_snapshot(Some(&net.signing));
    let mut publisher = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    assert_eq!(publisher.push_snapshot(&v3).await.unwrap(), 3);
    publisher.close().await;
    let (offset, note) = tokio::time::timeout(Duration::from_secs(60), hospital.next())
        .await
        .expect("the retro-hunt's notification for the full snapshot within 60 s")
        .unwrap()
        .expect("subscription open");
    hospital.ack(offset).await.unwrap();
    let n: serde_json::Value = serde_json::from_slice(&note.payload).unwrap();
    assert_eq!(n["indicator"], "benign.example", "{n}");
    assert_eq!(n["retro"], true, "{n}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    quiet(&mut hospital).await;
    quiet(&mut water).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pushes_each_change_to_the_hub_and_catches_up_after_an_outage() {
    let net = Net::new();
    let p = net.dir.path();
    std::fs::write(
        p.join("signing.pem"),
        keys::signing_pem(&net.signing).unwrap(),
    )
    .unwrap();
    std::fs::create_dir(p.join("lists")).unwrap();
    let list = |lines: &str| std::fs::write(p.join("lists/feed.txt"), lines).unwrap();
    list("evil.example\n");
    std::fs::write(
        p.join("sync.toml"),
        "state_dir = \"sync\"\nsign_key = \"signing.pem\"\n[[source]]\nname = \"feed\"\nkind = \"list\"\nurl = \"lists\"\ntlp = \"green\"\n",
    )
    .unwrap();
    let sync = |hub: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(["sync", "--config"])
            .arg(p.join("sync.toml"))
            .args([
                "--once",
                "--json",
                "--hub",
                hub,
                "--connect-timeout",
                "2",
                "--pki",
            ])
            .arg(p.join("pki"))
            .args(["--entity", "ncsc"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (
            o.status.code(),
            report,
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("fresh.example", "198.51.100.21"),
        ],
    );
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    // Cycle 1: a full snapshot, pushed.
    let (code, r, err) = tokio::task::block_in_place(|| sync(&hub));
    assert_eq!(code, Some(0), "{r}\n{err}");
    let v1 = r["version"].as_u64().unwrap();
    // Cycle 2: a new line, a delta, pushed and used.
    list("evil.example\nfresh.example\n");
    let (code, r, err) = tokio::task::block_in_place(|| sync(&hub));
    assert_eq!(code, Some(0), "{r}\n{err}");
    assert_eq!(r["published"][0]["kind"], "delta");
    let v2 = r["version"].as_u64().unwrap();
    assert!(v2 > v1);
    let hits = stream(&net, &hub, &t).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    server.shutdown().await;
    // Cycle 3 while the hub is down: published, not pushed (exit 1).
    list("fresh.example\n");
    let (code, r, err) = tokio::task::block_in_place(|| sync(&hub));
    assert_eq!(code, Some(1), "{r}\n{err}");
    assert_eq!(r["published"][0]["kind"], "delta");
    // Back up (same data directory: at v2): the next cycle pushes what it missed.
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let (code, r, err) = tokio::task::block_in_place(|| sync(&hub));
    assert_eq!(code, Some(0), "{r}\n{err}");
    assert!(r["published"].as_array().unwrap().is_empty(), "{r}");
    let hits = stream(&net, &hub, &t).await;
    let got: Vec<&str> = hits.iter().map(|h| h.indicator.as_str()).collect();
    assert_eq!(got, ["fresh.example"], "the hub is at the latest version");
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
    assert_eq!(
        cut.meta().value(cwn::indicator::IndicatorId::new(0)),
        "evil.example"
    );
    assert_eq!(cut.header().set_version, 1);
    // One clearance cut: what `cwn compile --for msp` takes of the same index (route::cut),
    // signed with the hub's key, is the pulled snapshot byte for byte.
    let p = net.dir.path();
    let whole = cwn::index::CompiledIndex::from_snapshot(
        &std::fs::read(p.join("set.cwnsnap")).unwrap(),
        None,
    )
    .unwrap();
    let registry = cwn::route::registry::Registry::from_toml(
        &std::fs::read_to_string(p.join("registry.toml")).unwrap(),
        "registry.toml",
    )
    .unwrap();
    let msp = registry.by_id("msp").unwrap();
    let router = cwn::route::Router::new(registry, cwn::route::RoutePolicy::default());
    let hub_key = keys::read_signing(&p.join("hub-signing.pem")).unwrap();
    let same = cwn::route::cut::cut_for(&router, msp, &whole)
        .unwrap()
        .to_snapshot(Some(&hub_key));
    assert!(same == bytes, "compile --for and pull cut differently");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_only_the_victim_and_resume_after_reconnect() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();

    let mut hospital = subscribe(&net, &hub, "hospital").await;
    let mut water = subscribe(&net, &hub, "water").await;

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
    let mut hospital = subscribe(&net, &hub, "hospital").await;
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

/// Streams `n` hits for the hospital (198.51.100.0/24) in one batch.
async fn hits_for_hospital(net: &Net, hub: &str, name: &str, n: usize) {
    let rows: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("h{i}.evil.example"),
                format!("198.51.100.{}", 1 + i),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = rows.iter().map(|(q, c)| (q.as_str(), c.as_str())).collect();
    assert_eq!(stream(net, hub, &net.telemetry(name, &refs)).await.len(), n);
}

/// Acks held by `set_ack_delay` (as `cwn subscribe` holds them): none reaches the hub before
/// its delay, so a broken connection gets them again; one due goes out while the subscriber
/// waits; the `ACK_EVERY`th notification's goes out at once; `close` sends what is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_acks_go_out_when_due_at_every_sixteenth_and_on_close() {
    use cwn::net::client::ACK_EVERY;
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let offsets = |got: &[(u64, serde_json::Value)]| got.iter().map(|g| g.0).collect::<Vec<_>>();

    // Held for an hour, then the connection breaks: the hub never had them.
    let mut sub = subscribe(&net, &hub, "hospital").await;
    sub.set_ack_delay(Duration::from_secs(3600));
    hits_for_hospital(&net, &hub, "a.jsonl", 3).await;
    assert_eq!(offsets(&take(&mut sub, 3).await), [0, 1, 2]);
    drop(sub);

    // Waits a second with nothing arriving: what was sent reaches the hub before a drop.
    async fn settle(sub: &mut Subscription) {
        let r = tokio::time::timeout(Duration::from_secs(1), sub.next()).await;
        assert!(r.is_err(), "unexpected notification: {r:?}");
    }

    // Delivered again; held for 100 ms, they go out while `next` waits.
    let mut sub = subscribe(&net, &hub, "hospital").await;
    sub.set_ack_delay(Duration::from_millis(100));
    assert_eq!(offsets(&take(&mut sub, 3).await), [0, 1, 2]);
    settle(&mut sub).await;
    drop(sub);
    let mut sub = subscribe(&net, &hub, "hospital").await;
    quiet(&mut sub).await;

    // Held for an hour, 20 arrive: the ack of the 16th goes out without waiting, the rest
    // are held and delivered again after a break.
    sub.set_ack_delay(Duration::from_secs(3600));
    hits_for_hospital(&net, &hub, "b.jsonl", 20).await;
    assert_eq!(
        offsets(&take(&mut sub, 20).await),
        (3..23).collect::<Vec<u64>>()
    );
    settle(&mut sub).await;
    drop(sub);
    let sent = 3 + u64::from(ACK_EVERY);
    let mut sub = subscribe(&net, &hub, "hospital").await;
    sub.set_ack_delay(Duration::from_secs(3600));
    assert_eq!(
        offsets(&take(&mut sub, (23 - sent) as usize).await),
        (sent..23).collect::<Vec<u64>>()
    );
    quiet(&mut sub).await;
    // Closing sends the held ack: nothing comes again.
    sub.close().await;
    let mut sub = subscribe(&net, &hub, "hospital").await;
    quiet(&mut sub).await;
    sub.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_loses_nothing_it_acknowledged() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut sub = subscribe(&net, &hub, "hospital").await;
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
    let mut sub = subscribe(&net, &hub, "hospital").await;
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
    // The example is valid, and names the files `cwn pki` and `cwn keygen` make: until they
    // exist, each is reported with its key and path, all at once, and nothing else is.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/hub.example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["config", "check"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let keys: Vec<&str> = err
        .lines()
        .map(|l| {
            assert!(l.contains("No such file"), "{l}");
            l.split(": ").nth(1).unwrap()
        })
        .collect();
    assert_eq!(
        keys,
        [
            "tls.cert",
            "tls.key",
            "tls.ca",
            "snapshot.verify_key",
            "snapshot.sign_key",
            "snapshot.path"
        ],
        "{err}"
    );
    assert!(err.contains("pki/hub.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    let mut net = Net::new();
    net.cfg.limits.max_connections = 1;
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let first = subscribe(&net, &hub, "hospital").await;
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
    let net = Net::new();
    let (mut child, addr) = spawn_hub(&net);
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
    let mut water = subscribe(&net, &hub, "water").await;
    quiet(&mut water).await;
    let mut hospital = subscribe(&net, &hub, "hospital").await;
    assert_eq!(take(&mut hospital, 1).await[0].1["value"], "x.evil.example");
    water.close().await;
    hospital.close().await;
    server.shutdown().await;
}

/// Starts `cwn serve --config hub.toml` in `net`'s directory; returns the child and its
/// address once it listens.
#[cfg(unix)]
fn spawn_hub(net: &Net) -> (std::process::Child, String) {
    let (child, addr, _) = spawn_hub_with(net, "");
    (child, addr)
}

/// `cwn serve` on a configuration like [`Net`]'s with `top` added to its top level; returns
/// the process, the hub's address and the status page's, when it has one.
pub(crate) fn spawn_hub_with(
    net: &Net,
    top: &str,
) -> (std::process::Child, String, Option<String>) {
    spawn_hub_on(net, "127.0.0.1:0", top)
}

/// [`spawn_hub_with`] listening on `listen`.
fn spawn_hub_on(
    net: &Net,
    listen: &str,
    top: &str,
) -> (std::process::Child, String, Option<String>) {
    use std::io::BufRead as _;
    let cfg_path = net.dir.path().join("hub.toml");
    std::fs::write(
        &cfg_path,
        format!("listen = \"{listen}\"\nregistry = \"registry.toml\"\ndata_dir = \"var\"\n{top}\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n"),
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
    let mut status = None;
    let mut addr = None;
    while addr.is_none() {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "cwn serve ended early"
        );
        if line.contains("listening on") {
            addr = Some(line.trim().rsplit(' ').next().unwrap().to_string());
        }
    }
    if top.contains("status_listen") {
        while status.is_none() {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "cwn serve ended before naming its status page"
            );
            if line.contains("status page on") {
                let url = line.split("http://").nth(1).unwrap();
                status = Some(url.split('/').next().unwrap().to_string());
            }
        }
    }
    // Keep draining stderr so that the hub never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, addr.unwrap(), status)
}

/// `GET path` over plain HTTP/1.1; the body.
pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[cfg(unix)]
#[test]
fn serve_runs_the_status_page_that_its_configuration_names() {
    let net = Net::new();
    let (mut child, hub, status) = spawn_hub_with(&net, "status_listen = \"127.0.0.1:0\"");
    let status = status.expect("a status page");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
    let hits = rt.block_on(stream(&net, &hub, &t));
    assert_eq!(hits.len(), 1);
    let metrics = http_get(&status, "/metrics");
    let rows: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cwn_telemetry_rows_total{"))
        .unwrap_or_else(|| panic!("{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rows, 1.0, "{metrics}");
    assert!(metrics.contains("cwn_snapshot_version 1"), "{metrics}");
    let json: serde_json::Value =
        serde_json::from_str(&http_get(&status, "/api/status.json")).unwrap();
    assert!(json.is_object(), "{json}");
    assert!(http_get(&status, "/").contains("<html"));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

/// Partner: sends `batches` (id, Arrow IPC) with a few unanswered at a time, noting each
/// batch the hub answered (and so made durable) in `answered`, with its hit count.
#[cfg(unix)]
async fn send_all(
    hub: &str,
    id: &Identity,
    batches: &[(u64, Vec<u8>)],
    answered: &std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
    pause: Duration,
) -> Result<(), ClientError> {
    let mut partner = Client::connect(hub, id).await?;
    let mut unanswered = 0;
    for (batch_id, ipc) in batches {
        partner.send_batch(*batch_id, ipc.clone()).await?;
        unanswered += 1;
        if unanswered == 4 {
            let (b, hits) = partner.recv_hits().await?;
            answered.lock().unwrap().insert(b, hits.len());
            unanswered -= 1;
        }
        tokio::time::sleep(pause).await;
    }
    while unanswered > 0 {
        let (b, hits) = partner.recv_hits().await?;
        answered.lock().unwrap().insert(b, hits.len());
        unanswered -= 1;
    }
    partner.close().await;
    Ok(())
}

/// Subscriber: receives from `hub`, writes `connection offset id row` to `journal` and only
/// then acks, until the connection ends or `want` distinct ids were seen.
#[cfg(unix)]
async fn receive_into(
    hub: &str,
    id: &Identity,
    connection: usize,
    journal: &Path,
    want: Option<usize>,
) -> Result<(), ClientError> {
    use std::io::Write as _;
    let mut seen = std::collections::HashSet::new();
    if want.is_some() {
        for line in std::fs::read_to_string(journal).unwrap_or_default().lines() {
            seen.insert(line.split(' ').nth(2).unwrap().to_string());
        }
    }
    let mut sub = Client::connect(hub, id)
        .await?
        .subscribe(StartFrom::Acked)
        .await?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .unwrap();
    while want.is_none_or(|w| seen.len() < w) {
        let Some((offset, n)) = sub.next().await? else {
            break;
        };
        let payload: serde_json::Value = serde_json::from_slice(&n.payload).unwrap();
        writeln!(file, "{connection} {offset} {} {}", n.id, payload["row"]).unwrap();
        file.flush().unwrap();
        seen.insert(n.id.to_string());
        sub.ack(offset).await?;
    }
    sub.close().await;
    Ok(())
}

/// One round of the crash test: stream, `kill -9` the hub at a random point, restart it on
/// the same data, re-send what was not answered, reconnect, and check the subscriber's
/// journal.
#[cfg(unix)]
fn crash_round(round: usize) {
    const BATCHES: u64 = 80;
    const ROWS: u64 = 25;
    let net = Net::new();
    let fields = fields();
    // Every row but each fifth hits the hospital; the others are benign.
    let mut batches = Vec::new();
    let mut hit_rows = std::collections::BTreeSet::new();
    for b in 0..BATCHES {
        let rows: Vec<(String, String)> = (0..ROWS)
            .map(|i| {
                let row = b * ROWS + i;
                if row % 5 == 4 {
                    (format!("r{row}.benign.example"), "198.51.100.9".to_string())
                } else {
                    hit_rows.insert(row);
                    (format!("r{row}.evil.example"), "198.51.100.9".to_string())
                }
            })
            .collect();
        let refs: Vec<(&str, &str)> = rows.iter().map(|(q, c)| (q.as_str(), c.as_str())).collect();
        let file = net.telemetry(&format!("b{b}.jsonl"), &refs);
        let tb = cwn::telemetry::open(&file, None, &fields)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(tb.batch.num_rows() as u64, ROWS);
        let ipc =
            cwn::net::batch::encode_telemetry(&tb.batch, &fields, "crash.jsonl", b * ROWS).unwrap();
        batches.push((b, ipc));
    }
    let journal = net.dir.path().join("journal.txt");
    let answered = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut seed = [0u8; 2];
    getrandom::fill(&mut seed).unwrap();
    let kill_after = Duration::from_millis(30 + u64::from(u16::from_le_bytes(seed)) % 400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (mut hub, addr) = spawn_hub(&net);
    let answered_at_kill = rt.block_on(async {
        let sub = {
            let (addr, id, journal) = (addr.clone(), net.id("hospital"), journal.clone());
            tokio::spawn(async move { receive_into(&addr, &id, 0, &journal, None).await })
        };
        // Let the subscription start before the stream does.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let partner = {
            let (addr, id, b, a) = (
                addr.clone(),
                net.id("msp"),
                batches.clone(),
                answered.clone(),
            );
            tokio::spawn(
                async move { send_all(&addr, &id, &b, &a, Duration::from_millis(5)).await },
            )
        };
        tokio::time::sleep(kill_after).await;
        hub.kill().unwrap();
        hub.wait().unwrap();
        let at_kill = answered.lock().unwrap().clone();
        // A killed peer never says goodbye: stop waiting for it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        sub.abort();
        partner.abort();
        at_kill
    });
    assert!(
        (answered_at_kill.len() as u64) < BATCHES,
        "round {round}: the kill after {kill_after:?} came after the stream ended"
    );

    let (mut hub, addr) = spawn_hub(&net);
    rt.block_on(async {
        let missing: Vec<(u64, Vec<u8>)> = batches
            .iter()
            .filter(|(b, _)| !answered.lock().unwrap().contains_key(b))
            .cloned()
            .collect();
        send_all(&addr, &net.id("msp"), &missing, &answered, Duration::ZERO)
            .await
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(20),
            receive_into(
                &addr,
                &net.id("hospital"),
                1,
                &journal,
                Some(hit_rows.len()),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: not everything arrived after the restart"))
        .unwrap();
    });
    hub.kill().unwrap();
    hub.wait().unwrap();

    // The journal: every hit arrived, repeats only as the same id at the same or a later
    // offset, and offsets in order within each connection.
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut id_of_offset = std::collections::HashMap::new();
    let mut row_of_id = std::collections::HashMap::new();
    let mut last: Option<(usize, u64)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (conn, offset, id, row): (usize, u64, &str, u64) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2],
            f[3].parse().unwrap(),
        );
        assert!(
            hit_rows.contains(&row),
            "round {round}: row {row} is no hit: {line}"
        );
        if let Some(prev) = id_of_offset.insert(offset, id.to_string()) {
            assert_eq!(
                prev, id,
                "round {round}: offset {offset} held two notifications"
            );
        }
        if let Some(prev) = row_of_id.insert(id.to_string(), row) {
            assert_eq!(prev, row, "round {round}: id {id} named two rows");
        }
        match last {
            Some((c, o)) if c == conn => assert_eq!(
                offset,
                o + 1,
                "round {round}: offsets out of order on connection {conn}"
            ),
            // A new connection resumes at the saved ack: never past what was received.
            Some((_, o)) => assert!(offset <= o + 1, "round {round}: gap {o} -> {offset}"),
            None => assert_eq!(offset, 0),
        }
        last = Some((conn, offset));
    }
    let rows: std::collections::BTreeSet<u64> = row_of_id.values().copied().collect();
    for (b, hits) in &answered_at_kill {
        let want = (b * ROWS..(b + 1) * ROWS).filter(|r| hit_rows.contains(r));
        assert_eq!(*hits, want.clone().count());
        for r in want {
            assert!(
                rows.contains(&r),
                "round {round}: row {r} of acknowledged batch {b} lost"
            );
        }
    }
    assert_eq!(rows, hit_rows, "round {round}: not every hit arrived");
    eprintln!(
        "crash round {round}: killed after {kill_after:?} with {}/{BATCHES} batches answered; {} deliveries of {} notifications",
        answered_at_kill.len(),
        text.lines().count(),
        hit_rows.len()
    );
}

/// `kill -9` of the hub mid-stream loses no notification whose batch it answered.
/// `CWN_CRASH_ROUNDS` (default 3) sets how many rounds run.
#[cfg(unix)]
#[test]
fn sigkill_of_the_hub_loses_nothing_it_acknowledged() {
    let rounds = std::env::var("CWN_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        crash_round(round);
    }
}

// ---- hardening -------------------------------------------------------------------------

/// A hub configuration like [`Net`]'s with more keys at the top and in `[limits]`.
fn config_with(net: &Net, top: &str, limits: &str) -> HubConfig {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
registry = "registry.toml"
data_dir = "var"
{top}

[tls]
cert = "pki/hub.pem"
key = "pki/hub.key"
ca = "pki/ca.pem"

[snapshot]
path = "set.cwnsnap"
verify_key = "verify.pem"

[limits]
idle_timeout = "10s"
keep_alive_interval = "1s"
{limits}
"#
    );
    HubConfig::from_toml(&toml, "hub.toml", net.dir.path()).unwrap()
}

fn error_code(f: &cwn::hub::Frame) -> Option<(u16, String)> {
    match f {
        cwn::hub::Frame::Error { code, message } => Some((code.0, message.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_publisher_internal_cases_reach_nobody_and_are_audited() {
    let net = Net::new();
    let p = net.dir.path();
    // The same network with its publisher taken out of the registry.
    std::fs::write(
        p.join("registry.toml"),
        REGISTRY.replace(
            "id = \"ncsc\"\nname = \"NCSC\"\nroles = [\"publisher\"]",
            "id = \"ncsc\"\nname = \"NCSC\"\nroles = [\"subscriber\"]",
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("set.cwnsnap"),
        snapshot(
            1,
            &[
                ("strict.example", Tlp::AmberStrict),
                ("amber.example", Tlp::Amber),
            ],
            &net.signing,
        ),
    )
    .unwrap();
    // Refused unless the operator says so.
    let err = Server::start(&config_with(&net, "", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("allow_no_publisher") && err.contains("registry.toml"),
        "{err}"
    );
    let cfg = config_with(&net, "allow_no_publisher = true", "");
    let server = Server::start(&cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    // AMBER+STRICT, and AMBER with no victim in the row: internal cases both.
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("strict.example", "192.0.2.1"),
            ("amber.example", "192.0.2.2"),
        ],
    );
    let hits = stream(&net, &hub, &t).await;
    assert!(
        hits.is_empty(),
        "internal cases went back to the partner: {hits:?}"
    );
    server.shutdown().await;
    let audit = std::fs::read_to_string(&cfg.audit_log).unwrap();
    let no_publisher = audit
        .lines()
        .filter(|l| l.contains("\"internal_case_no_publisher\""))
        .count();
    assert_eq!(no_publisher, 2, "{audit}");
    assert!(!audit.contains("\"rule\":\"internal_case\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_cases_go_to_the_publisher_that_pushed_the_snapshot() {
    let net = Net::new();
    let p = net.dir.path();
    // Two publishers; the snapshot of the configuration is nobody's until one pushes.
    let two = format!(
        "{REGISTRY}\n[[entities]]\nid = \"cert-b\"\nname = \"CERT B\"\nroles = [\"publisher\", \"subscriber\"]\n"
    );
    std::fs::write(p.join("registry.toml"), two).unwrap();
    pki::issue(
        &p.join("pki"),
        &pki::IssueOptions {
            entity: "cert-b".into(),
            roles: vec!["publisher".into()],
            dns: vec![],
            ips: vec![],
            days: 30,
            force: false,
        },
    )
    .unwrap();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let v2 = snapshot(2, &[("strict.example", Tlp::AmberStrict)], &net.signing);
    let mut b = Client::connect(&hub, &net.id("cert-b")).await.unwrap();
    assert_eq!(b.push_snapshot(&v2).await.unwrap(), 2);
    b.close().await;
    let t = net.telemetry("dns.jsonl", &[("strict.example", "192.0.2.1")]);
    assert!(stream(&net, &hub, &t).await.is_empty());
    let mut sub = Client::connect(&hub, &net.id("cert-b"))
        .await
        .unwrap()
        .subscribe(StartFrom::Acked)
        .await
        .unwrap();
    let got = take(&mut sub, 1).await;
    assert_eq!(got[0].1["rule"], "internal_case");
    assert_eq!(got[0].1["indicator"], "strict.example");
    sub.close().await;
    server.shutdown().await;
}

/// A telemetry batch whose zstd-compressed Arrow buffers expand to `expanded` bytes.
fn bomb(expanded: usize) -> Vec<u8> {
    use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
    let mut b = arrow_array::builder::StringBuilder::new();
    b.append_value("a".repeat(expanded));
    let col: arrow_array::ArrayRef = Arc::new(b.finish());
    let mut meta = std::collections::HashMap::new();
    meta.insert("cwn.fields".to_string(), "[\"query=domain\"]".to_string());
    meta.insert("cwn.input".to_string(), "bomb.jsonl".to_string());
    meta.insert("cwn.first_row".to_string(), "0".to_string());
    let schema = Arc::new(
        arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "query",
            arrow_schema::DataType::Utf8,
            true,
        )])
        .with_metadata(meta),
    );
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
    let opts = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
        .unwrap();
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new_with_options(&mut out, &schema, opts).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

#[test]
fn the_expansion_of_a_compressed_batch_is_measured_before_it_is_expanded() {
    let b = bomb(8 << 20);
    assert!(b.len() < 64 << 10, "{}", b.len());
    let n = cwn::net::batch::expanded_size(&b, u64::MAX).unwrap();
    assert!(n >= 8 << 20, "{n}");
    let err = cwn::net::batch::decode_telemetry(&b, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(cwn::net::batch::decode_telemetry(&b, 16 << 20).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_and_the_hub_serves_on() {
    let net = Net::new();
    let server = Server::start(&config_with(&net, "", "max_batch_size = \"4MiB\""))
        .await
        .unwrap();
    let hub = server.local_addr().to_string();
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    c.send_batch(1, bomb(64 << 20)).await.unwrap();
    let err = c.recv_hits().await.unwrap_err().to_string();
    assert!(err.contains("over the limit"), "{err}");
    // The hub goes on: another partner connection matches as ever.
    let t = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
    assert_eq!(stream(&net, &hub, &t).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peers_and_oversized_frames_are_refused_before_they_are_read() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    // 16 MiB announced, 64 KiB sent: a CA-signed stranger is refused at once, without the
    // hub waiting for (or buffering) the rest.
    let mut big = (16u32 << 20).to_le_bytes().to_vec();
    big.extend(std::iter::repeat_n(0u8, 64 << 10));
    big[4] = cwn::hub::frame::PROTOCOL_VERSION;
    let mut c = Client::connect(&hub, &net.id("stranger")).await.unwrap();
    let f = tokio::time::timeout(Duration::from_secs(3), c.send_raw(&big))
        .await
        .expect("refused in time")
        .unwrap();
    let (code, message) = error_code(&f).unwrap();
    assert_eq!(code, cwn::hub::frame::ErrorCode::FORBIDDEN.0, "{message}");
    // A registered partner may not send MiB before its Hello either.
    let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let f = tokio::time::timeout(Duration::from_secs(3), c.send_raw(&big))
        .await
        .expect("refused in time")
        .unwrap();
    let (_, message) = error_code(&f).unwrap();
    assert!(message.contains("exceeds the limit of 1024"), "{message}");
    // Nor a subscriber after it.
    let mut c = Client::connect(&hub, &net.id("hospital")).await.unwrap();
    c.hello(cwn::hub::frame::Role::Subscriber).await.unwrap();
    let f = tokio::time::timeout(Duration::from_secs(3), c.send_raw(&big))
        .await
        .expect("refused in time")
        .unwrap();
    assert!(error_code(&f).is_some(), "{f:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entity_cannot_take_every_connection_nor_hold_one_without_a_request() {
    let net = Net::new();
    let server = Server::start(&config_with(
        &net,
        "",
        "max_connections = 6\nmax_connections_per_entity = 3\nfirst_request_timeout = \"1s\"",
    ))
    .await
    .unwrap();
    let hub = server.local_addr().to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
        c.hello(cwn::hub::frame::Role::Partner).await.unwrap();
        held.push(c);
    }
    let mut fourth = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let r = fourth.hello(cwn::hub::frame::Role::Partner).await;
    assert!(r.as_ref().is_err_and(|e| e.is_forbidden()), "{r:?}");
    // The publisher can still push.
    let v2 = snapshot(2, &[("evil.example", Tlp::Green)], &net.signing);
    let mut p = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
    let pushed = tokio::time::timeout(Duration::from_secs(10), p.push_snapshot(&v2)).await;
    assert_eq!(pushed.expect("pushed in time").unwrap(), 2);
    p.close().await;
    // A connection that never asks anything is closed after the first-request deadline,
    // keep-alives or not.
    let silent = Client::connect(&hub, &net.id("water")).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.connection().closed()).await;
    assert!(closed.is_ok(), "a silent connection was kept");
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_receives_aggregated_sightings_never_rows() {
    let net = Net::new();
    let server = Server::start(&config_with(&net, "", "sightings_interval = \"200ms\""))
        .await
        .unwrap();
    let hub = server.local_addr().to_string();
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("a.evil.example", "198.51.100.21"),
            ("fine.example", "198.51.100.22"),
        ],
    );
    assert_eq!(stream(&net, &hub, &t).await.len(), 2);
    let mut sub = subscribe(&net, &hub, "ncsc").await;
    let got = take(&mut sub, 1).await;
    let rows = got[0].1["sightings"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["indicator_id"], "ind-0");
    assert_eq!(rows[0]["partner"], "msp");
    assert_eq!(rows[0]["count"], 2);
    // Counts only: nothing of the rows themselves.
    let text = got[0].1.to_string();
    assert!(
        !text.contains("198.51.100") && !text.contains("evil.example"),
        "{text}"
    );
    sub.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_an_input_without_any_mapped_field_is_reported() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let good = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
    let other = net.dir.path().join("other.jsonl");
    std::fs::write(&other, "{\"qname\":\"www.evil.example\"}\n").unwrap();
    let s = stream_files(&hub, &net.id("msp"), &fields(), None, &[good, other])
        .await
        .unwrap();
    assert_eq!(s.hits.len(), 1);
    assert_eq!(s.empty_inputs.len(), 1, "{:?}", s.empty_inputs);
    assert!(
        s.empty_inputs[0].contains("other.jsonl"),
        "{:?}",
        s.empty_inputs
    );
    server.shutdown().await;
}

// ---- clients that stay up ---------------------------------------------------------------

fn issue(net: &Net, entity: &str, role: &str) {
    pki::issue(
        &net.dir.path().join("pki"),
        &pki::IssueOptions {
            entity: entity.into(),
            roles: vec![role.into()],
            dns: vec![],
            ips: vec![],
            days: 30,
            force: false,
        },
    )
    .unwrap();
}

pub(crate) fn sigterm(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits (at most `secs`) until `f` holds.
pub(crate) fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn lines_of(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[cfg(unix)]
#[test]
fn a_hundred_subscribers_ride_out_a_hub_restart_and_miss_nothing() {
    const N: usize = 100;
    let net = Net::new();
    let p = net.dir.path();
    let mut registry = String::from(
        "[[entities]]\nid = \"ncsc\"\nname = \"NCSC\"\nroles = [\"publisher\"]\n\n\
         [[entities]]\nid = \"msp\"\nname = \"MSP\"\nroles = [\"partner\"]\ntrusted_by_all = true\n",
    );
    for i in 0..N {
        registry += &format!(
            "\n[[entities]]\nid = \"sub-{i}\"\nname = \"Subscriber {i}\"\nroles = [\"subscriber\"]\nprefixes = [\"10.0.{i}.0/24\"]\n"
        );
        issue(&net, &format!("sub-{i}"), "subscriber");
    }
    std::fs::write(p.join("registry.toml"), registry).unwrap();
    let (mut hub, addr, _) = spawn_hub_with(&net, "");
    let subs: Vec<(std::process::Child, PathBuf)> = (0..N)
        .map(|i| {
            let out = p.join(format!("out-{i}.jsonl"));
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
                .args(["subscribe", "--hub", &addr, "--pki"])
                .arg(p.join("pki"))
                .args(["--entity", &format!("sub-{i}"), "--count", "2", "-o"])
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let round = |name: &str| {
        let rows: Vec<(String, String)> = (0..N)
            .map(|i| (format!("r{i}.evil.example"), format!("10.0.{i}.5")))
            .collect();
        let rows: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let t = net.telemetry(name, &rows);
        assert_eq!(rt.block_on(stream(&net, &addr, &t)).len(), N);
    };
    // Every subscriber is connected once it has received the first round.
    wait_until(60, "subscribers to connect", || {
        round("warm.jsonl");
        true
    });
    wait_until(60, "the first round", || {
        subs.iter().all(|(_, out)| !lines_of(out).is_empty())
    });
    // The hub goes down; nobody gives up (or exits 0) while it is away.
    sigterm(&hub);
    assert!(hub.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(3));
    let mut subs = subs;
    for (c, _) in &mut subs {
        assert!(
            c.try_wait().unwrap().is_none(),
            "a subscriber ended while the hub was down"
        );
    }
    // Back on the same address: they return by themselves and get the second round.
    let (mut hub, _, _) = spawn_hub_on(&net, &addr, "");
    round("later.jsonl");
    for (c, out) in &mut subs {
        let status = c.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let got = lines_of(out);
        assert_eq!(got.len(), 2, "{}: {got:?}", out.display());
        assert_ne!(got[0]["id"], got[1]["id"]);
    }
    sigterm(&hub);
    hub.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn a_second_subscriber_of_an_entity_takes_over_and_the_first_says_why() {
    let net = Net::new();
    let (mut hub, addr, _) = spawn_hub_with(&net, "");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(["subscribe", "--hub", &addr, "--pki"])
            .arg(net.dir.path().join("pki"))
            .args(["--entity", "hospital"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start();
    std::thread::sleep(Duration::from_secs(2));
    let mut second = start();
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("took over"), "{err}");
    // The newer one stays.
    std::thread::sleep(Duration::from_millis(500));
    assert!(second.try_wait().unwrap().is_none());
    let _ = second.kill();
    sigterm(&hub);
    hub.wait().unwrap();
}

#[test]
fn stream_to_a_hub_that_is_not_there_fails_naming_it() {
    let net = Net::new();
    let t = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
    // A port nobody listens on.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["stream", "--hub", &addr, "--pki"])
        .arg(net.dir.path().join("pki"))
        .args([
            "--entity",
            "msp",
            "--connect-timeout",
            "1",
            "--retry-for",
            "2",
            "--field",
            "query=domain",
        ])
        .arg(&t)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_waits_for_a_late_hub_and_a_resent_batch_is_answered_once() {
    let net = Net::new();
    // Find a free port, then start the hub on it only after the stream has begun.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = net.cfg.clone();
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let hub = format!("127.0.0.1:{port}");
    let t = net.telemetry(
        "dns.jsonl",
        &[
            ("www.evil.example", "198.51.100.20"),
            ("ok.example", "198.51.100.21"),
        ],
    );
    let opts = cwn::net::client::StreamOptions {
        transport: cwn::net::endpoint::Transport {
            connect_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        retry_for: Duration::from_secs(30),
    };
    let id = net.id("msp");
    let streaming = tokio::spawn({
        let (hub, t) = (hub.clone(), t.clone());
        async move { cwn::net::client::stream_files_with(&hub, &id, &fields(), None, &[t], &opts).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = Server::start(&cfg).await.unwrap();
    let s = streaming.await.unwrap().unwrap();
    assert_eq!(s.hits.len(), 1);
    // The same batch again, on a new connection (a resend after a lost answer): the same
    // hits, and the hospital's log does not grow.
    let fm = fields();
    let b = cwn::telemetry::open(&t, None, &fm)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ipc = cwn::net::batch::encode_telemetry(&b.batch, &fm, "dns.jsonl", 0).unwrap();
    let mut sub = Client::connect(&hub, &net.id("hospital"))
        .await
        .unwrap()
        .subscribe(StartFrom::Offset(0))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(&hub, &net.id("msp")).await.unwrap();
        c.send_batch(9, ipc.clone()).await.unwrap();
        answers.push(c.recv_hits().await.unwrap());
        c.close().await;
    }
    assert_eq!(answers[0], answers[1]);
    // One notification from the first stream, one from the first send; none from the resend.
    let got = take(&mut sub, 2).await;
    assert_ne!(got[0].1, serde_json::Value::Null);
    quiet(&mut sub).await;
    sub.close().await;
    server.shutdown().await;
}

#[test]
fn pki_will_not_issue_over_the_ca() {
    let net = Net::new();
    let ca_key = std::fs::read(net.dir.path().join("pki/ca.key")).unwrap();
    let r = pki::issue(
        &net.dir.path().join("pki"),
        &pki::IssueOptions {
            entity: "ca".into(),
            roles: vec!["subscriber".into()],
            dns: vec![],
            ips: vec![],
            days: 30,
            force: true,
        },
    );
    assert!(r.is_err());
    assert_eq!(
        std::fs::read(net.dir.path().join("pki/ca.key")).unwrap(),
        ca_key
    );
}

#[test]
fn pki_issue_prints_the_fingerprint_the_registry_pins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("pki");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwn"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["pki", "init", d.to_str().unwrap()]);
    let out = run(&[
        "pki",
        "issue",
        "--entity",
        "h1",
        "--role",
        "subscriber",
        d.to_str().unwrap(),
    ]);
    let line = out
        .lines()
        .find(|l| l.starts_with("fingerprint = "))
        .unwrap();
    let pem = std::fs::read_to_string(d.join("h1.pem")).unwrap();
    let der = pki::pem_certs(&pem).remove(0);
    let hex: String = pki::fingerprint(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(line, format!("fingerprint = \"{hex}\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_learns_at_most_its_daily_quota_of_indicators() {
    let net = Net::new();
    std::fs::write(
        net.dir.path().join("set.cwnsnap"),
        snapshot(
            1,
            &[
                ("one.example", Tlp::Green),
                ("two.example", Tlp::Green),
                ("three.example", Tlp::Green),
            ],
            &net.signing,
        ),
    )
    .unwrap();
    let cfg = config_with(&net, "", "max_indicators_per_partner_day = 2");
    let server = Server::start(&cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut sub = subscribe(&net, &hub, "hospital").await;
    // An oracle's probe: every value beside the hospital's address.
    let t = net.telemetry(
        "probe.jsonl",
        &[
            ("one.example", "198.51.100.1"),
            ("two.example", "198.51.100.1"),
            ("three.example", "198.51.100.1"),
            ("one.example", "198.51.100.2"),
        ],
    );
    let hits = stream(&net, &hub, &t).await;
    let got: Vec<&str> = hits.iter().map(|h| h.indicator.as_str()).collect();
    // The first two indicators, the first again; not the third.
    assert_eq!(got, ["one.example", "two.example", "one.example"]);
    // The victim hears of all three.
    let notes = take(&mut sub, 4).await;
    assert!(notes.iter().any(|(_, n)| n["indicator"] == "three.example"));
    sub.close().await;
    server.shutdown().await;
    let audit = std::fs::read_to_string(&cfg.audit_log).unwrap();
    assert_eq!(
        audit.matches("\"partner_daily_limit\"").count(),
        1,
        "{audit}"
    );
}

/// The hub's peak resident memory, from `/proc`.
#[cfg(target_os = "linux")]
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib >> 10
}

/// Issue 17's findings 2 and 3 at once against the real `cwn serve` with its default limits:
/// partners send zstd bombs (8 MiB of data announcing 500 GiB) over every connection they
/// may hold, CA-signed strangers and a partner before its Hello announce 16 MiB frames on
/// many connections. The hub's peak memory stays under 300 MiB and the publisher pushes a
/// snapshot within 10 s meanwhile.
#[cfg(target_os = "linux")]
#[test]
fn under_bombs_and_oversized_frames_the_hub_stays_small_and_the_publisher_pushes() {
    let net = Net::new();
    let (mut child, hub, _) = spawn_hub_with(&net, "");
    let pid = child.id();
    let mut bomb = bomb(8 << 20);
    let real = (8i64 << 20).to_le_bytes();
    let at = bomb.windows(8).rposition(|w| w == real).unwrap();
    bomb[at..at + 8].copy_from_slice(&(500i64 << 30).to_le_bytes());
    let mut big = (16u32 << 20).to_le_bytes().to_vec();
    big.extend(std::iter::repeat_n(0u8, 1 << 20));
    big[4] = cwn::hub::frame::PROTOCOL_VERSION;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let baseline = peak_rss_mib(pid);
    rt.block_on(async {
        let mut attacks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (hub, id, bomb) = (hub.clone(), net.id("msp"), bomb.clone());
            attacks.spawn(async move {
                // The hub answers a refused batch and ends the connection: come back.
                for b in 0..4 {
                    let mut c = Client::connect(&hub, &id).await.unwrap();
                    c.send_batch(b, bomb.clone()).await.unwrap();
                    let err = c.recv_hits().await.unwrap_err().to_string();
                    assert!(err.contains("over the limit"), "{err}");
                }
            });
        }
        for who in [
            "stranger", "stranger", "stranger", "stranger", "water", "hospital",
        ] {
            for _ in 0..4 {
                let (hub, id, big) = (hub.clone(), net.id(who), big.clone());
                attacks.spawn(async move {
                    if let Ok(mut c) = Client::connect(&hub, &id).await {
                        let f = tokio::time::timeout(Duration::from_secs(10), c.send_raw(&big))
                            .await
                            .expect("refused in time");
                        if let Ok(f) = f {
                            assert!(error_code(&f).is_some(), "{f:?}");
                        }
                    }
                });
            }
        }
        let v2 = snapshot(2, &[("evil.example", Tlp::Green)], &net.signing);
        let started = std::time::Instant::now();
        let mut p = Client::connect(&hub, &net.id("ncsc")).await.unwrap();
        let pushed = tokio::time::timeout(Duration::from_secs(10), p.push_snapshot(&v2)).await;
        assert_eq!(pushed.expect("pushed within 10 s").unwrap(), 2);
        eprintln!("publisher pushed in {:?} under attack", started.elapsed());
        p.close().await;
        while let Some(r) = attacks.join_next().await {
            r.unwrap();
        }
        // The hub still serves a partner's honest batch.
        let t = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
        assert_eq!(stream(&net, &hub, &t).await.len(), 1);
    });
    let peak = peak_rss_mib(pid);
    eprintln!("hub peak RSS: {baseline} MiB at start, {peak} MiB after the attacks");
    assert!(peak < 300, "the hub's peak RSS reached {peak} MiB");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_channel_of_batches_is_streamed_in_order_with_each_batch_answered() {
    let net = Net::new();
    let server = Server::start(&net.cfg).await.unwrap();
    let hub = server.local_addr().to_string();
    let mut partner = Client::connect(&hub, &net.id("msp")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let producer = tokio::spawn(async move {
        for i in 0..5u64 {
            let query = if i % 2 == 0 {
                "www.evil.example"
            } else {
                "fine.example"
            };
            let mut q = arrow_array::builder::StringBuilder::new();
            q.append_value(query);
            let mut c = arrow_array::builder::StringBuilder::new();
            c.append_value("198.51.100.20");
            let batch = arrow_array::RecordBatch::try_from_iter([
                ("query", Arc::new(q.finish()) as arrow_array::ArrayRef),
                ("client", Arc::new(c.finish()) as arrow_array::ArrayRef),
            ])
            .unwrap();
            let bytes = cwn::net::batch::encode_telemetry(&batch, &fields(), "live", i).unwrap();
            tx.send(Ok(bytes)).await.unwrap();
            // A live source: batches come over time.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut seen = Vec::new();
    let n = partner
        .stream_channel(rx, |id, hits| seen.push((id, hits.len())))
        .await
        .unwrap();
    producer.await.unwrap();
    assert_eq!(n, 5);
    assert_eq!(seen, [(0, 1), (1, 0), (2, 1), (3, 0), (4, 1)]);
    partner.close().await;
    server.shutdown().await;
}
