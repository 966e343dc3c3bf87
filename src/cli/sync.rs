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
    /// Run one cycle and exit (0 when every source refreshed and, with --hub, the hub took
    /// what was published; 1 otherwise: a source's last good state was used, or the hub gets
    /// it next time).
    #[arg(long)]
    pub once: bool,
    /// Publish snapshots and deltas into this directory (default `<state_dir>/published`).
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Push every snapshot and delta published to this hub (HOST:PORT; several
    /// comma-separated for the edges of one hub), as `cwn push` does, as the publisher the
    /// credentials below name; what a hub that is down misses is pushed once it is back.
    #[arg(long, value_name = "ADDR")]
    pub hub: Option<String>,
    /// The publisher's certificate for --hub.
    #[command(flatten)]
    pub who: super::net::Credentials,
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
        let mut failed = report.sources.iter().filter(|s| !s.ok).count();
        if let Some(hub) = &args.hub
            && let Err(e) = push_new(&syncer, hub, &args.who)
        {
            // The hub gets it next cycle; the published files stay.
            tracing::error!("pushing to {hub}: {e:#}");
            failed += 1;
        }
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

/// Pushes what `syncer` published and the hub has not taken yet, in version order; when the
/// hub refuses a delta (it is at another state), the newest full snapshot and the deltas
/// after it. The last version the hub took is kept in `<state_dir>/pushed`, so that a hub
/// that was unreachable receives everything once it is back.
fn push_new(syncer: &Syncer, hub: &str, who: &super::net::Credentials) -> anyhow::Result<()> {
    use cwn::net::client::{Client, ClientError};
    let mark = syncer.state_dir().join("pushed");
    let pushed: u64 = std::fs::read_to_string(&mark)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let files = cwn::sync::run::published(syncer.out_dir());
    let mut todo: Vec<&(u64, bool, PathBuf)> =
        files.iter().filter(|(v, _, _)| *v > pushed).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let identity = who.load()?;
    let transport = who.transport()?;
    let mut done = pushed;
    let result = super::net::runtime()?.block_on(async {
        let mut c = Client::connect_with(hub, &identity, &transport).await?;
        let mut rebased = false;
        let mut i = 0;
        let outcome = loop {
            let Some(&&(v, full, ref path)) = todo.get(i) else {
                break Ok(());
            };
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => break Err(anyhow::anyhow!("{}: {e}", path.display())),
            };
            match c.push_snapshot(&bytes).await {
                Ok(_) => {
                    tracing::info!("the hub took {}", path.display());
                    done = v;
                    i += 1;
                }
                Err(ClientError::Rejected { reason, .. }) if !full && !rebased => {
                    let Some(f) = files.iter().rposition(|(_, full, _)| *full) else {
                        break Err(anyhow::anyhow!("{}: refused: {reason}", path.display()));
                    };
                    tracing::warn!(
                        "{}: refused ({reason}); pushing the newest full snapshot and its deltas",
                        path.display()
                    );
                    rebased = true;
                    todo = files[f..].iter().collect();
                    i = 0;
                }
                Err(ClientError::Rejected { reason, .. }) => {
                    break Err(anyhow::anyhow!("{}: refused: {reason}", path.display()));
                }
                Err(e) => break Err(e.into()),
            }
        };
        c.close().await;
        outcome
    });
    if done > pushed {
        std::fs::write(&mark, format!("{done}\n"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", mark.display()))?;
    }
    result
}
