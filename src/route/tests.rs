use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::registry::{Entity, Roles};
use super::*;
use crate::index::IndexBuilder;
use crate::indicator::{Indicator, IndicatorSet, Kind};

const REGISTRY: &str = r#"
[[entities]]
id = "ncsc"
name = "NCSC"
roles = ["publisher"]
prefixes = ["192.0.2.0/26"]
sharing_groups = ["sg-1"]

[[entities]]
id = "msp"
name = "MSP"
roles = ["partner"]
prefixes = ["192.0.2.64/26"]
sharing_groups = ["SG-1"]
on_behalf_of = ["hospital"]

[[entities]]
id = "hospital"
name = "Hospital"
roles = ["subscriber"]
prefixes = ["198.51.100.0/25", "2001:db8:b::/48"]
domains = ["hospital.example"]
sharing_groups = ["sg-1"]

[[entities]]
id = "water"
name = "Water board"
roles = ["subscriber"]
prefixes = ["198.51.100.128/25"]
domains = ["water.example"]

[[entities]]
id = "hoster"
name = "Hoster"
roles = ["subscriber"]
prefixes = ["203.0.113.0/24", "2001:db8:d::/48"]
domains = ["hoster.example"]
trusts = ["msp"]

[[entities]]
id = "shop"
name = "Shop"
roles = ["subscriber"]
prefixes = ["203.0.113.64/26", "2001:db8:d:e::/64"]
domains = ["shop.hoster.example"]
sharing_groups = ["sg-1"]
trusts = ["msp"]

[[entities]]
id = "isp"
name = "ISP"
roles = ["partner"]
prefixes = ["192.0.2.128/26"]
trusted_by_all = true

[[entities]]
id = "lab"
name = "Lab"
roles = ["publisher"]
prefixes = ["192.0.2.192/26"]
"#;

fn router(arm_red: bool) -> Router {
    Router::new(
        Registry::from_toml(REGISTRY, "test.toml").unwrap(),
        RoutePolicy { arm_red },
    )
}

fn ip(s: &str) -> Observable<'static> {
    Observable::Addr(s.parse().unwrap())
}

/// Routes one hit; returns `(entity id, allowed, rule)` per decision.
/// `(entity id, allowed, rule)` per decision.
type Routed = Vec<(String, bool, Rule)>;

fn route(r: &Router, s: Sensitivity<'_>, partner: &str, obs: &[Observable<'_>]) -> Routed {
    let reg = r.registry();
    let input = RouteInput {
        hit_id: 1,
        indicator_id: "ind-1",
        sensitivity: s,
        publisher: reg.by_id("ncsc"),
        partner: reg.by_id(partner).unwrap(),
        observables: obs,
    };
    let mut out = Vec::new();
    let _ = r.route(&input, &mut out);
    out.iter()
        .map(|d| {
            assert_eq!(d.allowed, d.rule.allows());
            assert_eq!(d.reason, d.rule.reason());
            (reg.entity(d.recipient).id.clone(), d.allowed, d.rule)
        })
        .collect()
}

fn want(rows: &[(&str, bool, Rule)]) -> Routed {
    rows.iter()
        .map(|&(id, a, r)| (id.to_string(), a, r))
        .collect()
}

use Rule::*;

/// Every TLP level × every kind of recipient: the submitter acting for the victim (msp →
/// hospital), a submitter unrelated to the victim (isp → water), nested victims (hoster and
/// shop), no victim at all, and the submitter as its own victim.
#[test]
fn tlp_levels_by_recipient_type() {
    let a = [ip("198.51.100.5")];
    let b = [Observable::Name("www.water.example")];
    let c = [ip("203.0.113.70")];
    let d = [ip("100.64.0.1")];
    let e = [ip("192.0.2.70")];
    type Row<'a> = (
        Tlp,
        &'a str,
        &'a [Observable<'a>],
        &'a [(&'a str, bool, Rule)],
    );
    let table: &[Row<'_>] = &[
        // CLEAR and GREEN: every party concerned.
        (
            Tlp::Clear,
            "msp",
            &a,
            &[("msp", true, Clear), ("hospital", true, Clear)],
        ),
        (
            Tlp::Clear,
            "isp",
            &b,
            &[("isp", true, Clear), ("water", true, Clear)],
        ),
        (
            Tlp::Clear,
            "msp",
            &c,
            &[
                ("msp", true, Clear),
                ("hoster", true, Clear),
                ("shop", true, Clear),
            ],
        ),
        (Tlp::Clear, "isp", &d, &[("isp", true, Clear)]),
        (
            Tlp::Green,
            "msp",
            &a,
            &[("msp", true, Green), ("hospital", true, Green)],
        ),
        (
            Tlp::Green,
            "isp",
            &b,
            &[("isp", true, Green), ("water", true, Green)],
        ),
        (
            Tlp::Green,
            "msp",
            &c,
            &[
                ("msp", true, Green),
                ("hoster", true, Green),
                ("shop", true, Green),
            ],
        ),
        (Tlp::Green, "isp", &d, &[("isp", true, Green)]),
        // AMBER: the affected party only.
        (
            Tlp::Amber,
            "msp",
            &a,
            &[
                ("msp", true, AmberAffectedParty),
                ("hospital", true, AmberAffectedParty),
            ],
        ),
        (
            Tlp::Amber,
            "isp",
            &b,
            &[
                ("isp", false, AmberNotAffected),
                ("water", true, AmberAffectedParty),
            ],
        ),
        (
            Tlp::Amber,
            "msp",
            &c,
            &[
                ("msp", false, AmberNotAffected),
                ("hoster", true, AmberAffectedParty),
                ("shop", true, AmberAffectedParty),
            ],
        ),
        (
            Tlp::Amber,
            "isp",
            &d,
            &[
                ("isp", false, AmberNotAffected),
                ("ncsc", true, InternalCase),
            ],
        ),
        (Tlp::Amber, "msp", &e, &[("msp", true, AmberAffectedParty)]),
        // AMBER+STRICT: nothing leaves; an internal case.
        (
            Tlp::AmberStrict,
            "msp",
            &a,
            &[
                ("msp", false, AmberStrict),
                ("hospital", false, AmberStrict),
                ("ncsc", true, InternalCase),
            ],
        ),
        (
            Tlp::AmberStrict,
            "isp",
            &d,
            &[("isp", false, AmberStrict), ("ncsc", true, InternalCase)],
        ),
        (
            Tlp::AmberStrict,
            "msp",
            &e,
            &[("msp", false, AmberStrict), ("ncsc", true, InternalCase)],
        ),
        // RED, not armed: nobody, not even an internal case.
        (
            Tlp::Red,
            "msp",
            &a,
            &[
                ("msp", false, RedNotArmed),
                ("hospital", false, RedNotArmed),
            ],
        ),
        (Tlp::Red, "isp", &d, &[("isp", false, RedNotArmed)]),
    ];
    let r = router(false);
    for (tlp, partner, obs, rows) in table {
        assert_eq!(
            route(&r, Sensitivity::new(*tlp), partner, obs),
            want(rows),
            "{tlp} from {partner} on {obs:?}"
        );
    }
}

#[test]
fn red_when_armed_reaches_only_named_recipients() {
    let r = router(true);
    let named = Sensitivity {
        sharing_group: Some("sg-1"),
        ..Sensitivity::new(Tlp::Red)
    };
    let a = [ip("198.51.100.5")];
    let c = [ip("203.0.113.70")];
    assert_eq!(
        route(&r, named, "msp", &a),
        want(&[
            ("msp", true, RedNamedRecipient),
            ("hospital", true, RedNamedRecipient),
            ("ncsc", true, InternalCase)
        ])
    );
    // The hoster is not named, its customer is.
    assert_eq!(
        route(&r, named, "isp", &c),
        want(&[
            ("isp", false, RedNotNamed),
            ("hoster", false, RedNotNamed),
            ("shop", true, RedNamedRecipient),
            ("ncsc", true, InternalCase)
        ])
    );
    // Nobody named: nobody, and no internal case (the publisher is not named either).
    assert_eq!(
        route(&r, Sensitivity::new(Tlp::Red), "msp", &a),
        want(&[
            ("msp", false, RedNotNamed),
            ("hospital", false, RedNotNamed)
        ])
    );
    // Armed but unnamed: same for a group nobody is in.
    let other = Sensitivity {
        sharing_group: Some("sg-unknown"),
        ..Sensitivity::new(Tlp::Red)
    };
    assert_eq!(
        route(&r, other, "isp", &[]),
        want(&[("isp", false, RedNotNamed)])
    );
}

/// MISP distribution 0–5 (FORMATS §1.8) on a GREEN indicator seen by the MSP on the hoster's
/// customer's address.
#[test]
fn distribution_narrows_the_audience() {
    let r = router(false);
    let c = [ip("203.0.113.70")];
    let internal = want(&[
        ("msp", false, DistributionInternal),
        ("hoster", false, DistributionInternal),
        ("shop", false, DistributionInternal),
        ("ncsc", true, InternalCase),
    ]);
    let open = want(&[
        ("msp", true, Green),
        ("hoster", true, Green),
        ("shop", true, Green),
    ]);
    let table: &[(Option<u8>, Option<&str>, Routed)] = &[
        (None, None, open.clone()),
        (Some(0), None, internal.clone()),
        (Some(1), None, internal.clone()),
        (Some(2), None, open.clone()),
        (Some(3), None, open.clone()),
        // A sharing group without distribution 4 does not narrow anything.
        (Some(3), Some("sg-1"), open.clone()),
        (
            Some(4),
            Some("sg-1"),
            want(&[
                ("msp", true, Green),
                ("hoster", false, NotInSharingGroup),
                ("shop", true, Green),
            ]),
        ),
        // Group names compare ignoring ASCII case.
        (
            Some(4),
            Some("SG-1"),
            want(&[
                ("msp", true, Green),
                ("hoster", false, NotInSharingGroup),
                ("shop", true, Green),
            ]),
        ),
        (
            Some(4),
            None,
            want(&[
                ("msp", false, NotInSharingGroup),
                ("hoster", false, NotInSharingGroup),
                ("shop", false, NotInSharingGroup),
                ("ncsc", true, InternalCase),
            ]),
        ),
        // Inherit (5) unresolved at routing, and unknown values, fail closed.
        (Some(5), None, internal.clone()),
        (Some(9), None, internal.clone()),
    ];
    for (distribution, group, rows) in table {
        let s = Sensitivity {
            distribution: *distribution,
            sharing_group: *group,
            ..Sensitivity::new(Tlp::Green)
        };
        assert_eq!(&route(&r, s, "msp", &c), rows, "{distribution:?} {group:?}");
    }
    // TLP and distribution intersect: AMBER with distribution 4 needs both.
    let s = Sensitivity {
        distribution: Some(4),
        sharing_group: Some("sg-1"),
        ..Sensitivity::new(Tlp::Amber)
    };
    assert_eq!(
        route(&r, s, "isp", &[ip("198.51.100.200"), ip("198.51.100.1")]),
        want(&[
            ("isp", false, AmberNotAffected),
            ("hospital", true, AmberAffectedParty),
            ("water", false, NotInSharingGroup),
        ])
    );
}

#[test]
fn roles_gate_capacities() {
    let r = router(false);
    // A publisher-only entity is no subscriber: reached through the internal case.
    assert_eq!(
        route(
            &r,
            Sensitivity::new(Tlp::Green),
            "isp",
            &[ip("192.0.2.200")]
        ),
        want(&[("isp", true, Green), ("lab", false, NotSubscriber)])
    );
    assert_eq!(
        route(
            &r,
            Sensitivity::new(Tlp::Amber),
            "isp",
            &[ip("192.0.2.200")]
        ),
        want(&[
            ("isp", false, AmberNotAffected),
            ("lab", false, NotSubscriber),
            ("ncsc", true, InternalCase)
        ])
    );
    // Telemetry from an entity that is not a partner.
    assert_eq!(
        route(&r, Sensitivity::new(Tlp::Clear), "water", &[]),
        want(&[("water", false, NotPartner), ("ncsc", true, InternalCase)])
    );
    // ... unless it is its own victim as a subscriber.
    assert_eq!(
        route(
            &r,
            Sensitivity::new(Tlp::Clear),
            "water",
            &[ip("198.51.100.130")]
        ),
        want(&[("water", true, Clear)])
    );
}

#[test]
fn on_behalf_of_is_per_victim_and_per_submitter() {
    let r = router(false);
    let reg = r.registry();
    let input = RouteInput {
        hit_id: 7,
        indicator_id: "x",
        sensitivity: Sensitivity::new(Tlp::Amber),
        publisher: reg.by_id("ncsc"),
        partner: reg.by_id("msp").unwrap(),
        observables: &[ip("198.51.100.5"), ip("198.51.100.200")],
    };
    let mut out = Vec::new();
    let _ = r.route(&input, &mut out);
    assert_eq!(
        out[0].capacity,
        Capacities::SUBMITTER | Capacities::ON_BEHALF
    );
    assert!(out[0].allowed);
    assert_eq!(out[1].capacity, Capacities::VICTIM);
    // The water board is in the row too, but the MSP neither streams for it nor is trusted
    // by it: its rows cannot make the hub notify the water board (a made-up row would).
    // The MSP itself is affected through the hospital, so it sees the hit.
    assert_eq!(out.len(), 3);
    assert!(out[0].allowed && out[1].allowed);
    assert_eq!(reg.entity(out[2].recipient).id, "water");
    assert_eq!((out[2].allowed, out[2].rule), (false, Rule::NotServed));
    // Only the submitting partner: another partner acting for the hospital is not told.
    let input = RouteInput {
        partner: reg.by_id("isp").unwrap(),
        observables: &[ip("198.51.100.5")],
        ..input
    };
    out.clear();
    let _ = r.route(&input, &mut out);
    let ids: Vec<_> = out
        .iter()
        .map(|d| reg.entity(d.recipient).id.as_str())
        .collect();
    assert_eq!(ids, ["isp", "hospital"]);
}

#[test]
fn constituency_overlaps_ipv6_and_names() {
    let r = router(false);
    let reg = r.registry();
    let ids = |obs: Observable<'_>| -> Vec<String> {
        let mut out = Vec::new();
        r.constituency().lookup(&obs, &mut out);
        out.iter()
            .map(|&o| reg.entity(EntityOrd::new(o)).id.clone())
            .collect()
    };
    let cases: &[(Observable<'_>, &[&str])] = &[
        (ip("203.0.113.70"), &["hoster", "shop"]),
        (ip("203.0.113.10"), &["hoster"]),
        (ip("2001:db8:d:e::1"), &["hoster", "shop"]),
        (ip("2001:db8:d:f::1"), &["hoster"]),
        (ip("::ffff:203.0.113.70"), &["hoster", "shop"]),
        (ip("2001:db8:b:1::9"), &["hospital"]),
        (ip("2001:db8:c::1"), &[]),
        (
            Observable::Name("a.b.shop.hoster.example"),
            &["hoster", "shop"],
        ),
        (Observable::Name("shop.hoster.example"), &["hoster", "shop"]),
        (Observable::Name("notshop.hoster.example"), &["hoster"]),
        (Observable::Name("nothoster.example"), &[]),
        (Observable::Name("hoster.example.evil.test"), &[]),
        (
            Observable::Name("SHOP.Hoster.Example."),
            &["hoster", "shop"],
        ),
        (Observable::Name("203.0.113.70"), &["hoster", "shop"]),
        (Observable::Name(""), &[]),
        (
            Observable::Url("https://login.hospital.example:8443/owa?x=1"),
            &["hospital"],
        ),
        (
            Observable::Url("http://[2001:db8:d:e::5]/"),
            &["hoster", "shop"],
        ),
        (
            Observable::Url("http://notevil.example/hospital.example"),
            &[],
        ),
        (Observable::Email("ceo@Hospital.Example"), &["hospital"]),
        (Observable::Email("ceo@hospital.example.test"), &[]),
    ];
    for (obs, want) in cases {
        assert_eq!(ids(*obs), *want, "{obs:?}");
    }
    r.constituency().validate().unwrap();
    assert_eq!(
        Observable::from_field(&crate::telemetry::FieldKind::Ip, "198.51.100.5"),
        Some(ip("198.51.100.5"))
    );
    assert_eq!(
        Observable::from_field(&crate::telemetry::FieldKind::Sha256, "ab"),
        None
    );
}

#[test]
fn audit_log_has_one_record_per_decision() {
    let r = router(false);
    let reg = r.registry();
    let input = RouteInput {
        hit_id: 42,
        indicator_id: "attr-uuid",
        sensitivity: Sensitivity {
            distribution: Some(4),
            sharing_group: Some("sg-1"),
            ..Sensitivity::new(Tlp::Amber)
        },
        publisher: reg.by_id("ncsc"),
        partner: reg.by_id("isp").unwrap(),
        observables: &[ip("203.0.113.70")],
    };
    let mut decisions = Vec::new();
    let routing = r.route(&input, &mut decisions);
    let mut log = AuditLog::new(Vec::new());
    let now: Timestamp = "2025-03-01T12:00:00Z".parse().unwrap();
    log.write(now, reg, &input, &decisions, routing).unwrap();
    assert_eq!(log.records(), decisions.len() as u64);
    let text = String::from_utf8(log.into_inner()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        serde_json::json!({
            "ts": "2025-03-01T12:00:00Z", "hit": 42, "indicator": "attr-uuid", "tlp": "AMBER",
            "distribution": 4, "sharing_group": "sg-1", "entity": "isp",
            "capacity": ["submitter"], "allowed": false, "rule": "amber_not_affected",
            "reason": Rule::AmberNotAffected.reason(),
        })
    );
    assert_eq!(lines[1]["entity"], "hoster");
    assert_eq!(lines[1]["rule"], "not_in_sharing_group");
    assert_eq!(lines[2]["entity"], "shop");
    assert_eq!(lines[2]["allowed"], true);
    assert_eq!(lines[2]["capacity"], serde_json::json!(["victim"]));
}

#[test]
fn sightings_count_per_indicator_partner_and_day() {
    let mut agg = SightingsAggregator::new();
    let p = EntityOrd::new(1);
    let q = EntityOrd::new(2);
    let day = 20_000 * 86_400;
    agg.add("a", p, day + 5);
    agg.add("a", p, day + 86_399);
    agg.add("a", p, day + 86_400);
    agg.add("a", q, day);
    agg.add("b", p, -1);
    assert_eq!(agg.len(), 4);
    let rows = agg.take();
    assert!(agg.is_empty());
    let simple: Vec<_> = rows
        .iter()
        .map(|s| {
            (
                s.indicator_id.as_str(),
                s.partner.as_u32(),
                s.day.to_string(),
                s.count,
            )
        })
        .collect();
    assert_eq!(
        simple,
        [
            ("a", 1, "2024-10-04".to_string(), 2),
            ("a", 1, "2024-10-05".to_string(), 1),
            ("a", 2, "2024-10-04".to_string(), 1),
            ("b", 1, "1969-12-31".to_string(), 1),
        ]
    );
    let r = router(false);
    let mut agg = SightingsAggregator::new();
    agg.add("a", r.registry().by_id("msp").unwrap(), 0);
    let mut out = Vec::new();
    agg.write_jsonl(&mut out, r.registry()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"count\":1,\"day\":\"1970-01-01\",\"indicator_id\":\"a\",\"partner\":\"msp\"}\n"
    );
}

fn indicator(id: &str, tlp: Tlp, distribution: Option<u8>, group: Option<&str>) -> Indicator {
    let mut ind = Indicator::new(
        id,
        Kind::Domain,
        format!("{id}.evil.test"),
        Arc::from("feed"),
        tlp,
    );
    ind.distribution = distribution;
    ind.sharing_group = group.map(Arc::from);
    ind
}

#[test]
fn clearance_cuts_what_each_entity_may_hold() {
    let specs: &[(&str, Tlp, Option<u8>, Option<&str>)] = &[
        ("clear", Tlp::Clear, None, None),
        ("green", Tlp::Green, Some(3), None),
        ("green-d0", Tlp::Green, Some(0), None),
        ("green-sg", Tlp::Green, Some(4), Some("sg-1")),
        ("amber", Tlp::Amber, None, None),
        ("amber-sg", Tlp::Amber, Some(3), Some("sg-1")),
        ("strict", Tlp::AmberStrict, None, None),
        ("red-sg", Tlp::Red, None, Some("sg-1")),
        ("red", Tlp::Red, None, None),
    ];
    let mut set = IndicatorSet::new();
    for &(id, tlp, d, g) in specs {
        set.insert(indicator(id, tlp, d, g)).unwrap();
    }
    let index = IndexBuilder::new().arm_red(true).build(&set).unwrap();
    let meta = index.meta();
    for (arm_red, entity, want) in [
        (
            false,
            "ncsc",
            &[
                "clear", "green", "green-d0", "green-sg", "amber", "amber-sg", "strict",
            ][..],
        ),
        (
            true,
            "ncsc",
            &[
                "clear", "green", "green-d0", "green-sg", "amber", "amber-sg", "strict", "red-sg",
            ],
        ),
        (
            false,
            "hospital",
            &["clear", "green", "green-sg", "amber-sg"],
        ),
        (
            true,
            "hospital",
            &["clear", "green", "green-sg", "amber-sg", "red-sg"],
        ),
        (true, "water", &["clear", "green"]),
        (true, "isp", &["clear", "green"]),
    ] {
        let r = router(arm_red);
        let ord = r.registry().by_id(entity).unwrap();
        let cut = r.clearance(ord, meta);
        let got: Vec<&str> = cut.iter().map(|o| meta.id(IndicatorId::new(o))).collect();
        assert_eq!(got, want, "{entity} arm_red={arm_red}");
        // The per-indicator form agrees with the cut.
        for (i, (_, ind)) in set.iter().enumerate() {
            assert_eq!(
                r.may_hold(ord, &Sensitivity::of_indicator(ind)),
                cut.contains(i as u32),
                "{entity} {}",
                ind.id
            );
        }
    }
}

#[test]
fn synthetic_registry_routes_nested_customers() {
    let reg = Registry::synthetic(2000, 1);
    let cust = reg
        .iter()
        .find(|(_, e)| e.id.starts_with("cust-"))
        .map(|(o, _)| o)
        .unwrap();
    let r = Router::new(reg, RoutePolicy::default());
    let e = r.registry().entity(cust);
    let IpNet::V4(net) = e.prefixes[0] else {
        panic!("v4 first")
    };
    let addr = IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) + 9));
    let mut out = Vec::new();
    r.constituency().lookup(&Observable::Addr(addr), &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.contains(&cust.as_u32()));
    r.constituency().validate().unwrap();
}

// --- the constituency index against a linear scan -----------------------------------------

fn naive(reg: &Registry, obs: &Observable<'_>) -> Vec<u32> {
    let covers = |a: IpAddr| -> Vec<u32> {
        let a = a.to_canonical();
        reg.iter()
            .filter(|(_, e)| {
                e.prefixes.iter().any(|p| match (p, a) {
                    (IpNet::V4(n), IpAddr::V4(x)) => n.contains(&x),
                    (IpNet::V6(n), IpAddr::V6(x)) => n.contains(&x),
                    _ => false,
                })
            })
            .map(|(o, _)| o.as_u32())
            .collect()
    };
    match obs {
        Observable::Addr(a) => covers(*a),
        Observable::Name(n) => reg
            .iter()
            .filter(|(_, e)| {
                e.domains
                    .iter()
                    .any(|d| *n == d || n.ends_with(&format!(".{d}")))
            })
            .map(|(o, _)| o.as_u32())
            .collect(),
        _ => unreachable!(),
    }
}

const LABELS: [&str; 4] = ["a", "b", "ab", "c"];

fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(0..LABELS.len(), 1..4).prop_map(|ls| {
        let mut s: Vec<&str> = ls.into_iter().map(|i| LABELS[i]).collect();
        s.push("example");
        s.join(".")
    })
}

/// An entity's IPv4 prefixes (low 16 bits in 10.0.0.0/16, length), IPv6 prefixes (third
/// group, length) and domains.
type EntitySpec = (Vec<(u32, u8)>, Vec<(u16, u8)>, Vec<String>);

fn entity_strategy() -> impl Strategy<Value = EntitySpec> {
    (
        // IPv4 inside 10.0.0.0/16 so that prefixes overlap often.
        prop::collection::vec((0u32..1 << 16, 8u8..=32), 0..4),
        // IPv6 inside 2001:db8::/32, varying the third group.
        prop::collection::vec((0u16..16, 16u8..=128), 0..3),
        prop::collection::vec(name_strategy(), 0..3),
    )
}

fn build(entities: &[EntitySpec]) -> Registry {
    let list = entities
        .iter()
        .enumerate()
        .map(|(i, (v4, v6, names))| {
            let mut e = Entity::new(format!("e{i}"), "E", Roles::of(&[Role::Subscriber]));
            for &(low, len) in v4 {
                let a = Ipv4Addr::from(0x0A00_0000 | low);
                e.prefixes
                    .push(IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc()));
            }
            for &(g, len) in v6 {
                let a = Ipv6Addr::new(0x2001, 0xdb8, g, 1, 0, 0, 0, g);
                e.prefixes
                    .push(IpNet::V6(Ipv6Net::new(a, len).unwrap().trunc()));
            }
            e.domains = names.clone();
            e
        })
        .collect();
    Registry::from_entities(list).unwrap()
}

proptest! {
    #[test]
    fn constituency_matches_a_linear_scan(
        entities in prop::collection::vec(entity_strategy(), 1..12),
        v4 in prop::collection::vec(0u32..1 << 16, 1..16),
        v6 in prop::collection::vec((0u16..16, any::<u16>()), 1..8),
        names in prop::collection::vec(name_strategy(), 1..8),
    ) {
        let reg = build(&entities);
        let index = ConstituencyIndex::build(&reg);
        index.validate().unwrap();
        let mut obs: Vec<Observable<'_>> = v4
            .iter()
            .map(|&l| Observable::Addr(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | l))))
            .collect();
        obs.extend(v6.iter().map(|&(g, x)| {
            Observable::Addr(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, g, 1, 0, 0, 0, x)))
        }));
        // IPv4-mapped IPv6 addresses are the IPv4 address.
        obs.extend(v4.iter().map(|&l| {
            Observable::Addr(IpAddr::V6(Ipv4Addr::from(0x0A00_0000 | l).to_ipv6_mapped()))
        }));
        obs.extend(names.iter().map(|n| Observable::Name(n.as_str())));
        let mut all = RoaringBitmap::new();
        let mut naive_all = RoaringBitmap::new();
        for o in &obs {
            let mut got = Vec::new();
            index.lookup(o, &mut got);
            let want = naive(&reg, o);
            prop_assert_eq!(&got, &want, "{:?}", o);
            naive_all.extend(want);
        }
        index.victims(&obs, &mut all);
        prop_assert_eq!(all, naive_all);
    }
}

#[test]
fn a_partner_notifies_only_whom_it_serves_or_who_trusts_it() {
    let text = format!(
        "{REGISTRY}\n[[entities]]\nid = \"rogue\"\nname = \"Rogue\"\nroles = [\"partner\"]\n\n\
         [[entities]]\nid = \"ndn\"\nname = \"NDN\"\nroles = [\"partner\"]\ntrusted_by_all = true\n"
    );
    let r = Router::new(
        Registry::from_toml(&text, "t.toml").unwrap(),
        RoutePolicy::default(),
    );
    let victim = [ip("198.51.100.200")]; // the water board's
    for tlp in [Tlp::Clear, Tlp::Green, Tlp::Amber] {
        // A partner with no tie to the water board makes up a row with its address: nobody
        // is told, and the audit says why.
        let got = route(&r, Sensitivity::new(tlp), "rogue", &victim);
        assert!(
            got.contains(&("water".into(), false, Rule::NotServed)),
            "{tlp:?}: {got:?}"
        );
        assert!(
            !got.iter().any(|(id, ok, _)| id == "water" && *ok),
            "{got:?}"
        );
        // A national sensor's telemetry reaches it.
        let got = route(&r, Sensitivity::new(tlp), "ndn", &victim);
        assert!(
            got.iter().any(|(id, ok, _)| id == "water" && *ok),
            "{tlp:?}: {got:?}"
        );
    }
    // The shop trusts the MSP although the MSP does not stream for it.
    let got = route(
        &r,
        Sensitivity::new(Tlp::Green),
        "msp",
        &[ip("203.0.113.70")],
    );
    assert!(got.iter().any(|(id, ok, _)| id == "shop" && *ok), "{got:?}");
    assert!(r.serves(
        r.registry().by_id("msp").unwrap(),
        r.registry().by_id("hospital").unwrap()
    ));
    assert!(!r.serves(
        r.registry().by_id("rogue").unwrap(),
        r.registry().by_id("hospital").unwrap()
    ));
}

#[test]
fn the_daily_quota_counts_distinct_indicators_per_partner_and_resets_each_day() {
    let mut q = DailyQuota::new(2);
    let (a, b) = (EntityOrd::new(1), EntityOrd::new(2));
    let day = 20_000 * 86_400;
    assert_eq!(q.admit(a, "x", day), Admission::Admitted);
    assert_eq!(q.admit(a, "y", day + 1), Admission::Admitted);
    // A seen indicator again: still in.
    assert_eq!(q.admit(a, "x", day + 2), Admission::Admitted);
    assert_eq!(q.admit(a, "z", day + 3), Admission::FirstRefusal);
    assert_eq!(q.admit(a, "w", day + 4), Admission::Refused);
    // Another partner has its own quota.
    assert_eq!(q.admit(b, "z", day + 5), Admission::Admitted);
    // The next UTC day starts afresh.
    assert_eq!(q.admit(a, "z", day + 86_400), Admission::Admitted);
}

#[test]
fn the_quota_filter_withholds_and_audits_past_the_limit() {
    let line = |id: &str| crate::hits::HitLine {
        indicator_id: id.into(),
        kind: "domain".into(),
        indicator: format!("{id}.example"),
        field: "query".into(),
        value: format!("www.{id}.example"),
        row: 0,
        input: "dns.jsonl".into(),
        event_time: None,
        tlp: "AMBER".into(),
        source: "feed".into(),
        tags: Vec::new(),
    };
    let mut q = DailyQuota::new(2);
    let now = jiff::Timestamp::from_second(20_000 * 86_400).unwrap();
    let a = EntityOrd::new(1);
    let out = q.filter(
        a,
        "msp",
        vec![line("x"), line("y"), line("z"), line("x")],
        now,
    );
    let ids: Vec<&str> = out
        .admitted
        .iter()
        .map(|h| h.indicator_id.as_str())
        .collect();
    assert_eq!(ids, ["x", "y", "x"]);
    assert!(out.first_refusal);
    let audit = String::from_utf8(out.audit).unwrap();
    assert_eq!(audit.lines().count(), 1);
    let rec: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            rec["indicator"].as_str(),
            rec["entity"].as_str(),
            rec["rule"].as_str()
        ),
        (Some("z"), Some("msp"), Some("partner_daily_limit"))
    );
    // Later batches the same day: withheld again, not a first refusal.
    let again = q.filter(a, "msp", vec![line("w")], now);
    assert!(again.admitted.is_empty() && !again.first_refusal);
}
