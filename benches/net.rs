//! Notification delivery over loopback QUIC: a hub in-process, N subscribers connected, a
//! partner streaming telemetry whose rows hit each subscriber's address in turn. Reports
//! notifications delivered per second end to end (match, route, durable log, QUIC, ack) and
//! the delivery latency (notification created at match time → received by the subscriber).
//!
//! `cargo bench --bench net` (environment: `CWN_BENCH_SUBSCRIBERS`, default 200;
//! `CWN_BENCH_NOTIFICATIONS`, default 50000; `CWN_BENCH_DIR`, where the hub's data goes).
//! Not a criterion benchmark: one run is long enough to be stable, and the
//! figures wanted are a rate and percentiles.

#[path = "common/hub_net.rs"]
mod hub_net;
use hub_net::{addr, env};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cwn::hub::StartFrom;
use cwn::net::client::{Client, stream_files};
use cwn::net::config::HubConfig;
use cwn::net::server::Server;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;

fn main() {
    let subscribers = env("CWN_BENCH_SUBSCRIBERS", 200);
    let total = env("CWN_BENCH_NOTIFICATIONS", 50_000);
    // CWN_BENCH_DIR=/dev/shm takes the disk's fsync out of the figures.
    let net = hub_net::BenchNet::new(subscribers);
    let p = net.path();
    let pki_dir = net.pki_dir.clone();
    let mut telemetry = String::new();
    for r in 0..total {
        telemetry.push_str(&format!(
            "{{\"q\":\"x{r}.evil.example\",\"c\":\"{}\"}}\n",
            addr(r % subscribers)
        ));
    }
    let tpath = p.join("t.jsonl");
    std::fs::write(&tpath, telemetry).unwrap();
    let cfg = HubConfig::from_toml(
        &format!(
            "listen = \"127.0.0.1:0\"\nregistry = \"registry.toml\"\ndata_dir = \"var\"\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n[limits]\nmax_connections = {}\nqueue_size = 1024\nsend_window = \"256KiB\"\n",
            subscribers + 16
        ),
        "hub.toml",
        p,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir_path = p.to_path_buf();
    rt.block_on(async move {
        let server = Server::start(&cfg).await.unwrap();
        let hub = server.local_addr().to_string();
        let received = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let t_connect = Instant::now();
        for i in 0..subscribers {
            let id = Identity::from_pki_dir(&pki_dir, &format!("s{i}")).unwrap();
            let mut sub = Client::connect(&hub, &id)
                .await
                .unwrap()
                .subscribe(StartFrom::Acked)
                .await
                .unwrap();
            let want = (total / subscribers + usize::from(i < total % subscribers)) as u64;
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(want as usize);
                let mut got = 0u64;
                while got < want {
                    let Some((off, n)) = sub.next().await.unwrap() else {
                        break;
                    };
                    let now = jiff::Timestamp::now().as_millisecond() as u64;
                    lat.push(now.saturating_sub(n.created_at_ms));
                    got += 1;
                    // Ack what is buffered together, as `cwn subscribe` does.
                    let mut last = off;
                    while got < want {
                        match tokio::time::timeout(Duration::ZERO, sub.next()).await {
                            Ok(Ok(Some((o, n)))) => {
                                let now = jiff::Timestamp::now().as_millisecond() as u64;
                                lat.push(now.saturating_sub(n.created_at_ms));
                                got += 1;
                                last = o;
                            }
                            _ => break,
                        }
                    }
                    sub.ack(last).await.unwrap();
                    received.fetch_add(1, Ordering::Relaxed);
                }
                sub.close().await;
                lat
            }));
        }
        let connect_secs = t_connect.elapsed().as_secs_f64();
        let fields = FieldMap::from_specs(["q=domain".parse().unwrap(), "c=ip".parse().unwrap()])
            .unwrap();
        let partner = Identity::from_pki_dir(&pki_dir, "msp").unwrap();
        let t0 = Instant::now();
        if std::env::var_os("CWN_BENCH_DEBUG").is_some() {
            let r = received.clone();
            let st = server.stats_handle();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    eprintln!("acks {} batches {} logged {} sent {}", r.load(Ordering::Relaxed),
                        st.batches.load(Ordering::Relaxed), st.notifications_logged.load(Ordering::Relaxed), st.notifications_sent.load(Ordering::Relaxed));
                }
            });
        }
        let cwn::net::client::Streamed { hits, rows, .. } = stream_files(&hub, &partner, &fields, None, &[tpath])
            .await
            .unwrap();
        let stream_secs = t0.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let all_secs = t0.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
        println!(
            "net/deliver: {subscribers} subscribers connected in {connect_secs:.2} s; {rows} rows streamed in {stream_secs:.2} s, {} hits back",
            hits.len()
        );
        println!(
            "net/deliver: {} notifications delivered and acked in {all_secs:.2} s = {:.0} notifications/s; latency p50 {} ms, p99 {} ms, max {} ms",
            lat.len(),
            lat.len() as f64 / all_secs,
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(0)
        );

        // One hit at a time: from the partner sending a batch to the subscriber holding the
        // notification (match, route, durable log, two QUIC hops).
        let one = dir_path.join("one.jsonl");
        std::fs::write(&one, format!("{{\"q\":\"evil.example\",\"c\":\"{}\"}}\n", addr(0))).unwrap();
        let tb = cwn::telemetry::open(&one, None, &fields)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let ipc = cwn::net::batch::encode_telemetry(&tb.batch, &fields, "one.jsonl", 0).unwrap();
        let s0 = Identity::from_pki_dir(&pki_dir, "s0").unwrap();
        let mut sub = Client::connect(&hub, &s0)
            .await
            .unwrap()
            .subscribe(StartFrom::Latest)
            .await
            .unwrap();
        let mut partner = Client::connect(&hub, &partner).await.unwrap();
        let mut lat_us = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            partner.send_batch(i, ipc.clone()).await.unwrap();
            let (off, _) = sub.next().await.unwrap().unwrap();
            lat_us.push(t.elapsed().as_micros() as u64);
            sub.ack(off).await.unwrap();
            partner.recv_hits().await.unwrap();
        }
        lat_us.sort_unstable();
        let q = |x: f64| lat_us[((lat_us.len() as f64 - 1.0) * x) as usize] as f64 / 1000.0;
        println!(
            "net/latency: one hit at a time, partner send -> subscriber receive: p50 {:.2} ms, p99 {:.2} ms ({} samples)",
            q(0.5),
            q(0.99),
            lat_us.len()
        );
        sub.close().await;
        partner.close().await;
        server.shutdown().await;
    });
}
