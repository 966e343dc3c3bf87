//! `cwn compile`, `cwn inspect` and `cwn match`.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{SourceArgs, ingest_sources, load_warninglists, write_atomically};
use cwn::hits::{HitWriter, Sightings};
use cwn::index::delta::{self, Delta};
use cwn::index::snapshot::keys;
use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::{Kind, Tlp};
use cwn::matcher::Matcher;
use cwn::matcher::scan::{ScannedBatch, Scanner};
use cwn::route::registry::Registry;
use cwn::route::{RoutePolicy, Router};
use cwn::telemetry::{FieldMap, FieldPresence, FieldSpec, InputFormat, PresetChoice, preset};

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
    /// Version of the set written into the header; a hub takes only a newer one. Default:
    /// the creation time in Unix seconds (below), so that each compile of changed sources
    /// is newer than the last.
    #[arg(long, value_name = "N")]
    pub set_version: Option<u64>,
    /// Creation time (Unix seconds) written into the header. Default: `SOURCE_DATE_EPOCH`
    /// if set, else the newest modification time of the sources, so that the same input
    /// gives the same bytes.
    #[arg(long, value_name = "SECONDS")]
    pub created_at: Option<i64>,
    /// Fail (exit 1, write nothing) if any record is invalid or unsupported.
    #[arg(long)]
    pub strict: bool,
    /// Write a delta against this snapshot instead of a full snapshot: what to remove from
    /// it and what to add so that it answers as a full compile of the sources would.
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "for_entity")]
    pub base: Option<PathBuf>,
    /// Deltas already applied to `--base`, in order: the new delta follows the last of them.
    #[arg(long = "delta", value_name = "DELTA", requires = "base")]
    pub deltas: Vec<PathBuf>,
    /// With `--base`: the key the base and its deltas must be signed with.
    #[arg(long, value_name = "KEY", requires = "base")]
    pub verify_key: Option<PathBuf>,
    /// The snapshot (or with `--base`, the delta) to write.
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
    let base = args
        .base
        .as_deref()
        .map(|b| load_state(b, &args.deltas, args.verify_key.as_deref()))
        .transpose()?;
    let default_version = u64::try_from(created_at).unwrap_or(0).max(1);
    let builder = IndexBuilder::new()
        .arm_red(args.arm_red)
        .set_version(args.set_version.unwrap_or_else(|| match &base {
            // A delta must be newer than its base, also when the sources are older.
            Some(b) => default_version.max(b.header().set_version + 1),
            None => default_version,
        }))
        .created_at(created_at);
    if let Some(base) = &base {
        return write_delta(args, base, &set, &builder, key.as_ref(), ingest_secs);
    }
    let (index, build) = builder.build_with_report(&set)?;
    let index = match (&args.for_entity, &args.registry) {
        (Some(entity), Some(path)) => clearance_cut(&index, entity, path, args.arm_red)?,
        _ => index,
    };
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

/// Computes and writes the delta from `base` to `set` (`cwn compile --base`).
fn write_delta(
    args: &CompileArgs,
    base: &CompiledIndex,
    set: &cwn::indicator::IndicatorSet,
    builder: &IndexBuilder,
    key: Option<&ed25519_dalek::SigningKey>,
    ingest_secs: f64,
) -> anyhow::Result<ExitCode> {
    let t = Instant::now();
    let (delta, stats) = Delta::compute(base, set, builder)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    let bytes = delta.to_bytes(key);
    let compute_secs = t.elapsed().as_secs_f64();
    write_atomically(&args.output, |w| w.write_all(&bytes))?;
    let changes = stats.added + stats.removed - stats.changed;
    eprintln!(
        "delta {} on {}: +{} added, -{} removed ({} of them changed), {} kept, {} left out; {} ({} bytes{}, {}) — ingest {ingest_secs:.2} s, delta {:.0} ms",
        delta.header().set_version,
        delta.base(),
        stats.added - stats.changed,
        stats.removed - stats.changed,
        stats.changed,
        stats.kept,
        stats.left_out,
        args.output.display(),
        bytes.len(),
        if key.is_some() { ", signed" } else { "" },
        if changes > 0 {
            format!(
                "{:.0} bytes per change",
                bytes.len() as f64 / changes as f64
            )
        } else {
            "no change".to_string()
        },
        compute_secs * 1e3,
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads a snapshot and applies `deltas` to it in order, each checked against the state it
/// names (and with `verify_key`, its signature).
pub(super) fn load_state(
    snapshot: &Path,
    deltas: &[PathBuf],
    verify_key: Option<&Path>,
) -> anyhow::Result<CompiledIndex> {
    let (mut index, _, _) = load_index(snapshot, verify_key)?;
    let vk = verify_key.map(keys::read_verify).transpose()?;
    for d in deltas {
        let delta = Delta::read(d, vk.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: refused: {e}", d.display()))?;
        index = index
            .apply(&delta)
            .map_err(|e| anyhow::anyhow!("{}: refused: {e}", d.display()))?;
    }
    Ok(index)
}

/// The indicators of `index` that `entity` of the registry at `path` may hold: the same cut
/// the hub gives the entity on `cwn pull` ([`cwn::route::cut`]).
fn clearance_cut(
    index: &CompiledIndex,
    entity: &str,
    path: &Path,
    arm_red: bool,
) -> anyhow::Result<CompiledIndex> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let registry = Registry::from_toml(&text, &path.display().to_string())?;
    let ord = registry
        .by_id(entity)
        .ok_or_else(|| anyhow::anyhow!("{}: no entity {entity:?}", path.display()))?;
    let router = Router::new(registry, RoutePolicy { arm_red });
    let cut = cwn::route::cut::cut_for(&router, ord, index)?;
    eprintln!(
        "cut for {entity}: {} of {} indicator(s) within its clearance",
        cut.len(),
        index.len()
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
    /// Also check every structure's invariants in full (O(n); a load checks the digests,
    /// the signature and what is O(1) per structure); exits non-zero if one is broken.
    #[arg(long)]
    pub check: bool,
}

/// Reads and checks a snapshot, timing the load.
pub(super) fn load_index(
    path: &Path,
    verify_key: Option<&Path>,
) -> anyhow::Result<(CompiledIndex, f64, u64)> {
    let vk = verify_key.map(keys::read_verify).transpose()?;
    let t = Instant::now();
    let index = CompiledIndex::open(path, vk.as_ref()).map_err(|e| {
        let is_delta = std::fs::read(path).is_ok_and(|b| b.starts_with(&delta::MAGIC));
        if is_delta {
            anyhow::anyhow!(
                "{}: refused: this is a delta; give its base snapshot as the index and the delta with --delta",
                path.display()
            )
        } else {
            anyhow::anyhow!("{}: refused: {e}", path.display())
        }
    })?;
    let bytes = index.snapshot_bytes();
    Ok((index, t.elapsed().as_secs_f64(), bytes))
}

pub(super) fn run_inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut magic = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open(&args.snapshot) {
        use std::io::Read;
        let _ = f.read(&mut magic);
    }
    if magic == delta::MAGIC {
        return inspect_delta(args);
    }
    let (index, load_secs, file_bytes) = load_index(&args.snapshot, args.verify_key.as_deref())?;
    if args.check {
        let t = Instant::now();
        index
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: check failed: {e}", args.snapshot.display()))?;
        eprintln!(
            "{}: every structure's invariants hold (checked in {:.1} ms)",
            args.snapshot.display(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
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
            "identity": delta::hex(&h.digest),
            "indicators": h.indicator_count,
            "by_kind": by_kind,
            "by_tlp": by_tlp,
            "sources": m.source_count(),
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
    outln!("  identity {}", delta::hex(&h.digest));
    outln!(
        "  {} indicators from {} source(s); {file_bytes} bytes; loaded and checked in {:.1} ms",
        h.indicator_count,
        m.source_count(),
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

/// `cwn inspect` of a delta: its base, what it removes and adds, its signature.
fn inspect_delta(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let path = &args.snapshot;
    let vk = args
        .verify_key
        .as_deref()
        .map(keys::read_verify)
        .transpose()?;
    let d = Delta::read(path, vk.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: refused: {e}", path.display()))?;
    if args.check {
        d.validate()
            .map_err(|e| anyhow::anyhow!("{}: check failed: {e}", path.display()))?;
        eprintln!("{}: every structure's invariants hold", path.display());
    }
    let h = d.header();
    let added: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .filter(|&&k| h.count(k) > 0)
        .map(|&k| (k.name().to_string(), h.count(k).into()))
        .collect();
    let created = jiff::Timestamp::from_second(h.created_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let signature = match (h.signed, vk.is_some()) {
        (true, true) => "signed (signature verified)",
        (true, false) => "signed (not verified: no --verify-key)",
        (false, _) => "unsigned",
    };
    if args.json {
        let v = serde_json::json!({
            "kind": "delta",
            "format_version": h.format_version,
            "set_version": h.set_version,
            "created_at": created,
            "signed": h.signed,
            "signature": signature,
            "identity": delta::hex(&h.digest),
            "base": {
                "set_version": d.base().set_version,
                "identity": delta::hex(&d.base().digest),
                "ordinals": d.base().ordinals,
            },
            "added": h.indicator_count,
            "added_by_kind": added,
            "removed": d.removed().len(),
            "file_bytes": d.file_bytes(),
        });
        outln!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    outln!("delta {}", path.display());
    outln!(
        "  format version {}, set version {}, created {created}, {signature}",
        h.format_version,
        h.set_version
    );
    outln!("  identity {}", delta::hex(&h.digest));
    outln!(
        "  applies to set version {} (identity {}, {} ordinals)",
        d.base().set_version,
        delta::hex(&d.base().digest),
        d.base().ordinals
    );
    outln!(
        "  {} added, {} removed; {} bytes",
        h.indicator_count,
        d.removed().len(),
        d.file_bytes()
    );
    if !added.is_empty() {
        outln!("\nadded by kind:");
        for (k, n) in &added {
            outln!("  {k:<16} {n:>10}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `cwn match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// The compiled snapshot.
    #[arg(long, value_name = "SNAPSHOT")]
    pub index: PathBuf,
    /// Require a signature by this public key (of the snapshot and of every delta).
    #[arg(long, value_name = "KEY")]
    pub verify_key: Option<PathBuf>,
    /// Deltas to apply to the snapshot, in order (each refused, naming the mismatch, when it
    /// does not apply to the state before it).
    #[arg(long = "delta", value_name = "DELTA")]
    pub deltas: Vec<PathBuf>,
    /// Which column holds which observable: NAME=KIND (ip, domain, url, md5, sha1, sha256,
    /// hash, email, ja3, ja3s, ja4, user-agent, text, time, port@ADDRFIELD; HOST+TARGET=url
    /// joins a host and a request-target column). Repeatable; with --preset, adds to it or
    /// overrides it.
    #[arg(long = "field", value_name = "NAME=KIND")]
    pub fields: Vec<FieldSpec>,
    /// Map every observable field of a known schema (zeek, suricata, ecs, ocsf), or with `auto` choose
    /// the schema of each input from its columns.
    #[arg(long, value_enum, value_name = "SCHEMA")]
    pub preset: Option<PresetChoice>,
    /// Input format; detected from the content when absent.
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// Hits to this file: `.parquet` and `.arrow` write those formats, anything else (and
    /// `-`, stdout) JSON lines.
    #[arg(short, long, value_name = "HITS", default_value = "-")]
    pub output: PathBuf,
    /// Hit counts per indicator, partner and UTC day as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub sightings: Option<PathBuf>,
    /// The partner named in sightings: its registry id. Default `local` (a host name would
    /// name a machine, not an organisation).
    #[arg(long, value_name = "NAME")]
    pub partner: Option<String>,
    /// Threads that decode and match (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Telemetry files.
    #[arg(required = true, value_name = "TELEMETRY")]
    pub telemetry: Vec<PathBuf>,
    /// Read and decode exactly the columns the field map needs, with the same readers,
    /// threads and batches as a real run, and match nothing (no hits written): the floor a
    /// match's time is measured against. Prints the same summary line.
    #[arg(long, conflicts_with = "sightings")]
    pub decode_only: bool,
}

/// A spinner with rows, rows/s and hits on stderr when it is a terminal, hidden otherwise.
fn row_progress() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} match {human_pos} rows ({per_sec}, {elapsed}) {msg}",
        )
        .expect("static progress template"),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

pub(super) fn run_match(args: &MatchArgs) -> anyhow::Result<ExitCode> {
    preset::need_a_map(args.preset, &args.fields).map_err(anyhow::Error::msg)?;
    // One map for every input, or (`--preset auto`) one per input, chosen as it is opened.
    let fixed = match args.preset {
        Some(PresetChoice::Auto) => None,
        choice => Some(
            preset::merge(choice.and_then(PresetChoice::preset), &args.fields)
                .map_err(anyhow::Error::msg)?
                .for_local_match(),
        ),
    };
    let mut chosen = Vec::new();
    let t = Instant::now();
    let index = load_state(&args.index, &args.deltas, args.verify_key.as_deref())?;
    let load_secs = t.elapsed().as_secs_f64();
    let now = jiff::Timestamp::now().as_second();
    let scanner = Scanner::new(args.threads)?.with_decode_only(args.decode_only);
    let started = Instant::now();
    let partner = args.partner.clone().unwrap_or_else(|| "local".into());
    let mut sightings = Sightings::new(partner, now);
    let mut by_kind = std::collections::BTreeMap::<&'static str, u64>::new();
    let mut out = HitWriter::create(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    let pb = row_progress();
    let mut hits_seen = 0u64;
    let (mut rows, mut hits_total, mut bad_rows) = (0u64, 0u64, 0u64);
    let mut failed_inputs = 0usize;
    let mut absent_everywhere = std::collections::BTreeMap::<String, usize>::new();
    for path in &args.telemetry {
        let name = path.display().to_string();
        let auto: FieldMap;
        let fields = match &fixed {
            Some(f) => f,
            None => {
                let (map, p) = preset::auto_field_map(path, args.input_format, &args.fields)?;
                let p = p.map_or("none (--field only)", |p| p.name());
                tracing::info!("{name}: --preset auto chose {p}");
                chosen.push((name.clone(), p));
                auto = map.for_local_match();
                &auto
            }
        };
        let matcher = Matcher::new(&index, fields, now);
        let mut present = FieldPresence::new(fields);
        let mut sink = |b: &ScannedBatch<'_>| -> io::Result<bool> {
            present.merge(b.present);
            for e in b.errors {
                tracing::warn!("{}: line {}: {}", b.input, e.line, e.reason);
            }
            for h in b.hits {
                *by_kind.entry(index.meta().kind(h.ord).name()).or_insert(0) += 1;
            }
            sightings.add(b.hits);
            out.write(&index, fields, b.input, b.hits)?;
            hits_seen += b.hits.len() as u64;
            pb.inc(b.rows as u64);
            if !b.hits.is_empty() {
                pb.set_message(format!("{hits_seen} hit(s)"));
            }
            Ok(true)
        };
        let stats = scanner.scan_files(
            &matcher,
            std::slice::from_ref(path),
            args.input_format,
            &mut sink,
        )?;
        rows += stats.rows;
        hits_total += stats.hits;
        bad_rows += stats.bad_rows;
        if args.decode_only {
            continue;
        }
        // An input none of whose mapped fields exists is an error (the others' hits stay).
        if let Err(e) = present.check(&name, fields) {
            pb.suspend(|| eprintln!("cwn: {e}"));
            failed_inputs += 1;
        }
        for f in present.absent(fields) {
            *absent_everywhere.entry(f.to_string()).or_insert(0) += 1;
        }
    }
    // A field no input has: a typo in --field, or the wrong schema.
    let inputs = args.telemetry.len();
    let missing: Vec<&str> = absent_everywhere
        .iter()
        .filter(|(_, n)| **n == inputs)
        .map(|(f, _)| f.as_str())
        .collect();
    if !missing.is_empty() {
        let explicit: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|m| args.fields.iter().any(|f| f.name == *m))
            .collect();
        if !explicit.is_empty() {
            tracing::warn!("no input has the field(s) {}", explicit.join(", "));
        }
        if explicit.len() < missing.len() {
            tracing::info!(
                "the preset maps {} field(s) no input has (a preset covers every log of its schema)",
                missing.len() - explicit.len()
            );
        }
    }
    out.finish()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    pb.finish_and_clear();
    if let Some(p) = &args.sightings {
        write_atomically(p, |w| sightings.write_jsonl(w, &index))?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "scanned {rows} row(s) in {secs:.2} s ({:.0} rows/s, {} thread(s); index loaded in {:.1} ms): {}{}",
        rows as f64 / secs.max(1e-9),
        scanner.threads(),
        load_secs * 1e3,
        if args.decode_only {
            "decoded only, nothing matched".to_string()
        } else {
            format!("{hits_total} hit(s) on {} indicator(s)", sightings.len())
        },
        if bad_rows > 0 {
            format!(", {bad_rows} unreadable row(s) skipped")
        } else {
            String::new()
        }
    );
    for (k, n) in &by_kind {
        eprintln!("  {k:<16} {n:>10}");
    }
    for (name, p) in &chosen {
        eprintln!("  preset auto: {name}: {p}");
    }
    if failed_inputs > 0 {
        eprintln!("cwn: {failed_inputs} input(s) had none of the mapped fields (see above)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
