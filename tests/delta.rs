//! Delta snapshots through the binary: `cwn compile --base`, `cwn inspect` of a delta, and
//! `cwn match --delta` (the contracts of issue 20).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn cwn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "cwn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory `dir/name` holding a list `list.txt` with these lines (its ids and source are
/// named relative to the directory, so that every version names them alike).
fn list(dir: &Path, name: &str, lines: &[&str]) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("list.txt"), lines.join("\n") + "\n").unwrap();
    d.display().to_string()
}

fn inspect(path: &str) -> serde_json::Value {
    let out = ok(cwn(&["inspect", "--json", path]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The hit values of a `cwn match` of `telemetry` against `index` and `deltas`.
fn hits(index: &str, deltas: &[&str], telemetry: &str) -> BTreeSet<(String, String)> {
    let mut args = vec!["match", "--index", index];
    for d in deltas {
        args.extend(["--delta", d]);
    }
    args.extend(["--field", "query=domain", "--field", "ip=ip", telemetry]);
    let out = ok(cwn(&args));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["indicator_id"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_delta_chain_compiled_against_a_base_matches_as_a_full_compile_and_out_of_order_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let v1 = list(
        dir.path(),
        "v1",
        &["evil.example.com", "198.51.100.23", "old.example.net"],
    );
    let v2 = list(
        dir.path(),
        "v2",
        &["evil.example.com", "198.51.100.23", "new.example.org"],
    );
    let v3 = list(
        dir.path(),
        "v3",
        &[
            "evil.example.com",
            "new.example.org",
            "203.0.113.0/24",
            "198.51.100.23",
        ],
    );
    let (snap, d2, d3) = (p("v1.cwnsnap"), p("v2.cwndelta"), p("v3.cwndelta"));
    ok(cwn(&["compile", &v1, "--set-version", "1", "-o", &snap]));
    let out = ok(cwn(&[
        "compile",
        "--base",
        &snap,
        &v2,
        "--set-version",
        "2",
        "-o",
        &d2,
    ]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("+1 added, -1 removed"), "{said}");
    ok(cwn(&[
        "compile",
        "--base",
        &snap,
        "--delta",
        &d2,
        &v3,
        "--set-version",
        "3",
        "-o",
        &d3,
    ]));

    let base = inspect(&snap);
    let delta = inspect(&d2);
    assert_eq!(delta["kind"], "delta");
    assert_eq!(delta["set_version"], 2);
    assert_eq!(delta["base"]["set_version"], 1);
    assert_eq!(delta["base"]["identity"], base["identity"]);
    assert_eq!(
        (delta["added"].as_u64(), delta["removed"].as_u64()),
        (Some(1), Some(1))
    );
    let third = inspect(&d3);
    assert_eq!(
        third["base"]["identity"], delta["identity"],
        "d3 follows d2"
    );
    // The line order changed in v3: ids are stable, so only the new network is added.
    assert_eq!(
        (third["added"].as_u64(), third["removed"].as_u64()),
        (Some(1), Some(0))
    );

    let tel = dir.path().join("t.jsonl");
    std::fs::write(
        &tel,
        concat!(
            "{\"query\":\"www.old.example.net\",\"ip\":\"10.0.0.1\"}\n",
            "{\"query\":\"new.example.org\",\"ip\":\"203.0.113.9\"}\n",
            "{\"query\":\"a.evil.example.com\",\"ip\":\"198.51.100.23\"}\n",
        ),
    )
    .unwrap();
    let tel = tel.display().to_string();
    let chained = hits(&snap, &[&d2, &d3], &tel);
    let full = p("v3.cwnsnap");
    ok(cwn(&["compile", &v3, "--set-version", "3", "-o", &full]));
    assert_eq!(chained, hits(&full, &[], &tel));
    let values: BTreeSet<&str> = chained.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values,
        BTreeSet::from([
            "new.example.org",
            "203.0.113.9",
            "a.evil.example.com",
            "198.51.100.23"
        ])
    );

    // A delta whose base is not the state it is given is refused by name.
    let out = cwn(&[
        "match",
        "--index",
        &snap,
        "--delta",
        &d3,
        "--field",
        "query=domain",
        &tel,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("v3.cwndelta") && err.contains("applies to set version 2"),
        "{err}"
    );
    // A delta given as the index is refused with what to do instead.
    let out = cwn(&["match", "--index", &d2, "--field", "query=domain", &tel]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this is a delta"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_signed_delta_is_verified_and_a_tampered_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    ok(cwn(&["keygen", "-o", &p("keys")]));
    let (sk, vk) = (p("keys/cwn-signing.pem"), p("keys/cwn-verify.pem"));
    let v1 = list(dir.path(), "v1", &["evil.example.com"]);
    let v2 = list(dir.path(), "v2", &["evil.example.com", "worse.example.com"]);
    let (snap, d2) = (p("v1.cwnsnap"), p("v2.cwndelta"));
    ok(cwn(&[
        "compile",
        &v1,
        "--sign",
        &sk,
        "--set-version",
        "5",
        "-o",
        &snap,
    ]));
    ok(cwn(&[
        "compile",
        "--base",
        &snap,
        "--verify-key",
        &vk,
        &v2,
        "--sign",
        &sk,
        "-o",
        &d2,
    ]));
    let out = ok(cwn(&["inspect", &d2, "--verify-key", &vk]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("signed (signature verified)"), "{text}");
    assert!(text.contains("applies to set version 5"), "{text}");
    let mut bytes = std::fs::read(&d2).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    std::fs::write(&d2, &bytes).unwrap();
    let out = cwn(&["inspect", &d2, "--verify-key", &vk]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
}
