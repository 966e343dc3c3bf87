//! `cwn compile`, `cwn inspect` and `cwn match`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use rayon::prelude::*;

use super::{SourceArgs, ingest_sources, load_warninglists, progress, write_atomically};
use crate::hits::{self, Sightings};
use crate::index::snapshot::keys;
use crate::index::{CompiledIndex, IndexBuilder};
use crate::indicator::{IndicatorSet, Kind, Tlp};
use crate::matcher::{Hit, Matcher};
use crate::route::registry::Registry;
use crate::route::{RoutePolicy, Router, Sensitivity};
use crate::telemetry::{self, FieldMap, FieldSpec, InputFormat};

/// Arguments of `cwn compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Where the indicators come from and how to read them (as `cwn ingest`).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Sign the snapshot with this Ed25519 private key (PKCS#8 PEM, from `cwn keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Arm TLP:RED indicators (by default they are left out of shared matching).
    #[arg(long)]
    pub arm_red: bool,
    /// Compile only the indicators this entity may hold (its clearance under the TLP and
    /// sharing rules, see `cwn::route::Router::may_hold`); needs `--registry`.
    #[arg(long = "for", value_name = "ENTITY", requires = "registry")]
    pub for_entity: Option<String>,
    /// The entity registry (TOML) in which `--for` finds the entity.
    #[arg(long, value_name = "FILE", requires = "for_entity")]
    pub registry: Option<PathBuf>,
    /// Version of the set written into the header.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub set_version: u64,
    /// Creation time (Unix seconds) written into the header. Default: `SOURCE_DATE_EPOCH`
    /// if set, else the newest modification time of the sources, so that the same input
    /// gives the same bytes.
    #[arg(long, value_name = "SECONDS")]
    pub created_at: Option<i64>,
    /// Fail (exit 1, write nothing) if any record is invalid or unsupported.
    #[arg(long)]
    pub strict: bool,
    /// The snapshot to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

fn newest_mtime(paths: &[PathBuf]) -> i64 {
    fn walk(p: &Path, best: &mut i64) {
        if let Ok(md) = std::fs::metadata(p) {
            if let Ok(t) = md.modified()
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                *best = (*best).max(d.as_secs() as i64);
            }
            if md.is_dir()
                && let Ok(rd) = std::fs::read_dir(p)
            {
                for e in rd.flatten() {
                    walk(&e.path(), best);
                }
            }
        }
    }
    let mut best = 0;
    for p in paths {
        walk(p, &mut best);
    }
    best
}

pub(super) fn run_compile(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let key = args.sign.as_deref().map(keys::read_signing).transpose()?;
    let warninglists = load_warninglists(&args.source.warninglists)?;
    let (set, report, _rejects) = ingest_sources(&args.source, warninglists)?.finish();
    if args.strict && (report.rejected > 0 || report.unsupported > 0) {
        eprintln!(
            "cwn: --strict: {} invalid and {} unsupported record(s); no snapshot written (see `cwn ingest --rejects`)",
            report.rejected, report.unsupported
        );
        return Ok(ExitCode::from(1));
    }
    let set = match (&args.for_entity, &args.registry) {
        (Some(entity), Some(path)) => cut_for(set, entity, path, args.arm_red)?,
        _ => set,
    };
    let ingest_secs = started.elapsed().as_secs_f64();
    let created_at = args
        .created_at
        .or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or_else(|| newest_mtime(&args.source.sources));
    let t = Instant::now();
    let (index, build) = IndexBuilder::new()
        .arm_red(args.arm_red)
        .set_version(args.set_version)
        .created_at(created_at)
        .build_with_report(&set)?;
    let bytes = index.to_snapshot(key.as_ref());
    let compile_secs = t.elapsed().as_secs_f64();
    write_atomically(&args.output, |w| w.write_all(&bytes))?;
    eprintln!(
        "compiled {} indicator(s) ({} accepted, {} RED not armed) into {} ({} bytes{}) — ingest {ingest_secs:.2} s, compile {compile_secs:.2} s",
        index.len(),
        report.accepted,
        build.red_not_armed,
        args.output.display(),
        bytes.len(),
        if key.is_some() { ", signed" } else { "" },
    );
    Ok(ExitCode::SUCCESS)
}

/// The indicators of `set` that `entity` of the registry at `path` may hold.
fn cut_for(
    set: IndicatorSet,
    entity: &str,
    path: &Path,
    arm_red: bool,
) -> anyhow::Result<IndicatorSet> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let registry = Registry::from_toml(&text, &path.display().to_string())?;
    let ord = registry
        .by_id(entity)
        .ok_or_else(|| anyhow::anyhow!("{}: no entity {entity:?}", path.display()))?;
    let router = Router::new(registry, RoutePolicy { arm_red });
    let mut cut = IndicatorSet::new();
    for (_, ind) in set.iter() {
        if router.may_hold(ord, &Sensitivity::of_indicator(ind)) {
            // The set was de-duplicated already, so every insert succeeds.
            let _ = cut.insert(ind.clone());
        }
    }
    eprintln!(
        "cut for {entity}: {} of {} indicator(s) within its clearance",
        cut.len(),
        set.len()
    );
    Ok(cut)
}

/// Arguments of `cwn inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The snapshot.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: PathBuf,
    /// Require a signature by this public key (SPKI PEM, from `cwn keygen`).
    #[arg(long, value_name = "KEY")]
    pub verify_key: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Reads and checks a snapshot, timing the load.
pub(super) fn load_index(
    path: &Path,
    verify_key: Option<&Path>,
) -> anyhow::Result<(CompiledIndex, f64, u64)> {
    let vk = verify_key.map(keys::read_verify).transpose()?;
    let t = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let index = CompiledIndex::from_snapshot(&bytes, vk.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: refused: {e}", path.display()))?;
    Ok((index, t.elapsed().as_secs_f64(), bytes.len() as u64))
}

pub(super) fn run_inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let (index, load_secs, file_bytes) = load_index(&args.snapshot, args.verify_key.as_deref())?;
    let h = index.header();
    let m = index.meta();
    let by_kind: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .filter(|&&k| h.count(k) > 0)
        .map(|&k| (k.name().to_string(), h.count(k).into()))
        .collect();
    let by_tlp: serde_json::Map<String, serde_json::Value> = Tlp::ALL
        .iter()
        .map(|&t| (t.name().to_string(), m.by_tlp(t).len().into()))
        .collect();
    let sizes = index.sizes();
    let created = jiff::Timestamp::from_second(h.created_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    if args.json {
        let parts: Vec<serde_json::Value> = sizes
            .iter()
            .map(|p| {
                serde_json::json!({
                    "part": p.part, "indicators": p.indicators, "bytes": p.bytes,
                    "bytes_per_indicator": if p.indicators > 0 { p.bytes as f64 / p.indicators as f64 } else { 0.0 },
                })
            })
            .collect();
        let v = serde_json::json!({
            "format_version": h.format_version,
            "set_version": h.set_version,
            "created_at": created,
            "signed": h.signed,
            "indicators": h.indicator_count,
            "by_kind": by_kind,
            "by_tlp": by_tlp,
            "sources": m.by_source().count(),
            "file_bytes": file_bytes,
            "load_ms": load_secs * 1e3,
            "sizes": parts,
        });
        outln!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    outln!("snapshot {}", args.snapshot.display());
    outln!(
        "  format version {}, set version {}, created {created}, {}",
        h.format_version,
        h.set_version,
        if h.signed {
            if args.verify_key.is_some() {
                "signed (signature verified)"
            } else {
                "signed (not verified: no --verify-key)"
            }
        } else {
            "unsigned"
        }
    );
    outln!(
        "  {} indicators from {} source(s); {file_bytes} bytes; loaded and checked in {:.1} ms",
        h.indicator_count,
        m.by_source().count(),
        load_secs * 1e3
    );
    outln!("\nby kind:");
    for (k, n) in &by_kind {
        outln!("  {k:<16} {n:>10}");
    }
    outln!("\nby TLP:");
    for (t, n) in &by_tlp {
        outln!("  {t:<16} {n:>10}");
    }
    outln!("\nmemory:                                 indicators        bytes   bytes/indicator");
    for p in &sizes {
        let per = if p.indicators > 0 {
            format!("{:.1}", p.bytes as f64 / p.indicators as f64)
        } else {
            "-".into()
        };
        outln!(
            "  {:<36} {:>10} {:>12} {:>17}",
            p.part,
            p.indicators,
            p.bytes,
            per
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `cwn match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// The compiled snapshot.
    #[arg(long, value_name = "SNAPSHOT")]
    pub index: PathBuf,
    /// Require a signature by this public key.
    #[arg(long, value_name = "KEY")]
    pub verify_key: Option<PathBuf>,
    /// Which column holds which observable: NAME=KIND (ip, domain, url, md5, sha1, sha256,
    /// hash, email, ja3, ja3s, ja4, user-agent, text, time, port@ADDRFIELD). Repeatable.
    #[arg(long = "field", value_name = "NAME=KIND", required = true)]
    pub fields: Vec<FieldSpec>,
    /// Input format; detected from the content when absent.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// Hits as JSON lines to this file (`-` for stdout).
    #[arg(short, long, value_name = "HITS", default_value = "-")]
    pub output: PathBuf,
    /// Hit counts per indicator as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub sightings: Option<PathBuf>,
    /// Telemetry files.
    #[arg(required = true, value_name = "TELEMETRY")]
    pub telemetry: Vec<PathBuf>,
}

pub(super) fn run_match(args: &MatchArgs) -> anyhow::Result<ExitCode> {
    let fields = FieldMap::from_specs(args.fields.iter().cloned()).map_err(anyhow::Error::msg)?;
    let (index, load_secs, _) = load_index(&args.index, args.verify_key.as_deref())?;
    let now = jiff::Timestamp::now().as_second();
    let matcher = Matcher::new(&index, &fields, now);
    let started = Instant::now();
    let to_stdout = args.output.as_os_str() == "-";
    let mut sightings = Sightings::default();
    let mut rows = 0u64;
    let mut bad_rows = 0u64;
    let mut by_kind = std::collections::BTreeMap::<&'static str, u64>::new();
    let mut total_hits = 0u64;
    let pb = progress(args.telemetry.len() as u64, "match");
    let mut run = |w: &mut dyn Write| -> anyhow::Result<()> {
        for path in &args.telemetry {
            let name = path.display().to_string();
            let mut reader = telemetry::open(path, args.input_format, &fields)?;
            loop {
                // A few batches at a time, matched in parallel, written in order.
                let chunk: Vec<_> = reader
                    .by_ref()
                    .take(rayon::current_num_threads() * 2)
                    .collect();
                if chunk.is_empty() {
                    break;
                }
                let chunk: Vec<telemetry::TelemetryBatch> =
                    chunk.into_iter().collect::<Result<_, _>>()?;
                let results: Vec<Vec<Hit>> = chunk
                    .par_iter()
                    .map(|b| {
                        let mut hits = Vec::new();
                        matcher.match_batch(b, &mut hits);
                        hits
                    })
                    .collect();
                for (b, hits) in chunk.iter().zip(&results) {
                    rows += b.batch.num_rows() as u64;
                    for e in &b.errors {
                        bad_rows += 1;
                        tracing::warn!("{name}: line {}: {}", e.line, e.reason);
                    }
                    for h in hits {
                        *by_kind.entry(index.meta().kind(h.ord).name()).or_insert(0) += 1;
                    }
                    total_hits += hits.len() as u64;
                    sightings.add(hits);
                    hits::write_jsonl(w, &index, &fields, &name, hits)?;
                }
            }
            pb.inc(1);
        }
        Ok(())
    };
    if to_stdout {
        let stdout = io::stdout();
        let mut w = io::BufWriter::new(stdout.lock());
        run(&mut w)?;
        w.flush()?;
    } else {
        let mut err = None;
        write_atomically(&args.output, |w| {
            run(w).map_err(|e| {
                err = Some(e);
                io::Error::other("match failed")
            })
        })
        .map_err(|e| err.take().unwrap_or(e))?;
    }
    pb.finish_and_clear();
    if let Some(p) = &args.sightings {
        write_atomically(p, |w| sightings.write_jsonl(w, &index))?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "scanned {rows} row(s) in {secs:.2} s ({:.0} rows/s; index loaded in {:.1} ms): {total_hits} hit(s) on {} indicator(s){}",
        rows as f64 / secs.max(1e-9),
        load_secs * 1e3,
        sightings.len(),
        if bad_rows > 0 {
            format!(", {bad_rows} unreadable row(s) skipped")
        } else {
            String::new()
        }
    );
    for (k, n) in &by_kind {
        eprintln!("  {k:<16} {n:>10}");
    }
    Ok(ExitCode::SUCCESS)
}
