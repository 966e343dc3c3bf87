//! Plain lists: the real maltrail trails as the test of the parser.

use std::path::Path;

use cwn::indicator::Kind;
use cwn::ingest::{self, Ingest, SourceOptions};

use crate::util;

/// Counts value lines the obvious way: not blank, not starting with `#`.
fn naive_value_lines(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "txt") {
                let bytes = std::fs::read(&p).unwrap();
                n += bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| {
                        let t = String::from_utf8_lossy(l);
                        let t = t.trim();
                        !t.is_empty() && !t.starts_with('#')
                    })
                    .count() as u64;
            }
        }
    }
    n
}

#[test]
fn every_maltrail_line_is_accepted_or_rejected_with_a_reason() {
    let Some(tarball) = util::shared_real("maltrail-trails-static.tar.gz") else {
        return;
    };
    let dir = util::extract(&tarball);
    let root = dir.path().join("trails/static");
    let opts = SourceOptions::default();
    let files = ingest::expand_sources(std::slice::from_ref(&root), &opts).unwrap();
    assert!(files.len() > 3000, "{} files", files.len());
    // With all the real MISP warninglists, as an operator would run it.
    let lists = util::shared_real("misp-warninglists.tar.gz").map(|t| {
        let dir = util::extract(&t);
        let lists = cwn::ingest::Warninglists::load(dir.path()).unwrap();
        assert_eq!(lists.len(), 136, "every real warninglist loads");
        lists
    });
    let with_lists = lists.is_some();
    let mut driver = Ingest::new(lists);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).unwrap();
    let (set, report, rejects) = driver.finish();

    assert_eq!(report.total(), naive_value_lines(&root));
    if with_lists {
        // Each suppression is reported against a named, versioned list.
        assert!(report.suppressed > 100_000, "{report:?}");
        assert_eq!(
            report.suppressed_by_list.values().sum::<u64>(),
            report.suppressed
        );
        assert!(
            report
                .suppressed_by_list
                .keys()
                .all(|k| k.contains("(version "))
        );
        let mut by: Vec<_> = report.suppressed_by_list.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1));
        eprintln!(
            "maltrail suppressed by warninglist (top 10 of {}):",
            by.len()
        );
        for (list, n) in by.iter().take(10) {
            eprintln!("  {n:>8}  {list}");
        }
        assert!(
            rejects
                .iter()
                .filter(|r| r.category == cwn::ingest::Category::Suppressed)
                .all(|r| r.reason.contains("is on warninglist"))
        );
    }
    assert!(report.total() > 1_800_000, "{report:?}");
    assert_eq!(report.accepted as usize, set.len());
    assert_eq!(
        rejects.len() as u64,
        report.total() - report.accepted,
        "every record not accepted has a reject line"
    );
    assert!(
        rejects
            .iter()
            .all(|r| !r.reason.is_empty() && r.record.starts_with("line "))
    );
    // The bulk is domains, then ip:port, then URLs, as the data README describes.
    let by = &report.by_kind;
    assert!(by[&Kind::Domain] > 1_000_000, "{by:?}");
    assert!(by[&Kind::IpPort] > 100_000, "{by:?}");
    assert!(by[&Kind::Url] + by[&Kind::Uri] > 100_000, "{by:?}");
    // Most mass-scanner /24s lie inside cloud ranges that the warninglists name.
    assert!(
        by[&Kind::Cidr] > if with_lists { 10 } else { 1_000 },
        "{by:?}"
    );
    // Malformed lines are few and explained.
    assert!(report.rejected + report.unsupported < 1_000, "{report:?}");
    assert!(
        rejects
            .iter()
            .any(|r| r.reason.contains("looks like a pattern")),
        "maltrail's regular-expression lines are reported as patterns"
    );
}

#[test]
fn ids_name_the_file_and_line() {
    let opts = SourceOptions::default();
    let root = util::data("sample/maltrail");
    let files = ingest::expand_sources(std::slice::from_ref(&root), &opts).unwrap();
    let mut driver = Ingest::new(None);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).unwrap();
    let (set, _, _) = driver.finish();
    let cidr = set
        .iter()
        .map(|(_, i)| i)
        .find(|i| i.value == "5.63.151.0/24")
        .expect("mass scanner /24 present");
    assert_eq!(cidr.kind, Kind::Cidr);
    assert_eq!(cidr.id, "mass_scanner_cidr.txt:5.63.151.0/24");
    assert_eq!(cidr.source.as_ref(), "mass_scanner_cidr");
}
