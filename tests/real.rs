//! The real data: all of maltrail compiled and matched against the real Zeek DNS and TLS logs,
//! with the expected rows computed independently (suffix sets and address sets built straight
//! from the indicator set, no index).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::{IndicatorSet, Kind, normalize};
use cwn::ingest::{self, Ingest, SourceOptions};
use cwn::matcher::Matcher;
use cwn::telemetry::{self, FieldMap};

use crate::util;

fn maltrail() -> Option<IndicatorSet> {
    let tarball = util::shared_real("maltrail-trails-static.tar.gz")?;
    let dir = util::extract(&tarball);
    let opts = SourceOptions::default();
    let files = ingest::expand_sources(&[dir.path().join("trails/static")], &opts).unwrap();
    let mut driver = Ingest::new(None);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).unwrap();
    Some(driver.finish().0)
}

fn run(index: &CompiledIndex, log: &str, fields: &FieldMap) -> BTreeSet<(u64, String)> {
    let path = util::shared_real(log).unwrap();
    let m = Matcher::new(index, fields, 0);
    let mut hits = Vec::new();
    for b in telemetry::open(&path, None, fields).unwrap() {
        m.match_batch(&b.unwrap(), &mut hits);
    }
    hits.iter()
        .map(|h| (h.row, index.meta().id(h.ord).to_string()))
        .collect()
}

/// Every `(row, indicator id)` a column of names should hit, by walking each name's suffixes
/// through plain hash sets.
fn expected_names(set: &IndicatorSet, names: &[(u64, Vec<String>)]) -> BTreeSet<(u64, String)> {
    let mut domains: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut hosts: HashMap<&str, Vec<&str>> = HashMap::new();
    for (_, i) in set.iter() {
        match i.kind {
            Kind::Domain => domains.entry(&i.value).or_default().push(&i.id),
            Kind::Hostname => hosts.entry(&i.value).or_default().push(&i.id),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for (row, vals) in names {
        for v in vals {
            let Ok(d) = normalize::domain(v) else {
                continue;
            };
            for id in hosts.get(d.as_str()).into_iter().flatten() {
                out.insert((*row, id.to_string()));
            }
            let mut s = d.as_str();
            loop {
                for id in domains.get(s).into_iter().flatten() {
                    out.insert((*row, id.to_string()));
                }
                match s.split_once('.') {
                    Some((_, rest)) => s = rest,
                    None => break,
                }
            }
        }
    }
    out
}

fn column(log: &str, field: &str) -> Vec<(u64, Vec<String>)> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let fields = FieldMap::from_specs([format!("{field}=text").parse().unwrap()]).unwrap();
    let path = util::shared_real(log).unwrap();
    let mut out = Vec::new();
    for b in telemetry::open(&path, None, &fields).unwrap() {
        let b = b.unwrap();
        let col = b.batch.column(0);
        for r in 0..b.batch.num_rows() {
            let vals = if col.is_null(r) {
                vec![]
            } else {
                match col.data_type() {
                    arrow_schema::DataType::Utf8 => {
                        vec![col.as_string::<i32>().value(r).to_string()]
                    }
                    _ => {
                        let l = col.as_list::<i32>().value(r);
                        let s = l.as_string::<i32>();
                        (0..s.len()).map(|i| s.value(i).to_string()).collect()
                    }
                }
            };
            out.push((b.first_row + r as u64, vals));
        }
    }
    out
}

#[test]
fn maltrail_against_real_zeek_dns_and_tls() {
    let Some(set) = maltrail() else { return };
    let index = IndexBuilder::new().build(&set).unwrap();
    index.validate().unwrap();

    // DNS queries under subdomain semantics.
    let dns = FieldMap::from_specs(["query=domain".parse().unwrap()]).unwrap();
    let got = run(&index, "zeek-dns.log.gz", &dns);
    let want = expected_names(&set, &column("zeek-dns.log.gz", "query"));
    assert_eq!(got, want);
    let rows: HashSet<u64> = got.iter().map(|(r, _)| *r).collect();
    eprintln!("zeek dns.log: {} hit rows, {} hits", rows.len(), got.len());
    assert!(!rows.is_empty());

    // TLS: SNI as a name, the responder as an address with its port.
    let tls = FieldMap::from_specs(
        [
            "server_name=domain",
            "id.resp_h=ip",
            "id.resp_p=port@id.resp_h",
        ]
        .iter()
        .map(|s| s.parse().unwrap()),
    )
    .unwrap();
    let got = run(&index, "zeek-ssl.log.gz", &tls);
    let mut want = expected_names(&set, &column("zeek-ssl.log.gz", "server_name"));
    let addrs: HashMap<IpAddr, Vec<&str>> = set
        .iter()
        .filter(|(_, i)| i.kind == Kind::Ipv4 || i.kind == Kind::Ipv6)
        .fold(HashMap::new(), |mut m, (_, i)| {
            m.entry(i.value.parse().unwrap()).or_default().push(&i.id);
            m
        });
    let pairs: HashMap<(IpAddr, u16), Vec<&str>> = set
        .iter()
        .filter(|(_, i)| i.kind == Kind::IpPort)
        .fold(HashMap::new(), |mut m, (_, i)| {
            m.entry(normalize::split_ip_port(&i.value).unwrap())
                .or_default()
                .push(&i.id);
            m
        });
    let nets: Vec<(ipnet::IpNet, &str)> = set
        .iter()
        .filter(|(_, i)| i.kind == Kind::Cidr)
        .map(|(_, i)| (i.value.parse().unwrap(), i.id.as_str()))
        .collect();
    let resp = column("zeek-ssl.log.gz", "id.resp_h");
    let ports = column("zeek-ssl.log.gz", "id.resp_p");
    for ((row, a), (_, p)) in resp.iter().zip(&ports) {
        let Some(Ok(ip)) = a.first().map(|a| normalize::ip(a)) else {
            continue;
        };
        let port: Option<u16> = p.first().and_then(|p| p.parse().ok());
        for id in addrs.get(&ip).into_iter().flatten() {
            want.insert((*row, id.to_string()));
        }
        if let Some(port) = port {
            for id in pairs.get(&(ip, port)).into_iter().flatten() {
                want.insert((*row, id.to_string()));
            }
        }
        for (n, id) in &nets {
            if n.contains(&ip) {
                want.insert((*row, id.to_string()));
            }
        }
    }
    assert_eq!(got, want);
    eprintln!("zeek ssl.log: {} hits", got.len());
}
