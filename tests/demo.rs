//! `cwn demo` end to end: the sample snapshot served by an in-process hub over loopback,
//! generated partner telemetry, and every notification delivered.

use std::process::Command;

#[test]
fn a_short_demo_delivers_to_every_entity_concerned_and_leaves_nothing_behind() {
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["demo", "--duration", "2", "--entities", "20", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run cwn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The first part (the sample set) is still there.
    assert!(v["indicators"].as_u64().unwrap() > 5000, "{v}");
    let h = &v["hub"];
    let n = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {h}"));
    assert_eq!(n("entities"), 22, "20 synthetic entities and two partners");
    // Rows and hits non-zero and consistent: every row sent reached the hub, every planted
    // row hit (a row may hit more than one indicator), the partners see a subset.
    assert_eq!(n("rows"), 2 * 20_000, "{h}");
    assert_eq!(n("rows_hub"), n("rows"), "{h}");
    assert!(n("planted") > 0, "{h}");
    assert!(n("hits") >= n("planted"), "{h}");
    assert!(n("hits_returned_to_partners") <= n("hits"), "{h}");
    assert!(h["rows_per_second"].as_f64().unwrap() > 0.0, "{h}");
    // Routing found victims, and every one of them got all its notifications.
    assert!(n("notifications_queued") > 0, "{h}");
    assert_eq!(
        n("notifications_received"),
        n("notifications_queued"),
        "{h}"
    );
    assert!(n("entities_concerned") > 1, "{h}");
    assert_eq!(n("entities_notified"), n("entities_concerned"), "{h}");
    assert_eq!(h["shortfall"].as_array().unwrap().len(), 0, "{h}");
    let by_class: u64 = h["notifications_by_class_and_tlp"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t.as_object().unwrap().values())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(by_class, n("notifications_received"), "{h}");
    let (p50, p99) = (
        h["latency_ms"]["p50"].as_u64().expect("p50"),
        h["latency_ms"]["p99"].as_u64().expect("p99"),
    );
    assert!(p50 <= p99, "{h}");
    assert!(
        h["status_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    // Nothing left behind.
    let dir = h["temp_dir"].as_str().unwrap();
    assert_eq!(h["temp_dir_removed"], true, "{h}");
    assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
}

/// `cwn demo --cluster`: three local NATS nodes and two edges; an edge and the stream's
/// leader are killed mid-stream and restarted, and every acknowledged notification still
/// reaches its subscriber, once per id, nowhere else.
#[cfg(feature = "cluster")]
#[test]
fn the_cluster_demo_loses_nothing_when_an_edge_and_the_stream_leader_die() {
    let Some(_) = super::nats::nats_server() else {
        return;
    };
    let _one = super::nats::one_cluster_at_a_time();
    let out = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args([
            "demo",
            "--cluster",
            "--duration",
            "12",
            "--entities",
            "6",
            "--rate",
            "200",
            "--json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run cwn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("edge 0 killed"), "{err}");
    assert!(
        err.contains("leader of the notification stream) killed"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert_eq!(n("acknowledged"), 12 * 200, "{v}");
    assert_eq!(n("delivered"), n("acknowledged"), "{v}");
    assert_eq!(n("lost"), 0, "{v}");
    assert_eq!(n("misdelivered"), 0, "{v}");
    assert_eq!(n("duplicates_after_dedup"), 0, "{v}");
    assert!(v["edge_failover_secs"].as_f64().is_some(), "{v}");
}
