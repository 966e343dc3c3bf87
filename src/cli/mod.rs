//! The `cwn` command line: argument parsing, progress display and report printing.
//!
//! Library stages do the work; this module only wires files and flags to them and decides how
//! results are shown (a table for people, JSON for scripts).

/// `println!` for the command's output: a closed stdout (`cwn inspect … | head`) ends the
/// process quietly instead of panicking; any other write error is reported.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

/// `print!` with the same handling as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

mod demo;
#[cfg(feature = "cluster")]
mod demo_cluster;
#[cfg(feature = "net")]
mod demo_hub;
mod r#gen;
mod index;
mod net;
#[cfg(feature = "net")]
mod sightings;
#[cfg(feature = "net")]
mod sync;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cwn::indicator::{IndicatorSet, Kind, Tlp};
use cwn::ingest::{
    self, Format, Ingest, IngestError, IngestReport, Reject, SourceOptions, Warninglists,
};

/// cwn: ingest, compile, match and distribute threat indicators.
#[derive(Debug, Parser)]
#[command(name = "cwn", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object per line) for log
    /// collectors. Which lines appear is set by `RUST_LOG` (default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read indicator sources, normalise them, apply warninglists and report.
    #[command(
        after_help = "Example:\n  cwn ingest --warninglists misp-warninglists/lists feed/ bundle.json blocklist.txt -o indicators.jsonl"
    )]
    Ingest(IngestArgs),
    /// Run the main job on the sample set shipped inside the binary (no arguments needed).
    #[command(after_help = "Example:\n  cwn demo\n  cwn demo --json | jq .")]
    Demo(demo::DemoArgs),
    /// Ingest sources and compile them into a signed, checksummed snapshot.
    #[command(
        after_help = "Example:\n  cwn compile --warninglists lists/ feed/ --sign keys/cwn-signing.pem -o set.cwnsnap"
    )]
    Compile(index::CompileArgs),
    /// Show what a snapshot holds: versions, counts by kind and TLP, bytes per indicator.
    #[command(after_help = "Example:\n  cwn inspect set.cwnsnap --verify-key keys/cwn-verify.pem")]
    Inspect(index::InspectArgs),
    /// Match telemetry against a snapshot and write the hits.
    #[command(
        after_help = "Example:\n  cwn match --index set.cwnsnap --field query=domain --field ts=time dns.log -o hits.jsonl"
    )]
    Match(index::MatchArgs),
    /// Create an Ed25519 key pair for signing snapshots.
    #[command(
        after_help = "Example:\n  cwn keygen -o keys/   (writes keys/cwn-signing.pem and keys/cwn-verify.pem)"
    )]
    Keygen(KeygenArgs),
    /// Check a hub configuration file.
    ///
    /// Example: cwn config check hub.toml
    Config(net::ConfigArgs),
    /// A network CA and entity certificates for tests and small deployments.
    ///
    /// Example: cwn pki init pki/ && cwn pki issue --entity hub --role hub pki/
    #[cfg(feature = "net")]
    #[command(subcommand)]
    Pki(net::PkiCommand),
    /// Run the hub (QUIC, mutual TLS) until SIGTERM or Ctrl-C.
    ///
    /// Example: cwn serve --config hub.toml
    #[cfg(feature = "net")]
    Serve(net::ServeArgs),
    /// Publisher: push a signed snapshot, or a delta against the hub's state, to the hub.
    ///
    /// Example: cwn push --hub localhost:4433 --pki pki --entity ncsc set.cwnsnap
    #[cfg(feature = "net")]
    Push(net::PushArgs),
    /// Partner: pull the snapshot cut to this entity's clearance.
    ///
    /// Example: cwn pull --hub localhost:4433 --pki pki --entity msp-a -o set.cwnsnap
    #[cfg(feature = "net")]
    Pull(net::PullArgs),
    /// Partner: stream telemetry to the hub and write the hits it sends back.
    ///
    /// Example: cwn stream --hub localhost:4433 --pki pki --entity msp-a --field query=domain dns.log -o hits.jsonl
    #[cfg(feature = "net")]
    Stream(net::StreamArgs),
    /// Publisher: follow MISP feeds, TAXII 2.1 collections and lists, and publish every change
    /// as a signed delta (a full snapshot first and after `compact_every` deltas).
    ///
    /// Example: cwn sync --config sync.toml --once -o published/
    #[cfg(feature = "net")]
    Sync(sync::SyncArgs),
    /// Subscriber: receive this entity's notifications as JSON lines, acknowledging each
    /// once written.
    ///
    /// Example: cwn subscribe --hub localhost:4433 --pki pki --entity hospital-b -o notifications.jsonl
    #[cfg(feature = "net")]
    #[command(mut_arg("hub", |a| a.required(false).default_value("")))]
    Subscribe(Box<net::SubscribeArgs>),
    /// Hub: the sightings handed to the publisher, as MISP sightings or STIX 2.1.
    ///
    /// Example: cwn sightings export --config hub.toml --format misp --since 24h
    #[cfg(feature = "net")]
    #[command(subcommand)]
    Sightings(sightings::SightingsCommand),
    /// Generate synthetic data: a MISP feed, or telemetry with hits planted from a snapshot.
    ///
    /// Example: cwn gen indicators --count 100000 -o feed/ && cwn compile feed/ -o set.cwnsnap && cwn gen telemetry --index set.cwnsnap --preset zeek -o conn.parquet
    Gen(r#gen::GenArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  cwn completions bash > /etc/bash_completion.d/cwn\n  cwn completions zsh > \"${fpath[1]}/_cwn\"\n  cwn completions fish > ~/.config/fish/completions/cwn.fish"
    )]
    Completions(CompletionsArgs),
}

/// Arguments of `cwn completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Source options shared by every command that reads indicators.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Indicator sources: files, MISP feed directories, directories of lists, or `-` for stdin.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<PathBuf>,
    /// Input format; `auto` decides per source from its content.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// A warninglist `list.json`, or a directory searched recursively for them. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub warninglists: Vec<PathBuf>,
    /// TLP for indicators whose source carries no label.
    #[arg(long, value_name = "LEVEL", default_value = "AMBER+STRICT", value_parser = parse_tlp)]
    pub default_tlp: Tlp,
    /// CSV: the column that holds the value (a header name or a 0-based index).
    #[arg(long, value_name = "NAME")]
    pub column: Option<String>,
    /// Plain and CSV lists: the kind of every value, instead of guessing it per value.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    pub kind: Option<Kind>,
}

fn parse_tlp(s: &str) -> Result<Tlp, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
}

/// Arguments of `cwn ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Where the indicators come from and how to read them.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Fail (exit 1, write nothing) if any record is invalid or unsupported.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per record not accepted (source, record, category, reason).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Write the normalised indicators as JSON lines (`-` for stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "net")]
    let serving = matches!(cli.command, Command::Serve(_));
    #[cfg(not(feature = "net"))]
    let serving = false;
    init_tracing(cli.log_format, serving);
    let result = match cli.command {
        Command::Completions(args) => run_completions(&args),
        Command::Ingest(args) => run_ingest(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Keygen(args) => run_keygen(&args),
        Command::Compile(args) => index::run_compile(&args),
        Command::Inspect(args) => index::run_inspect(&args),
        Command::Match(args) => index::run_match(&args),
        Command::Gen(args) => r#gen::run(&args),
        Command::Config(args) => net::run_config(&args.command),
        #[cfg(feature = "net")]
        Command::Pki(cmd) => net::run_pki(&cmd),
        #[cfg(feature = "net")]
        Command::Serve(args) => net::run_serve(&args),
        #[cfg(feature = "net")]
        Command::Push(args) => net::run_push(&args),
        #[cfg(feature = "net")]
        Command::Pull(args) => net::run_pull(&args),
        #[cfg(feature = "net")]
        Command::Stream(args) => net::run_stream(&args),
        #[cfg(feature = "net")]
        Command::Subscribe(args) => net::run_subscribe(&args),
        #[cfg(feature = "net")]
        Command::Sync(args) => sync::run_sync(&args),
        #[cfg(feature = "net")]
        Command::Sightings(cmd) => sightings::run(&cmd),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`cwn match … | head`): nothing left to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cwn: error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, each said once: many of our errors already include their
/// source's text, which `{:#}` would print a second time.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Ends the process after a failed write to stdout: quietly when the reader closed the pipe.
pub(crate) fn stdout_failed(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("cwn: error: writing to stdout: {e}");
    std::process::exit(2);
}

fn init_tracing(format: LogFormat, serving: bool) {
    // Warnings by default; `cwn serve` also says who connects, who is refused and which
    // snapshot it uses, which an operator needs to see without RUST_LOG (the demo, which
    // runs a hub inside, keeps to its report).
    let default = if serving {
        "warn,cwn::net::server=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run_completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cwn", &mut script);
    io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}} left) {{msg}}"
        ))
        .expect("static progress template")
        .progress_chars("=> "),
    );
    pb
}

/// Cuts a value for display.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Loads the warninglists named on the command line.
pub(crate) fn load_warninglists(paths: &[PathBuf]) -> anyhow::Result<Option<Warninglists>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut all = Warninglists::default();
    for p in paths {
        let lists = Warninglists::load(p)?;
        all.extend(lists);
    }
    for problem in all.problems() {
        tracing::warn!("{problem}");
    }
    Ok(Some(all))
}

/// Reads every source through the ingest driver, spreading file parsing over all cores while
/// folding results in input order.
pub fn ingest_sources(
    args: &SourceArgs,
    warninglists: Option<Warninglists>,
) -> Result<Ingest, IngestError> {
    let opts = SourceOptions {
        format: args.format,
        default_tlp: args.default_tlp,
        csv_column: args.column.clone(),
        kind: args.kind,
    };
    let files = ingest::expand_sources(&args.sources, &opts)?;
    let pb = progress(files.len() as u64, "ingest");
    let mut driver = Ingest::new(warninglists);
    ingest::read_all(&files, &opts, &mut driver, |d| {
        pb.inc(1);
        if pb.position().is_multiple_of(64) {
            pb.set_message(format!("{} accepted", d.report().accepted));
        }
    })?;
    pb.finish_and_clear();
    Ok(driver)
}

/// Arguments of `cwn keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write `cwn-signing.pem` (private, mode 0600) and `cwn-verify.pem` into.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

fn run_keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    use cwn::index::snapshot::keys;
    std::fs::create_dir_all(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    let sp = args.output.join(keys::SIGNING_FILE);
    let vp = args.output.join(keys::VERIFY_FILE);
    if !args.force && (sp.exists() || vp.exists()) {
        anyhow::bail!(
            "{} already holds a key pair; use --force to replace it",
            args.output.display()
        );
    }
    let key = keys::generate()?;
    let private = keys::signing_pem(&key)?;
    write_atomically_mode(&sp, 0o600, |w| w.write_all(private.as_bytes()))?;
    let public = keys::verify_pem(&key.verifying_key())?;
    write_atomically(&vp, |w| w.write_all(public.as_bytes()))?;
    outln!(
        "wrote {} (keep it secret) and {} (give it to partners)",
        sp.display(),
        vp.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_ingest(args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let warninglists = load_warninglists(&args.source.warninglists)?;
    let driver = ingest_sources(&args.source, warninglists)?;
    let (set, report, rejects) = driver.finish();
    let elapsed = started.elapsed();
    tracing::info!(
        accepted = report.accepted,
        elapsed_ms = elapsed.as_millis() as u64,
        "ingest done"
    );

    if let Some(path) = &args.rejects {
        write_atomically(path, |w| write_rejects(w, &rejects))?;
    }
    let failed_strict = args.strict && (report.rejected > 0 || report.unsupported > 0);
    if !failed_strict && let Some(path) = &args.output {
        if path.as_os_str() == "-" {
            let stdout = io::stdout();
            let mut w = io::BufWriter::new(stdout.lock());
            write_indicators(&mut w, &set)?;
            w.flush()?;
        } else {
            write_atomically(path, |w| write_indicators(w, &set))?;
        }
    }
    let to_stdout_taken = args.output.as_deref() == Some(Path::new("-"));
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["elapsed_ms"] = serde_json::json!(elapsed.as_millis() as u64);
        let line = serde_json::to_string(&v)?;
        if to_stdout_taken {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    } else {
        let table = format_report(&report, &rejects, elapsed.as_secs_f64());
        if to_stdout_taken {
            eprint!("{table}");
        } else {
            out!("{table}");
        }
    }
    if failed_strict {
        eprintln!(
            "cwn: --strict: {} invalid and {} unsupported record(s); nothing written{}",
            report.rejected,
            report.unsupported,
            if args.rejects.is_some() {
                " but the rejects file"
            } else {
                " (use --rejects FILE to list them)"
            }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file through a temporary file in the same directory and renames it into place, so
/// that a half-written file never replaces a good one.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    write_atomically_mode(path, 0o644, write)
}

/// [`write_atomically`] with the Unix permission bits the file is created with (so that a
/// private key is never readable by others, not even for a moment).
pub fn write_atomically_mode(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let result = (|| -> io::Result<()> {
        let (file, pending) = cwn::outfile::OutputFile::create(path, mode)?.into_parts();
        let mut w = io::BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        pending.commit(&file)
    })();
    result.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn write_indicators(w: &mut dyn Write, set: &IndicatorSet) -> io::Result<()> {
    for ind in set.as_slice() {
        serde_json::to_writer(&mut *w, ind)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn write_rejects(w: &mut dyn Write, rejects: &[Reject]) -> io::Result<()> {
    for r in rejects {
        serde_json::to_writer(&mut *w, r)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// The human-readable report: totals, a table per kind and TLP, suppressions per list and the
/// first few rejects.
pub fn format_report(report: &IngestReport, rejects: &[Reject], seconds: f64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let total = report.total();
    let _ = writeln!(
        s,
        "read {total} record(s) from {} file(s) in {seconds:.2} s",
        report.files
    );
    let rows = [
        ("accepted", report.accepted),
        ("rejected (invalid)", report.rejected),
        ("unsupported", report.unsupported),
        ("skipped", report.skipped),
        ("suppressed", report.suppressed),
        ("duplicates", report.duplicates),
    ];
    for (name, n) in rows {
        let _ = writeln!(s, "  {name:<20} {n:>10}");
    }
    if !report.by_kind.is_empty() {
        let _ = writeln!(s, "\naccepted by kind:");
        for (k, n) in &report.by_kind {
            let _ = writeln!(s, "  {:<20} {n:>10}", k.name());
        }
        let _ = writeln!(s, "\naccepted by TLP:");
        for (t, n) in &report.by_tlp {
            let _ = writeln!(s, "  {:<20} {n:>10}", t.to_string());
        }
    }
    if !report.suppressed_by_list.is_empty() {
        let _ = writeln!(s, "\nsuppressed by warninglist:");
        let mut lists: Vec<_> = report.suppressed_by_list.iter().collect();
        lists.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (l, n) in lists {
            let _ = writeln!(s, "  {n:>10}  {l}");
        }
    }
    if !report.normalized.is_empty() {
        let _ = writeln!(s, "\nnormalised on the way:");
        for (what, n) in &report.normalized {
            let _ = writeln!(s, "  {n:>10}  {what}");
        }
    }
    let bad: Vec<_> = rejects
        .iter()
        .filter(|r| {
            matches!(
                r.category,
                ingest::Category::Invalid | ingest::Category::Unsupported
            )
        })
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(s, "\nfirst rejects (all with --rejects FILE):");
        for r in bad.iter().take(10) {
            let _ = writeln!(
                s,
                "  {}: {}: {}: {}",
                r.source, r.record, r.category, r.reason
            );
        }
    }
    s
}
