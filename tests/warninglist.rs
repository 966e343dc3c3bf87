//! MISP warninglists: the synthetic example lists (FORMATS.md §8.1), the real upstream set,
//! and suppression through the ingest driver.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cwn::indicator::{Indicator, Kind, Tlp, normalize};
use cwn::ingest::warninglist::{ListType, Suppression};
use cwn::ingest::{self, Category, Detected, Ingest, SourceOptions, Warninglists};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/examples/warninglists");

const RESOLVERS: &str = "Synthetic public DNS resolvers (test data)";
const BENIGN_HOSTS: &str = "Synthetic benign update hosts (test data)";
const EMPTY_HASHES: &str = "Hashes of the empty file";
const ROLE_MAILBOXES: &str = "Synthetic role mailboxes (test data)";

/// An indicator as a parser would produce it: normalised from its raw form.
fn indicator(kind: Kind, raw: &str) -> Indicator {
    let n = normalize::indicator_value(kind, raw)
        .unwrap_or_else(|e| panic!("{kind} `{raw}` does not normalise: {e}"));
    Indicator::new("test", n.kind, n.value, Arc::from("test"), Tlp::Amber)
}

fn check<'a>(lists: &'a Warninglists, kind: Kind, raw: &str) -> Option<Suppression<'a>> {
    lists.check(&indicator(kind, raw))
}

fn examples() -> Warninglists {
    let lists = Warninglists::load(Path::new(EXAMPLES)).expect("example warninglists load");
    lists.validate();
    lists
}

#[test]
fn example_lists_load_in_directory_order() {
    let lists = examples();
    assert_eq!(lists.problems(), &[] as &[String]);
    let loaded: Vec<_> = lists
        .lists()
        .map(|l| (l.name, l.version, l.list_type, l.entries))
        .collect();
    assert_eq!(
        loaded,
        [
            (EMPTY_HASHES, 1, ListType::String, 3),
            (BENIGN_HOSTS, 3, ListType::Hostname, 2),
            (RESOLVERS, 1, ListType::Cidr, 2),
            (ROLE_MAILBOXES, 1, ListType::Regex, 1),
        ]
    );
    assert!(
        lists
            .lists()
            .all(|l| l.path.starts_with(EXAMPLES) && l.path.ends_with("/list.json"))
    );
}

#[test]
fn example_lists_suppress_what_formats_8_1_says() {
    let lists = examples();
    let suppressed: [(Kind, &str, &str, u64, &str); 7] = [
        (
            Kind::Ipv4,
            "198.51.100.53",
            RESOLVERS,
            1,
            "198.51.100.53/32",
        ),
        (
            Kind::IpPort,
            "198.51.100.53|53",
            RESOLVERS,
            1,
            "198.51.100.53/32",
        ),
        (
            Kind::Ipv6,
            "2001:db8:53::35",
            RESOLVERS,
            1,
            "2001:db8:53::/48",
        ),
        (
            Kind::Url,
            "http://update.example.net/check.php",
            BENIGN_HOSTS,
            3,
            "update.example.net",
        ),
        (
            Kind::Md5,
            "D41D8CD98F00B204E9800998ECF8427E",
            EMPTY_HASHES,
            1,
            "d41d8cd98f00b204e9800998ecf8427e",
        ),
        (
            Kind::Email,
            "Abuse@Example.com",
            ROLE_MAILBOXES,
            1,
            r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
        ),
        (
            Kind::Domain,
            "ntp.time.example.org",
            BENIGN_HOSTS,
            3,
            "time.example.org",
        ),
    ];
    for (kind, raw, list, version, entry) in suppressed {
        assert_eq!(
            check(&lists, kind, raw),
            Some(Suppression {
                list,
                version,
                entry
            }),
            "{kind} `{raw}`"
        );
    }
    // Everything else of §8.1 stays active.
    let active: [(Kind, &str); 12] = [
        (Kind::Ipv4, "198.51.100.23"),
        (Kind::Domain, "bad-login.example.com"),
        (Kind::Url, "https://bad-login.example.com/owa/auth.php?id=1"),
        (Kind::IpPort, "203.0.113.45|8443"),
        (Kind::Domain, "cdn.example.net"),
        (Kind::Ipv4, "198.51.100.77"),
        (Kind::Email, "phisher@example.org"),
        (Kind::Cidr, "203.0.113.0/28"),
        (Kind::Ipv6, "2001:db8:bad::10"),
        (Kind::Hostname, "c2.malware.test"),
        (Kind::Domain, "login-verify.example.net"),
        (
            Kind::Sha256,
            "68ec9a4e1c6a2b05b3e2f9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0e5e5",
        ),
    ];
    for (kind, raw) in active {
        assert_eq!(check(&lists, kind, raw), None, "{kind} `{raw}`");
    }
    // The matching_attributes filters: the resolver list names no domain type, the hash list
    // no JA3, the mailbox list no User-Agent.
    assert_eq!(
        check(&lists, Kind::Ja3, "d41d8cd98f00b204e9800998ecf8427e"),
        None
    );
    assert_eq!(check(&lists, Kind::UserAgent, "abuse@example.com"), None);
}

#[test]
fn a_single_list_file_loads() {
    let path = Path::new(EXAMPLES).join("synthetic-public-resolvers/list.json");
    let lists = Warninglists::load(&path).unwrap();
    assert_eq!(lists.len(), 1);
    assert_eq!(
        check(&lists, Kind::Ipv4, "198.51.100.53").map(|s| s.list),
        Some(RESOLVERS)
    );
    assert_eq!(
        check(&lists, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        None
    );
}

#[test]
fn a_bad_list_file_fails_the_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("a-good");
    let bad = dir.path().join("b-bad");
    fs::create_dir_all(&good).unwrap();
    fs::create_dir_all(&bad).unwrap();
    fs::write(
        good.join("list.json"),
        r#"{"name": "good", "version": 1, "list": ["x.example"]}"#,
    )
    .unwrap();
    fs::write(bad.join("list.json"), r#"{"name": "bad", "version": 1}"#).unwrap();
    let e = Warninglists::load(dir.path()).unwrap_err();
    assert_eq!(e.path, bad.join("list.json").display().to_string());
    assert_eq!(e.reason, "no `list`");

    let empty = tempfile::tempdir().unwrap();
    let e = Warninglists::load(empty.path()).unwrap_err();
    assert!(e.reason.contains("no `list.json`"), "{e}");
    assert!(Warninglists::load(&empty.path().join("missing")).is_err());
}

#[test]
fn the_ingest_driver_reports_suppressions_per_list() {
    let list = b"198.51.100.53\n\
        http://update.example.net/check.php\n\
        d41d8cd98f00b204e9800998ecf8427e\n\
        198.51.100.23\n\
        bad-login.example.com\n\
        203.0.113.45:8443\n";
    let batch = ingest::parse_bytes(Detected::Plain, "feed.txt", list, &SourceOptions::default());
    let mut driver = Ingest::new(Some(examples()));
    driver.add(batch);
    let (set, report, rejects) = driver.finish();
    assert_eq!((report.accepted, report.suppressed), (3, 3));
    assert_eq!(set.len(), 3);
    let by_list: Vec<(&str, u64)> = report
        .suppressed_by_list
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_list,
        [
            ("Hashes of the empty file (version 1)", 1),
            ("Synthetic benign update hosts (test data) (version 3)", 1),
            ("Synthetic public DNS resolvers (test data) (version 1)", 1),
        ]
    );
    let first = &rejects[0];
    assert_eq!(
        (first.source.as_str(), first.record.as_str(), first.category),
        ("feed.txt", "line 1", Category::Suppressed)
    );
    assert!(
        first
            .reason
            .contains("warninglist `Synthetic public DNS resolvers (test data)` (version 1)"),
        "{}",
        first.reason
    );
}

/// Extracts the upstream tarball (`lists/<name>/list.json`) into a temporary directory.
fn extract_real() -> Option<(tempfile::TempDir, PathBuf)> {
    let file = fs::File::open(crate::util::shared_real("misp-warninglists.tar.gz")?).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(dir.path())
        .unwrap();
    let root = dir.path().to_path_buf();
    Some((dir, root))
}

#[test]
fn all_real_upstream_lists_load() {
    let Some((_dir, root)) = extract_real() else {
        return;
    };
    let started = std::time::Instant::now();
    let lists = Warninglists::load(&root).unwrap();
    eprintln!(
        "{} real warninglists loaded in {:?}; {} problems:",
        lists.len(),
        started.elapsed(),
        lists.problems().len()
    );
    for p in lists.problems() {
        eprintln!("  {p}");
    }
    lists.validate();
    assert_eq!(lists.len(), 136);
    // Every problem names its list and entry.
    assert!(
        lists
            .problems()
            .iter()
            .all(|p| p.starts_with("list ") && p.contains("): entry `")),
        "{:?}",
        lists.problems()
    );
    let per_type = |t: ListType| lists.lists().filter(|l| l.list_type == t).count();
    assert_eq!(
        ListType::ALL.map(per_type),
        [32, 3, 19, 80, 2],
        "string, substring, hostname, cidr, regex"
    );

    let suppressed: [(Kind, &str, &str); 8] = [
        (
            Kind::Ipv4,
            "8.8.8.8",
            "List of known IPv4 public DNS resolvers",
        ),
        (
            Kind::IpPort,
            "8.8.8.8:53",
            "List of known IPv4 public DNS resolvers",
        ),
        (Kind::Ipv4, "10.1.2.3", "List of RFC 1918 CIDR blocks"),
        (Kind::Cidr, "192.168.0.0/24", "List of RFC 1918 CIDR blocks"),
        (Kind::Ipv6, "fe80::1", "List of IPv6 link local blocks"),
        (
            Kind::Domain,
            "foo.duckdns.org",
            "List of known dynamic DNS domains",
        ),
        (
            Kind::Email,
            "abuse@corp.example",
            "Common contact e-mail addresses",
        ),
        (
            Kind::Md5,
            "d41d8cd98f00b204e9800998ecf8427e",
            "List of known hashes with common false-positives (based on Florian Roth input list)",
        ),
    ];
    for (kind, raw, list) in suppressed {
        assert_eq!(
            check(&lists, kind, raw).map(|s| s.list),
            Some(list),
            "{kind} `{raw}`"
        );
    }
    // `hostname` lists that name `url` cover every URL on the host, as in MISP: a popular
    // site's lists suppress URLs with paths on it too (FORMATS.md §2.2).
    assert_eq!(
        check(&lists, Kind::Url, "https://github.com/evil/payload.exe").map(|s| (s.list, s.entry)),
        Some(("Top 1000 website from Alexa", "github.com"))
    );
    assert_eq!(check(&lists, Kind::Hostname, "c2.malware.test"), None);

    // The empty-file hashes are on their own list too, whatever comes first in load order.
    let empty = Warninglists::load(&root.join("lists/empty-hashes")).unwrap();
    assert_eq!(
        check(&empty, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e").map(|s| s.list),
        Some("List of known hashes for empty files")
    );
    assert_eq!(
        check(
            &empty,
            Kind::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .map(|s| s.list),
        Some("List of known hashes for empty files")
    );
}

#[test]
fn fuzz_seeds_load_or_fail_cleanly() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/warninglist"
    ));
    let mut seeds: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    let probes: [(Kind, &str); 10] = [
        (Kind::Ipv4, "198.51.100.53"),
        (Kind::Ipv6, "2001:db8:53::1"),
        (Kind::Cidr, "203.0.113.0/28"),
        (Kind::IpPort, "[2001:db8:53::1]:53"),
        (Kind::Domain, "shop.update.example.net"),
        (Kind::Url, "https://update.example.net/A?b=C"),
        (Kind::Email, "abuse@example.com"),
        (Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        (Kind::UserAgent, "Python-urllib/3.11"),
        (Kind::Uri, "/gate.php"),
    ];
    let mut failed = Vec::new();
    let mut all = Warninglists::default();
    for seed in &seeds {
        let name = seed.file_name().unwrap().to_string_lossy().into_owned();
        match Warninglists::parse(&name, &fs::read(seed).unwrap()) {
            Ok(lists) => {
                lists.validate();
                for (kind, raw) in probes {
                    lists.check(&indicator(kind, raw));
                }
                all.extend(lists);
            }
            Err(e) => {
                assert!(e.to_string().starts_with(&format!("{name}: ")), "{e}");
                failed.push(name);
            }
        }
    }
    all.validate();
    assert_eq!(all.len(), 7);
    assert_eq!(
        failed,
        [
            "missing-list.json",
            "truncated.json",
            "unknown-type.json",
            "wrong-types.json"
        ]
    );
    // Of the lists that match, the first in load order (file-name order) wins.
    assert_eq!(
        check(&all, Kind::Ipv4, "198.51.100.53").map(|s| s.list),
        Some("cidr mixed")
    );
    assert_eq!(
        check(&all, Kind::Email, "abuse@example.com").map(|s| s.list),
        Some("regexes")
    );
}
