//! `cwn gen indicators` and `cwn gen telemetry`: synthetic feeds and telemetry for
//! benchmarks and tests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use jiff::Timestamp;

use super::index::load_index;
use super::progress;
use cwn::generate::feed::{self, FeedOptions, FeedReport};
use cwn::generate::telemetry::{
    Compression, OutputFormat, Preset, TelemetryGenerator, TelemetryOptions, TelemetryReport,
};
use cwn::indicator::Tlp;

/// Arguments of `cwn gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// What to generate.
    #[command(subcommand)]
    pub what: GenCommand,
}

/// What `cwn gen` writes.
#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// Write a synthetic MISP feed directory (manifest.json, hashes.csv, <uuid>.json).
    ///
    /// Example: cwn gen indicators --count 1000000 --seed 7 -o feed/
    Indicators(IndicatorsArgs),
    /// Write synthetic Zeek, Suricata EVE or ECS telemetry with hits planted from a snapshot.
    ///
    /// Example: cwn gen telemetry --preset zeek --rows 10000000 --hit-rate 0.001 --index set.cwnsnap -o conn.parquet
    Telemetry(TelemetryArgs),
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2025-06-01T00:00:00Z: {e}"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let (num, pct) = match s.trim().strip_suffix('%') {
        Some(n) => (n, true),
        None => (s.trim(), false),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number (0.01 or 1%)"))?;
    let v = if pct { v / 100.0 } else { v };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "`{s}`: a hit rate is between 0 and 1 (or 0% and 100%)"
        ))
    }
}

/// Arguments of `cwn gen indicators`.
#[derive(Debug, Args)]
pub struct IndicatorsArgs {
    /// Attributes to write over all events (objects' members, revoked and context-only
    /// attributes included).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub count: u64,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Reference time: events date from the two years before it; validity hints lie
    /// before, around and after it.
    #[arg(long, value_name = "TIME", default_value = "2025-06-01T00:00:00Z", value_parser = parse_time)]
    pub now: Timestamp,
    /// Replace the directory if it exists and is not empty.
    #[arg(long)]
    pub force: bool,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The feed directory to write.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

/// Arguments of `cwn gen telemetry`.
#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// The schema to imitate.
    #[arg(long, value_enum, default_value_t = Preset::Zeek)]
    pub preset: Preset,
    /// Rows to write.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub rows: u64,
    /// Fraction of rows that carry an indicator value (0.001, or 0.1%).
    #[arg(long, value_name = "R", default_value = "0.01", value_parser = parse_rate)]
    pub hit_rate: f64,
    /// The compiled snapshot hits are planted from and background is checked against.
    #[arg(long, value_name = "SNAPSHOT")]
    pub index: PathBuf,
    /// Require a signature by this public key on the snapshot.
    #[arg(long, value_name = "KEY")]
    pub verify_key: Option<PathBuf>,
    /// Seed: the same seed, options and snapshot give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Time of the first row.
    #[arg(long, value_name = "TIME", default_value = "2025-06-01T00:00:00Z", value_parser = parse_time)]
    pub start: Timestamp,
    /// Seconds the rows span.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub duration: u64,
    /// Parquet and Arrow column compression.
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Output file; its extension picks the format: .parquet, .arrow, .jsonl / .ndjson
    /// (add .gz to compress).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

pub(super) fn run(args: &GenArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        GenCommand::Indicators(a) => run_indicators(a),
        GenCommand::Telemetry(a) => run_telemetry(a),
    }
}

/// A sibling path of `path` for a temporary or retired copy.
fn sibling(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: not a file or directory name", path.display()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(dir.join(format!(
        ".{}.{what}{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn run_indicators(args: &IndicatorsArgs) -> anyhow::Result<ExitCode> {
    let out = &args.output;
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !args.force {
            anyhow::bail!(
                "{} exists and is not an empty directory; use --force to replace it",
                out.display()
            );
        }
    }
    let started = Instant::now();
    // Built beside the target and renamed into place: a reader never sees half a feed.
    let tmp = sibling(out, "tmp")?;
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    let opts = FeedOptions {
        count: args.count,
        seed: args.seed,
        now: args.now,
        default_tlp: Tlp::AmberStrict,
    };
    let pb = progress(args.count, "gen indicators");
    let result = feed::write_feed(&tmp, &opts, |n| pb.set_position(n));
    pb.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            anyhow::bail!("{}: {e}", out.display());
        }
    };
    if out.exists() {
        let old = sibling(out, "old")?;
        std::fs::rename(out, &old).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        std::fs::rename(&tmp, out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        std::fs::remove_dir_all(&old).map_err(|e| anyhow::anyhow!("{}: {e}", old.display()))?;
    } else {
        std::fs::rename(&tmp, out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    }
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["elapsed_ms"] = serde_json::json!((secs * 1e3) as u64);
        outln!("{v}");
    } else {
        print_feed_report(out, &report, secs);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_feed_report(out: &Path, r: &FeedReport, secs: f64) {
    outln!(
        "wrote {} event(s) with {} attribute(s) and {} object(s) to {} in {secs:.2} s ({:.1} MB)",
        r.events,
        r.attributes,
        r.objects,
        out.display(),
        r.bytes as f64 / 1e6
    );
    outln!(
        "  {:<24} {:>10}\n  {:<24} {:>10}\n  {:<24} {:>10}\n  {:<24} {:>10}",
        "indicators to accept",
        r.indicators,
        "revoked",
        r.revoked,
        "context only",
        r.context_only,
        "hashes.csv lines",
        r.hash_lines
    );
    outln!("\nindicators by kind:");
    for (k, n) in &r.by_kind {
        outln!("  {:<24} {n:>10}", k.name());
    }
    outln!("\nindicators by TLP (unlabelled events counted as AMBER+STRICT):");
    for (t, n) in &r.by_tlp {
        outln!("  {:<24} {n:>10}", t.to_string());
    }
}

/// Writes through a temporary file beside `path` and renames it into place.
fn write_file_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let result = (|| -> anyhow::Result<T> {
        let (file, pending) = cwn::outfile::OutputFile::create(path, 0o644)?.into_parts();
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let v = write(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        pending.commit(&file)?;
        Ok(v)
    })();
    result.map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
}

fn run_telemetry(args: &TelemetryArgs) -> anyhow::Result<ExitCode> {
    let format = OutputFormat::from_path(&args.output).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: unknown extension; use .parquet, .arrow, .jsonl or .ndjson (optionally .gz)",
            args.output.display()
        )
    })?;
    let (index, _, _) = load_index(&args.index, args.verify_key.as_deref())?;
    let fields = args.preset.field_map();
    let opts = TelemetryOptions {
        preset: args.preset,
        rows: args.rows,
        hit_rate: args.hit_rate,
        seed: args.seed,
        start: args.start,
        duration_secs: args.duration,
        compression: args.compression,
        internal: Vec::new(),
    };
    let started = Instant::now();
    let generator = TelemetryGenerator::new(&index, &fields, opts)?;
    if args.hit_rate > 0.0 && generator.plantable().is_empty() {
        tracing::warn!(
            "{} holds no indicator that {} rows can carry; no hits will be planted",
            args.index.display(),
            args.preset.name()
        );
    }
    let pb = progress(args.rows, "gen telemetry");
    let report = write_file_atomically(&args.output, |w| {
        Ok(generator.write(format, w, |n| pb.set_position(n))?)
    });
    pb.finish_and_clear();
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["bytes"] = serde_json::json!(bytes);
        v["elapsed_ms"] = serde_json::json!((secs * 1e3) as u64);
        v["fields"] = serde_json::json!(args.preset.field_specs());
        outln!("{v}");
    } else {
        print_telemetry_report(args, format, &report, bytes, secs);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_telemetry_report(
    args: &TelemetryArgs,
    format: OutputFormat,
    r: &TelemetryReport,
    bytes: u64,
    secs: f64,
) {
    let pct = |n: u64| {
        if r.rows > 0 {
            100.0 * n as f64 / r.rows as f64
        } else {
            0.0
        }
    };
    outln!(
        "wrote {} {} row(s) as {} to {} in {secs:.2} s ({:.0} rows/s, {:.1} MB)",
        r.rows,
        args.preset.name(),
        format.name(),
        args.output.display(),
        r.rows as f64 / secs.max(1e-9),
        bytes as f64 / 1e6
    );
    outln!(
        "  {} row(s) carry an indicator: {:.3} % (asked {:.3} %){}",
        r.planted,
        pct(r.planted),
        args.hit_rate * 100.0,
        if r.plant_failures > 0 {
            format!(
                "; {} row(s) found no indicator valid at their time",
                r.plant_failures
            )
        } else {
            String::new()
        }
    );
    for (k, n) in &r.planted_by_kind {
        outln!("    {:<16} {n:>10}", k.name());
    }
    if r.pool_redraws > 0 {
        outln!(
            "  {} of {} background value(s) hit the index and were drawn again",
            r.pool_redraws,
            r.pool_values
        );
    }
    let mut cmd = format!("cwn match --index {}", args.index.display());
    for f in args.preset.field_specs() {
        cmd.push_str(" --field ");
        cmd.push_str(f);
    }
    outln!("match them with:\n  {cmd} {}", args.output.display());
}
