//! The `cwn` binary's contracts: flags, exit codes, and the fields scripts read.

use std::path::Path;
use std::process::{Command, Output};

use crate::util;

fn cwn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const LIST: &str = "# a list\nevil.example.com\nhxxp://bad[.]example[.]org/gate.php\n198.51.100.23:8443\nnot a value\n203.0.113.7/28\nevil.example.com\n";

#[test]
fn ingest_json_report_has_the_six_counters_and_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "list.txt", LIST);
    let out = cwn(&["ingest", "--json", &list]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for field in [
        "accepted",
        "rejected",
        "unsupported",
        "skipped",
        "suppressed",
        "duplicates",
    ] {
        assert!(v[field].is_u64(), "{field} missing in {v}");
    }
    assert_eq!(v["accepted"], 4);
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["duplicates"], 1);
    assert_eq!(v["by_kind"]["domain"], 1);
    assert_eq!(v["by_kind"]["url"], 1);
    assert_eq!(v["by_kind"]["ip:port"], 1);
    assert_eq!(v["by_kind"]["cidr"], 1);
}

#[test]
fn ingest_writes_indicators_and_rejects_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "list.txt", LIST);
    let out_path = dir.path().join("ind.jsonl");
    let rej_path = dir.path().join("rej.jsonl");
    let out = cwn(&[
        "ingest",
        "--default-tlp",
        "green",
        &list,
        "-o",
        out_path.to_str().unwrap(),
        "--rejects",
        rej_path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("accepted"), "table on stdout: {stdout}");
    let inds: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(inds.len(), 4);
    assert_eq!(inds[1]["kind"], "url");
    assert_eq!(inds[1]["value"], "http://bad.example.org/gate.php");
    assert_eq!(inds[1]["defanged"], true);
    assert_eq!(inds[1]["tlp"], "GREEN");
    assert!(
        inds[1]["id"]
            .as_str()
            .unwrap()
            .ends_with("list.txt:http://bad.example.org/gate.php")
    );
    assert_eq!(inds[3]["value"], "203.0.113.0/28");
    let rejects: Vec<serde_json::Value> = std::fs::read_to_string(&rej_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0]["record"], "line 5");
    assert_eq!(rejects[0]["category"], "invalid");
    assert!(rejects[0]["source"].as_str().unwrap().ends_with("list.txt"));
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a value")
    );
    assert_eq!(rejects[1]["category"], "duplicate");
    assert_eq!(rejects[1]["record"], "line 7");
}

#[test]
fn strict_fails_on_a_bad_record_and_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "list.txt", LIST);
    let out_path = dir.path().join("ind.jsonl");
    std::fs::write(&out_path, "previous good output\n").unwrap();
    let out = cwn(&[
        "ingest",
        "--strict",
        &list,
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--strict"));
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        "previous good output\n"
    );
    let ok = write(dir.path(), "ok.txt", "evil.example.com\n");
    let out = cwn(&["ingest", "--strict", &ok, "-o", out_path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&out_path)
            .unwrap()
            .contains("evil.example.com")
    );
}

#[test]
fn unreadable_input_is_an_error_naming_the_path() {
    let out = cwn(&["ingest", "/nonexistent/feed.txt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/feed.txt"), "{err}");
    // The reason once, not twice.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // Neither colour codes when stderr is not a terminal.
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn match_without_a_map_says_what_is_needed() {
    let out = cwn(&["match", "--index", "x.cwnsnap", "t.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--preset") && err.contains("--field"), "{err}");
}

#[test]
fn csv_with_a_chosen_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "iocs.csv",
        "first_seen,ioc_value,note\n2025-01-01,198.51.100.9,x\n2025-01-02,evil.example.net,y\n",
    );
    let out = cwn(&["ingest", "--json", "--column", "ioc_value", &csv]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["by_kind"]["ipv4"], 1);
    assert_eq!(v["by_kind"]["domain"], 1);
}

#[test]
fn stdin_is_a_source() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["ingest", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"evil.example.com\n198.51.100.1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], 2);
}

#[test]
fn demo_runs_on_the_embedded_sample() {
    let out = cwn(&["demo", "--json", "--no-hub"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["ingest"]["accepted"].as_u64().unwrap() > 5000, "{v}");
    assert_eq!(
        v["ingest"]["suppressed"], 3,
        "the three warninglisted values of FORMATS §8.1"
    );
    // RED is stored by ingest but not armed in the index.
    assert_eq!(
        v["indicators"].as_u64().unwrap() + 1,
        v["ingest"]["accepted"].as_u64().unwrap()
    );
    let per_file: std::collections::HashMap<String, u64> = v["telemetry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["input"].as_str().unwrap().to_string(),
                t["hits"].as_u64().unwrap(),
            )
        })
        .collect();
    // zeek-conn (FORMATS §8.2): 198.51.100.23 hits ev1 and STIX i1; 203.0.113.5:8443 hits
    // ev2's /28 and STIX i4 (its port constraint is met).
    assert_eq!(per_file["zeek-conn.ndjson"], 4, "{v}");
    // zeek-ssl: hostname, JA3, certificate and CIDR; never i4, whose port is 8443 not 443.
    assert_eq!(per_file["zeek-ssl.ndjson"], 4, "{v}");
    assert!(
        per_file.values().all(|&h| h > 0),
        "every example file has hits: {v}"
    );
}

#[test]
fn a_missing_misp_event_file_is_a_reported_reject_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["manifest.json", "5e3d3c80-eba8-5531-84db-fe0b24a2bbed.json"] {
        std::fs::copy(util::data("examples/misp-feed").join(f), dir.path().join(f)).unwrap();
    }
    let rej = dir.path().join("rej.jsonl");
    let out = cwn(&[
        "ingest",
        "--json",
        dir.path().to_str().unwrap(),
        "--rejects",
        rej.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rejected"], 1, "{v}");
    assert!(v["accepted"].as_u64().unwrap() > 5);
    let rejects = std::fs::read_to_string(&rej).unwrap();
    assert!(
        rejects.contains("8682f757-5d7b-54e9-8c2c-af6bf330fd53"),
        "{rejects}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    // About 1 MB of indicators: far more than a pipe buffers, so the writer meets EPIPE.
    let sample = util::data("sample/maltrail");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(["ingest", "-o", "-", sample.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is dropped here, as `cwn ingest -o - … | head -c 16` would.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?} {err}", out.status);
}

#[test]
fn inspect_check_accepts_a_good_snapshot_and_a_flipped_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "list.txt", LIST);
    let snap = dir.path().join("set.cwnsnap").display().to_string();
    let out = cwn(&["compile", &list, "-o", &snap]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = cwn(&["inspect", &snap]);
    let checked = cwn(&["inspect", "--check", &snap]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stderr).contains("invariants hold"));
    // The report itself is the same with or without the check, but for the load time.
    let strip = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.contains("loaded and checked"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&plain), strip(&checked));
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    let bad = cwn(&["inspect", "--check", &snap]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("refused"));
}

/// `-o /dev/null` (or any device or FIFO) must be written into, never renamed over: run as
/// root, a rename would replace the machine's `/dev/null` with a regular file. A FIFO in a
/// temporary directory stands in for the device here.
#[cfg(unix)]
#[test]
fn output_to_a_fifo_is_written_through_not_replaced() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "list.txt", LIST);
    let fifo = dir.path().join("out.pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        })
    };
    let out = cwn(&["ingest", "-o", fifo.to_str().unwrap(), &list]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Checked before joining the reader: had the FIFO been replaced, the reader would wait
    // for a writer forever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO must still be a FIFO");
    let text = reader.join().unwrap();
    assert_eq!(
        text.lines().count(),
        4,
        "the four accepted indicators: {text}"
    );
    assert!(text.contains("evil.example.com"));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "no temporary file left beside the FIFO");
}

/// A snapshot of `evil.example.com` and friends in `dir`.
fn small_snapshot(dir: &Path) -> String {
    let list = write(dir, "list.txt", LIST);
    let snap = dir.join("set.cwnsnap").display().to_string();
    let out = cwn(&["compile", &list, "--default-tlp", "GREEN", "-o", &snap]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    snap
}

#[test]
fn a_torn_first_line_does_not_turn_json_lines_into_csv() {
    let dir = tempfile::tempdir().unwrap();
    let snap = small_snapshot(dir.path());
    // A file cut in the middle of a record, as a log shipper's partial write leaves it.
    let torn = write(
        dir.path(),
        "torn.jsonl",
        "y\":\"a.evil.example.com\"}\n{\"query\":\"www.evil.example.com\"}\n{\"query\":\"ok.example\"}\n",
    );
    let out = cwn(&["match", "--index", &snap, "--field", "query=domain", &torn]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["row"], 1);
    // The torn line is reported, not silently dropped.
    assert!(
        err.contains("torn.jsonl") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn a_map_of_which_no_field_exists_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let snap = small_snapshot(dir.path());
    let good = write(
        dir.path(),
        "good.jsonl",
        "{\"query\":\"www.evil.example.com\"}\n",
    );
    let other = write(
        dir.path(),
        "other.jsonl",
        "{\"qname\":\"www.evil.example.com\"}\n",
    );
    let out = cwn(&[
        "match",
        "--index",
        &snap,
        "--field",
        "query=domain",
        "--field",
        "answer=domain",
        &good,
        &other,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("other.jsonl") && err.contains("none of the mapped fields"),
        "{err}"
    );
    assert!(!err.contains("good.jsonl: 1 row"), "{err}");
    // The good file's hit is written all the same.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // A field that no input has is a warning.
    assert!(err.contains("no input has the field(s) answer"), "{err}");
}

/// An Arrow IPC stream or file of one zstd-compressed column of 8 MiB, whose buffer's
/// announced decompressed length is then set to `claimed` bytes (what a hostile writer does).
fn arrow_bomb(file_format: bool, claimed: i64) -> Vec<u8> {
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
    let real = 8i64 << 20;
    let mut b = arrow_array::builder::StringBuilder::new();
    b.append_value("a".repeat(real as usize));
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "query",
        std::sync::Arc::new(b.finish()) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let opts = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
        .unwrap();
    let mut out = Vec::new();
    if file_format {
        let mut w = FileWriter::try_new_with_options(&mut out, &batch.schema(), opts).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    } else {
        let mut w = StreamWriter::try_new_with_options(&mut out, &batch.schema(), opts).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    // The values buffer comes after the offsets (whose second offset holds the same number).
    let at = out
        .windows(8)
        .rposition(|w| w == real.to_le_bytes())
        .expect("the values buffer's length prefix");
    out[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
    out
}

#[test]
fn a_hostile_local_arrow_file_is_refused_by_name_without_a_crash_or_a_huge_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let snap = small_snapshot(dir.path());
    let past = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/telemetry_batch/buffer-past-body"),
    )
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // 500 GiB announced by a 8 MiB buffer: refused from the prefix, nothing expanded.
        ("bomb.arrows", arrow_bomb(false, 500 << 30), "over the"),
        ("bomb.arrow", arrow_bomb(true, 500 << 30), "over the"),
        // A buffer that lies past its message body (arrow-ipc asserts on it: a panic).
        ("past.arrows", past, "past the message body"),
    ];
    for (name, bytes, why) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = cwn(&[
            "match",
            "--index",
            &snap,
            "--field",
            "query=domain",
            &path.display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(name) && err.contains(why), "{name}: {err}");
    }
    // The same bytes with an honest prefix are read (the check is not a blanket refusal).
    let path = dir.path().join("honest.arrow");
    std::fs::write(&path, arrow_bomb(true, 8 << 20)).unwrap();
    let out = cwn(&[
        "match",
        "--index",
        &snap,
        "--field",
        "query=domain",
        &path.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
