//! The hub at scale (issue 5): `cwn serve` as a child process on a data directory on disk,
//! N mutually authenticated subscribers held at once, a partner streaming telemetry at a fixed
//! rate whose rows hit the subscribers in turn, and one subscriber that stops reading for a
//! while. Reports
//!
//! - the time for all subscribers to connect and subscribe,
//! - the notification rate reached and the latency from the hub's match of the partner's
//!   batch (the notification's `created_at_ms`, taken when the batch arrived and was matched)
//!   to the subscriber's receipt, p50/p99, for all but the pausing subscriber — overall and
//!   while it pauses,
//! - whether the paused subscriber receives everything once it reads again,
//! - the hub's peak memory (`VmHWM` of the child from `/proc`).
//!
//! ```text
//! ulimit -n 65536   # each subscriber is a UDP socket in this process (the hub: one per log)
//! cargo bench --bench scale                      # 7,000 subscribers, 50,000/s, 10 s, 5 s pause
//! CWN_BENCH_SECS=70 CWN_BENCH_PAUSE_SECS=60 cargo bench --bench scale   # the issue's minute
//! ```
//!
//! Environment: `CWN_BENCH_SUBSCRIBERS` (7000), `CWN_BENCH_RATE` notifications/s (50000),
//! `CWN_BENCH_SECS` of streaming (10), `CWN_BENCH_BATCH` rows per partner batch (1000),
//! `CWN_BENCH_PAUSE_SECS` (5; the pause starts 2 s into the stream), `CWN_BENCH_DIR` where
//! the hub's data goes (default: the system's temp dir, on disk here), `CWN_BENCH_ACK_MS`
//! (how long each subscriber holds its acks to send several together, as `cwn subscribe`
//! does: default `SUBSCRIBE_ACK_DELAY`; 0: each at once; close sends what is held),
//! `CWN_BENCH_SOCKETS` (0: each subscriber on its own UDP socket; N: all of them on N shared client sockets, which takes
//! most of the client process's per-socket work off the 2 cores the hub shares with it).
//! Not a criterion benchmark: the figures wanted are times, percentiles and memory.

#[path = "common/hub_net.rs"]
mod hub_net;
use hub_net::{addr, env, memory_kib, now_ms, pct};

use std::time::{Duration, Instant};

use cwn::net::client::Client;
use cwn::net::tls::Identity;
use cwn::telemetry::FieldMap;

fn main() {
    let subscribers = env("CWN_BENCH_SUBSCRIBERS", 7000);
    let rate = env("CWN_BENCH_RATE", 50_000);
    let secs = env("CWN_BENCH_SECS", 10);
    let batch_rows = env("CWN_BENCH_BATCH", 1000);
    let pause_secs = env("CWN_BENCH_PAUSE_SECS", 5) as u64;
    let ack_delay = hub_net::ack_delay();
    let sockets = env("CWN_BENCH_SOCKETS", 0);
    let pause_from_ms = 2000u64;
    let t_setup = Instant::now();
    let net = hub_net::BenchNet::new(subscribers);
    let p = net.path();
    let pki_dir = net.pki_dir.clone();
    std::fs::write(
        p.join("hub.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nregistry = \"registry.toml\"\ndata_dir = \"var\"\n[tls]\ncert = \"pki/hub.pem\"\nkey = \"pki/hub.key\"\nca = \"pki/ca.pem\"\n[snapshot]\npath = \"set.cwnsnap\"\nverify_key = \"verify.pem\"\n[limits]\nmax_connections = {}\nqueue_size = 1024\nsend_window = \"256KiB\"\nidle_timeout = \"120s\"\nkeep_alive_interval = \"20s\"\n",
            subscribers + 16
        ),
    )
    .unwrap();

    // The partner's batches, encoded up front: batch k's row i hits subscriber
    // (k * batch_rows + i) mod subscribers.
    let fields =
        FieldMap::from_specs(["q=domain".parse().unwrap(), "c=ip".parse().unwrap()]).unwrap();
    let batches = (rate * secs).div_ceil(batch_rows);
    let total_rows = batches * batch_rows;
    let mut ipc = Vec::with_capacity(batches);
    for k in 0..batches {
        let text: String = (0..batch_rows)
            .map(|i| {
                format!(
                    "{{\"q\":\"x.evil.example\",\"c\":\"{}\"}}\n",
                    addr((k * batch_rows + i) % subscribers)
                )
            })
            .collect();
        ipc.push(hub_net::encode_batch(p, &fields, &text, k * batch_rows));
    }
    eprintln!(
        "scale: setup (PKI for {subscribers}, {batches} batches) {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );

    let (mut hub, hub_addr) = hub_net::serve_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_cwn")),
        &p.join("hub.toml"),
        true,
    );
    let hub_pid = hub.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Connect everyone, 64 handshakes at a time, spread over `sockets` client sockets
        // (0: a socket per subscriber, as 7,000 separate machines would have).
        let t_connect = Instant::now();
        let subs = hub_net::subscribe_all(
            &pki_dir,
            std::slice::from_ref(&hub_addr),
            subscribers,
            sockets,
        )
        .await;
        let connect_secs = t_connect.elapsed().as_secs_f64();
        let (hwm, rss) = memory_kib(hub_pid);
        println!(
            "scale/connect: {subscribers} subscribers connected and subscribed in {connect_secs:.2} s; hub VmRSS {} MiB (peak {} MiB)",
            rss / 1024,
            hwm / 1024
        );

        let t0_ms = now_ms();
        let mut tasks = Vec::with_capacity(subscribers);
        for (i, mut sub) in subs.into_iter().enumerate() {
            let want = (total_rows / subscribers + usize::from(i < total_rows % subscribers)) as u64;
            let pause = (i == 0 && pause_secs > 0).then_some(pause_from_ms);
            tasks.push(tokio::spawn(async move {
                // (received at, ms since t0; latency, ms)
                let mut lat: Vec<(u32, u32)> = Vec::with_capacity(want as usize);
                let mut got = 0u64;
                let mut paused = false;
                sub.set_ack_delay(ack_delay);
                while got < want {
                    if let Some(at) = pause
                        && !paused
                        && now_ms() >= t0_ms + at
                    {
                        paused = true;
                        tokio::time::sleep(Duration::from_secs(pause_secs)).await;
                    }
                    let Some((off, n)) = sub.next().await.unwrap() else {
                        break;
                    };
                    let now = now_ms();
                    lat.push((
                        now.saturating_sub(t0_ms) as u32,
                        now.saturating_sub(n.created_at_ms) as u32,
                    ));
                    got += 1;
                    // Ack what is buffered together, as `cwn subscribe` does.
                    let mut last = off;
                    while got < want {
                        match tokio::time::timeout(Duration::ZERO, sub.next()).await {
                            Ok(Ok(Some((o, n)))) => {
                                let now = now_ms();
                                lat.push((
                                    now.saturating_sub(t0_ms) as u32,
                                    now.saturating_sub(n.created_at_ms) as u32,
                                ));
                                got += 1;
                                last = o;
                            }
                            _ => break,
                        }
                    }
                    sub.ack(last).await.unwrap();
                }
                sub.close().await;
                (lat, got, want)
            }));
        }

        // The partner: one batch every batch_rows / rate seconds, fed through a channel so
        // that it reads the hub's answers while it sends (at most STREAM_WINDOW unanswered).
        let partner_id = Identity::from_pki_dir(&pki_dir, "msp").unwrap();
        let mut partner = Client::connect(&hub_addr, &partner_id).await.unwrap();
        let period = Duration::from_secs_f64(batch_rows as f64 / rate as f64);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let pacer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut peak_kib = 0u64;
            for (k, b) in ipc.into_iter().enumerate() {
                tick.tick().await;
                if tx.send(Ok(b)).await.is_err() {
                    break;
                }
                if k % 50 == 0 {
                    peak_kib = peak_kib.max(memory_kib(hub_pid).1);
                }
            }
            peak_kib
        });
        let t_stream = Instant::now();
        let answered = partner.stream_channel(rx, |_, _| {}).await.unwrap();
        assert_eq!(answered as usize, batches);
        let peak_kib = pacer.await.unwrap();
        let stream_secs = t_stream.elapsed().as_secs_f64();
        println!(
            "scale/stream: {total_rows} rows in {batches} batches sent and answered (durable) in {stream_secs:.2} s = {:.0} notifications/s (target {rate}/s)",
            total_rows as f64 / stream_secs
        );
        partner.close().await;

        let mut others = Vec::new();
        let mut others_in_pause = Vec::new();
        let mut missing = 0u64;
        let mut pauser = (0u64, 0u64, 0u32);
        let pause_end = pause_from_ms + pause_secs * 1000;
        let drain = Duration::from_secs(60);
        for (i, t) in tasks.into_iter().enumerate() {
            let Ok(r) = tokio::time::timeout(drain, t).await else {
                missing += 1;
                continue;
            };
            let (lat, got, want) = r.unwrap();
            missing += want - got;
            if i == 0 && pause_secs > 0 {
                pauser = (got, want, lat.iter().map(|l| l.1).max().unwrap_or(0));
                continue;
            }
            for (at, l) in lat {
                if (pause_from_ms..pause_end).contains(&u64::from(at)) {
                    others_in_pause.push(l);
                }
                others.push(l);
            }
        }
        let all_secs = (now_ms() - t0_ms) as f64 / 1000.0;
        let (hwm, rss) = memory_kib(hub_pid);
        others.sort_unstable();
        others_in_pause.sort_unstable();
        println!(
            "scale/deliver: {} notifications to the other {} subscribers, all received and acked {all_secs:.1} s after the stream started; missing {missing}",
            others.len(),
            subscribers - usize::from(pause_secs > 0)
        );
        println!(
            "scale/latency: batch matched at the hub -> subscriber receipt: p50 {} ms, p99 {} ms, max {} ms",
            pct(&others, 0.5),
            pct(&others, 0.99),
            others.last().copied().unwrap_or(0)
        );
        if pause_secs > 0 {
            println!(
                "scale/pause: subscriber s0 stopped reading for {pause_secs} s; the others meanwhile: p50 {} ms, p99 {} ms ({} samples); s0 received {}/{} after it resumed (max latency {} ms)",
                pct(&others_in_pause, 0.5),
                pct(&others_in_pause, 0.99),
                others_in_pause.len(),
                pauser.0,
                pauser.1,
                pauser.2
            );
        }
        println!(
            "scale/memory: hub peak RSS (VmHWM) {} MiB; sampled during the stream max {} MiB; now {} MiB",
            hwm / 1024,
            peak_kib / 1024,
            rss / 1024
        );
    });
    let _ = hub.kill();
    let _ = hub.wait();
}
