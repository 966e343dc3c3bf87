//! `cwn sightings export`: the hub's sightings ledger as MISP sightings or STIX 2.1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use cwn::net::config::HubConfig;

/// `cwn sightings …`.
#[derive(Debug, Subcommand)]
pub enum SightingsCommand {
    /// Export the sightings the hub handed to its publisher: hit counts per indicator,
    /// partner and UTC day, never telemetry rows, each with its indicator's TLP.
    ///
    /// Example: cwn sightings export --config hub.toml --format misp --since 24h -o sightings.jsonl
    Export(ExportArgs),
}

/// The forms of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// MISP `/sightings/add` payloads, one JSON object per line.
    Misp,
    /// One STIX 2.1 bundle of `sighting` objects.
    Stix,
}

/// Arguments of `cwn sightings export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The hub configuration (its data directory holds the ledger and the indicator set).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The form.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Only what the hub handed over from this time on: RFC 3339 (`2026-12-07T10:00:00Z`), a
    /// UTC day (`2026-12-07`) or an age (`24h`, `7d`). Default: everything.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only what the hub handed over before this time (same forms; default now). A periodic
    /// export passes the previous run's `--until` as `--since`: every hit counted once.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Write here (via a temporary file and a rename) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A time given on the command line, as Unix milliseconds.
fn when(s: &str, now: jiff::Timestamp, flag: &str) -> anyhow::Result<u64> {
    let t = if let Ok(t) = s.parse::<jiff::Timestamp>() {
        t
    } else if let Ok(d) = s.parse::<jiff::civil::Date>() {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))?
            .timestamp()
    } else {
        let age = cwn::net::config::parse_duration(s).map_err(|_| {
            anyhow::anyhow!(
                "{flag} {s:?}: not a time (RFC 3339 such as 2026-12-07T10:00:00Z, a day such as \
                 2026-12-07, or an age such as 24h or 7d)"
            )
        })?;
        let age =
            jiff::SignedDuration::try_from(age).map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))?;
        now.checked_sub(age)
            .map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))?
    };
    Ok(t.as_millisecond().max(0) as u64)
}

pub(super) fn run(cmd: &SightingsCommand) -> anyhow::Result<ExitCode> {
    let SightingsCommand::Export(args) = cmd;
    let cfg = match HubConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let now = jiff::Timestamp::now();
    let since = args
        .since
        .as_deref()
        .map(|s| when(s, now, "--since"))
        .transpose()?
        .unwrap_or(0);
    let until = args
        .until
        .as_deref()
        .map(|s| when(s, now, "--until"))
        .transpose()?
        .unwrap_or(now.as_millisecond().max(0) as u64);
    anyhow::ensure!(since <= until, "--since is after --until");
    let rows = cwn::sightings::read(&cfg.data_dir, since, until)?;
    let known = match cwn::net::server::stored_index(&cfg)? {
        Some(index) => cwn::sightings::lookup(&index, &rows),
        None => Default::default(),
    };
    let (bytes, n, skipped) = match args.format {
        Format::Misp => {
            let (payloads, skipped) = cwn::sightings::misp(&rows, &known);
            let mut out = Vec::new();
            for p in &payloads {
                serde_json::to_writer(&mut out, p)?;
                out.push(b'\n');
            }
            (out, payloads.len(), skipped)
        }
        Format::Stix => {
            let (bundle, skipped) =
                cwn::notify::stix::sightings_bundle(&rows, &known, (since, until), now);
            let mut out = serde_json::to_vec_pretty(&bundle)?;
            out.push(b'\n');
            (out, rows.len() - skipped, skipped)
        }
    };
    match &args.output {
        Some(path) => cwn::outfile::replace(path, &bytes, true)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    let until_text = jiff::Timestamp::from_millisecond(until as i64).unwrap_or(now);
    eprintln!(
        "{n} sighting row(s) exported, handed over until {until_text} (next: --since {until_text}){}",
        if skipped > 0 {
            format!(
                "; {skipped} left out: their indicator is neither addressable in this format \
                 nor in the hub's current set"
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
