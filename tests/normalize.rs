//! Property tests for normalisation: never panics, idempotent, and agrees with an obvious
//! reference on generated values.

use std::net::{Ipv4Addr, Ipv6Addr};

use cwn::indicator::Kind;
use cwn::indicator::normalize::{self, Note};
use proptest::prelude::*;

/// An LDH label that claims no encoding: hyphens in the third and fourth place are
/// reserved (`xn--` announces an A-label, which must then decode; IDNA2008 §2.3.1).
fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
        .prop_filter("reserved hyphens in places 3-4", |l| {
            l.get(2..4) != Some("--")
        })
}

fn domain_name() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), "[a-zA-Z]{2,6}").prop_map(|(labels, tld)| {
        let mut s = labels.join(".");
        s.push('.');
        s.push_str(&tld);
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_text_never_panics_and_guess_is_idempotent(s in "\\PC{0,80}") {
        cwn::fuzzing::normalize_value(s.as_bytes());
    }

    #[test]
    fn url_like_text_never_panics(s in "(hxxps?|https?|ftp)(://|\\[:\\]//)[a-zA-Z0-9.\\[\\]%:@/?#&=_~-]{0,60}") {
        cwn::fuzzing::normalize_value(s.as_bytes());
    }

    #[test]
    fn domains_are_lowercased_and_stripped(d in domain_name(), dots in 0usize..3) {
        let input = format!("{d}{}", ".".repeat(dots));
        let want = d.to_ascii_lowercase();
        prop_assert_eq!(normalize::domain(&input).unwrap(), want.clone());
        let g = normalize::guess(&input).unwrap();
        prop_assert_eq!(g.kind, Kind::Domain);
        prop_assert_eq!(g.value, want);
    }

    #[test]
    fn defanged_domains_and_urls_refang(d in domain_name(), path in "(/[a-z0-9]{1,8}){0,3}") {
        let live = format!("http://{}{path}", d.to_ascii_lowercase());
        let defanged = live.replacen("http", "hxxp", 1).replace('.', "[.]");
        let g = normalize::guess(&defanged).unwrap();
        prop_assert_eq!(g.kind, Kind::Url);
        prop_assert_eq!(&g.value, &normalize::url(&live).unwrap().k1());
        prop_assert!(g.notes.contains(&Note::Refanged));
    }

    #[test]
    fn ipv4_and_its_mapped_form_agree(a in any::<u32>()) {
        let ip = Ipv4Addr::from(a);
        let g = normalize::guess(&ip.to_string()).unwrap();
        prop_assert_eq!(g.kind, Kind::Ipv4);
        prop_assert_eq!(&g.value, &ip.to_string());
        let mapped = ip.to_ipv6_mapped().to_string();
        let m = normalize::ip_or_cidr(&mapped).unwrap();
        prop_assert_eq!(m.kind, Kind::Ipv4);
        prop_assert_eq!(m.value, ip.to_string());
    }

    #[test]
    fn ipv6_is_canonical(a in any::<u128>()) {
        let ip = Ipv6Addr::from(a);
        prop_assume!(ip.to_ipv4_mapped().is_none());
        // Upper-case, fully expanded input still gives RFC 5952 text.
        let s = ip.segments().iter().map(|s| format!("{s:04X}")).collect::<Vec<_>>().join(":");
        let g = normalize::guess(&s).unwrap();
        prop_assert_eq!(g.kind, Kind::Ipv6);
        prop_assert_eq!(g.value, ip.to_string());
    }

    #[test]
    fn cidr_clears_host_bits(a in any::<u32>(), len in 8u8..=32) {
        let n = normalize::cidr(&format!("{}/{len}", Ipv4Addr::from(a))).unwrap();
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = Ipv4Addr::from(a & mask);
        if len == 32 {
            prop_assert_eq!(n.kind, Kind::Ipv4);
            prop_assert_eq!(n.value, net.to_string());
        } else {
            prop_assert_eq!(n.kind, Kind::Cidr);
            prop_assert_eq!(&n.value, &format!("{net}/{len}"));
            prop_assert_eq!(n.notes.contains(&Note::HostBitsCleared), a & !mask != 0);
        }
    }

    #[test]
    fn ip_port_round_trips(a in any::<u32>(), port in 1u16..) {
        let ip = Ipv4Addr::from(a);
        let n = normalize::ip_port(&format!("{ip}:{port}")).unwrap();
        prop_assert_eq!(n.value, format!("{ip}:{port}"));
        prop_assert_eq!(normalize::split_ip_port(&format!("{ip}:{port}")), Some((ip.into(), port)));
    }

    #[test]
    fn urls_follow_the_canonical_recipe(
        https in any::<bool>(),
        host in domain_name(),
        default_port in any::<bool>(),
        segs in prop::collection::vec("[a-z0-9]{1,6}", 0..4),
        query in prop::option::of("[a-z]{1,4}=[0-9]{1,3}"),
    ) {
        let scheme = if https { "HTTPS" } else { "Http" };
        let port = match (default_port, https) { (true, true) => ":443", (true, false) => ":80", _ => "" };
        let path: String = segs.iter().map(|s| format!("/./{s}")).collect();
        let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        let input = format!("{scheme}://{host}{port}{path}{q}#frag");
        let u = normalize::url(&input).unwrap();
        let want_path: String = if segs.is_empty() { "/".into() } else { segs.iter().map(|s| format!("/{s}")).collect() };
        let want = format!("{}://{}{want_path}{q}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase());
        prop_assert_eq!(u.k1(), want);
        prop_assert_eq!(u.k2(), format!("{}{want_path}{q}", host.to_ascii_lowercase()));
        prop_assert!(u.scheme_given);
    }

    #[test]
    fn hashes_lowercase_and_check_length(bytes in prop::collection::vec(any::<u8>(), 16..=16), upper in any::<bool>()) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let input = if upper { hex.to_ascii_uppercase() } else { hex.clone() };
        prop_assert_eq!(normalize::hash(Kind::Md5, &input).unwrap(), hex.clone());
        prop_assert!(normalize::hash(Kind::Sha1, &input).is_err());
        prop_assert!(normalize::hash(Kind::Md5, &input[1..]).is_err());
    }
}

/// Found by fuzzing: `lan.1..` without its trailing dots is `lan.1`, which ends in a number and
/// so must be an IPv4 address; it was accepted as the URL `http://lan.1/…`, which does not
/// parse back. A canonical URL always normalises to itself.
#[test]
fn a_url_whose_host_ends_in_a_number_but_is_no_address_is_refused() {
    for raw in ["lan.1../x", "http://lan.1../x", "http://a.b.0x1f../"] {
        assert!(normalize::url(raw).is_err(), "{raw}");
    }
    for raw in ["http://1.11../x", "http://example.com../x"] {
        let once = normalize::url(raw).unwrap().k1();
        assert_eq!(normalize::url(&once).unwrap().k1(), once, "{raw}");
    }
}

/// Found by fuzzing: decoding an escape beside a literal `%` made a new escape (`%%335` gave
/// `%35`, which the next normalisation decoded again). A canonical URL is its own canonical form.
#[test]
fn decoding_an_escape_never_leaves_a_new_one_behind() {
    for raw in [
        "http://an.kin/a%%\u{1}%%335.x",
        "http://h.example/ba%a%41%4)",
        "http://h.example/%%%34%31",
    ] {
        let once = normalize::url(raw).unwrap().k1();
        assert_eq!(normalize::url(&once).unwrap().k1(), once, "{raw}");
    }
}
