//! `cwn config check`, and with feature `net`: `cwn pki`, `cwn serve`, `cwn push`, `cwn pull`,
//! `cwn stream`, `cwn subscribe`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use cwn::net::config::HubConfig;

/// `cwn config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a hub configuration (or a `cwn sync` one, which has `[[source]]` tables):
    /// exit 0 if it is good, 1 with every problem (file, line, key) otherwise. The registry a
    /// hub configuration names is checked too when the file exists.
    ///
    /// Example: cwn config check hub.toml
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub(super) fn run_config(cmd: &ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file } = cmd;
    // A `cwn sync` configuration follows sources; a hub's does not.
    let is_sync = std::fs::read_to_string(file)
        .is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("[[source]]")));
    if is_sync {
        return Ok(match cwn::sync::config::SyncConfig::load(file) {
            Ok(_) => {
                outln!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        });
    }
    match HubConfig::load(file) {
        Ok(cfg) => {
            let problems = check_files(&cfg);
            if problems.is_empty() {
                outln!("{}: ok", file.display());
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                eprintln!("{}: {p}", file.display());
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Every problem with the files a valid configuration names: each that does not exist or
/// cannot be read (with its key), and the registry's own problems — among them a registry
/// with no publisher, unless `allow_no_publisher` is set.
pub fn check_files(cfg: &HubConfig) -> Vec<String> {
    use cwn::route::registry::{Registry, Role};
    let mut out = Vec::new();
    let mut need = |key: &str, path: &std::path::Path| -> bool {
        match std::fs::metadata(path) {
            Ok(_) => true,
            Err(e) => {
                out.push(format!("{key}: {}: {}", path.display(), e));
                false
            }
        }
    };
    let registry_exists = need("registry", &cfg.registry);
    need("tls.cert", &cfg.tls.cert);
    need("tls.key", &cfg.tls.key);
    need("tls.ca", &cfg.tls.ca);
    need("snapshot.verify_key", &cfg.snapshot.verify_key);
    if let Some(p) = &cfg.snapshot.sign_key {
        need("snapshot.sign_key", p);
    }
    if let Some(p) = &cfg.snapshot.path {
        need("snapshot.path", p);
    }
    if registry_exists {
        let name = cfg.registry.display().to_string();
        match std::fs::read_to_string(&cfg.registry) {
            Err(e) => out.push(format!("registry: {name}: {}", e)),
            Ok(text) => match Registry::from_toml(&text, &name) {
                Err(e) => out.push(format!("registry: {e}")),
                Ok(reg) => {
                    if !cfg.allow_no_publisher && reg.with_role(Role::Publisher).next().is_none() {
                        out.push(format!(
                            "registry: {name}: no entity has the publisher role, so internal \
                             cases (TLP:AMBER+STRICT, MISP distribution 0/1, hits that reach \
                             nobody) would reach nobody; add one, or set \
                             `allow_no_publisher = true` to only audit them"
                        ));
                    }
                }
            },
        }
    }
    out
}

#[cfg(feature = "net")]
pub use with_net::*;

#[cfg(feature = "net")]
mod with_net {
    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Duration;

    use clap::{Args, Subcommand};

    use super::super::write_atomically;
    use cwn::hub::StartFrom;
    use cwn::hub::frame::ErrorCode;
    use cwn::net::client::{Backoff, Client, ClientError, SUBSCRIBE_ACK_DELAY, notification_json};
    use cwn::net::config::HubConfig;
    use cwn::net::pki;
    use cwn::net::server;
    use cwn::net::tls::Identity;
    use cwn::telemetry::{FieldMap, FieldSpec, InputFormat};

    /// `cwn pki …`.
    #[derive(Debug, Subcommand)]
    pub enum PkiCommand {
        /// Create a network CA (ca.key, ca.pem) in DIR.
        ///
        /// Example: cwn pki init pki/
        Init {
            /// Organisation named in the CA's subject.
            #[arg(long, default_value = "cwn")]
            org: String,
            /// Validity in days.
            #[arg(long, default_value_t = 3650)]
            days: u32,
            /// Replace existing files.
            #[arg(long)]
            force: bool,
            /// The PKI directory.
            #[arg(value_name = "DIR")]
            dir: PathBuf,
        },
        /// Issue a key and certificate (ID.key, ID.pem) for an entity, signed by the CA in DIR.
        ///
        /// Example: cwn pki issue --entity msp-a --role partner pki/
        Issue {
            /// The entity id, as in the registry.
            #[arg(long, value_name = "ID")]
            entity: String,
            /// publisher, partner, subscriber, or hub (the hub's server certificate).
            /// Repeatable or comma-separated.
            #[arg(long, value_name = "ROLE", required = true, value_delimiter = ',')]
            role: Vec<String>,
            /// DNS name for a hub certificate (default localhost). Repeatable.
            #[arg(long, value_name = "NAME")]
            dns: Vec<String>,
            /// IP address for a hub certificate (default 127.0.0.1 and ::1). Repeatable.
            #[arg(long, value_name = "ADDR")]
            ip: Vec<std::net::IpAddr>,
            /// Validity in days.
            #[arg(long, default_value_t = 397)]
            days: u32,
            /// Replace existing files.
            #[arg(long)]
            force: bool,
            /// The PKI directory.
            #[arg(value_name = "DIR")]
            dir: PathBuf,
        },
    }

    pub(in crate::cli) fn run_pki(cmd: &PkiCommand) -> anyhow::Result<ExitCode> {
        match cmd {
            PkiCommand::Init {
                org,
                days,
                force,
                dir,
            } => {
                let p = pki::init(
                    dir,
                    &pki::CaOptions {
                        organisation: org.clone(),
                        days: *days,
                        force: *force,
                    },
                )?;
                outln!(
                    "wrote {} and {}",
                    p.display(),
                    dir.join(pki::CA_KEY).display()
                );
            }
            PkiCommand::Issue {
                entity,
                role,
                dns,
                ip,
                days,
                force,
                dir,
            } => {
                let f = pki::issue(
                    dir,
                    &pki::IssueOptions {
                        entity: entity.clone(),
                        roles: role.clone(),
                        dns: dns.clone(),
                        ips: ip.clone(),
                        days: *days,
                        force: *force,
                    },
                )?;
                outln!("wrote {} and {}", f.cert.display(), f.key.display());
                // What the registry pins: `fingerprint = "…"` for this entity.
                let pem = std::fs::read_to_string(&f.cert)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.cert.display()))?;
                if let Some(der) = pki::pem_certs(&pem).first() {
                    outln!(
                        "fingerprint = \"{}\"",
                        cwn::route::registry::fingerprint_hex(&pki::fingerprint(der))
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Who the client is.
    #[derive(Debug, Clone, Args)]
    pub struct IdentityArgs {
        /// The hub, HOST:PORT (HOST must be in the hub's certificate); several
        /// comma-separated (the edges of one hub) are tried together, a quarter second apart,
        /// and the first to answer is used.
        #[arg(long, value_name = "ADDR")]
        pub hub: String,
        /// Who connects.
        #[command(flatten)]
        pub who: Credentials,
    }

    /// The certificate a client connects with, and how long it waits for the hub.
    #[derive(Debug, Clone, Args)]
    pub struct Credentials {
        /// Own certificate (PEM).
        #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "pki")]
        pub cert: Option<PathBuf>,
        /// Own private key (PEM).
        #[arg(long, value_name = "FILE", requires = "cert")]
        pub key: Option<PathBuf>,
        /// The network CA (PEM).
        #[arg(long, value_name = "FILE", requires = "cert")]
        pub ca: Option<PathBuf>,
        /// A PKI directory from `cwn pki` (with --entity): DIR/ID.pem, DIR/ID.key, DIR/ca.pem.
        #[arg(long, value_name = "DIR", requires = "entity")]
        pub pki: Option<PathBuf>,
        /// The entity whose files to use from --pki.
        #[arg(long, value_name = "ID", requires = "pki")]
        pub entity: Option<String>,
        /// Seconds to wait for the hub to answer a connection attempt.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        pub connect_timeout: f64,
    }

    impl IdentityArgs {
        /// Transport settings with the connect timeout asked for.
        pub(in crate::cli) fn transport(&self) -> anyhow::Result<cwn::net::endpoint::Transport> {
            self.who.transport()
        }

        pub(in crate::cli) fn load(&self) -> anyhow::Result<Identity> {
            self.who.load()
        }
    }

    impl Credentials {
        /// Transport settings with the connect timeout asked for.
        pub(in crate::cli) fn transport(&self) -> anyhow::Result<cwn::net::endpoint::Transport> {
            let t = Duration::try_from_secs_f64(self.connect_timeout)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("--connect-timeout: a number of seconds above 0"))?;
            Ok(cwn::net::endpoint::Transport {
                connect_timeout: t,
                ..Default::default()
            })
        }

        /// The identity the options name.
        pub(in crate::cli) fn load(&self) -> anyhow::Result<Identity> {
            match (&self.pki, &self.entity, &self.cert, &self.key, &self.ca) {
                (Some(dir), Some(id), ..) => Ok(Identity::from_pki_dir(dir, id)?),
                (_, _, Some(c), Some(k), Some(ca)) => Ok(Identity::load(c, k, ca)?),
                _ => anyhow::bail!("give --cert, --key and --ca, or --pki DIR --entity ID"),
            }
        }
    }

    pub(in crate::cli) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?)
    }

    /// Arguments of `cwn serve`.
    #[derive(Debug, Args)]
    pub struct ServeArgs {
        /// The hub configuration (see data/hub.example.toml).
        #[arg(long, value_name = "FILE")]
        pub config: PathBuf,
    }

    pub(in crate::cli) fn run_serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
        let cfg = match HubConfig::load(&args.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        };
        runtime()?.block_on(server::serve(&cfg))?;
        Ok(ExitCode::SUCCESS)
    }

    /// Arguments of `cwn push`.
    #[derive(Debug, Args)]
    pub struct PushArgs {
        /// Hub and identity.
        #[command(flatten)]
        pub id: IdentityArgs,
        /// The signed snapshot to push, or a delta (`cwn compile --base`, `cwn sync`) against
        /// the state the hub is in.
        #[arg(value_name = "SNAPSHOT")]
        pub snapshot: PathBuf,
        /// The verify key the hub checks snapshots with: the snapshot is checked against it
        /// here first, so that a wrongly signed or damaged file is not uploaded to be refused.
        #[arg(long, value_name = "KEY")]
        pub verify_key: Option<PathBuf>,
    }

    pub(in crate::cli) fn run_push(args: &PushArgs) -> anyhow::Result<ExitCode> {
        let id = args.id.load()?;
        let bytes = std::fs::read(&args.snapshot)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.snapshot.display()))?;
        // Every check the hub makes but the version: digests, structure, signature.
        let vk = args
            .verify_key
            .as_deref()
            .map(|p| {
                cwn::index::snapshot::keys::read_verify(p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
            .transpose()?;
        let checked = if bytes.starts_with(&cwn::index::delta::MAGIC) {
            cwn::index::delta::Delta::from_bytes(&bytes, vk.as_ref())
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            cwn::index::CompiledIndex::from_snapshot(&bytes, vk.as_ref())
                .map(drop)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = checked {
            anyhow::bail!("{}: not pushed: {e}", args.snapshot.display());
        }
        let transport = args.id.transport()?;
        let v = runtime()?.block_on(async {
            let mut c = Client::connect_with(&args.id.hub, &id, &transport).await?;
            let r = c.push_snapshot(&bytes).await;
            c.close().await;
            r
        })?;
        eprintln!("hub uses set version {v}");
        Ok(ExitCode::SUCCESS)
    }

    /// Arguments of `cwn pull`.
    #[derive(Debug, Args)]
    pub struct PullArgs {
        /// Hub and identity.
        #[command(flatten)]
        pub id: IdentityArgs,
        /// Follow the hub's deltas: fetch only what changed since set version V, which the
        /// directory given as --output holds (`set-vV.cwnsnap` or `set-vV.cwndelta` from an
        /// earlier `--since` pull; 0 for nothing yet). The hub sends the deltas that follow,
        /// each cut to this entity's clearance, or the cut of its base snapshot and the deltas
        /// after it when the directory's state is not in the hub's chain.
        #[arg(long, value_name = "V")]
        pub since: Option<u64>,
        /// Where to write the snapshot (via a temporary file and a rename); with --since, the
        /// directory of the chain (`set-vN.cwnsnap`, then `set-vN.cwndelta` files).
        #[arg(short, long, value_name = "FILE")]
        pub output: PathBuf,
    }

    pub(in crate::cli) fn run_pull(args: &PullArgs) -> anyhow::Result<ExitCode> {
        if let Some(v) = args.since {
            return pull_since(args, v);
        }
        let id = args.id.load()?;
        let transport = args.id.transport()?;
        let bytes = runtime()?.block_on(async {
            let mut c = Client::connect_with(&args.id.hub, &id, &transport).await?;
            let r = c.pull_snapshot(0).await;
            c.close().await;
            r
        })?;
        write_atomically(&args.output, |w| w.write_all(&bytes))?;
        eprintln!("wrote {} ({} bytes)", args.output.display(), bytes.len());
        Ok(ExitCode::SUCCESS)
    }

    /// The chain files of `dir` (`set-vN.cwnsnap` and `set-vN.cwndelta`) by version, each
    /// with whether it is a delta.
    fn chain_files(dir: &Path) -> Vec<(u64, bool, PathBuf)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let (v, delta) = name.to_str()?.strip_prefix("set-v")?.split_once('.')?;
                let delta = match delta {
                    "cwnsnap" => false,
                    "cwndelta" => true,
                    _ => return None,
                };
                Some((v.parse().ok()?, delta, e.path()))
            })
            .collect();
        files.sort();
        files
    }

    fn pull_since(args: &PullArgs, since: u64) -> anyhow::Result<ExitCode> {
        use cwn::index::delta::{self, Delta};
        use cwn::index::snapshot;
        let dir = &args.output;
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let held = chain_files(dir);
        // The state the directory holds at `since`: the identity of its file of that version.
        let identity = match held.iter().rev().find(|(v, _, _)| *v == since) {
            Some((_, _, path)) => {
                let bytes =
                    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                snapshot::identity(&bytes)
                    .ok_or_else(|| anyhow::anyhow!("{}: not a snapshot or delta", path.display()))?
            }
            None => {
                if since != 0 {
                    eprintln!(
                        "{} holds no set version {since}: pulling the whole chain",
                        dir.display()
                    );
                }
                [0; 32]
            }
        };
        let id = args.id.load()?;
        let transport = args.id.transport()?;
        let (head, files) = runtime()?.block_on(async {
            let mut c = Client::connect_with(&args.id.hub, &id, &transport).await?;
            let r = c.pull_since(since, identity).await;
            c.close().await;
            r
        })?;
        // Check the answer links up before writing any of it: each delta follows the state
        // before it, the first the one held (or a full snapshot starts a new chain).
        let mut prev = identity;
        let mut written = Vec::new();
        for (i, bytes) in files.iter().enumerate() {
            let bad =
                |why: String| anyhow::anyhow!("the hub's file {} of {}: {why}", i + 1, files.len());
            let (version, is_delta) = if bytes.starts_with(&delta::MAGIC) {
                let d = Delta::from_bytes(bytes, None).map_err(|e| bad(e.to_string()))?;
                if d.base().digest != prev {
                    return Err(bad(format!(
                        "it applies to {}, not to the state before it",
                        d.base()
                    )));
                }
                (d.header().set_version, true)
            } else {
                let index = cwn::index::CompiledIndex::from_snapshot(bytes, None)
                    .map_err(|e| bad(e.to_string()))?;
                (index.header().set_version, false)
            };
            prev = snapshot::identity(bytes).ok_or_else(|| bad("no identity".into()))?;
            let ext = if is_delta { "cwndelta" } else { "cwnsnap" };
            written.push((version, dir.join(format!("set-v{version}.{ext}")), bytes));
        }
        for (_, path, bytes) in &written {
            write_atomically(path, |w| w.write_all(bytes))?;
        }
        // A full snapshot starts a new chain: the files of the old one apply no more.
        if written
            .first()
            .is_some_and(|(_, p, _)| p.extension().is_some_and(|e| e == "cwnsnap"))
        {
            for (_, _, path) in chain_files(dir) {
                if !written.iter().any(|(_, p, _)| *p == path) {
                    std::fs::remove_file(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                }
            }
        }
        let bytes: usize = files.iter().map(Vec::len).sum();
        if files.is_empty() {
            eprintln!("up to date at set version {head}");
        } else {
            eprintln!(
                "at set version {head}: {} file(s), {bytes} bytes, written to {}",
                files.len(),
                dir.display()
            );
        }
        // How to match on it.
        let chain = chain_files(dir);
        if let Some(start) = chain.iter().rposition(|(_, delta, _)| !delta) {
            let mut cmd = format!("cwn match --index {}", chain[start].2.display());
            for (_, _, p) in &chain[start + 1..] {
                cmd.push_str(&format!(" --delta {}", p.display()));
            }
            eprintln!("match with: {cmd} ...");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Arguments of `cwn stream`.
    #[derive(Debug, Args)]
    pub struct StreamArgs {
        /// Hub and identity.
        #[command(flatten)]
        pub id: IdentityArgs,
        /// Which column holds which observable, as for `cwn match`. Repeatable; with
        /// --preset, adds to it or overrides it.
        #[arg(long = "field", value_name = "NAME=KIND")]
        pub fields: Vec<FieldSpec>,
        /// Map every observable field of a known schema, as for `cwn match`; `auto` chooses
        /// from the first input's columns.
        #[arg(long, value_enum, value_name = "SCHEMA")]
        pub preset: Option<cwn::telemetry::PresetChoice>,
        /// Input format; detected from the content when absent.
        #[arg(long, value_enum)]
        pub input_format: Option<InputFormat>,
        /// Hits as JSON lines to this file (`-` for stdout).
        #[arg(short, long, value_name = "HITS", default_value = "-")]
        pub output: PathBuf,
        /// While the hub is away, keep reconnecting and sending the unanswered batches
        /// again for this many seconds without progress before giving up.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        pub retry_for: u64,
        /// Telemetry files.
        #[arg(required = true, value_name = "TELEMETRY")]
        pub telemetry: Vec<PathBuf>,
    }

    pub(in crate::cli) fn run_stream(args: &StreamArgs) -> anyhow::Result<ExitCode> {
        use cwn::telemetry::{PresetChoice, preset};
        preset::need_a_map(args.preset, &args.fields).map_err(anyhow::Error::msg)?;
        let id = args.id.load()?;
        let fields: FieldMap = match args.preset {
            Some(PresetChoice::Auto) => {
                let (map, chosen) =
                    preset::auto_field_map(&args.telemetry[0], args.input_format, &args.fields)?;
                tracing::info!(
                    "--preset auto chose {}",
                    chosen.map_or("none (--field only)", |p| p.name())
                );
                map
            }
            choice => preset::merge(choice.and_then(PresetChoice::preset), &args.fields)
                .map_err(anyhow::Error::msg)?,
        };
        let opts = cwn::net::client::StreamOptions {
            transport: args.id.transport()?,
            retry_for: Duration::from_secs(args.retry_for),
        };
        let streamed = runtime()?.block_on(cwn::net::client::stream_files_with(
            &args.id.hub,
            &id,
            &fields,
            args.input_format,
            &args.telemetry,
            &opts,
        ))?;
        let (hits, rows) = (streamed.hits, streamed.rows);
        let write = |w: &mut dyn std::io::Write| -> std::io::Result<()> {
            for h in &hits {
                serde_json::to_writer(&mut *w, h)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        };
        if args.output.as_os_str() == "-" {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write(&mut w)?;
            w.flush()?;
        } else {
            write_atomically(&args.output, write)?;
        }
        eprintln!("streamed {rows} row(s): {} hit(s)", hits.len());
        for e in &streamed.empty_inputs {
            eprintln!("cwn: {e}");
        }
        if !streamed.empty_inputs.is_empty() {
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Arguments of `cwn subscribe`.
    #[derive(Debug, Args)]
    pub struct SubscribeArgs {
        /// Hub and identity.
        #[command(flatten)]
        pub id: IdentityArgs,
        /// Start at this offset instead of after the last acknowledged one.
        #[arg(long, value_name = "OFFSET")]
        pub from: Option<u64>,
        /// Append notifications as JSON lines to FILE (fsynced before they are acknowledged);
        /// stdout when absent.
        #[arg(short, long, value_name = "FILE")]
        pub output: Option<PathBuf>,
        /// Stop after this many notifications.
        #[arg(long, value_name = "N")]
        pub count: Option<u64>,
        /// Stop when nothing arrives for this many seconds.
        #[arg(long, value_name = "SECONDS")]
        pub idle_exit: Option<f64>,
        /// Hand what the hub sends on to TARGET (repeatable): `webhook:URL` (signed JSON
        /// alerts), `smtp:HOST:PORT` (e-mail), `syslog:HOST:PORT` (RFC 5424 or CEF),
        /// `stix:DIR` (STIX 2.1 bundles of sightings), `taxii:URL` (the same objects added to
        /// a TAXII 2.1 collection), `jsonl:FILE` (the hub's notifications, as `-o` writes
        /// them). Alerts are
        /// aggregated: one per indicator, asset of the entity and UTC day, sent at once and
        /// updated with the count. Each target reads a local spool (`--spool`) at its own
        /// pace and retries with back-off: a target that is down loses nothing.
        #[arg(long = "deliver", value_name = "TARGET")]
        pub deliver: Vec<String>,
        /// The webhook targets' HMAC-SHA256 secret: the file's bytes, one trailing newline
        /// stripped.
        #[arg(long, value_name = "FILE")]
        pub webhook_secret_file: Option<PathBuf>,
        /// The delivery targets, each with its own options and credentials, and the
        /// recommended-action texts, in a TOML file (README "Notifications people act on");
        /// used together with any --deliver targets.
        #[arg(long, value_name = "FILE")]
        pub deliver_config: Option<PathBuf>,
        /// Print a short summary for a person at the entity — today's and yesterday's alerts,
        /// where, what to do, and how each delivery target is doing — from the spool
        /// (--spool or the --deliver-config file's), and exit without connecting (no --hub
        /// needed).
        #[arg(long)]
        pub summary: bool,
        /// Recommended-action templates by indicator kind, for every sector and per sector
        /// (`[default]`, `[sector.NAME]`); `{indicator}` and `{assets}` are filled in.
        #[arg(long, value_name = "FILE")]
        pub templates: Option<PathBuf>,
        /// The entity's NIS2 sector, which picks its texts from --templates.
        #[arg(long, value_name = "NAME")]
        pub sector: Option<String>,
        /// The spool the delivery targets read: what the hub sent, stored (fsynced) before it
        /// is acknowledged, kept until every target has it [default: the --deliver-config
        /// file's `spool`, else cwn-spool].
        #[arg(long, value_name = "DIR")]
        pub spool: Option<PathBuf>,
        /// Seconds between two updates of one alert while sightings keep coming [default: the
        /// --deliver-config file's `update_every`, else 900].
        #[arg(long, value_name = "SECONDS")]
        pub update_every: Option<f64>,
        /// A --deliver target outside the entity (a third party's service): it gets no alert
        /// above TLP:GREEN unless --allow-amber-outside (repeatable; the same TARGET text).
        #[arg(long = "outside", value_name = "TARGET")]
        pub outside: Vec<String>,
        /// The entity allows TLP:AMBER and AMBER+STRICT alerts to its --outside targets.
        #[arg(long)]
        pub allow_amber_outside: bool,
        /// Sender of the e-mails of `smtp:` targets.
        #[arg(long, value_name = "ADDR")]
        pub mail_from: Option<String>,
        /// Recipient of the e-mails of `smtp:` targets (repeatable).
        #[arg(long, value_name = "ADDR")]
        pub mail_to: Vec<String>,
        /// Send `smtp:` targets one digest every this many minutes instead of an e-mail per
        /// alert.
        #[arg(long, value_name = "MINUTES")]
        pub digest_minutes: Option<f64>,
        /// Refuse an SMTP server that does not offer STARTTLS (else it is used when offered).
        #[arg(long)]
        pub smtp_starttls: bool,
        /// SMTP AUTH PLAIN user (with --smtp-password-file); never sent without TLS except to
        /// a loopback server.
        #[arg(long, value_name = "USER", requires = "smtp_password_file")]
        pub smtp_user: Option<String>,
        /// The SMTP password: the file's bytes, one trailing newline stripped.
        #[arg(long, value_name = "FILE", requires = "smtp_user")]
        pub smtp_password_file: Option<PathBuf>,
        /// CA certificates (PEM) to trust for STARTTLS instead of the web PKI's.
        #[arg(long, value_name = "FILE")]
        pub smtp_ca: Option<PathBuf>,
        /// `syslog:` targets over TLS (RFC 5425) instead of plain TCP.
        #[arg(long)]
        pub syslog_tls: bool,
        /// CA certificates (PEM) to trust for --syslog-tls instead of the web PKI's.
        #[arg(long, value_name = "FILE", requires = "syslog_tls")]
        pub syslog_ca: Option<PathBuf>,
        /// What `syslog:` targets get in each message: RFC 5424 structured data (`rfc5424`)
        /// or ArcSight CEF (`cef`).
        #[arg(long, value_name = "FORMAT", default_value = "rfc5424", value_parser = ["rfc5424", "cef"])]
        pub syslog_format: String,
        /// HTTP basic authentication of `taxii:` targets: the user.
        #[arg(long, value_name = "USER", requires = "taxii_password_file")]
        pub taxii_user: Option<String>,
        /// HTTP basic authentication of `taxii:` targets: a file holding the password (one
        /// trailing newline ignored).
        #[arg(long, value_name = "FILE", requires = "taxii_user")]
        pub taxii_password_file: Option<PathBuf>,
    }

    /// The delivery side of `cwn subscribe --deliver`: the outbox and the targets' threads.
    struct Delivery {
        outbox: cwn::notify::outbox::Outbox,
        targets: Vec<cwn::notify::deliver::Running>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        /// When the hub last heard how the targets are doing.
        reported: Option<std::time::Instant>,
    }

    /// How often a subscriber tells the hub how its delivery targets are doing.
    const REPORT_EVERY: Duration = Duration::from_secs(5);

    impl Delivery {
        fn start(args: &SubscribeArgs, id: &Identity) -> anyhow::Result<Option<Delivery>> {
            use cwn::notify::deliver::{Target, TargetConfig, read_secret, start};
            let file = args
                .deliver_config
                .as_deref()
                .map(|f| {
                    cwn::notify::config::load(f, args.sector.as_deref(), args.templates.as_deref())
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("--deliver-config {e}"))?;
            if args.deliver.is_empty() && file.is_none() {
                return Ok(None);
            }
            for o in &args.outside {
                anyhow::ensure!(
                    args.deliver.contains(o),
                    "--outside {o}: not one of the --deliver targets"
                );
            }
            let secret = args
                .webhook_secret_file
                .as_deref()
                .map(read_secret)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--webhook-secret-file {e}"))?;
            let mail = if args.deliver.iter().any(|t| t.starts_with("smtp:")) {
                let from = args
                    .mail_from
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("an smtp: target needs --mail-from"))?;
                anyhow::ensure!(!args.mail_to.is_empty(), "an smtp: target needs --mail-to");
                for a in std::iter::once(&from).chain(&args.mail_to) {
                    anyhow::ensure!(
                        cwn::notify::config::is_mail_address(a),
                        "{a:?} is not an e-mail address"
                    );
                }
                let auth = match (&args.smtp_user, &args.smtp_password_file) {
                    (Some(u), Some(f)) => {
                        let p = read_secret(f)
                            .map_err(|e| anyhow::anyhow!("--smtp-password-file {e}"))?;
                        let p = String::from_utf8(p)
                            .map_err(|_| anyhow::anyhow!("{}: not UTF-8", f.display()))?;
                        Some((u.clone(), p))
                    }
                    _ => None,
                };
                let ca = args
                    .smtp_ca
                    .as_deref()
                    .map(|p| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
                    .transpose()?;
                Some(cwn::notify::smtp::SmtpConfig {
                    server: String::new(),
                    from,
                    to: args.mail_to.clone(),
                    require_tls: args.smtp_starttls,
                    auth,
                    ca,
                })
            } else {
                None
            };
            let digest_every = args
                .digest_minutes
                .map(|m| {
                    Duration::try_from_secs_f64(m * 60.0)
                        .map_err(|_| anyhow::anyhow!("--digest-minutes: a number of minutes"))
                })
                .transpose()?;
            let syslog = cwn::notify::deliver::SyslogOptions {
                tls: args.syslog_tls,
                ca: args
                    .syslog_ca
                    .as_deref()
                    .map(|p| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
                    .transpose()?,
                cef: args.syslog_format == "cef",
            };
            let taxii_auth = match (&args.taxii_user, &args.taxii_password_file) {
                (Some(u), Some(f)) => {
                    let p =
                        read_secret(f).map_err(|e| anyhow::anyhow!("--taxii-password-file {e}"))?;
                    let p = String::from_utf8(p)
                        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", f.display()))?;
                    Some((u.clone(), p))
                }
                _ => None,
            };
            let mut configs = args
                .deliver
                .iter()
                .map(|t| {
                    Ok(TargetConfig {
                        target: t
                            .parse::<Target>()
                            .map_err(|e| anyhow::anyhow!("--deliver {e}"))?,
                        secret: secret.clone(),
                        outside: args.outside.contains(t),
                        allow_amber: args.allow_amber_outside,
                        mail: mail.clone(),
                        digest_every,
                        syslog: syslog.clone(),
                        taxii_auth: taxii_auth.clone(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let every = match (
                args.update_every,
                file.as_ref().and_then(|f| f.update_every),
            ) {
                (Some(s), _) => Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("--update-every: a number of seconds"))?,
                (None, Some(d)) => d,
                (None, None) => Duration::from_secs(900),
            };
            let spool = args
                .spool
                .clone()
                .or_else(|| file.as_ref().and_then(|f| f.spool.clone()))
                .unwrap_or_else(|| PathBuf::from("cwn-spool"));
            let actions = match file {
                Some(f) => {
                    configs.extend(f.targets);
                    f.actions
                }
                None => match &args.templates {
                    Some(t) => cwn::notify::config::load_templates(t, args.sector.as_deref())
                        .map_err(|e| anyhow::anyhow!("--templates {e}"))?,
                    None => Default::default(),
                },
            };
            let mut names = std::collections::HashSet::new();
            for c in &configs {
                anyhow::ensure!(
                    names.insert(c.cursor_name()),
                    "{} is named twice (on the command line and in --deliver-config?)",
                    c.target
                );
            }
            let entity = id
                .chain
                .first()
                .and_then(|c| cwn::net::der::identity(c.as_ref()).ok())
                .and_then(|i| cwn::net::pki::entity_of(&i).map(str::to_owned))
                .unwrap_or_default();
            let raw = configs.iter().any(|c| matches!(c.target, Target::Jsonl(_)));
            let alerts = configs
                .iter()
                .any(|c| !matches!(c.target, Target::Jsonl(_)));
            let outbox = cwn::notify::outbox::Outbox::open(
                &spool,
                &entity,
                every.as_millis() as u64,
                raw,
                alerts,
                actions,
            )?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let targets = configs
                .into_iter()
                .map(|c| {
                    let t = c.target.to_string();
                    start(outbox.spool().clone(), c, stop.clone())
                        .map_err(|e| anyhow::anyhow!("--deliver {t}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Some(Delivery {
                outbox,
                targets,
                stop,
                reported: None,
            }))
        }

        /// Stores the updates due now.
        fn tick(&mut self) -> anyhow::Result<()> {
            Ok(self.outbox.tick(now_ms(), false)?)
        }

        /// The targets' reports when the hub is due to hear them.
        fn reports_due(&mut self) -> Option<Vec<cwn::notify::TargetReport>> {
            if self.reported.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
                return None;
            }
            self.reported = Some(std::time::Instant::now());
            let spool = self.outbox.spool();
            Some(self.targets.iter().map(|t| t.report(spool)).collect())
        }

        /// Stores every pending update, lets the targets deliver what they can and stops
        /// them; what a failing target did not take stays in the spool for the next run.
        fn finish(self) -> anyhow::Result<()> {
            let mut outbox = self.outbox;
            outbox.tick(now_ms(), true)?;
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            outbox.spool().wake();
            for t in self.targets {
                let (name, status) = (t.config.target.to_string(), t.status.clone());
                t.join();
                let left = outbox.spool().last();
                eprintln!(
                    "{name}: delivered {}, withheld by TLP {} (spool at {left})",
                    status.delivered.load(std::sync::atomic::Ordering::Relaxed),
                    status.withheld.load(std::sync::atomic::Ordering::Relaxed),
                );
            }
            Ok(())
        }
    }

    fn now_ms() -> u64 {
        jiff::Timestamp::now().as_millisecond().max(0) as u64
    }

    /// `cwn subscribe --summary`.
    fn print_summary(args: &SubscribeArgs) -> anyhow::Result<ExitCode> {
        let file = args
            .deliver_config
            .as_deref()
            .map(|f| {
                cwn::notify::config::load(f, args.sector.as_deref(), args.templates.as_deref())
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("--deliver-config {e}"))?;
        let spool = args
            .spool
            .clone()
            .or_else(|| file.and_then(|f| f.spool))
            .unwrap_or_else(|| PathBuf::from("cwn-spool"));
        anyhow::ensure!(
            spool.is_dir(),
            "{}: no spool here (a subscriber with --deliver keeps one; name it with --spool)",
            spool.display()
        );
        let state_path = spool.join(cwn::notify::outbox::STATE_FILE);
        let state: cwn::notify::aggregate::AggregateState = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("{}: {e}", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => anyhow::bail!("{}: {e}", state_path.display()),
        };
        let entity = args
            .id
            .who
            .entity
            .clone()
            .or_else(|| state.open.values().next().map(|o| o.alert.entity.clone()))
            .unwrap_or_default();
        let reports = cwn::notify::deliver::stored_reports(&spool);
        let text = cwn::notify::summary::render(&entity, &state, &reports, jiff::Timestamp::now());
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(ExitCode::SUCCESS)
    }

    pub(in crate::cli) fn run_subscribe(args: &SubscribeArgs) -> anyhow::Result<ExitCode> {
        if args.summary {
            return print_summary(args);
        }
        anyhow::ensure!(
            !args.id.hub.is_empty(),
            "--hub is required (the hub's HOST:PORT)"
        );
        let id = args.id.load()?;
        let mut delivery = Delivery::start(args, &id)?;
        let n = runtime()?.block_on(subscribe(args, &id, &mut delivery));
        if let Some(d) = delivery {
            d.finish()?;
        }
        let n = n?;
        eprintln!("received {n} notification(s)");
        Ok(ExitCode::SUCCESS)
    }

    /// Why one connection's receive loop ended.
    enum SubscribeEnd {
        /// `--count` reached, `--idle-exit` elapsed or Ctrl-C: stop.
        Done,
        /// The hub went away (shut down, restarted, unreachable): reconnect.
        Lost(String),
    }

    /// A long-running subscriber: receives, stores (fsync) and acknowledges notifications;
    /// when the hub goes away it reconnects with back-off and jitter and resumes after the
    /// last acknowledged offset. It stops with an error only for what retrying cannot fix:
    /// its identity or role refused, or a newer connection of the same entity taking over
    /// (the newest subscriber of an entity wins; the one it replaced is told so and exits).
    async fn subscribe(
        args: &SubscribeArgs,
        id: &Identity,
        delivery: &mut Option<Delivery>,
    ) -> anyhow::Result<u64> {
        let mut from = args.from.map_or(StartFrom::Acked, StartFrom::Offset);
        let mut file = match &args.output {
            Some(p) => Some(open_append(p)?),
            None => None,
        };
        let mut received = 0u64;
        // Ids stored but perhaps not acknowledged before a connection broke: a resume
        // delivers them again, and they are not written twice.
        let mut recent = RecentIds::default();
        let mut backoff = Backoff::new(Duration::from_secs(30));
        let transport = args.id.transport()?;
        loop {
            let connected = async {
                let c = Client::connect_with(&args.id.hub, id, &transport).await?;
                c.subscribe(from).await
            }
            .await;
            let mut sub = match connected {
                Ok(sub) => sub,
                Err(e) if e.is_transient() => {
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        "{}: {e}; reconnecting in {:.1} s",
                        args.id.hub,
                        wait.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = tokio::signal::ctrl_c() => return Ok(received),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!("subscribed at {} ({from:?})", args.id.hub);
            // Acks are sent after each group is stored; held up to a second so that a
            // subscriber getting a few notifications a second sends one packet for several.
            sub.set_ack_delay(SUBSCRIBE_ACK_DELAY);
            backoff.reset();
            // After the first connection, always resume after what was acknowledged.
            from = StartFrom::Acked;
            let r = receive(
                args,
                &mut sub,
                &mut file,
                delivery,
                &mut received,
                &mut recent,
            )
            .await;
            match r {
                Ok(SubscribeEnd::Done) => {
                    sub.close().await;
                    return Ok(received);
                }
                Ok(SubscribeEnd::Lost(why)) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        "{}: {why}; reconnecting in {:.1} s",
                        args.id.hub,
                        wait.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tokio::signal::ctrl_c() => return Ok(received),
                    }
                }
                Err(e) => {
                    if let Some(ClientError::Refused { code, message }) = e.downcast_ref()
                        && *code == ErrorCode::REPLACED.0
                    {
                        anyhow::bail!(
                            "another subscriber of this entity connected and took over ({message}); this one stops"
                        );
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The ids of the last notifications stored.
    #[derive(Default)]
    struct RecentIds {
        order: std::collections::VecDeque<u128>,
        set: std::collections::HashSet<u128>,
    }

    impl RecentIds {
        const KEEP: usize = 8192;

        /// Whether `id` is new; remembers it.
        fn insert(&mut self, id: u128) -> bool {
            if !self.set.insert(id) {
                return false;
            }
            self.order.push_back(id);
            if self.order.len() > Self::KEEP
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
            true
        }
    }

    /// One connection's receive loop.
    async fn receive(
        args: &SubscribeArgs,
        sub: &mut cwn::net::client::Subscription,
        file: &mut Option<std::fs::File>,
        delivery: &mut Option<Delivery>,
        received: &mut u64,
        recent: &mut RecentIds,
    ) -> anyhow::Result<SubscribeEnd> {
        let idle = args.idle_exit.map(Duration::from_secs_f64);
        let limit = args.count.unwrap_or(u64::MAX);
        let lost = |e: ClientError| -> anyhow::Result<SubscribeEnd> {
            if e.is_transient() {
                Ok(SubscribeEnd::Lost(e.to_string()))
            } else {
                Err(e.into())
            }
        };
        while *received < limit {
            // The first notification waits (up to --idle-exit); the ones already buffered
            // behind it join its write, fsync and ack.
            // With delivery targets, a tick a second stores the alert updates that fall due.
            let idle_until = idle.map(|d| tokio::time::Instant::now() + d);
            let first = loop {
                let tick = tokio::time::sleep(if delivery.is_some() {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(3600)
                });
                let idle_end = async {
                    match idle_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = sub.next() => break r,
                    _ = tick => {
                        if let Some(d) = delivery.as_mut() {
                            d.tick()?;
                            if let Some(reports) = d.reports_due()
                                && let Err(e) = sub.report(&reports).await
                            {
                                return lost(e);
                            }
                        }
                    }
                    _ = idle_end => return Ok(SubscribeEnd::Done),
                    _ = tokio::signal::ctrl_c() => return Ok(SubscribeEnd::Done),
                }
            };
            let first = match first {
                Ok(Some(n)) => n,
                Ok(None) => {
                    return Ok(SubscribeEnd::Lost("the hub closed the subscription".into()));
                }
                Err(e) => return lost(e),
            };
            let mut group = vec![first];
            let mut end = None;
            while *received + (group.len() as u64) < limit && group.len() < 1024 {
                match tokio::time::timeout(Duration::ZERO, sub.next()).await {
                    Ok(Ok(Some(n))) => group.push(n),
                    Ok(Ok(None)) => {
                        end = Some(SubscribeEnd::Lost("the hub closed the subscription".into()));
                        break;
                    }
                    Ok(Err(e)) => {
                        end = Some(lost(e)?);
                        break;
                    }
                    Err(_) => break,
                }
            }
            // With delivery targets and no -o, the lines are the outbox's to write, not ours.
            let printed = file.is_some() || delivery.is_none();
            let mut text = Vec::new();
            let mut fresh = 0u64;
            for (offset, n) in &group {
                if !recent.insert(n.id.0) {
                    continue;
                }
                fresh += 1;
                if printed {
                    serde_json::to_writer(&mut text, &notification_json(*offset, n))?;
                    text.push(b'\n');
                }
            }
            match (file.as_mut(), delivery.as_mut()) {
                (Some(f), _) => {
                    f.write_all(&text)?;
                    f.sync_data()?;
                }
                // The targets have it once the spool does.
                (None, Some(_)) => {}
                (None, None) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&text)?;
                    out.flush()?;
                }
            }
            if let Some(d) = delivery.as_mut() {
                d.outbox.take(&group, now_ms())?;
            }
            *received += fresh;
            let last = group.last().map(|g| g.0).unwrap_or_default();
            if let Err(e) = sub.ack(last).await {
                return lost(e);
            }
            if let Some(end) = end {
                return Ok(end);
            }
        }
        Ok(SubscribeEnd::Done)
    }

    fn open_append(p: &Path) -> anyhow::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    }
}

/// `cwn config` arguments.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}
