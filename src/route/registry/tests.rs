use super::*;

const EXAMPLE: &str = include_str!("../../../data/registry.example.toml");

/// A registry file whose third entity (`entities[2]`, starting on line 11) gets `extra`.
fn with_extra(extra: &str) -> String {
    format!(
        r#"[[entities]]
id = "ncsc"
name = "NCSC"
roles = ["publisher"]

[[entities]]
id = "msp-a"
name = "MSP A"
roles = ["partner"]

[[entities]]
id = "hospital-b"
name = "Hospital B"
roles = ["subscriber"]
{extra}
"#
    )
}

#[test]
fn example_registry_loads() {
    let reg = Registry::from_toml(EXAMPLE, "registry.example.toml").unwrap();
    assert!(reg.len() >= 5);
    let ncsc = reg.by_id("ncsc").unwrap();
    assert!(reg.entity(ncsc).roles.contains(Role::Publisher));
    for (ord, e) in reg.iter() {
        if let Some(fp) = e.fingerprint {
            assert_eq!(reg.by_fingerprint(&fp), Some(ord));
        }
        if let Some(s) = &e.subject {
            assert_eq!(reg.by_subject(s), Some(ord));
        }
    }
    assert!(reg.with_role(Role::Partner).count() >= 1);
}

#[test]
fn problems_name_the_line_the_key_and_the_value() {
    // Line 15 is the first line of `extra`.
    let cases: &[(&str, &str)] = &[
        (
            "prefixes = [\"198.51.100.0/24\", \"10.0.0.0/33\"]",
            "f:15: entities[2].prefixes[1]: \"10.0.0.0/33\" is not a prefix",
        ),
        (
            "prefixes = [\"198.51.100.7/24\"]",
            "f:15: entities[2].prefixes[0]: \"198.51.100.7/24\" has host bits set (the network is 198.51.100.0/24)",
        ),
        (
            "prefixes = [\"2000::/8\"]",
            "f:15: entities[2].prefixes[0]: \"2000::/8\" is too broad for a constituency (shortest accepted: /8 IPv4, /16 IPv6)",
        ),
        (
            "prefixs = [\"198.51.100.0/24\"]",
            "f:15: entities[2].prefixs: unknown field `prefixs`, expected one of `id`, `name`, `roles`, `sector`, `prefixes`, `domains`, `sharing_groups`, `fingerprint`, `subject`, `on_behalf_of`, `trusts`, `trusted_by_all`",
        ),
        (
            "domains = [\"hospital-b.example\", \"bad..example\"]",
            "f:15: entities[2].domains[1]: \"bad..example\" is not a domain: invalid domain: `bad..example` has an empty label",
        ),
        (
            "on_behalf_of = [\"nobody\"]",
            "f:15: entities[2].on_behalf_of: only a partner streams telemetry on behalf of others (add \"partner\" to roles)\nf:15: entities[2].on_behalf_of[0]: no entity \"nobody\"",
        ),
        (
            "fingerprint = \"abcd\"",
            "f:15: entities[2].fingerprint: \"abcd\" is not a SHA-256 fingerprint (64 hex digits, `:` separators allowed)",
        ),
        (
            "sector = 7",
            "f:15: entities[2].sector: invalid type: integer `7`, expected a string",
        ),
        (
            "\n[[entities]]\nid = \"msp-a\"\nname = \"again\"\nroles = [\"subscriber\"]",
            "f:17: entities[3].id: duplicate id \"msp-a\" (first at line 7)",
        ),
    ];
    for (extra, want) in cases {
        let err = Registry::from_toml(&with_extra(extra), "f").unwrap_err();
        assert_eq!(err.to_string(), *want, "{extra}");
    }
}

#[test]
fn schema_problems_name_the_entity() {
    let text = "[[entities]]\nid = \"a\"\nname = \"A\"\nroles = [\"owner\"]\n";
    let err = Registry::from_toml(text, "r.toml").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("r.toml:4: entities[0].roles"), "{msg}");
    assert!(msg.contains("owner"), "{msg}");

    let text = "[[entities]]\nid = \"a\"\nroles = [\"subscriber\"]\n";
    let msg = Registry::from_toml(text, "r.toml").unwrap_err().to_string();
    assert!(msg.contains("entities[0]"), "{msg}");
    assert!(msg.contains("missing field `name`"), "{msg}");

    let text = "[[entities]]\nid = \"a\"\nname = \"A\"\nroles = []\n";
    let msg = Registry::from_toml(text, "r.toml").unwrap_err().to_string();
    assert_eq!(
        msg,
        "r.toml:4: entities[0].roles: no role (publisher, partner, subscriber)"
    );

    let msg = Registry::from_toml("entity = 1\n", "r.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("r.toml:1: entity: unknown field"), "{msg}");

    let msg = Registry::from_toml("[[entities]\n", "r.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("r.toml:1: "), "{msg}");
}

#[test]
fn references_may_point_forward_and_self_reference_is_refused() {
    let text = r#"
[[entities]]
id = "msp"
name = "MSP"
roles = ["partner"]
on_behalf_of = ["later", "later"]

[[entities]]
id = "later"
name = "Later"
roles = ["subscriber"]
"#;
    let reg = Registry::from_toml(text, "r").unwrap();
    assert_eq!(
        reg.entity(EntityOrd::new(0)).on_behalf_of,
        [EntityOrd::new(1)]
    );

    let text = "[[entities]]\nid = \"msp\"\nname = \"M\"\nroles = [\"partner\"]\non_behalf_of = [\"msp\"]\n";
    let msg = Registry::from_toml(text, "r").unwrap_err().to_string();
    assert_eq!(
        msg,
        "r:5: entities[0].on_behalf_of[0]: an entity cannot act on its own behalf"
    );
}

#[test]
fn duplicate_fingerprints_and_subjects_are_refused() {
    let fp = "AB:".repeat(31) + "AB";
    let text = format!(
        "[[entities]]\nid = \"a\"\nname = \"A\"\nroles = [\"subscriber\"]\nfingerprint = \"{fp}\"\nsubject = \"CN=a\"\n\n[[entities]]\nid = \"b\"\nname = \"B\"\nroles = [\"subscriber\"]\nfingerprint = \"{}\"\nsubject = \"CN=a\"\n",
        "ab".repeat(32)
    );
    let msg = Registry::from_toml(&text, "r").unwrap_err().to_string();
    assert_eq!(
        msg,
        "r:12: entities[1].fingerprint: fingerprint already used by entities[0] (line 1)\nr:13: entities[1].subject: subject already used by entities[0]"
    );
}

#[test]
fn domains_are_normalised_and_bare_addresses_are_host_prefixes() {
    let reg = Registry::from_toml(
        &with_extra("domains = [\"Hospital-B.Example.\", \"bücher.example\"]\nprefixes = [\"2001:DB8::1\", \"192.0.2.9\"]"),
        "r",
    )
    .unwrap();
    let e = reg.entity(reg.by_id("hospital-b").unwrap());
    assert_eq!(e.domains, ["hospital-b.example", "xn--bcher-kva.example"]);
    assert_eq!(
        e.prefixes,
        [
            "2001:db8::1/128".parse::<IpNet>().unwrap(),
            "192.0.2.9/32".parse().unwrap()
        ]
    );
}

#[test]
fn synthetic_is_deterministic_and_nests_customers_in_providers() {
    let a = Registry::synthetic(500, 7);
    let b = Registry::synthetic(500, 7);
    let c = Registry::synthetic(500, 8);
    assert_eq!(a.len(), 500);
    assert!(a.iter().zip(b.iter()).all(|((_, x), (_, y))| x == y));
    assert!(a.iter().zip(c.iter()).any(|((_, x), (_, y))| x != y));
    assert!(a.entity(EntityOrd::new(0)).roles.contains(Role::Publisher));
    // Customers nest in their provider, in v4, v6 and DNS.
    let mut nested = 0;
    for (_, cust) in a.iter().filter(|(_, e)| e.id.starts_with("cust-")) {
        let provider = a
            .iter()
            .find(|(_, p)| {
                p.id.starts_with("prov-")
                    && p.prefixes.iter().any(|pn| pn.contains(&cust.prefixes[0]))
            })
            .expect("a customer's /24 lies in a provider's /16");
        assert!(provider.1.prefixes[1].contains(&cust.prefixes[1]));
        assert!(cust.domains[0].ends_with(&format!(".{}", provider.1.domains[0])));
        nested += 1;
    }
    assert!(nested > 5, "{nested} customers");
    assert!(a.with_role(Role::Partner).count() > 2);
    // Independent entities do not overlap anybody.
    let indep: Vec<_> = a
        .iter()
        .filter(|(_, e)| e.id.starts_with("ent-") || e.id.starts_with("msp-"))
        .collect();
    for (i, (_, x)) in indep.iter().enumerate() {
        for (_, y) in &indep[i + 1..] {
            for p in &x.prefixes {
                assert!(
                    y.prefixes.iter().all(|q| !p.contains(q) && !q.contains(p)),
                    "{} {}",
                    x.id,
                    y.id
                );
            }
        }
    }
    // Every entity has a certificate identity.
    assert!(
        a.iter()
            .all(|(o, e)| a.by_fingerprint(&e.fingerprint.unwrap()) == Some(o))
    );
}

#[test]
fn from_entities_checks_ids_and_references() {
    let mut a = Entity::new("a", "A", Roles::of(&[Role::Subscriber]));
    a.on_behalf_of.push(EntityOrd::new(5));
    let b = Entity::new("a", "B", Roles::empty());
    let err = Registry::from_entities(vec![a, b]).unwrap_err().to_string();
    assert_eq!(
        err,
        "<registry>: entities[0].on_behalf_of: set on an entity that is not a partner\n<registry>: entities[0].on_behalf_of: ordinal out of range\n<registry>: entities[1].id: duplicate id \"a\"\n<registry>: entities[1].roles: no role"
    );
}
