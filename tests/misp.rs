//! MISP ingest: the example feed of FORMATS.md §8.1 end to end, and malformed input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cwn::indicator::{Direction, Indicator, Kind, Tlp};
use cwn::ingest::misp::{feed_event_files, feed_manifest, parse_events};
use cwn::ingest::{
    Batch, Category, Ingest, IngestError, IngestReport, Item, Reject, SourceOptions,
    expand_sources, read_source,
};
use serde_json::{Value, json};

const FEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/examples/misp-feed");
const EV1: &str = "5e3d3c80-eba8-5531-84db-fe0b24a2bbed";
const EV2: &str = "8682f757-5d7b-54e9-8c2c-af6bf330fd53";

fn ingest(sources: &[PathBuf]) -> (Vec<Indicator>, IngestReport, Vec<Reject>) {
    let opts = SourceOptions::default();
    let mut ing = Ingest::new(None);
    for src in expand_sources(sources, &opts).expect("sources expand") {
        ing.add(read_source(&src, &opts).expect("source reads"));
    }
    let (set, report, rejects) = ing.finish();
    (set.as_slice().to_vec(), report, rejects)
}

fn parse(name: &str, bytes: &[u8]) -> Batch {
    let mut b = Batch::new();
    parse_events(bytes, &Arc::from(name), &SourceOptions::default(), &mut b);
    b
}

/// `<record> <kind> <value> <TLP>` for indicators, `<category> <record>: <reason>` for rejects.
fn lines(b: &Batch) -> Vec<String> {
    b.items
        .iter()
        .map(|i| match i {
            Item::Indicator {
                record, indicator, ..
            } => format!(
                "{record} {} {} {}",
                indicator.kind,
                indicator.value,
                indicator.tlp.name()
            ),
            Item::Rejected(r) => format!("{} {}: {}", r.category, r.record, r.reason),
        })
        .collect()
}

#[test]
fn example_feed_gives_the_rows_of_formats_8_1() {
    let (set, report, rejects) = ingest(&[PathBuf::from(FEED)]);
    let rows: Vec<(&str, Kind, &str, Tlp, Option<u8>)> = set
        .iter()
        .map(|i| {
            (
                i.id.as_str(),
                i.kind,
                i.value.as_str(),
                i.tlp,
                i.distribution,
            )
        })
        .collect();
    use Kind::*;
    use Tlp::{Amber, AmberStrict, Green, Red};
    let a = Some(2);
    let g = Some(3);
    assert_eq!(
        rows,
        vec![
            (
                "90607b54-a99c-5686-a575-5a04d875aab1",
                Ipv4,
                "198.51.100.23",
                Amber,
                a
            ),
            (
                "e618afd8-b4c5-5f68-ada8-67f1db5a86c1",
                Domain,
                "bad-login.example.com",
                Amber,
                a
            ),
            (
                "f095c097-796f-5724-99e9-aa27ea7bce90",
                Url,
                "https://bad-login.example.com/owa/auth.php?id=1",
                Amber,
                a
            ),
            (
                "bcb0296d-f10e-5f6f-9e3b-0aa1b242ccee",
                IpPort,
                "203.0.113.45:8443",
                Amber,
                a
            ),
            (
                "24d9ccba-bf46-54c1-ae33-e0c3e95e99e1",
                Domain,
                "cdn.example.net",
                Amber,
                a
            ),
            (
                "24d9ccba-bf46-54c1-ae33-e0c3e95e99e1#2",
                Ipv4,
                "198.51.100.77",
                Amber,
                a
            ),
            (
                "03b41bc5-0a2f-5a70-a54b-8720557de249",
                Email,
                "phisher@example.org",
                Amber,
                a
            ),
            (
                "0a99c9df-ab02-5fd8-a590-22ec568aa7c5",
                Ipv4,
                "192.0.2.201",
                AmberStrict,
                a
            ),
            (
                "ae680ded-993a-5bcd-b954-9098b852d1e8",
                Url,
                "http://update.example.net/check.php",
                Amber,
                a
            ),
            (
                "49093656-f65c-5bc5-b24b-8b205a0f8e82",
                Sha256,
                "68ecb6c8573b658705ec3432dcddc6c2cf82b97c1a4818f355a8e0f7aee6e5e5",
                Amber,
                a
            ),
            (
                "849dd755-21f8-5632-8c19-2de879a1343f",
                Md5,
                "e69894213ec071803808fb5c7e66ab8d",
                Amber,
                a
            ),
            (
                "b14cee06-ff73-5e81-a6a1-16a9c6b01f21",
                Cidr,
                "203.0.113.0/28",
                Green,
                g
            ),
            (
                "022579d7-5f49-5f8f-b9e3-0167b0105921",
                Ipv6,
                "2001:db8:bad::10",
                Green,
                g
            ),
            (
                "cee752da-4370-5f67-8fd7-d24eadf85653",
                Hostname,
                "c2.malware.test",
                Green,
                g
            ),
            (
                "489732b4-e239-5e9f-8a2b-69903a80735d",
                Sha256,
                "a66859cd539edf70ee53928b9886865b61db349e91caff3ed61ba4b99ad1bc0c",
                Green,
                g
            ),
            (
                "45aae2e6-963a-5012-b7cc-3d692d6d7bb0",
                Ja3,
                "0e92fe7dd3421d4a9c1a0cfb3454eee2",
                Green,
                g
            ),
            (
                "1b6226d9-a591-50c2-8d8a-3884502f86ec",
                Sha256,
                "57b02ee34257d284348e4fed1fbd169835441f5e7213fa3dbaff3d590d5c1d78",
                Green,
                g
            ),
            // Suppressed by the `empty-file-hashes` and `synthetic-public-resolvers`
            // warninglists when the driver has them; the parser accepts both.
            (
                "7339ab9b-2f38-59e5-a132-56d5d21cef59",
                Md5,
                "d41d8cd98f00b204e9800998ecf8427e",
                Green,
                g
            ),
            (
                "b53b73e8-2d29-5529-8854-b033f7e9bc6b",
                Ipv4,
                "198.51.100.53",
                Green,
                g
            ),
            // Stored with RED; `arm_red` decides later whether it is armed.
            (
                "f35bdee0-152a-55d6-9ab7-7b8562a5e5e3",
                Domain,
                "login-verify.example.net",
                Red,
                g
            ),
        ]
    );
    let skipped: Vec<(&str, Category, &str)> = rejects
        .iter()
        .map(|r| (r.record.as_str(), r.category, r.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (
                "72203f3a-cd4d-5f86-ac5a-44a38a006de2",
                Category::Skipped,
                "to_ids is false: context only"
            ),
            (
                "7e8c0dff-c632-56ff-848d-39e1106d03f7",
                Category::Skipped,
                "`link`: a reference link, not an indicator"
            ),
            (
                "610cecf3-1581-574d-bd10-ac810447799f",
                Category::Skipped,
                "deleted (revoked) attribute"
            ),
            (
                "8c122a59-7498-5164-af7c-30d80f7d7720",
                Category::Skipped,
                "`filename`: a file name is context only: indicators match on a digest"
            ),
            (
                "6995cf2a-bbfc-573d-8a6f-b9252328e1ca",
                Category::Skipped,
                "to_ids is false: context only"
            ),
        ]
    );
    assert_eq!((report.accepted, report.skipped, report.files), (20, 5, 2));
    // 24 attributes, one of them a `domain|ip` that counts twice.
    assert_eq!(report.total(), 25);
}

#[test]
fn example_feed_context_is_kept() {
    let (set, _, _) = ingest(&[PathBuf::from(FEED)]);
    let by_id = |id: &str| set.iter().find(|i| i.id == id).expect(id);

    let strict = by_id("0a99c9df-ab02-5fd8-a590-22ec568aa7c5");
    assert_eq!(&*strict.source, EV1);
    assert_eq!(strict.origin.as_deref(), Some("Synthetic-CERT-A"));
    assert_eq!(strict.direction, Some(Direction::Src));
    assert_eq!(
        strict.first_seen.map(|t| t.to_string()).as_deref(),
        Some("2025-03-01T00:00:00Z")
    );
    assert_eq!(
        strict.last_seen.map(|t| t.to_string()).as_deref(),
        Some("2025-03-09T23:59:59Z")
    );
    let tags: Vec<&str> = strict.tags.iter().map(|t| &**t).collect();
    assert_eq!(
        tags,
        vec![
            "tlp:amber",
            "circl:incident-classification=\"phishing\"",
            "tlp:amber+strict",
            "misp:type=ip-src",
            "misp:category=Network activity",
        ]
    );

    let sha = by_id("49093656-f65c-5bc5-b24b-8b205a0f8e82");
    assert!(sha.tags.iter().any(|t| &**t == "misp:object=file"));
    assert!(
        sha.tags
            .iter()
            .any(|t| &**t == "misp:object_relation=sha256")
    );

    let named = by_id("489732b4-e239-5e9f-8a2b-69903a80735d");
    assert_eq!(&*named.source, EV2);
    assert_eq!(named.origin.as_deref(), Some("Synthetic-ISAC-B"));
    assert!(named.tags.iter().any(|t| &**t == "filename:svc-update.exe"));
    assert!(
        by_id("1b6226d9-a591-50c2-8d8a-3884502f86ec")
            .tags
            .iter()
            .any(|t| &**t == "x509")
    );
    assert!(by_id("bcb0296d-f10e-5f6f-9e3b-0aa1b242ccee").direction == Some(Direction::Dst));
    assert!(
        set.iter()
            .all(|i| !i.no_attribution && i.sharing_group.is_none() && !i.defanged)
    );
}

#[test]
fn a_single_event_file_reads_like_the_feed() {
    let path = PathBuf::from(format!("{FEED}/{EV2}.json"));
    let (set, report, _) = ingest(&[path]);
    assert_eq!((set.len(), report.skipped), (9, 1));
}

#[test]
fn the_manifest_lists_the_events_sorted() {
    let m = feed_manifest(Path::new(FEED)).unwrap();
    let got: Vec<_> = m
        .events
        .iter()
        .map(|e| (e.uuid.as_str(), e.timestamp))
        .collect();
    assert_eq!(
        got,
        vec![(EV1, Some(1_741_681_800)), (EV2, Some(1_743_602_400))]
    );
    assert!(m.problems.is_empty());
}

#[test]
fn a_missing_event_file_is_left_out_and_reportable() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(format!("{FEED}/manifest.json")).unwrap();
    std::fs::write(dir.path().join("manifest.json"), manifest).unwrap();
    std::fs::copy(
        format!("{FEED}/{EV1}.json"),
        dir.path().join(format!("{EV1}.json")),
    )
    .unwrap();

    let files = feed_event_files(dir.path()).unwrap();
    assert_eq!(files, vec![dir.path().join(format!("{EV1}.json"))]);
    // The driver reads the rest without stopping.
    let (set, _, _) = ingest(&[dir.path().to_path_buf()]);
    assert_eq!(set.len(), 11);

    let m = feed_manifest(dir.path()).unwrap();
    let mut ing = Ingest::new(None);
    ing.add(m.problem_batch());
    let (_, report, rejects) = ing.finish();
    assert_eq!(report.rejected, 1);
    assert_eq!(rejects[0].record, EV2);
    assert!(
        rejects[0].reason.contains("does not exist"),
        "{}",
        rejects[0].reason
    );

    std::fs::write(dir.path().join("manifest.json"), "{\"x\": ").unwrap();
    let err = feed_event_files(dir.path()).unwrap_err();
    assert!(matches!(err, IngestError::Manifest { .. }));
    assert!(
        err.to_string()
            .contains("not valid JSON: EOF while parsing"),
        "{err}"
    );
}

fn event(attributes: Value, objects: Value) -> Vec<u8> {
    json!({"Event": {
        "uuid": EV1, "published": true, "distribution": "3",
        "Orgc": {"name": "Synthetic-CERT-A"},
        "Tag": [{"name": "tlp:green"}],
        "Attribute": attributes, "Object": objects,
    }})
    .to_string()
    .into_bytes()
}

const U1: &str = "00000000-0000-4000-8000-000000000001";
const U2: &str = "00000000-0000-4000-8000-000000000002";
const U3: &str = "00000000-0000-4000-8000-000000000003";

#[test]
fn wrappers_and_lists_of_events() {
    let ev = |u: &str, v: &str| {
        json!({"Event": {"uuid": u, "Attribute": [
        {"uuid": u, "type": "domain", "value": v, "to_ids": true}]}})
    };
    let response = json!({"response": [ev(U1, "a.example.com"), ev(U2, "b.example.com")]});
    let list = json!([ev(U1, "a.example.com"), ev(U2, "b.example.com")["Event"]]);
    let want = vec![
        format!("{U1} domain a.example.com AMBER+STRICT"),
        format!("{U2} domain b.example.com AMBER+STRICT"),
    ];
    for doc in [response, list] {
        assert_eq!(
            lines(&parse("events.json", doc.to_string().as_bytes())),
            want,
            "{doc}"
        );
    }
}

#[test]
fn malformed_attributes_are_each_one_clear_reject() {
    let big = "x".repeat(10 * 1024 * 1024);
    let doc = event(
        json!([
            {"uuid": U1, "type": "ip-dst", "value": "198.51.100.1", "to_ids": "yes"},
            {"uuid": U2, "type": "ip-dst", "value": 3325256727u64, "to_ids": true},
            {"uuid": U3, "type": "weird-type", "value": "x", "to_ids": true},
            {"uuid": "00000000-0000-4000-8000-000000000004", "type": "url", "value": format!("http://{big}.example.com/"), "to_ids": true},
            {"type": "domain", "value": "example.com"},
        ]),
        json!([]),
    );
    let got = lines(&parse("big.json", &doc));
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        got[0],
        format!("invalid {U1}: `to_ids` is the string \"yes\", expected true or false")
    );
    assert_eq!(
        got[1],
        format!("invalid {U2}: `value` is the number 3325256727, expected a string")
    );
    assert_eq!(
        got[2],
        format!("unsupported {U3}: unknown MISP attribute type `weird-type`")
    );
    assert!(
        got[3].starts_with("invalid 00000000-0000-4000-8000-000000000004: `http://xxx"),
        "{}",
        &got[3][..100]
    );
    assert!(got[3].contains("more than the 8192 accepted"));
    assert!(got[3].len() < 400);
    assert_eq!(
        got[4],
        format!("invalid event {EV1} attribute 5: attribute has no `uuid`")
    );
}

#[test]
fn broken_files_are_one_reject_each() {
    let whole = std::fs::read(format!("{FEED}/{EV1}.json")).unwrap();
    let truncated = &whole[..whole.len() / 2];
    let got = lines(&parse("half.json", truncated));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            "invalid file: not valid JSON: EOF while parsing a string at line 143 column 63"
        ),
        "{got:?}"
    );
    assert!(got[0].ends_with("(the file ends early: truncated?)"));

    let mut latin1 = whole.clone();
    let at = latin1.windows(6).position(|w| w == b"C2 cal").unwrap();
    latin1[at + 1] = 0xb2; // `²` in Latin-1
    let got = lines(&parse("latin1.json", &latin1));
    assert_eq!(got, vec!["invalid file: not valid UTF-8 at line 40 column 22 (byte offset 1051); MISP JSON must be UTF-8".to_string()]);

    // Every prefix of a real event is either a complete document or one reject; none panics.
    let complete = whole.trim_ascii_end().len();
    for end in (0..complete).step_by(13) {
        let b = parse("prefix.json", &whole[..end]);
        assert_eq!(b.items.len(), 1, "prefix of {end} bytes");
    }
    // 14 attributes, one of them a `domain|ip`.
    assert_eq!(parse("whole.json", &whole[..complete]).items.len(), 15);
}

#[test]
fn deletion_and_distribution_are_inherited_from_objects() {
    let md5 = "e69894213ec071803808fb5c7e66ab8d";
    let doc = event(
        json!([{"uuid": U1, "type": "domain", "value": "a.example.com", "to_ids": true, "distribution": "5"}]),
        json!([
            {"uuid": U2, "name": "file", "deleted": true, "Attribute": [
                {"uuid": U3, "type": "md5", "value": md5, "to_ids": true}]},
            {"name": "domain-ip", "distribution": "1", "Attribute": [
                {"uuid": "00000000-0000-4000-8000-000000000005", "type": "domain", "value": "b.example.com",
                 "to_ids": true, "distribution": "5"},
                {"uuid": "00000000-0000-4000-8000-000000000006", "type": "ip-dst", "value": "192.0.2.9",
                 "to_ids": true, "distribution": "4", "SharingGroup": {"uuid": U1}}]},
        ]),
    );
    let b = parse("inherit.json", &doc);
    assert_eq!(
        lines(&b),
        vec![
            format!("{U1} domain a.example.com GREEN"),
            format!("skipped {U3}: deleted (revoked) attribute: its object {U2} is deleted"),
            "00000000-0000-4000-8000-000000000005 domain b.example.com GREEN".to_string(),
            "00000000-0000-4000-8000-000000000006 ipv4 192.0.2.9 GREEN".to_string(),
        ]
    );
    let dist: Vec<Option<u8>> = b
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Indicator { indicator, .. } => Some(indicator.distribution),
            Item::Rejected(_) => None,
        })
        .collect();
    // Event 3; object 1 narrows both members, even the one in a sharing group.
    assert_eq!(dist, vec![Some(3), Some(1), Some(1)]);
}

#[test]
fn fuzz_seeds_each_give_an_account() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/misp_event");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let b = parse(&path.display().to_string(), &std::fs::read(&path).unwrap());
        assert!(!b.items.is_empty(), "{}", path.display());
        for line in lines(&b) {
            assert!(!line.ends_with(": "), "{}: {line}", path.display());
            if std::env::var_os("MISP_SEEDS_VERBOSE").is_some() {
                println!("{}: {line}", path.file_name().unwrap().to_string_lossy());
            }
        }
        seen += 1;
    }
    assert!(seen >= 15, "{seen} seeds");
}

/// Found by fuzzing: a tag whose fourth byte falls inside a multi-byte character made the
/// TLP-prefix check slice a `str` mid-character (a panic on a CERT's feed).
#[test]
fn a_tag_with_multibyte_characters_near_the_start_is_read_not_a_panic() {
    let doc = json!({"Event": {
        "uuid": EV1, "published": true,
        "Tag": [{"name": "tlpƞmber"}, {"name": "tlƞ:x"}, {"name": "tlp:green"}],
        "Attribute": [{"uuid": U1, "type": "domain", "value": "a.example.com", "to_ids": true}],
    }})
    .to_string();
    let b = parse("e.json", doc.as_bytes());
    assert_eq!(lines(&b), [format!("{U1} domain a.example.com GREEN")]);
}
