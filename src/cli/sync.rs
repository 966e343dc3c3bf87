//! `cwn sync`: follow live indicator sources and publish each change as a signed delta.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use cwn::sync::config::SyncConfig;
use cwn::sync::run::{CycleReport, Published, Syncer};

/// Arguments of `cwn sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The configuration (`sync.toml`; see `data/sync.example.toml`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Run one cycle and exit (0 when every source refreshed, 1 when one failed and its last
    /// good state was used).
    #[arg(long)]
    pub once: bool,
    /// Publish snapshots and deltas into this directory (default `<state_dir>/published`).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print each cycle's report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run_sync(args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let cfg = SyncConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let warninglists = super::load_warninglists(&cfg.warninglists)?;
    let interval = cfg.interval;
    let mut syncer = Syncer::open(cfg, args.output.clone(), warninglists)?;
    loop {
        let started = Instant::now();
        let report = syncer.cycle()?;
        let failed = report.sources.iter().filter(|s| !s.ok).count();
        if args.json {
            outln!("{}", serde_json::to_string(&report)?);
        } else {
            eprint!("{}", format_cycle(&report, started.elapsed().as_secs_f64()));
        }
        if args.once {
            return Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        std::thread::sleep(
            interval
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1)),
        );
    }
}

/// The summary of one cycle for a person: each source, what was published.
fn format_cycle(r: &CycleReport, seconds: f64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sync cycle: {} source(s), {} indicator(s) accepted, {} suppressed, {} rejected — {seconds:.2} s",
        r.sources.len(),
        r.ingest.accepted,
        r.ingest.suppressed,
        r.ingest.rejected
    );
    for src in &r.sources {
        let state = match (&src.ok, &src.last_error) {
            (true, _) if src.changed => "changed".to_string(),
            (true, _) => "unchanged".to_string(),
            (false, Some(e)) => format!(
                "FAILED ({} in a row), kept its last good state: {e}",
                src.consecutive_failures
            ),
            (false, None) => "FAILED".to_string(),
        };
        let _ = writeln!(
            s,
            "  {:<20} {:<9} {:>10} indicator(s)  {state}",
            src.name, src.kind, src.indicators
        );
    }
    for p in &r.published {
        match p {
            Published::Nothing => {}
            Published::Full {
                path,
                version,
                bytes,
                indicators,
            } => {
                let _ = writeln!(
                    s,
                    "published full snapshot v{version}: {indicators} indicator(s), {bytes} bytes, {}",
                    path.display()
                );
            }
            Published::Delta {
                path,
                version,
                bytes,
                added,
                removed,
                changed,
            } => {
                let _ = writeln!(
                    s,
                    "published delta v{version}: +{} added, -{} removed, {changed} changed; {bytes} bytes, {}",
                    added - changed,
                    removed - changed,
                    path.display()
                );
            }
        }
    }
    if r.published.is_empty() {
        let _ = writeln!(
            s,
            "nothing changed: set version {} stays ({} indicator(s))",
            r.version.unwrap_or(0),
            r.indicators
        );
    }
    s
}
