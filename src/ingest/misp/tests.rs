use serde_json::{Value, json};

use super::*;
use crate::ingest::Item;

const EV: &str = "11111111-1111-4111-8111-111111111111";
const A1: &str = "a0000000-0000-4000-8000-000000000001";
const A2: &str = "a0000000-0000-4000-8000-000000000002";
const O1: &str = "0b000000-0000-4000-8000-000000000001";
const SG_A: &str = "5a000000-0000-4000-8000-00000000000a";
const SG_B: &str = "5b000000-0000-4000-8000-00000000000b";

fn run_named(name: &str, doc: &[u8], opts: &SourceOptions) -> Batch {
    let mut b = Batch::new();
    parse_events(doc, &Arc::from(name), opts, &mut b);
    b
}

fn run(doc: &Value) -> Batch {
    run_named(
        "t.json",
        doc.to_string().as_bytes(),
        &SourceOptions::default(),
    )
}

/// An event with the given attributes, tagged `tags`, published.
fn event_with(tags: Value, attributes: Value) -> Value {
    json!({"Event": {
        "uuid": EV, "published": true, "Orgc": {"name": "CERT-X", "uuid": O1},
        "Tag": tags, "Attribute": attributes,
    }})
}

fn attr(t: &str, v: &str) -> Value {
    json!({"uuid": A1, "type": t, "value": v, "to_ids": true, "category": "Network activity"})
}

/// `accepted <record> <kind> <value> <TLP>` or `<category> <record>: <reason>`.
fn lines(b: &Batch) -> Vec<String> {
    b.items
        .iter()
        .map(|i| match i {
            Item::Indicator {
                record, indicator, ..
            } => format!(
                "accepted {record} {} {} {}",
                indicator.kind,
                indicator.value,
                indicator.tlp.name()
            ),
            Item::Rejected(r) => format!("{} {}: {}", r.category, r.record, r.reason),
        })
        .collect()
}

fn indicators(b: &Batch) -> Vec<&Indicator> {
    b.items
        .iter()
        .filter_map(|i| match i {
            Item::Indicator { indicator, .. } => Some(indicator),
            Item::Rejected(_) => None,
        })
        .collect()
}

fn one(b: &Batch) -> String {
    let l = lines(b);
    assert_eq!(l.len(), 1, "{l:#?}");
    l.into_iter().next().unwrap_or_default()
}

#[test]
fn single_types_become_their_kinds() {
    let cases = [
        ("ip-dst", "198.51.100.23", "ipv4 198.51.100.23"),
        ("ip-src", "2001:DB8:bad::10", "ipv6 2001:db8:bad::10"),
        ("ip-dst", "203.0.113.7/28", "cidr 203.0.113.0/28"),
        (
            "domain",
            "Bad-Login.Example.COM.",
            "domain bad-login.example.com",
        ),
        (
            "hostname",
            "c2[.]malware[.]test",
            "hostname c2.malware.test",
        ),
        (
            "url",
            "HTTPS://Bad-Login.Example.COM:443/owa/./auth.php?id=1#x",
            "url https://bad-login.example.com/owa/auth.php?id=1",
        ),
        ("uri", "/owa/auth.php", "uri /owa/auth.php"),
        (
            "user-agent",
            " Mozilla/5.0 (X) ",
            "user-agent Mozilla/5.0 (X)",
        ),
        (
            "email-src",
            "Phisher@Example.ORG",
            "email phisher@example.org",
        ),
        ("target-email", "ceo@example.com", "email ceo@example.com"),
        (
            "md5",
            "E69894213EC071803808FB5C7E66AB8D",
            "md5 e69894213ec071803808fb5c7e66ab8d",
        ),
        (
            "sha1",
            "affad9a414173e45f283562633f24eb2f7b35990",
            "sha1 affad9a414173e45f283562633f24eb2f7b35990",
        ),
        (
            "ja3-fingerprint-md5",
            "0e92fe7dd3421d4a9c1a0cfb3454eee2",
            "ja3 0e92fe7dd3421d4a9c1a0cfb3454eee2",
        ),
        (
            "ja3s-fingerprint-md5",
            "0e92fe7dd3421d4a9c1a0cfb3454eee2",
            "ja3s 0e92fe7dd3421d4a9c1a0cfb3454eee2",
        ),
        (
            "ja4-fingerprint",
            "t13d1516h2_8daaf6152771_e5627efa2ab1",
            "ja4 t13d1516h2_8daaf6152771_e5627efa2ab1",
        ),
        (
            "x509-fingerprint-sha1",
            "AF:FA:D9:A4:14:17:3E:45:F2:83:56:26:33:F2:4E:B2:F7:B3:59:90",
            "sha1 affad9a414173e45f283562633f24eb2f7b35990",
        ),
    ];
    for (t, v, want) in cases {
        let b = run(&event_with(
            json!([{"name": "tlp:green"}]),
            json!([attr(t, v)]),
        ));
        assert_eq!(one(&b), format!("accepted {A1} {want} GREEN"), "{t} {v}");
    }
}

#[test]
fn context_rule_and_unknown_types_are_counted_with_a_reason() {
    let cases = [
        (
            "link",
            "skipped",
            "`link`: a reference link, not an indicator",
        ),
        ("comment", "skipped", "`comment`: free text, context only"),
        ("port", "skipped", "`port`: a port alone is context only"),
        ("AS", "skipped", "`AS`: an AS number is context only"),
        (
            "filename",
            "skipped",
            "`filename`: a file name is context only",
        ),
        (
            "http-method",
            "skipped",
            "`http-method`: an HTTP method is context only",
        ),
        ("yara", "unsupported", "E_RULE_TYPE: `yara` is rule text"),
        ("snort", "unsupported", "E_RULE_TYPE: `snort` is rule text"),
        (
            "pattern-in-file",
            "unsupported",
            "E_RULE_TYPE: `pattern-in-file`",
        ),
        (
            "ssdeep",
            "unsupported",
            "MISP type `ssdeep` is not matched: no telemetry cwn reads carries this digest",
        ),
        (
            "filename|tlsh",
            "unsupported",
            "MISP type `filename|tlsh` is not matched",
        ),
        (
            "jarm-fingerprint",
            "unsupported",
            "MISP type `jarm-fingerprint` is not matched: no telemetry cwn reads carries JARM",
        ),
        (
            "hassh-md5",
            "unsupported",
            "MISP type `hassh-md5` is not matched: no telemetry cwn reads carries HASSH",
        ),
        (
            "bitcoin-wallet-v9",
            "unsupported",
            "unknown MISP attribute type `bitcoin-wallet-v9`",
        ),
    ];
    for (t, category, reason) in cases {
        let got = one(&run(&event_with(json!([]), json!([attr(t, "x")]))));
        let want = format!("{category} {A1}: {reason}");
        assert!(got.starts_with(&want), "{t}: {got}");
    }
}

#[test]
fn composites_are_split() {
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "ip-dst|port",
            "203.0.113.45|8443",
            &["accepted A ip:port 203.0.113.45:8443 GREEN"],
        ),
        (
            "ip-src|port",
            "2001:db8::1|443",
            &["accepted A ip:port [2001:db8::1]:443 GREEN"],
        ),
        (
            "domain|ip",
            "CDN.example.net|198.51.100.77",
            &[
                "accepted A domain cdn.example.net GREEN",
                "accepted A#2 ipv4 198.51.100.77 GREEN",
            ],
        ),
        (
            "domain|ip",
            "cdn.example.net|198.51.100.777",
            &[
                "accepted A domain cdn.example.net GREEN",
                "invalid A#2: IP part `198.51.100.777`: ",
            ],
        ),
        (
            "domain|ip",
            "cdn.example.net",
            &["invalid A: `cdn.example.net` has no `|`"],
        ),
        (
            "hostname|port",
            "C2.malware.test|4443",
            &["accepted A hostname c2.malware.test GREEN"],
        ),
        (
            "hostname|port",
            "c2.malware.test|0",
            &["invalid A: port part `0`: invalid port"],
        ),
        (
            "filename|sha256",
            "a|b.exe|A66859CD539EDF70EE53928B9886865B61DB349E91CAFF3ED61BA4B99AD1BC0C",
            &[
                "accepted A sha256 a66859cd539edf70ee53928b9886865b61db349e91caff3ed61ba4b99ad1bc0c GREEN",
            ],
        ),
        (
            "malware-sample",
            "x.zip|d41d8cd98f00b204e9800998ecf8427e",
            &["accepted A md5 d41d8cd98f00b204e9800998ecf8427e GREEN"],
        ),
    ];
    for (t, v, want) in cases {
        let got = lines(&run(&event_with(json!(["tlp:green"]), json!([attr(t, v)]))));
        assert_eq!(got.len(), want.len(), "{t} {v}: {got:#?}");
        for (g, w) in got.iter().zip(want) {
            let w = w.replace(" A", &format!(" {A1}"));
            assert!(g.starts_with(&w), "{t} {v}: {g} does not start with {w}");
        }
    }
}

#[test]
fn composites_keep_their_context_as_tags() {
    let b = run(&event_with(
        json!([]),
        json!([
            attr("filename|sha256", "a|b.exe|a66859cd539edf70ee53928b9886865b61db349e91caff3ed61ba4b99ad1bc0c"),
            {"uuid": A2, "type": "hostname|port", "value": "c2.malware.test|4443", "to_ids": true},
        ]),
    ));
    let got: Vec<Vec<&str>> = indicators(&b)
        .iter()
        .map(|i| i.tags.iter().map(|t| &**t).collect())
        .collect();
    assert_eq!(
        got,
        vec![
            vec![
                "misp:type=filename|sha256",
                "misp:category=Network activity",
                "filename:a|b.exe"
            ],
            vec!["misp:type=hostname|port", "port:4443"],
        ]
    );
    let x509 = run(&event_with(
        json!([]),
        json!([attr(
            "x509-fingerprint-md5",
            "e69894213ec071803808fb5c7e66ab8d"
        )]),
    ));
    assert!(indicators(&x509)[0].tags.iter().any(|t| &**t == "x509"));
}

#[test]
fn directions_come_from_ip_src_and_ip_dst() {
    let cases = [
        ("ip-src", "192.0.2.1", Some(Direction::Src)),
        ("ip-dst", "192.0.2.1", Some(Direction::Dst)),
        ("ip-dst|port", "192.0.2.1|80", Some(Direction::Dst)),
        ("domain", "example.com", None),
    ];
    for (t, v, want) in cases {
        let b = run(&event_with(json!([]), json!([attr(t, v)])));
        assert_eq!(indicators(&b)[0].direction, want, "{t}");
    }
}

#[test]
fn to_ids_deleted_and_publication_decide_arming() {
    let base = |extra: Value| {
        let mut a = attr("ip-dst", "198.51.100.1");
        if let (Value::Object(a), Value::Object(extra)) = (&mut a, extra) {
            a.extend(extra);
        }
        a
    };
    let cases = [
        (
            json!({"to_ids": false}),
            "skipped",
            "to_ids is false: context only",
        ),
        (
            json!({"deleted": true}),
            "skipped",
            "deleted (revoked) attribute",
        ),
        (
            json!({"deleted": true, "to_ids": false}),
            "skipped",
            "deleted (revoked) attribute",
        ),
        (json!({"to_ids": null}), "accepted", ""),
        (json!({"to_ids": "1", "deleted": "0"}), "accepted", ""),
        (
            json!({"to_ids": "yes"}),
            "invalid",
            "`to_ids` is the string \"yes\", expected true or false",
        ),
        (
            json!({"deleted": []}),
            "invalid",
            "`deleted` is an array, expected true or false",
        ),
        (
            json!({"value": 42}),
            "invalid",
            "`value` is the number 42, expected a string",
        ),
        (
            json!({"value": null}),
            "invalid",
            "attribute has no `value`",
        ),
        (
            json!({"type": ["ip-dst"]}),
            "invalid",
            "`type` is an array, expected a string",
        ),
        (
            json!({"category": 3}),
            "invalid",
            "`category` is the number 3, expected a string",
        ),
        (
            json!({"distribution": "7"}),
            "invalid",
            "`distribution` is 7, expected 0-5",
        ),
        (
            json!({"Tag": {"name": "tlp:red"}}),
            "invalid",
            "`Tag` is an object, expected an array",
        ),
        (
            json!({"Tag": [{"name": 1}]}),
            "invalid",
            "`Tag[0]`: `name` is the number 1, expected a string",
        ),
        (json!({"value": ""}), "invalid", "``: empty value"),
    ];
    for (extra, category, reason) in cases {
        let got = one(&run(&event_with(json!([]), json!([base(extra.clone())]))));
        if category == "accepted" {
            assert!(got.starts_with("accepted"), "{extra}: {got}");
        } else {
            assert_eq!(got, format!("{category} {A1}: {reason}"), "{extra}");
        }
    }
    let ua = json!({"uuid": A1, "type": "user-agent", "value": "X/1"});
    assert_eq!(
        one(&run(&event_with(json!([]), json!([ua])))),
        format!(
            "skipped {A1}: to_ids is absent and MISP's default for `user-agent` is false: context only"
        )
    );
}

#[test]
fn unpublished_events_arm_nothing_and_absent_means_published() {
    let mut doc = event_with(json!([]), json!([attr("domain", "example.com")]));
    doc["Event"]["published"] = json!(false);
    assert_eq!(
        one(&run(&doc)),
        format!("skipped {A1}: event {EV} not published")
    );
    doc["Event"].as_object_mut().map(|e| e.remove("published"));
    assert!(one(&run(&doc)).starts_with("accepted"));
    doc["Event"]["published"] = json!("no");
    assert_eq!(
        one(&run(&doc)),
        format!(
            "invalid {EV}: event `published` is the string \"no\", expected true or false; \
             none of its attributes were read"
        )
    );
}

#[test]
fn attributes_without_uuid_are_named_by_position() {
    let doc = json!({"Event": {"uuid": EV, "Attribute": [
        attr("domain", "example.com"),
        {"type": "domain", "value": "example.org"},
        "not an object",
        {"uuid": "nope", "type": "domain", "value": "example.net"},
    ], "Object": [{"name": "file", "Attribute": [{"type": "md5", "value": "x"}]}, 7]}});
    assert_eq!(
        lines(&run(&doc)),
        vec![
            format!("accepted {A1} domain example.com AMBER+STRICT"),
            format!("invalid event {EV} attribute 2: attribute has no `uuid`"),
            format!(
                "invalid event {EV} attribute 3: attribute is the string \"not an object\", expected an object"
            ),
            format!("invalid event {EV} attribute 4: attribute `uuid` \"nope\" is not a UUID"),
            format!("invalid event {EV} object 1 attribute 1: attribute has no `uuid`"),
            format!("invalid event {EV} object 2: object is the number 7, expected an object"),
        ]
    );
}

#[test]
fn effective_tlp_is_the_maximum_and_unlabelled_gets_the_default() {
    let cases: [(Value, Value, Tlp, bool); 8] = [
        (json!(["tlp:amber"]), json!([]), Tlp::Amber, false),
        (
            json!(["tlp:amber"]),
            json!(["tlp:clear"]),
            Tlp::Amber,
            false,
        ),
        (
            json!(["tlp:green"]),
            json!([{"name": "TLP:RED"}]),
            Tlp::Red,
            false,
        ),
        (json!([]), json!(["tlp:white"]), Tlp::Clear, false),
        (json!([]), json!([]), Tlp::AmberStrict, false),
        (
            json!(["tlp:green", "tlp:amber"]),
            json!([]),
            Tlp::Amber,
            false,
        ),
        (
            json!(["tlp:unclear", "tlp:ex:chr"]),
            json!([]),
            Tlp::AmberStrict,
            true,
        ),
        (
            json!(["tlp:clear"]),
            json!(["tlp:ex:chr"]),
            Tlp::Clear,
            true,
        ),
    ];
    for (ev_tags, attr_tags, want, chr) in cases {
        let mut a = attr("domain", "example.com");
        a["Tag"] = attr_tags.clone();
        let b = run(&event_with(ev_tags.clone(), json!([a])));
        let ind = indicators(&b)[0];
        assert_eq!(
            (ind.tlp, ind.no_attribution),
            (want, chr),
            "{ev_tags} {attr_tags}"
        );
    }
    let opts = SourceOptions {
        default_tlp: Tlp::Green,
        ..Default::default()
    };
    let doc = event_with(json!([]), json!([attr("domain", "example.com")]));
    let b = run_named("t.json", doc.to_string().as_bytes(), &opts);
    assert_eq!(indicators(&b)[0].tlp, Tlp::Green);
}

#[test]
fn object_tags_and_context_are_carried() {
    let doc = json!({"Event": {"uuid": EV, "Tag": [{"name": "tlp:green"}, {"name": "x:y=\"z\""}],
        "Object": [{"uuid": O1, "name": "file", "Tag": [{"name": "tlp:amber"}], "Attribute": [
            {"uuid": A1, "type": "sha256", "object_relation": "sha256", "to_ids": true,
             "value": "68ecb6c8573b658705ec3432dcddc6c2cf82b97c1a4818f355a8e0f7aee6e5e5",
             "Tag": [{"name": "x:y=\"z\""}]}]}]}});
    let b = run(&doc);
    let ind = indicators(&b)[0];
    assert_eq!(ind.tlp, Tlp::Amber);
    let tags: Vec<&str> = ind.tags.iter().map(|t| &**t).collect();
    assert_eq!(
        tags,
        vec![
            "tlp:green",
            "x:y=\"z\"",
            "tlp:amber",
            "misp:type=sha256",
            "misp:object=file",
            &format!("misp:object_uuid={O1}"),
            "misp:object_relation=sha256",
        ]
    );
}

#[test]
fn a_deleted_object_revokes_its_attributes() {
    let doc = json!({"Event": {"uuid": EV, "Object": [
        {"uuid": O1, "name": "file", "deleted": true, "Attribute": [
            {"uuid": A1, "type": "md5", "value": "e69894213ec071803808fb5c7e66ab8d", "to_ids": true, "deleted": false},
            {"uuid": A2, "type": "md5", "value": "e69894213ec071803808fb5c7e66ab8d", "to_ids": true, "deleted": true},
        ]},
        {"name": "file", "deleted": "maybe", "Attribute": [attr("md5", "x")]},
    ]}});
    assert_eq!(
        lines(&run(&doc)),
        vec![
            format!("skipped {A1}: deleted (revoked) attribute: its object {O1} is deleted"),
            format!("skipped {A2}: deleted (revoked) attribute"),
            format!(
                "invalid event {EV} object 2: object `deleted` is the string \"maybe\", \
                 expected true or false; none of its attributes were read"
            ),
        ]
    );
}

#[test]
fn distribution_is_the_most_restrictive_level() {
    let sg = |u: &str| json!({"uuid": u, "name": "sg"});
    // (event fields, object fields, attribute fields) -> (distribution, sharing group)
    type Case<'a> = (Value, Value, Value, Option<u8>, Option<&'a str>);
    let cases: [Case<'_>; 9] = [
        (json!({}), json!({}), json!({}), None, None),
        (
            json!({"distribution": "2"}),
            json!({"distribution": "5"}),
            json!({"distribution": "5"}),
            Some(2),
            None,
        ),
        (
            json!({"distribution": "3"}),
            json!({"distribution": "1"}),
            json!({"distribution": "5"}),
            Some(1),
            None,
        ),
        (
            json!({"distribution": "1"}),
            json!({}),
            json!({"distribution": "3"}),
            Some(1),
            None,
        ),
        (
            json!({}),
            json!({}),
            json!({"distribution": 0}),
            Some(0),
            None,
        ),
        (
            json!({"distribution": "3"}),
            json!({}),
            json!({"distribution": "4", "sharing_group_id": "12", "SharingGroup": sg(SG_A)}),
            Some(4),
            Some(SG_A),
        ),
        (
            json!({"distribution": "4", "sharing_group_id": "7"}),
            json!({"distribution": "2"}),
            json!({}),
            Some(4),
            Some("7"),
        ),
        (
            json!({"distribution": "4", "SharingGroup": sg(SG_A)}),
            json!({}),
            json!({"distribution": "4", "SharingGroup": sg(SG_B)}),
            Some(0),
            None,
        ),
        (
            json!({"distribution": "4", "SharingGroup": {"name": " Finance ISAC "}}),
            json!({"distribution": "1"}),
            json!({}),
            Some(1),
            None,
        ),
    ];
    for (ev, obj, at, want_d, want_sg) in cases {
        let mut a = attr("domain", "example.com");
        let mut o = json!({"name": "domain-ip", "Attribute": []});
        let mut e = json!({"uuid": EV});
        for (target, extra) in [(&mut a, &at), (&mut o, &obj), (&mut e, &ev)] {
            if let (Value::Object(t), Value::Object(x)) = (target, extra) {
                t.extend(x.clone());
            }
        }
        o["Attribute"] = json!([a]);
        e["Object"] = json!([o]);
        let b = run(&json!({"Event": e}));
        let ind = indicators(&b)[0];
        assert_eq!(
            (ind.distribution, ind.sharing_group.as_deref()),
            (want_d, want_sg),
            "{ev} {obj} {at}"
        );
    }
    let bad = json!({"Event": {"uuid": EV, "distribution": "5", "Attribute": [attr("domain", "example.com")]}});
    assert!(one(&run(&bad)).contains("`distribution` is 5 (inherit), but an event has no parent"));
    let sg_name = json!({"Event": {"uuid": EV, "distribution": 4, "SharingGroup": {"name": " Finance ISAC "},
        "Attribute": [attr("domain", "example.com")]}});
    assert_eq!(
        indicators(&run(&sg_name))[0].sharing_group.as_deref(),
        Some("Finance ISAC")
    );
}

#[test]
fn identity_origin_and_seen_times() {
    let mut a = attr("ip-src", "192.0.2.201");
    a["first_seen"] = json!("2025-03-01T00:00:00.000000+00:00");
    a["last_seen"] = json!("2025-03-09T23:59:59+0100");
    let mut a2 = attr("domain", "free[.]example[.]com");
    a2["uuid"] = json!(A2.to_ascii_uppercase());
    a2["first_seen"] = json!("last tuesday");
    a2["last_seen"] = json!(1741600800);
    let b = run(&event_with(json!([]), json!([a, a2])));
    let got = indicators(&b);
    assert_eq!(got[0].id, A1);
    assert_eq!(&*got[0].source, EV);
    assert_eq!(got[0].origin.as_deref(), Some("CERT-X"));
    assert_eq!(
        got[0].first_seen.map(|t| t.to_string()),
        Some("2025-03-01T00:00:00Z".to_string())
    );
    assert_eq!(
        got[0].last_seen.map(|t| t.to_string()),
        Some("2025-03-09T22:59:59Z".to_string())
    );
    assert_eq!(got[0].validity, crate::indicator::Validity::default());
    assert_eq!(got[1].id, A2, "uuids are lower-cased");
    assert_eq!((got[1].first_seen, got[1].last_seen), (None, None));
    assert_eq!(got[1].value, "free.example.com");
    assert!(got[1].defanged);
    assert!(!got[0].defanged);

    let org_uuid_only = json!({"Event": {"uuid": EV, "Orgc": {"uuid": O1}, "Attribute": [attr("domain", "example.com")]}});
    assert_eq!(
        indicators(&run(&org_uuid_only))[0].origin.as_deref(),
        Some(O1)
    );
    let bad_org = json!({"Event": {"uuid": EV, "Orgc": "CERT-X", "Attribute": [attr("domain", "example.com")]}});
    assert_eq!(
        one(&run(&bad_org)),
        format!(
            "invalid {EV}: event `Orgc` is the string \"CERT-X\", expected an object; \
             none of its attributes were read"
        )
    );
}

#[test]
fn document_shapes() {
    let ev = |u: &str| json!({"uuid": u, "Attribute": [{"uuid": u, "type": "domain", "value": "example.com", "to_ids": true}]});
    let e1 = "e1000000-0000-4000-8000-000000000001";
    let e2 = "e2000000-0000-4000-8000-000000000002";
    let cases: [(Value, Vec<String>); 8] = [
        (json!({"Event": ev(e1)}), vec![format!("accepted {e1}")]),
        (ev(e1), vec![format!("accepted {e1}")]),
        (
            json!({"response": [{"Event": ev(e1)}, {"Event": ev(e2)}]}),
            vec![format!("accepted {e1}"), format!("accepted {e2}")],
        ),
        (
            json!([{"Event": ev(e1)}, ev(e2), 3, {"foo": 1}, {"Event": null}]),
            vec![
                format!("accepted {e1}"),
                format!("accepted {e2}"),
                "invalid event 3: list element is the number 3, expected an event".to_string(),
                "invalid event 4: list element is neither".to_string(),
                "invalid event 5: `Event` is null, expected an object".to_string(),
            ],
        ),
        (json!([]), vec![]),
        (
            json!({"response": "none"}),
            vec!["invalid file: `response` is the string \"none\", expected an array".to_string()],
        ),
        (
            json!({"type": "bundle"}),
            vec!["invalid file: no MISP event in the document".to_string()],
        ),
        (
            json!("x"),
            vec!["invalid file: the document is the string \"x\"".to_string()],
        ),
    ];
    for (doc, want) in cases {
        let got = lines(&run(&doc));
        assert_eq!(got.len(), want.len(), "{doc}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                g.starts_with(w.as_str()),
                "{doc}: {g} does not start with {w}"
            );
        }
    }
}

#[test]
fn malformed_bytes_are_one_reject_with_a_position() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"Event\": {\"uuid\": \"x\",\n \"Attribute\": [",
            "not valid JSON: EOF while parsing a list at line 2 column 15 (the file ends early: truncated?)",
        ),
        (
            b"{\"Event\": {\"uuid\": 1,}}",
            "not valid JSON: trailing comma at line 1 column 22",
        ),
        (
            b"{\"Event\":\n {\"info\": \"caf\xe9\"}}",
            "not valid UTF-8 at line 2 column 15 (byte offset 24); MISP JSON must be UTF-8",
        ),
        (
            b"",
            "not valid JSON: EOF while parsing a value at line 1 column 0 (the file ends early: truncated?)",
        ),
        (
            b"\xef\xbb\xbf{} x",
            "not valid JSON: trailing characters at line 1 column 4",
        ),
    ];
    for (bytes, want) in cases {
        let b = run_named("t.json", bytes, &SourceOptions::default());
        assert_eq!(
            one(&b),
            format!("invalid file: {want}"),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn event_level_problems_reject_the_event_once() {
    let named = "feed/11111111-1111-4111-8111-111111111111.json";
    let other = "22222222-2222-4222-8222-222222222222";
    let cases: [(&str, Value, String); 6] = [
        (
            named,
            json!({"Event": {"uuid": other, "Attribute": [attr("domain", "example.com")]}}),
            format!("invalid {other}: event uuid {other} differs from the file name {EV}.json"),
        ),
        (
            "feed/11111111-1111-4111-8111-111111111111.json.gz",
            json!({"Event": {"uuid": EV.to_ascii_uppercase(), "Attribute": [attr("domain", "example.com")]}}),
            format!("accepted {A1}"),
        ),
        (
            named,
            json!({"Event": {"info": "x"}}),
            "invalid event 1: event has no `uuid`".to_string(),
        ),
        (
            "t.json",
            json!({"Event": {"uuid": EV, "Attribute": {"uuid": A1}}}),
            format!("invalid {EV}: event `Attribute` is an object, expected an array"),
        ),
        (
            "t.json",
            json!({"Event": {"uuid": EV, "Tag": "tlp:red", "Attribute": [attr("domain", "example.com")]}}),
            format!("invalid {EV}: event `Tag` is the string \"tlp:red\", expected an array"),
        ),
        (
            "t.json",
            json!({"Event": {"uuid": EV, "Tag": [{"colour": "#fff"}]}}),
            format!("invalid {EV}: event `Tag[0]` has no `name`"),
        ),
    ];
    for (name, doc, want) in cases {
        let b = run_named(name, doc.to_string().as_bytes(), &SourceOptions::default());
        let got = one(&b);
        assert!(
            got.starts_with(&want),
            "{got}\n  does not start with\n{want}"
        );
    }
    // In a list, no event is bound to the file name.
    let list = json!([{"Event": {"uuid": other, "Attribute": [attr("domain", "example.com")]}}]);
    let b = run_named(
        named,
        list.to_string().as_bytes(),
        &SourceOptions::default(),
    );
    assert!(one(&b).starts_with("accepted"));
}

#[test]
fn huge_values_are_rejected_briefly() {
    let big = format!("{}.example.com", "a".repeat(10 * 1024 * 1024));
    let b = run(&event_with(json!([]), json!([attr("domain", &big)])));
    let got = one(&b);
    assert!(
        got.starts_with(&format!("invalid {A1}: `aaaa")),
        "{}",
        &got[..200]
    );
    assert!(
        got.ends_with("more than the 8192 accepted"),
        "{}",
        &got[got.len() - 200..]
    );
    assert!(got.len() < 400, "reason is {} bytes", got.len());
}
