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

mod leaks {
    //! A property over random registries, indicators and rows, checked against the policy
    //! written out naively: whatever rows a partner sends, it gets back only hits it is
    //! cleared for, and nobody is notified who is not an affected party the partner serves
    //! (or the publisher, for internal cases).

    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use cwn::hub::EntityId;
    use cwn::index::IndexBuilder;
    use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
    use cwn::matcher::Matcher;
    use cwn::route::registry::Registry;
    use cwn::route::{BatchParties, MatchedBatch, RoutePolicy, Router, route_batch};
    use cwn::telemetry::{self, FieldMap};
    use proptest::prelude::*;

    const NOW: i64 = 1_750_000_000;

    #[derive(Clone, Debug)]
    struct Entity {
        partner: bool,
        subscriber: bool,
        publisher: bool,
        on_behalf_of: Vec<usize>,
        trusts: Vec<usize>,
        trusted_by_all: bool,
    }

    fn entity(n: usize) -> impl Strategy<Value = Entity> {
        (
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::collection::vec(0..n, 0..3),
            prop::collection::vec(0..n, 0..3),
            prop::bool::weighted(0.1),
        )
            .prop_map(
                |(partner, subscriber, publisher, on_behalf_of, trusts, trusted_by_all)| Entity {
                    partner,
                    // Every entity holds a role; only a partner can be trusted by all.
                    subscriber: subscriber || !(partner || publisher),
                    publisher,
                    on_behalf_of,
                    trusts,
                    trusted_by_all: trusted_by_all && partner,
                },
            )
    }

    fn tlp() -> impl Strategy<Value = Tlp> {
        prop_oneof![
            Just(Tlp::Clear),
            Just(Tlp::Green),
            Just(Tlp::Amber),
            Just(Tlp::AmberStrict),
            Just(Tlp::Red),
        ]
    }

    /// Entity `i` owns `10.i.0.0/16`; a row's client is in one of them or outside all.
    fn registry_toml(es: &[Entity]) -> String {
        let mut t = String::new();
        for (i, e) in es.iter().enumerate() {
            let mut roles = Vec::new();
            if e.partner {
                roles.push("\"partner\"");
            }
            if e.subscriber {
                roles.push("\"subscriber\"");
            }
            if e.publisher {
                roles.push("\"publisher\"");
            }
            let list = |v: &[usize]| -> String {
                let set: BTreeSet<usize> = v.iter().copied().filter(|&o| o != i).collect();
                set.iter()
                    .map(|o| format!("\"e{o}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            t.push_str(&format!(
                "[[entities]]\nid = \"e{i}\"\nname = \"E{i}\"\nroles = [{}]\n\
                 prefixes = [\"10.{i}.0.0/16\"]\n",
                roles.join(", ")
            ));
            if e.partner && !e.on_behalf_of.is_empty() {
                t.push_str(&format!("on_behalf_of = [{}]\n", list(&e.on_behalf_of)));
            }
            if !e.trusts.is_empty() {
                t.push_str(&format!("trusts = [{}]\n", list(&e.trusts)));
            }
            if e.trusted_by_all {
                t.push_str("trusted_by_all = true\n");
            }
        }
        t
    }

    /// Entities, the indicators' TLPs, rows as (indicator, client's owner), the partner and
    /// the publisher.
    type Case = (
        Vec<Entity>,
        Vec<Tlp>,
        Vec<(usize, Option<usize>)>,
        usize,
        Option<usize>,
    );

    fn case() -> impl Strategy<Value = Case> {
        (2usize..7).prop_flat_map(|n| {
            (
                prop::collection::vec(entity(n), n),
                prop::collection::vec(tlp(), 4),
                // (indicator, client's owner or none)
                prop::collection::vec((0usize..4, prop::option::of(0..n)), 1..12),
                0..n,
                prop::option::of(0..n),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn no_rows_give_a_partner_or_anyone_more_than_the_policy_allows(
            (es, tlps, rows, partner, publisher) in case()
        ) {
            let reg = match Registry::from_toml(&registry_toml(&es), "registry.toml") {
                Ok(r) => r,
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            // Durable log numbers unlike the ordinals, as a hub that has seen registry edits.
            let numbers: Vec<EntityId> = (0..reg.len() as u32).map(|o| EntityId(1000 - 7 * o)).collect();
            let router = Router::new(reg, RoutePolicy::default()).with_numbers(numbers.clone());
            let reg = router.registry();
            let mut set = IndicatorSet::new();
            for (k, t) in tlps.iter().enumerate() {
                set.insert(Indicator::new(
                    format!("i{k}"), Kind::Domain, format!("c2-{k}.example"), Arc::from("src"), *t,
                )).unwrap();
            }
            let index = IndexBuilder::new().build(&set).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rows.jsonl");
            let text: String = rows
                .iter()
                .map(|(k, owner)| {
                    let client = owner.map_or(Ipv4Addr::new(192, 0, 2, 9), |o| Ipv4Addr::new(10, o as u8, 1, 2));
                    format!("{{\"query\":\"c2-{k}.example\",\"client\":\"{client}\"}}\n")
                })
                .collect();
            std::fs::write(&path, text).unwrap();
            let fields = FieldMap::from_specs(["query=domain".parse().unwrap(), "client=ip".parse().unwrap()]).unwrap();
            let ord = |i: usize| reg.by_id(&format!("e{i}")).unwrap();
            let parties = BatchParties { partner: ord(partner), publisher: publisher.map(ord) };
            let matcher = Matcher::new(&index, &fields, NOW);
            let pe = &es[partner];
            // The naive policy, from the registry as drawn.
            let serves = |v: usize| {
                v == partner || pe.trusted_by_all || (pe.partner && pe.on_behalf_of.contains(&v))
                    || es[v].trusts.contains(&partner)
            };
            let row_tlp = |r: u64| tlps[rows[r as usize].0];
            let row_victim = |r: u64| rows[r as usize].1;
            let mut green_back = 0;
            for b in telemetry::open(&path, None, &fields).unwrap() {
                let b = b.unwrap();
                let mut found = Vec::new();
                matcher.match_batch(&b, &mut found);
                // RED, not armed, is not even compiled into shared matching.
                let matchable = rows.iter().filter(|(k, _)| tlps[*k] != Tlp::Red).count();
                prop_assert_eq!(found.len(), matchable);
                let routed = route_batch(&router, &MatchedBatch {
                    index: &index, fields: &fields, batch: &b.batch, first_row: b.first_row,
                    input: "rows.jsonl", hits: &found, digest: 7, retro: false,
                }, parties, 0, jiff::Timestamp::from_second(NOW).unwrap());
                for h in &routed.back_to_partner {
                    let (t, victim) = (row_tlp(h.row), row_victim(h.row));
                    let affected = victim.is_some_and(|v| v == partner || (pe.partner && pe.on_behalf_of.contains(&v)));
                    let cleared = pe.partner && match t {
                        Tlp::Clear | Tlp::Green => true,
                        Tlp::Amber => affected,
                        Tlp::AmberStrict | Tlp::Red => false,
                    };
                    // An entity told of its own row, as any victim would be.
                    let own_row = victim == Some(partner) && (pe.subscriber || pe.partner)
                        && matches!(t, Tlp::Clear | Tlp::Green | Tlp::Amber);
                    // A publisher that also streams gets its own internal cases.
                    let own_case = publisher == Some(partner) && t != Tlp::Red;
                    prop_assert!(cleared || own_row || own_case,
                        "{:?} hit back to e{} for a row of {:?}", t, partner, victim);
                    green_back += usize::from(pe.partner && matches!(t, Tlp::Clear | Tlp::Green));
                }
                for n in &routed.notifications {
                    let v: serde_json::Value = serde_json::from_slice(&n.notification.payload).unwrap();
                    let row = v["row"].as_u64().unwrap();
                    let (t, victim) = (row_tlp(row), row_victim(row));
                    let r = (0..es.len()).find(|&i| ord(i) == n.recipient).unwrap();
                    let as_victim = victim == Some(r) && r != partner && serves(r)
                        && (es[r].subscriber || es[r].partner)
                        && matches!(t, Tlp::Clear | Tlp::Green | Tlp::Amber);
                    let as_publisher = Some(r) == publisher && t != Tlp::Red;
                    prop_assert!(as_victim || as_publisher,
                        "e{} notified of a {:?} row of {:?} reported by e{}", r, t, victim, partner);
                    prop_assert!(v.get("input").is_none());
                    prop_assert_eq!(n.notification.entity, numbers[n.recipient.as_usize()],
                        "addressed to the recipient's durable number, not its ordinal");
                }
                // Not vacuous: what the policy allows does arrive.
                for (row, (k, victim)) in rows.iter().enumerate() {
                    let t = tlps[*k];
                    if let Some(v) = *victim
                        && v != partner && serves(v) && es[v].subscriber
                        && matches!(t, Tlp::Clear | Tlp::Green | Tlp::Amber)
                    {
                        let to_v = routed.notifications.iter().any(|n| {
                            n.recipient == ord(v)
                                && serde_json::from_slice::<serde_json::Value>(&n.notification.payload).unwrap()["row"] == row
                        });
                        prop_assert!(to_v, "e{} not told of row {} ({:?}) from e{}", v, row, t, partner);
                    }
                }
            }
            if pe.partner {
                let want = rows.iter().filter(|(k, _)| matches!(tlps[*k], Tlp::Clear | Tlp::Green)).count();
                prop_assert_eq!(green_back, want);
            }
        }
    }
}
