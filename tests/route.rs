//! `cwn compile --for ENTITY --registry FILE`: the snapshot holds only what the entity may see.

use std::path::Path;
use std::process::{Command, Output};

const REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/registry.example.toml");
const LIST: &str = "evil.example.com\nbad.example.org\n198.51.100.23\n";

fn cwn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cwn"))
        .args(args)
        .output()
        .expect("run cwn")
}

/// Compiles the list at `tlp` for `entity` and returns the number of indicators inside.
fn compile_for(dir: &Path, tlp: &str, entity: Option<&str>) -> u64 {
    let list = dir.join("list.txt");
    std::fs::write(&list, LIST).unwrap();
    let snap = dir.join("out.snap");
    let list = list.display().to_string();
    let snap_s = snap.display().to_string();
    let mut args = vec![
        "compile",
        &list,
        "--default-tlp",
        tlp,
        "--created-at",
        "0",
        "-o",
        &snap_s,
    ];
    if let Some(e) = entity {
        args.extend(["--for", e, "--registry", REGISTRY]);
    }
    let out = cwn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cwn(&["inspect", "--json", &snap_s]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["indicators"].as_u64().unwrap()
}

#[test]
fn compile_for_cuts_to_the_entity_clearance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(compile_for(d, "GREEN", None), 3);
    assert_eq!(compile_for(d, "GREEN", Some("waterboard-c")), 3);
    assert_eq!(compile_for(d, "AMBER", Some("waterboard-c")), 0);
    assert_eq!(compile_for(d, "AMBER", Some("ncsc")), 3);
    assert_eq!(compile_for(d, "AMBER+STRICT", Some("msp-a")), 0);
}

#[test]
fn compile_for_names_an_unknown_entity_and_needs_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, LIST).unwrap();
    let list = list.display().to_string();
    let snap = dir.path().join("x.snap").display().to_string();
    let out = cwn(&[
        "compile",
        &list,
        "-o",
        &snap,
        "--for",
        "nobody",
        "--registry",
        REGISTRY,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no entity \"nobody\""), "{err}");
    let out = cwn(&["compile", &list, "-o", &snap, "--for", "ncsc"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry"));
}

#[test]
fn a_cut_names_no_source_of_tlp_ex_chr_indicators_and_match_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let event_uuid = "5a1e7c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d";
    let event = serde_json::json!({"Event": {
        "uuid": event_uuid, "published": true, "info": "Campaign X",
        "Orgc": {"name": "Secret Source Org", "uuid": "0b1c2d3e-4f5a-4b6c-8d7e-8f9a0b1c2d3e"},
        "Tag": [{"name": "tlp:green"}, {"name": "tlp:ex:chr"}],
        "Attribute": [{"uuid": "6b2f8d3c-4e5a-4b6c-9d7e-8f9a0b1c2d3e", "type": "domain",
                       "value": "chr.example", "to_ids": true, "category": "Network activity"}],
    }});
    let ev = d.join("event.json");
    std::fs::write(&ev, event.to_string()).unwrap();
    let (ev, full, cut) = (
        ev.display().to_string(),
        d.join("full.cwnsnap").display().to_string(),
        d.join("cut.cwnsnap").display().to_string(),
    );
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(cwn(&["compile", &ev, "-o", &full]));
    ok(cwn(&[
        "compile",
        &ev,
        "-o",
        &cut,
        "--for",
        "msp-a",
        "--registry",
        REGISTRY,
    ]));
    let bytes = std::fs::read(&cut).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("chr.example"), "the indicator itself is in the cut");
    assert!(
        !has(event_uuid) && !has("Secret Source Org"),
        "attribution in the cut"
    );
    // Matching on the cut and on the whole name the source alike: not at all.
    let t = d.join("t.jsonl");
    std::fs::write(&t, "{\"query\":\"www.chr.example\"}\n").unwrap();
    let t = t.display().to_string();
    let sources: Vec<String> = [&full, &cut]
        .iter()
        .map(|snap| {
            let out = ok(cwn(&[
                "match",
                "--index",
                snap,
                "--field",
                "query=domain",
                &t,
            ]));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["source"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(sources, ["tlp:ex:chr", "tlp:ex:chr"]);
}
