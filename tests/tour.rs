//! The README's five-minute tour, run as written: the `sh` block under "A five-minute tour" is
//! read from README.md and run by bash with this build's `cwn` first on the `PATH`, in a fresh
//! directory holding the checkout's `data/`; only the ports and the shared folder are
//! substituted. A tour that drifts from the binary fails here.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::util;

/// The tour's commands, as the README holds them.
fn tour_block() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let tour = readme
        .split_once("## A five-minute tour")
        .expect("README has its tour")
        .1;
    let block = tour.split_once("```sh\n").expect("the tour's sh block").1;
    block
        .split_once("\n```")
        .expect("the block ends")
        .0
        .to_string()
}

#[cfg(unix)]
#[test]
fn the_readme_tour_runs_as_written() {
    let Some(maltrail) = util::shared_real("maltrail-trails-static.tar.gz") else {
        return;
    };
    let real = maltrail.parent().unwrap().display().to_string();
    let (hub_port, status_port) = (
        util::free_udp_port().to_string(),
        util::free_tcp_port().to_string(),
    );
    let substitute = |text: &str| {
        text.replace("../shared/data/real/", &format!("{real}/"))
            .replace("4433", &hub_port)
            .replace("9184", &status_port)
    };
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    std::fs::create_dir_all(dir.path().join("data/tour")).unwrap();
    std::os::unix::fs::symlink(data.join("examples"), dir.path().join("data/examples")).unwrap();
    for f in ["hub.toml", "registry.toml"] {
        let text = std::fs::read_to_string(data.join("tour").join(f)).unwrap();
        std::fs::write(dir.path().join("data/tour").join(f), substitute(&text)).unwrap();
    }
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{}\n",
        substitute(&tour_block())
    );
    // The hub and the subscriber run in the background: once the block is through, wait for
    // the notifications the stream caused, then stop them.
    let script = format!(
        "{script}for _ in $(seq 300); do [ -s notifications.jsonl ] && break; sleep 0.1; done\n"
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_cwn")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .expect("run bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the tour failed after {:?}:\n{stderr}\n{}",
        started.elapsed(),
        &stdout[stdout.len().saturating_sub(4000)..]
    );
    // The final curl shows the hub's notification counters.
    assert!(stdout.contains("cwn_notifications"), "{stdout}");
    // Every step left what it promises.
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert!(
        read("hits.jsonl").lines().count() > 0,
        "cwn match found nothing"
    );
    assert!(
        read("stream-hits.jsonl").lines().count() > 0,
        "cwn stream found nothing"
    );
    let notes = read("notifications.jsonl");
    assert!(
        notes.lines().count() > 0,
        "hospital-b heard nothing within 30 s\n{stderr}"
    );
    let first: serde_json::Value = serde_json::from_str(notes.lines().next().unwrap()).unwrap();
    assert_eq!(first["payload"]["partner"], "msp-a", "{first}");
    assert!(
        first["payload"]["victim"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("10.47."),
        "{first}"
    );
}
