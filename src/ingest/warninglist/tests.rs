//! Tests of the warninglists: loading, every list type, the index against a naive check.

use std::sync::Arc;

use super::*;
use crate::indicator::Tlp;

fn ind(kind: Kind, value: &str) -> Indicator {
    Indicator::new("t", kind, value, Arc::from("test"), Tlp::Green)
}

fn list(name: &str, ty: &str, attrs: &[&str], entries: &[&str]) -> String {
    serde_json::json!({
        "name": name, "version": 7, "description": "test", "type": ty,
        "matching_attributes": attrs, "list": entries,
    })
    .to_string()
}

fn lists(docs: &[String]) -> Warninglists {
    lists_of(docs)
}

fn lists_of(docs: &[String]) -> Warninglists {
    let mut all = Warninglists::default();
    for (i, d) in docs.iter().enumerate() {
        all.extend(Warninglists::parse(&format!("l{i}/list.json"), d.as_bytes()).unwrap());
    }
    all.validate();
    all
}

fn hit(wl: &Warninglists, kind: Kind, value: &str) -> Option<(String, String)> {
    wl.check(&ind(kind, value))
        .map(|s| (s.list.to_string(), s.entry.to_string()))
}

/// Kind, value, and the expected (list, entry).
type Case = (Kind, &'static str, Option<(String, String)>);

fn yes(list: &str, entry: &str) -> Option<(String, String)> {
    Some((list.to_string(), entry.to_string()))
}

#[test]
fn kinds_fit_in_the_mask() {
    for k in Kind::ALL {
        assert!((k as u32) < 32, "{k}");
    }
    assert_eq!(kind_mask(&[]).count_ones() as usize, Kind::ALL.len());
}

#[test]
fn matching_attributes_select_kinds() {
    let attrs = |a: &[&str]| kind_mask(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let cases: [(&[&str], &[Kind], &[Kind]); 4] = [
        (
            &["ip-dst"],
            &[Kind::Ipv4, Kind::Ipv6, Kind::Cidr, Kind::IpPort],
            &[Kind::Domain, Kind::Url],
        ),
        (&["md5"], &[Kind::Md5], &[Kind::Sha1, Kind::Ja3]),
        (&["email-src"], &[Kind::Email], &[Kind::Domain]),
        (
            &["url"],
            &[Kind::Url, Kind::UrlSubstring, Kind::Uri],
            &[Kind::Domain, Kind::Hostname],
        ),
    ];
    for (a, inside, outside) in cases {
        let m = attrs(a);
        for k in inside {
            assert!(m & kind_bit(*k) != 0, "{a:?} should apply to {k}");
        }
        for k in outside {
            assert!(m & kind_bit(*k) == 0, "{a:?} should not apply to {k}");
        }
    }
    // The filter in action: the same value passes when the kind is not listed.
    let wl = lists(&[list(
        "hashes",
        "string",
        &["sha1"],
        &["d41d8cd98f00b204e9800998ecf8427e"],
    )]);
    assert_eq!(
        hit(&wl, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        None
    );
    let wl = lists(&[list(
        "hashes",
        "string",
        &[],
        &["d41d8cd98f00b204e9800998ecf8427e"],
    )]);
    assert_eq!(
        hit(&wl, Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        yes("hashes", "d41d8cd98f00b204e9800998ecf8427e")
    );
    assert_eq!(
        hit(&wl, Kind::Ja3, "d41d8cd98f00b204e9800998ecf8427e"),
        yes("hashes", "d41d8cd98f00b204e9800998ecf8427e")
    );
}

#[test]
fn string_lists() {
    let wl = lists(&[
        list(
            "tlds",
            "string",
            &[],
            &["COM", ".google.ad", "Mozilla/5.0 X", "http://example.com/A"],
        ),
        list(
            "top",
            "string",
            &["domain", "url", "ip-dst|port", "ip-dst"],
            &["popular.example", "198.51.100.7"],
        ),
    ]);
    let cases: [Case; 12] = [
        (Kind::Domain, "google.ad", yes("tlds", ".google.ad")),
        (Kind::Domain, "www.google.ad", None),
        (
            Kind::Domain,
            "popular.example",
            yes("top", "popular.example"),
        ),
        (Kind::Domain, "sub.popular.example", None),
        (
            Kind::UserAgent,
            "Mozilla/5.0 X",
            yes("tlds", "Mozilla/5.0 X"),
        ),
        (Kind::UserAgent, "mozilla/5.0 x", None),
        (
            Kind::Url,
            "http://example.com/A",
            yes("tlds", "http://example.com/A"),
        ),
        (Kind::Url, "http://example.com/a", None),
        // The host of a URL counts only when the URL is just the host.
        (
            Kind::Url,
            "https://popular.example/",
            yes("top", "popular.example"),
        ),
        (Kind::Url, "https://popular.example/malware.exe", None),
        (Kind::IpPort, "198.51.100.7:443", yes("top", "198.51.100.7")),
        (Kind::Ipv4, "198.51.100.7", yes("top", "198.51.100.7")),
    ];
    for (k, v, want) in cases {
        assert_eq!(hit(&wl, k, v), want, "{k} {v}");
    }
}

#[test]
fn substring_lists() {
    let wl = lists(&[
        list(
            "disposable",
            "substring",
            &["email-src", "domain"],
            &["0-mail.com", "Trash"],
        ),
        list("ua", "substring", &["user-agent"], &["Python-urllib"]),
    ]);
    let cases: [Case; 8] = [
        (
            Kind::Email,
            "someone@0-mail.com",
            yes("disposable", "0-mail.com"),
        ),
        (Kind::Domain, "x0-mail.com", yes("disposable", "0-mail.com")),
        (
            Kind::Domain,
            "trashmail.example",
            yes("disposable", "Trash"),
        ),
        (Kind::Url, "http://0-mail.com/", None),
        (
            Kind::UserAgent,
            "Python-urllib/3.11",
            yes("ua", "Python-urllib"),
        ),
        // User-Agents keep their case.
        (Kind::UserAgent, "python-urllib/3.11", None),
        (Kind::UserAgent, "curl/8", None),
        (Kind::Domain, "0-mail.co", None),
    ];
    for (k, v, want) in cases {
        assert_eq!(hit(&wl, k, v), want, "{k} {v}");
    }
}

#[test]
fn hostname_lists() {
    let wl = lists(&[list(
        "hosts",
        "hostname",
        &["domain", "hostname", "url", "email-src"],
        &[
            ".Update.Example.NET.",
            "bücher.example",
            "local",
            "рф",
            "corona helden",
        ],
    )]);
    assert_eq!(wl.problems().len(), 1, "{:?}", wl.problems());
    assert!(
        wl.problems()[0].contains("entry `corona helden`: not a host name"),
        "{:?}",
        wl.problems()
    );
    let cases: [Case; 11] = [
        (Kind::Domain, "shop.xn--p1ai", yes("hosts", "рф")),
        (
            Kind::Domain,
            "update.example.net",
            yes("hosts", ".Update.Example.NET."),
        ),
        (
            Kind::Hostname,
            "a.b.update.example.net",
            yes("hosts", ".Update.Example.NET."),
        ),
        (Kind::Domain, "xupdate.example.net", None),
        (Kind::Domain, "example.net", None),
        (
            Kind::Domain,
            "shop.xn--bcher-kva.example",
            yes("hosts", "bücher.example"),
        ),
        (Kind::Hostname, "printer.local", yes("hosts", "local")),
        (
            Kind::Url,
            "http://update.example.net/check.php",
            yes("hosts", ".Update.Example.NET."),
        ),
        (
            Kind::Url,
            "https://cdn.update.example.net:8443/x?y=1",
            yes("hosts", ".Update.Example.NET."),
        ),
        (
            Kind::Email,
            "ops@mail.update.example.net",
            yes("hosts", ".Update.Example.NET."),
        ),
        (Kind::Ipv4, "198.51.100.1", None),
    ];
    for (k, v, want) in cases {
        assert_eq!(hit(&wl, k, v), want, "{k} {v}");
    }
}

#[test]
fn cidr_lists() {
    let wl = lists(&[
        list(
            "resolvers",
            "cidr",
            &["ip-dst", "ip-dst|port"],
            &[
                "198.51.100.53",
                "2001:db8:53::/48",
                "not-an-ip",
                "10.0.0.0/33",
            ],
        ),
        list(
            "wide",
            "cidr",
            &["ip-src", "ip-dst", "url"],
            &["198.51.100.0/24", "203.0.113.0/28", "::ffff:192.0.2.0/120"],
        ),
        list("src-only", "cidr", &["ip-src|port"], &["192.0.2.0/24"]),
    ]);
    assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
    assert!(wl.problems()[0].starts_with("list resolvers (version 7): entry `not-an-ip`: "));
    let cases: [Case; 13] = [
        (
            Kind::Ipv4,
            "198.51.100.53",
            yes("resolvers", "198.51.100.53"),
        ),
        (Kind::Ipv4, "198.51.100.54", yes("wide", "198.51.100.0/24")),
        (
            Kind::IpPort,
            "198.51.100.53:53",
            yes("resolvers", "198.51.100.53"),
        ),
        (
            Kind::IpPort,
            "[2001:db8:53::1]:53",
            yes("resolvers", "2001:db8:53::/48"),
        ),
        (
            Kind::Ipv6,
            "2001:db8:53:ffff::1",
            yes("resolvers", "2001:db8:53::/48"),
        ),
        (Kind::Ipv6, "2001:db8:54::1", None),
        (
            Kind::Cidr,
            "198.51.100.0/25",
            yes("wide", "198.51.100.0/24"),
        ),
        (Kind::Cidr, "203.0.113.0/24", None),
        (
            Kind::Cidr,
            "2001:db8:53:1::/64",
            yes("resolvers", "2001:db8:53::/48"),
        ),
        (Kind::Ipv4, "192.0.2.9", yes("wide", "::ffff:192.0.2.0/120")),
        (
            Kind::Url,
            "http://198.51.100.9/x",
            yes("wide", "198.51.100.0/24"),
        ),
        (Kind::Ipv4, "203.0.113.16", None),
        (Kind::Domain, "198.51.100.53.example", None),
    ];
    for (k, v, want) in cases {
        assert_eq!(hit(&wl, k, v), want, "{k} {v}");
    }
}

#[test]
fn pcre_patterns_translate() {
    let cases: [(&str, Result<&str, &str>); 11] = [
        (
            r"/^(abuse|noc)@example\.(com|org)$/i",
            Ok(r"(?i)^(abuse|noc)@example\.(com|org)$"),
        ),
        (
            r"/((?:\+|00)1)?55501([0-9]{2})/g",
            Ok(r"((?:\+|00)1)?55501([0-9]{2})"),
        ),
        (r"#a/b#ms", Ok("(?ms)a/b")),
        (r"/a\/b/", Ok(r"a\/b")),
        (r"/\<a\>\Z/", Ok(r"<a>\z")),
        (r"{a{1,2}}x", Ok("(?x)a{1,2}")),
        (r"/abc/A", Ok(r"\A(?:abc)")),
        (r"^bare$", Ok("^bare$")),
        (r"abc", Ok("abc")),
        (r"/abc", Err("no ending delimiter `/`")),
        (r"/abc/q", Err("unknown pattern flag `q`")),
    ];
    for (input, want) in cases {
        assert_eq!(
            translate_pcre(input).as_deref(),
            want.map_err(|e| e.to_string()).as_deref(),
            "{input}"
        );
    }
}

#[test]
fn regex_lists() {
    let wl = lists(&[list(
        "roles",
        "regex",
        &["email-src", "email-dst"],
        &[
            r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
            r"/^(security|noc|soc|abuse)\@.*\..*$/i",
            r"/^(?=admin)admin@/",
            r"/(a)\1/",
        ],
    )]);
    assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
    assert!(
        wl.problems().iter().all(|p| p.contains("E_WL_REGEX")),
        "{:?}",
        wl.problems()
    );
    assert!(wl.problems()[0].starts_with("list roles (version 7): entry `/^(?=admin)admin@/`: "));
    assert_eq!(
        wl.lists().next().map(|l| (l.entries, l.skipped)),
        Some((2, 2))
    );
    let cases: [Case; 5] = [
        (
            Kind::Email,
            "abuse@example.com",
            yes(
                "roles",
                r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
            ),
        ),
        (
            Kind::Email,
            "SOC@corp.example",
            yes("roles", r"/^(security|noc|soc|abuse)\@.*\..*$/i"),
        ),
        (Kind::Email, "phisher@example.org", None),
        // Not an e-mail kind: the list does not apply.
        (Kind::UserAgent, "abuse@example.com", None),
        (
            Kind::Email,
            "noc@example.net",
            yes(
                "roles",
                r"/^(abuse|noc|security|postmaster)@example\.(com|net|org)$/i",
            ),
        ),
    ];
    for (k, v, want) in cases {
        assert_eq!(hit(&wl, k, v), want, "{k} {v}");
    }
}

#[test]
fn first_list_in_load_order_wins() {
    let wl = lists(&[
        list("a-hostname", "hostname", &[], &["example.net"]),
        list("b-string", "string", &[], &["www.example.net"]),
        list("c-cidr", "cidr", &[], &["198.51.100.0/24"]),
        list("d-cidr", "cidr", &[], &["198.51.100.0/28"]),
        list("e-substring", "substring", &[], &["example"]),
    ]);
    assert_eq!(
        hit(&wl, Kind::Domain, "www.example.net"),
        yes("a-hostname", "example.net")
    );
    assert_eq!(
        hit(&wl, Kind::Ipv4, "198.51.100.1"),
        yes("c-cidr", "198.51.100.0/24")
    );
    assert_eq!(
        hit(&wl, Kind::Domain, "example.org"),
        yes("e-substring", "example")
    );
    let wl = lists(&[
        list("d-cidr", "cidr", &[], &["198.51.100.0/28"]),
        list("c-cidr", "cidr", &[], &["198.51.100.0/24"]),
    ]);
    assert_eq!(
        hit(&wl, Kind::Ipv4, "198.51.100.1"),
        yes("d-cidr", "198.51.100.0/28")
    );
    // The /24 network lies in c-cidr only.
    assert_eq!(
        hit(&wl, Kind::Cidr, "198.51.100.0/24"),
        yes("c-cidr", "198.51.100.0/24")
    );
}

#[test]
fn list_files_are_validated() {
    let cases: [(&str, &str); 9] = [
        ("not json", "not a JSON document"),
        ("[]", "a warninglist is a JSON object, found an array"),
        (r#"{"version": 1, "list": []}"#, "no `name`"),
        (r#"{"name": "x", "list": []}"#, "no `version`"),
        (
            r#"{"name": "x", "version": "v2", "list": []}"#,
            "`version` must be a non-negative integer",
        ),
        (r#"{"name": "x", "version": 1}"#, "no `list`"),
        (
            r#"{"name": "x", "version": 1, "list": "a"}"#,
            "`list` must be an array of strings or an object, found a string",
        ),
        (
            r#"{"name": "x", "version": 1, "type": "glob", "list": []}"#,
            "unknown `type` \"glob\"",
        ),
        (
            r#"{"name": "x", "version": 1, "matching_attributes": "md5", "list": []}"#,
            "`matching_attributes` must be an array",
        ),
    ];
    for (json, want) in cases {
        let e = Warninglists::parse("bad/list.json", json.as_bytes()).unwrap_err();
        assert_eq!(e.path, "bad/list.json");
        assert!(e.reason.contains(want), "{json}: {e}");
        assert!(e.to_string().starts_with("bad/list.json: "), "{e}");
    }
}

#[test]
fn lenient_forms_are_accepted() {
    // No type (string), an object list, a numeric-string version, a non-string entry.
    let wl = Warninglists::parse(
        "x/list.json",
        br#"{"name": "x", "version": "3", "list": {"a.example": "comment", "b.example": ""}}"#,
    )
    .unwrap();
    let s: Vec<_> = wl.lists().collect();
    assert_eq!(
        (s[0].version, s[0].list_type, s[0].entries),
        (3, ListType::String, 2)
    );
    assert_eq!(hit(&wl, Kind::Domain, "b.example"), yes("x", "b.example"));
    let wl = Warninglists::parse(
        "y/list.json",
        br#"{"name": "y", "version": 1, "list": ["a", 5, ""]}"#,
    )
    .unwrap();
    assert_eq!(
        wl.problems(),
        [
            "list y (version 1): entry `5`: not a string",
            "list y (version 1): entry ``: empty entry"
        ]
    );
}

#[test]
fn higher_version_replaces_lower() {
    let v = |n: u64, entry: &str| {
        serde_json::json!({"name": "dup", "version": n, "type": "string", "list": [entry]})
            .to_string()
    };
    let mut wl = Warninglists::parse("a/list.json", v(2, "a.example").as_bytes()).unwrap();
    wl.extend(Warninglists::parse("b/list.json", v(1, "b.example").as_bytes()).unwrap());
    wl.extend(Warninglists::parse("c/list.json", v(3, "c.example").as_bytes()).unwrap());
    assert_eq!(wl.len(), 1);
    assert_eq!(
        wl.lists().next().map(|l| (l.version, l.path)),
        Some((3, "c/list.json"))
    );
    assert_eq!(hit(&wl, Kind::Domain, "a.example"), None);
    assert_eq!(hit(&wl, Kind::Domain, "c.example"), yes("dup", "c.example"));
    assert_eq!(wl.problems().len(), 2, "{:?}", wl.problems());
    assert!(
        wl.problems()[0].contains("(version 1) from b/list.json ignored"),
        "{:?}",
        wl.problems()
    );
}

#[test]
fn empty_set_suppresses_nothing() {
    let wl = Warninglists::default();
    assert!(wl.is_empty());
    assert_eq!(wl.check(&ind(Kind::Ipv4, "198.51.100.1")), None);
    wl.validate();
}

#[test]
fn range_table_handles_the_whole_address_space() {
    let h = |list| Hit { list, entry: 0 };
    let t = RangeTable::build(vec![
        (0, u32::MAX, h(1)),
        (u32::MAX - 1, u32::MAX, h(0)),
        (0, 0, h(2)),
    ]);
    t.validate();
    let lists = |a, b| t.covering(a, b).map(|h| h.list).collect::<Vec<_>>();
    assert_eq!(lists(0, 0), [1, 2]);
    assert_eq!(lists(0, 1), [1]);
    assert_eq!(lists(0x8000_0000, 0x8000_0000), [1]);
    assert_eq!(lists(u32::MAX, u32::MAX), [0, 1]);
    assert_eq!(lists(u32::MAX - 2, u32::MAX), [1]);
    let t6 = RangeTable::build(vec![(u128::MAX, u128::MAX, h(3))]);
    t6.validate();
    assert_eq!(t6.covering(u128::MAX, u128::MAX).count(), 1);
    assert_eq!(t6.covering(u128::MAX - 1, u128::MAX - 1).count(), 0);
}

/// Whether a list entry of type `ty` covers a (lower-case) domain, by the definitions of
/// FORMATS.md §2.2.
fn naive_covers(ty: &str, entry: &str, value: &str) -> bool {
    let host = entry.trim_matches('.').to_ascii_lowercase();
    match ty {
        "string" => value == host,
        "substring" => value.contains(&entry.to_ascii_lowercase()),
        "hostname" => value == host || value.ends_with(&format!(".{host}")),
        _ => false,
    }
}

proptest::proptest! {
    /// Domains against string, substring and hostname lists agree with the definitions,
    /// prefilters (key filter, gram set) notwithstanding.
    #[test]
    fn domain_checks_match_naive(
        order in proptest::sample::select(vec![
            ["string", "substring", "hostname"],
            ["hostname", "string", "substring"],
            ["substring", "hostname", "string"],
        ]),
        entries in proptest::collection::vec(
            proptest::collection::vec("[ab]{1,3}(\\.[ab]{1,3}){0,2}", 1..6), 3),
        long_substrings in proptest::bool::ANY,
        values in proptest::collection::vec("[ab]{1,3}(\\.[ab]{1,3}){1,3}", 1..24),
    ) {
        let lists: Vec<(&str, Vec<String>)> = order
            .iter()
            .zip(entries)
            .map(|(ty, mut es)| {
                if *ty == "substring" && long_substrings {
                    // At least GRAM bytes: the gram prefilter is in play.
                    es.iter_mut().for_each(|e| while e.len() < GRAM { e.push('a') });
                }
                if *ty != "substring" {
                    es.iter_mut().for_each(|e| if e.len() % 2 == 0 { *e = e.to_uppercase() });
                }
                (*ty, es)
            })
            .collect();
        let docs: Vec<String> = lists
            .iter()
            .map(|(ty, es)| {
                let es: Vec<&str> = es.iter().map(String::as_str).collect();
                list(ty, ty, &["domain"], &es)
            })
            .collect();
        let wl = lists_of(&docs);
        for v in values {
            // The first list in load order with a covering entry; which of its entries
            // is reported is the index's choice, but it must cover the value.
            let want = lists
                .iter()
                .find(|(ty, es)| es.iter().any(|e| naive_covers(ty, e, &v)))
                .map(|(ty, _)| *ty);
            let got = hit(&wl, Kind::Domain, &v);
            proptest::prop_assert_eq!(got.as_ref().map(|g| g.0.as_str()), want, "{}", v);
            if let (Some((_, entry)), Some(ty)) = (&got, want) {
                proptest::prop_assert!(naive_covers(ty, entry, &v), "{} by {}", v, entry);
            }
        }
    }

    /// The segment table agrees with a linear scan over the ranges, at scales that keep
    /// everything in one directory bucket or spread it over many.
    #[test]
    fn range_table_matches_naive(
        scale in proptest::sample::select(vec![1u32, 16_383, 0x0100_0001]),
        ranges in proptest::collection::vec((0u32..64, 0u32..16, 0u32..4), 0..24),
        probes in proptest::collection::vec((0u32..80, 0u32..8), 1..32),
    ) {
        let ranges: Vec<(u32, u32, Hit)> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(a, len, list))| {
                (a * scale, (a + len) * scale, Hit { list, entry: i as u32 })
            })
            .collect();
        let table = RangeTable::build(ranges.clone());
        table.validate();
        for (a, len) in probes {
            let (a, b) = (a * scale, (a + len) * scale);
            let got: Vec<u32> = table.covering(a, b).map(|h| h.list).collect();
            let mut want: Vec<u32> = ranges
                .iter()
                .filter(|r| r.0 <= a && r.1 >= b)
                .map(|r| r.2.list)
                .collect();
            want.sort_unstable();
            want.dedup();
            proptest::prop_assert_eq!(got, want, "[{}, {}]", a, b);
        }
    }
}
