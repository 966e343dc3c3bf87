//! The second half of `cwn demo` (feature `net`): the sample snapshot served by a real hub.
//!
//! In a temporary directory it makes a CA and certificates, a synthetic registry of
//! subscribers with constituencies plus a publisher and two partners, starts a hub and its
//! status page on ephemeral loopback ports, pushes the snapshot as the publisher, subscribes
//! every subscriber, and streams generated Zeek and Suricata EVE telemetry whose victim-side
//! addresses lie in the subscribers' prefixes, so that routing finds them. It then waits for
//! every queued notification to arrive and reports what happened. Nothing is left behind:
//! the directory is removed at the end, on error and on Ctrl-C.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow_array::RecordBatch;
use ipnet::IpNet;
use tokio::sync::{Semaphore, mpsc, watch};

use cwn::generate::telemetry::{GenError, Preset, TelemetryGenerator, TelemetryOptions};
use cwn::hub::StartFrom;
use cwn::index::CompiledIndex;
use cwn::index::snapshot::keys;
use cwn::net::batch::encode_telemetry;
use cwn::net::client::Client;
use cwn::net::config::HubConfig;
use cwn::net::pki;
use cwn::net::server::Server;
use cwn::net::tls::Identity;
use cwn::route::registry::{Entity, Registry, Role, Roles};
use cwn::status::{Metrics, SnapshotInfo, StatusServer};

/// Settings of the hub part.
#[derive(Clone, Debug)]
pub struct HubDemo {
    /// Registry entities (the synthetic set; two demo partners are added).
    pub entities: usize,
    /// Telemetry rows per second, over all partners.
    pub rate: u64,
    /// Seconds of streaming.
    pub duration: u64,
    /// Fraction of rows carrying an indicator.
    pub hit_rate: f64,
    /// Keep the hub and status page up until Ctrl-C.
    pub keep_running: bool,
    /// Show a progress bar (a terminal, not `--json`).
    pub progress: bool,
}

/// The two partners and what they stream: `(entity id, preset, input name)`.
const PARTNERS: [(&str, Preset, &str); 2] = [
    ("msp-zeek", Preset::Zeek, "zeek-demo"),
    ("msp-eve", Preset::Suricata, "eve-demo"),
];

/// A directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("cwn-demo-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the synthetic registry calls an entity, from its id.
fn class_of(id: &str) -> &'static str {
    match id.split('-').next().unwrap_or("") {
        "ncsc" => "publisher",
        "prov" => "provider",
        "cust" => "customer",
        "msp" => "partner",
        _ => "independent",
    }
}

/// The registry of the demo: `Registry::synthetic` without certificate pins (the demo's CA
/// issues fresh certificates naming each entity) plus the two streaming partners.
fn registry(n: usize) -> anyhow::Result<Registry> {
    let mut entities: Vec<Entity> = Registry::synthetic(n.max(1), 2026)
        .iter()
        .map(|(_, e)| {
            let mut e = e.clone();
            e.fingerprint = None;
            e.subject = None;
            e
        })
        .collect();
    for (id, _, _) in PARTNERS {
        let mut e = Entity::new(
            id,
            format!("Demo partner {id}"),
            Roles::of(&[Role::Partner]),
        );
        e.sector = Some("digital-infrastructure".into());
        e.sharing_groups.push("sg-partners".into());
        // They stand for national sensors: their telemetry may notify every entity.
        e.trusted_by_all = true;
        entities.push(e);
    }
    Ok(Registry::from_entities(entities)?)
}

fn toml_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items
        .into_iter()
        .map(|s| serde_json::Value::from(s).to_string())
        .collect();
    format!("[{}]", v.join(", "))
}

/// The registry as `registry.toml`.
fn registry_toml(reg: &Registry) -> String {
    let mut out = String::new();
    for (_, e) in reg.iter() {
        let roles: Vec<&str> = e.roles.iter().map(Role::name).collect();
        let prefixes: Vec<String> = e.prefixes.iter().map(ToString::to_string).collect();
        let behalf: Vec<&str> = e
            .on_behalf_of
            .iter()
            .map(|o| reg.entity(*o).id.as_str())
            .collect();
        out += &format!(
            "[[entities]]\nid = {}\nname = {}\nroles = {}\n",
            serde_json::Value::from(e.id.as_str()),
            serde_json::Value::from(e.name.as_str()),
            toml_list(roles)
        );
        if let Some(s) = &e.sector {
            out += &format!("sector = {}\n", serde_json::Value::from(s.as_str()));
        }
        out += &format!(
            "prefixes = {}\ndomains = {}\nsharing_groups = {}\n",
            toml_list(prefixes.iter().map(String::as_str)),
            toml_list(e.domains.iter().map(String::as_str)),
            toml_list(e.sharing_groups.iter().map(String::as_str)),
        );
        if !behalf.is_empty() {
            out += &format!("on_behalf_of = {}\n", toml_list(behalf));
        }
        if !e.trusts.is_empty() {
            let trusts = e.trusts.iter().map(|o| reg.entity(*o).id.as_str());
            out += &format!("trusts = {}\n", toml_list(trusts));
        }
        if e.trusted_by_all {
            out += "trusted_by_all = true\n";
        }
        out.push('\n');
    }
    out
}

/// What the subscribers received.
#[derive(Default)]
struct Receipts {
    /// Notifications per entity id.
    by_entity: HashMap<String, u64>,
    /// Per entity class, per TLP.
    by_class: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Publish → receipt, milliseconds.
    latency_ms: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Progress counters the tasks update and the view reads.
#[derive(Default)]
struct Progress {
    rows: AtomicU64,
    hits: AtomicU64,
    received: AtomicU64,
}

/// Runs the hub part; returns the report and whether every notification arrived.
pub fn run(index: CompiledIndex, demo: &HubDemo) -> anyhow::Result<(serde_json::Value, bool)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = TempDir::new()?;
    let result = rt.block_on(run_in(&dir.0, index, demo));
    drop(rt);
    let path = dir.0.clone();
    drop(dir);
    let (mut v, ok) = result?;
    v["temp_dir"] = path.display().to_string().into();
    v["temp_dir_removed"] = (!path.exists()).into();
    Ok((v, ok))
}

async fn run_in(
    dir: &Path,
    index: CompiledIndex,
    demo: &HubDemo,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let t0 = Instant::now();
    // Ctrl-C from here on ends the demo in order (the temporary directory goes too).
    let interrupted = Arc::new(AtomicBool::new(false));
    let (int_tx, mut int_rx) = watch::channel(false);
    {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                let _ = int_tx.send(true);
            }
        });
    }
    // Registry, PKI, keys, configuration.
    let reg = registry(demo.entities)?;
    std::fs::write(dir.join("registry.toml"), registry_toml(&reg))?;
    let pki_dir = dir.join("pki");
    pki::init(&pki_dir, &pki::CaOptions::default())?;
    let issue = |id: &str, roles: Vec<String>| {
        pki::issue(
            &pki_dir,
            &pki::IssueOptions {
                entity: id.into(),
                roles,
                dns: vec![],
                ips: vec![],
                days: 2,
                force: false,
            },
        )
    };
    issue("hub", vec!["hub".into()])?;
    for (_, e) in reg.iter() {
        issue(
            &e.id,
            e.roles.iter().map(|r| r.name().to_string()).collect(),
        )?;
    }
    let signing = keys::generate()?;
    std::fs::write(
        dir.join("verify.pem"),
        keys::verify_pem(&signing.verifying_key())?,
    )?;
    let toml = r#"
listen = "127.0.0.1:0"
registry = "registry.toml"
data_dir = "var"

[tls]
cert = "pki/hub.pem"
key = "pki/hub.key"
ca = "pki/ca.pem"

[snapshot]
verify_key = "verify.pem"
"#;
    let cfg = HubConfig::from_toml(toml, "hub.toml", dir)?;
    let setup_ms = t0.elapsed().as_millis() as u64;

    // Hub and status page.
    let metrics = Arc::new(Metrics::default());
    let status = StatusServer::bind("127.0.0.1:0".parse()?, metrics.clone()).await?;
    let status_url = format!("http://{}/", status.local_addr()?);
    let (status_stop, status_stopped) = tokio::sync::oneshot::channel::<()>();
    let status_task = tokio::spawn(status.run(async {
        let _ = status_stopped.await;
    }));
    let server = Server::start_with_metrics(&cfg, Some(metrics.clone())).await?;
    let hub = server.local_addr().to_string();
    let id = |e: &str| Identity::from_pki_dir(&pki_dir, e);

    // The publisher pushes the signed snapshot.
    let signed = index.to_snapshot(Some(&signing));
    let mut publisher = Client::connect(&hub, &id("ncsc")?).await?;
    let version = publisher.push_snapshot(&signed).await?;
    publisher.close().await;
    let index = Arc::new(index);

    // Every subscriber subscribes.
    let progress = Arc::new(Progress::default());
    let receipts = Arc::new(Mutex::new(Receipts::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let subscribers: Vec<String> = reg
        .iter()
        .filter(|(_, e)| e.roles.contains(Role::Subscriber))
        .map(|(_, e)| e.id.clone())
        .collect();
    let handshakes = Arc::new(Semaphore::new(16));
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(subscribers.len().max(1));
    let mut sub_tasks = tokio::task::JoinSet::new();
    for e in &subscribers {
        let ident = id(e)?;
        let (hub, e, receipts, progress) =
            (hub.clone(), e.clone(), receipts.clone(), progress.clone());
        let (mut stop, ready, handshakes) = (stop_rx.clone(), ready_tx.clone(), handshakes.clone());
        sub_tasks.spawn(async move {
            let permit = handshakes.acquire_owned().await;
            let sub = async {
                Client::connect(&hub, &ident)
                    .await?
                    .subscribe(StartFrom::Acked)
                    .await
            }
            .await;
            drop(permit);
            let mut sub = match sub {
                Ok(s) => {
                    let _ = ready.send(Ok(())).await;
                    s
                }
                Err(err) => {
                    let _ = ready.send(Err(anyhow::anyhow!("{e}: {err}"))).await;
                    return;
                }
            };
            let class = class_of(&e);
            loop {
                tokio::select! {
                    n = sub.next() => match n {
                        Ok(Some((offset, note))) => {
                            let latency = now_ms().saturating_sub(note.created_at_ms);
                            {
                                let mut r = lock(&receipts);
                                *r.by_entity.entry(e.clone()).or_default() += 1;
                                *r.by_class
                                    .entry(class)
                                    .or_default()
                                    .entry(note.tlp.to_string())
                                    .or_default() += 1;
                                r.latency_ms.push(latency);
                            }
                            progress.received.fetch_add(1, Ordering::Relaxed);
                            if sub.ack(offset).await.is_err() {
                                break;
                            }
                        }
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            sub.close().await;
        });
    }
    drop(ready_tx);
    for _ in 0..subscribers.len() {
        match ready_rx.recv().await {
            Some(r) => r?,
            None => anyhow::bail!("a subscriber task ended before subscribing"),
        }
    }
    let connect_ms = t0.elapsed().as_millis() as u64 - setup_ms;

    // Partners stream generated telemetry whose internal addresses are the subscribers'.
    let internal: Vec<IpNet> = reg
        .iter()
        .filter(|(_, e)| e.roles.contains(Role::Subscriber))
        .flat_map(|(_, e)| e.prefixes.iter().copied())
        .collect();
    let total_rows = demo.rate * demo.duration;
    let bar = if demo.progress {
        let b = indicatif::ProgressBar::new(total_rows);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} rows  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let stream_start = Instant::now();
    let mut partner_tasks = tokio::task::JoinSet::new();
    let start = jiff::Timestamp::now();
    for (i, (pid, preset, input)) in PARTNERS.into_iter().enumerate() {
        let share = total_rows / PARTNERS.len() as u64
            + u64::from((i as u64) < total_rows % PARTNERS.len() as u64);
        let rate = (demo.rate as f64 / PARTNERS.len() as f64).max(1.0);
        let opts = TelemetryOptions {
            preset,
            rows: share,
            hit_rate: demo.hit_rate,
            seed: 7 + i as u64,
            start,
            duration_secs: demo.duration.max(1),
            internal: internal.clone(),
            ..TelemetryOptions::default()
        };
        let (ident, hub, index, progress, interrupted) = (
            id(pid)?,
            hub.clone(),
            index.clone(),
            progress.clone(),
            interrupted.clone(),
        );
        partner_tasks.spawn(async move {
            stream_partner(ident, hub, index, opts, input, rate, progress, interrupted).await
        });
    }
    let mut planted = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let show = |bar: &indicatif::ProgressBar| {
        bar.set_position(progress.rows.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} hits, {} notifications received",
            progress.hits.load(Ordering::Relaxed),
            progress.received.load(Ordering::Relaxed)
        ));
    };
    while !partner_tasks.is_empty() {
        tokio::select! {
            r = partner_tasks.join_next() => {
                if let Some(r) = r {
                    planted += r.context("partner task")??;
                }
            }
            _ = tick.tick() => show(&bar),
            _ = int_rx.changed(), if !interrupted.load(Ordering::Relaxed) => {}
        }
    }
    let stream_secs = stream_start.elapsed().as_secs_f64();
    let rows = progress.rows.load(Ordering::Relaxed);
    let hits = progress.hits.load(Ordering::Relaxed);

    // Wait for delivery to drain: every entity has what the hub queued for it.
    let drain_start = Instant::now();
    let drain_timeout = Duration::from_secs(30);
    let shortfall = loop {
        show(&bar);
        let received = lock(&receipts).by_entity.clone();
        let short: Vec<(String, u64, u64)> = metrics
            .notifications_by_entity()
            .into_iter()
            .filter_map(|n| {
                let got = received.get(&n.entity).copied().unwrap_or(0);
                (got < n.queued).then_some((n.entity, n.queued, got))
            })
            .collect();
        if short.is_empty()
            || drain_start.elapsed() > drain_timeout
            || interrupted.load(Ordering::Relaxed)
        {
            break short;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = int_rx.changed(), if !interrupted.load(Ordering::Relaxed) => {}
        }
    };
    let drain_ms = drain_start.elapsed().as_millis() as u64;
    bar.finish_and_clear();

    // The report.
    let by_entity = metrics.notifications_by_entity();
    let queued: u64 = by_entity.iter().map(|n| n.queued).sum();
    let stats = server.stats();
    let (received, by_class, mut latency) = {
        let r = lock(&receipts);
        (
            r.by_entity.values().sum::<u64>(),
            r.by_class.clone(),
            r.latency_ms.clone(),
        )
    };
    latency.sort_unstable();
    let concerned = by_entity.len();
    let notified = by_entity
        .iter()
        .filter(|n| !shortfall.iter().any(|s| s.0 == n.entity))
        .count();
    let snap = SnapshotInfo::from_index(&index);
    let ok = shortfall.is_empty() && !interrupted.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "entities": reg.len(),
        "subscribers": subscribers.len(),
        "partners": PARTNERS.iter().map(|p| p.0).collect::<Vec<_>>(),
        "snapshot_version": version,
        "indicators_by_kind": snap.by_kind.iter().map(|(k, n)| (k.name().to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "indicators_by_tlp": snap.by_tlp.iter().map(|(t, n)| (t.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "setup_ms": setup_ms,
        "connect_ms": connect_ms,
        "rows": rows,
        "rows_hub": stats.rows.load(Ordering::Relaxed),
        "stream_seconds": stream_secs,
        "rows_per_second": rows as f64 / stream_secs.max(1e-9),
        "planted": planted,
        "hits": stats.hits.load(Ordering::Relaxed),
        "hits_returned_to_partners": hits,
        "notifications_queued": queued,
        "notifications_received": received,
        "notifications_by_class_and_tlp": by_class,
        "entities_concerned": concerned,
        "entities_notified": notified,
        "shortfall": shortfall.iter().map(|(e, q, g)| serde_json::json!({"entity": e, "queued": q, "received": g})).collect::<Vec<_>>(),
        "drain_ms": drain_ms,
        "latency_ms": {
            "p50": percentile(&latency, 0.50),
            "p99": percentile(&latency, 0.99),
            "max": latency.last(),
        },
        "status_url": status_url,
        "interrupted": interrupted.load(Ordering::Relaxed),
        "temp_dir": dir.display().to_string(),
    });

    if demo.keep_running && !interrupted.load(Ordering::Relaxed) {
        if demo.progress {
            print(&report);
        }
        eprintln!("cwn demo: hub on {hub}, status page on {status_url}; Ctrl-C to stop");
        if !*int_rx.borrow() {
            let _ = int_rx.changed().await;
        }
    }

    // Orderly end: subscribers close, the hub drains and closes, the status page stops.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while sub_tasks.join_next().await.is_some() {}
    })
    .await;
    sub_tasks.abort_all();
    server.shutdown().await;
    let _ = status_stop.send(());
    let _ = status_task.await;
    Ok((report, ok))
}

/// One partner: generates its telemetry on a blocking thread and streams it at `rate` rows/s
/// in 100 ms batches, reading the hits of each. Returns the rows planted with a hit.
#[allow(clippy::too_many_arguments)]
async fn stream_partner(
    ident: Identity,
    hub: String,
    index: Arc<CompiledIndex>,
    opts: TelemetryOptions,
    input: &'static str,
    rate: f64,
    progress: Arc<Progress>,
    interrupted: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let preset = opts.preset;
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(2);
    let generator = tokio::task::spawn_blocking(move || {
        let fields = preset.field_map();
        let g = TelemetryGenerator::new(&index, &fields, opts)?;
        g.for_each_batch(|b| {
            tx.blocking_send(b).map_err(|_| {
                GenError::Io(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "streaming stopped",
                ))
            })
        })
    });
    let fields = preset.field_map();
    let mut client = Client::connect(&hub, &ident).await?;
    let per_tick = ((rate / 10.0).ceil() as usize).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first_row = 0u64;
    let mut batch_id = 0u64;
    'batches: while let Some(batch) = rx.recv().await {
        let mut at = 0;
        while at < batch.num_rows() {
            if interrupted.load(Ordering::Relaxed) {
                break 'batches;
            }
            tick.tick().await;
            let n = per_tick.min(batch.num_rows() - at);
            let slice = batch.slice(at, n);
            let ipc = encode_telemetry(&slice, &fields, input, first_row)?;
            client.send_batch(batch_id, ipc).await?;
            let (_, hits) = client.recv_hits().await?;
            batch_id += 1;
            at += n;
            first_row += n as u64;
            progress.rows.fetch_add(n as u64, Ordering::Relaxed);
            progress
                .hits
                .fetch_add(hits.len() as u64, Ordering::Relaxed);
        }
    }
    drop(rx);
    client.close().await;
    let planted = match generator.await? {
        Ok(report) => report.planted,
        // Stopped early (Ctrl-C): the rows not sent were never planted anywhere that counts.
        Err(GenError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(planted)
}

/// Prints the report as a table.
pub fn print(v: &serde_json::Value) {
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let u = |k: &str| v[k].as_u64().unwrap_or(0);
    outln!(
        "\nthe network: a hub, its status page and {} entities ({} subscribers, partners {}) on loopback, in {}",
        u("entities"),
        u("subscribers"),
        v["partners"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        v["temp_dir"].as_str().unwrap_or("?"),
    );
    outln!(
        "  set-up (CA, {} certificates, registry) {} ms; {} subscribers connected in {} ms",
        u("entities") + 1,
        u("setup_ms"),
        u("subscribers"),
        u("connect_ms")
    );
    let kv = |o: &serde_json::Value| {
        o.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    outln!(
        "  snapshot v{} pushed by ncsc: {}",
        u("snapshot_version"),
        kv(&v["indicators_by_kind"])
    );
    outln!("  by TLP: {}", kv(&v["indicators_by_tlp"]));
    outln!(
        "  streamed {} rows (Zeek and Suricata EVE) in {:.1} s: {:.0} rows matched per second",
        u("rows"),
        f("stream_seconds"),
        f("rows_per_second")
    );
    outln!(
        "  {} hits ({} rows planted with an indicator) -> {} notifications queued, {} received",
        u("hits"),
        u("planted"),
        u("notifications_queued"),
        u("notifications_received")
    );
    if let Some(m) = v["notifications_by_class_and_tlp"].as_object() {
        for (class, tlps) in m {
            outln!("    {class:<12} {}", kv(tlps));
        }
    }
    outln!(
        "  entities the traffic concerned: {}; received their notifications: {}",
        u("entities_concerned"),
        u("entities_notified")
    );
    let ms = |k: &str| {
        v["latency_ms"][k]
            .as_u64()
            .map_or("-".to_string(), |n| format!("{n} ms"))
    };
    outln!(
        "  delivery latency (publish -> subscriber receipt): p50 {}, p99 {}, max {}",
        ms("p50"),
        ms("p99"),
        ms("max")
    );
    if let Some(s) = v["shortfall"].as_array().filter(|s| !s.is_empty()) {
        outln!("  NOT DELIVERED in time to {} entities:", s.len());
        for e in s.iter().take(10) {
            outln!(
                "    {}: {} of {} received",
                e["entity"].as_str().unwrap_or("?"),
                e["received"],
                e["queued"]
            );
        }
    }
    outln!(
        "  status page: {} (up while the demo runs; --keep-running keeps it)",
        v["status_url"].as_str().unwrap_or("?")
    );
    if v["temp_dir_removed"].as_bool() == Some(true) {
        outln!("  temporary directory removed");
    }
}
