//! `cwn demo`: the main job on a sample set compiled into the binary, so that it runs on a
//! fresh machine with no files, network or services.
//!
//! The sample is the project's `data/`: seven real maltrail lists, the synthetic MISP feed and
//! STIX bundle of FORMATS.md §8, and the four synthetic warninglists.

use std::process::ExitCode;
use std::time::Instant;

use crate::indicator::Tlp;
use crate::ingest::{self, Category, Ingest, SourceOptions, Warninglists};

/// Arguments of `cwn demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/", $path)) as &[u8])),*]
    };
}

/// The embedded sources: `(name, bytes)`; the format is detected as `cwn ingest` would.
const SOURCES: &[(&str, &[u8])] = embed![
    "sample/maltrail/malware/agenttesla.txt",
    "sample/maltrail/malware/apt_silence.txt",
    "sample/maltrail/malware/quad7.txt",
    "sample/maltrail/malware/elf_moobot.txt",
    "sample/maltrail/malicious/adaptix_c2.txt",
    "sample/maltrail/suspicious/ipinfo.txt",
    "sample/maltrail/mass_scanner_cidr.txt",
    "examples/misp-feed/5e3d3c80-eba8-5531-84db-fe0b24a2bbed.json",
    "examples/misp-feed/8682f757-5d7b-54e9-8c2c-af6bf330fd53.json",
    "examples/stix/bundle.json",
];

/// The embedded warninglists: `(name, list.json bytes)`.
const WARNINGLISTS: &[(&str, &[u8])] = embed![
    "examples/warninglists/synthetic-public-resolvers/list.json",
    "examples/warninglists/synthetic-benign-hostnames/list.json",
    "examples/warninglists/empty-file-hashes/list.json",
    "examples/warninglists/synthetic-role-mailboxes/list.json",
];

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut lists = Warninglists::default();
    for (name, bytes) in WARNINGLISTS {
        lists.extend(Warninglists::parse(name, bytes)?);
    }
    let opts = SourceOptions {
        default_tlp: Tlp::AmberStrict,
        ..SourceOptions::default()
    };
    let mut driver = Ingest::new(Some(lists));
    for (name, bytes) in SOURCES {
        let detected = ingest::detect_bytes(name, bytes);
        driver.add(ingest::parse_bytes(detected, name, bytes, &opts));
    }
    let (set, report, rejects) = driver.finish();
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("cwn demo: ingest of the embedded sample set (data/ in the repository)\n");
    print!("{}", super::format_report(&report, &rejects, elapsed));
    println!("\nsuppressed by warninglists (false positives kept out of the index):");
    for r in rejects
        .iter()
        .filter(|r| r.category == Category::Suppressed)
        .take(8)
    {
        println!("  {}: {}", r.record, r.reason);
    }
    println!("\na few accepted indicators:");
    let mut shown = std::collections::BTreeSet::new();
    for (_, ind) in set.iter() {
        if shown.insert(ind.kind) {
            println!(
                "  {:<10} {:<14} {:<60} from {}",
                ind.kind.name(),
                ind.tlp.to_string(),
                ind.value,
                ind.source
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
