//! One `cwn sync` cycle: refresh every source, ingest what each holds, and publish what
//! changed — the first time a full snapshot, then a delta against the state before it, and
//! after `compact_every` deltas a full snapshot again.
//!
//! The publication directory holds `set-v<V>.cwnsnap` (full) and `set-v<V>.cwndelta` files;
//! a restarted `cwn sync` finds its state there (the newest full snapshot and the deltas
//! after it, each checked against the state before it), so a crash between two cycles costs
//! nothing and a cycle never publishes twice. The sources' states are in `state_dir`
//! ([`source`]); `status.json` and `metrics.prom` there say how each fared.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use serde::Serialize;

use super::config::SyncConfig;
use super::fetch::Fetcher;
use super::source::{self, SourceState};
use crate::index::delta::{Delta, DeltaStats};
use crate::index::{CompiledIndex, IndexBuilder};
use crate::ingest::warninglist::Warninglists;
use crate::ingest::{self, Ingest, IngestReport, SourceOptions};

/// What one source did in a cycle.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// Its name.
    pub name: String,
    /// `misp-feed`, `taxii` or `list`.
    pub kind: &'static str,
    /// Where it is read from.
    pub url: String,
    /// Whether this cycle's refresh succeeded.
    pub ok: bool,
    /// Whether its content changed.
    pub changed: bool,
    /// Indicators accepted from it this cycle (from its last good state when it failed).
    pub indicators: u64,
    /// Unix seconds of its last successful refresh.
    pub last_success: Option<i64>,
    /// Why the last refresh failed.
    pub last_error: Option<String>,
    /// Failed refreshes in a row.
    pub consecutive_failures: u32,
}

/// What a cycle published.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Published {
    /// Nothing changed.
    Nothing,
    /// A full snapshot (the first, or a compaction).
    Full {
        /// The file.
        path: PathBuf,
        /// Its set version.
        version: u64,
        /// Its size.
        bytes: u64,
        /// Indicators in it.
        indicators: u64,
    },
    /// A delta.
    Delta {
        /// The file.
        path: PathBuf,
        /// Its set version.
        version: u64,
        /// Its size.
        bytes: u64,
        /// Indicators added (changed ones included).
        added: u64,
        /// Indicators removed (changed ones included).
        removed: u64,
        /// Of those, indicators changed (removed and added again).
        changed: u64,
    },
}

/// What a cycle did.
#[derive(Clone, Debug, Serialize)]
pub struct CycleReport {
    /// Unix seconds when it started.
    pub started: i64,
    /// Per source, in configuration order.
    pub sources: Vec<SourceStatus>,
    /// The ingest of every source together.
    pub ingest: IngestReport,
    /// What was published: a delta, and after `compact_every` deltas a full snapshot too.
    pub published: Vec<Published>,
    /// The set version now published.
    pub version: Option<u64>,
    /// Indicators in the published set.
    pub indicators: u64,
}

/// Follows the sources of a `sync.toml`.
pub struct Syncer {
    cfg: SyncConfig,
    out: PathBuf,
    key: Option<SigningKey>,
    warninglists: Option<Arc<Warninglists>>,
    fetchers: Vec<Result<Fetcher, String>>,
    state: Option<CompiledIndex>,
    since_full: u32,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("out", &self.out)
            .field("sources", &self.cfg.sources.len())
            .field("version", &self.version())
            .finish()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A published file's set version and whether it is a full snapshot, from its name.
fn published_version(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("set-v")?;
    if let Some(v) = rest.strip_suffix(".cwnsnap") {
        return Some((v.parse().ok()?, true));
    }
    Some((rest.strip_suffix(".cwndelta")?.parse().ok()?, false))
}

/// The full snapshot and delta files of a publication directory, by version (a full
/// snapshot before a delta of the same version).
pub fn published(dir: &Path) -> Vec<(u64, bool, PathBuf)> {
    let mut out: Vec<(u64, bool, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (v, full) = published_version(&name.to_string_lossy())?;
            Some((v, full, e.path()))
        })
        .collect();
    out.sort_by_key(|(v, full, _)| (*v, !*full));
    out
}

impl Syncer {
    /// A syncer publishing into `out` (the default is `<state_dir>/published`), taking up
    /// where the files there left off.
    ///
    /// # Errors
    /// The signing key cannot be read, or the published chain does not load (a file that is
    /// not a snapshot or delta of this chain, or a gap).
    pub fn open(
        cfg: SyncConfig,
        out: Option<PathBuf>,
        warninglists: Option<Warninglists>,
    ) -> anyhow::Result<Syncer> {
        let out = out.unwrap_or_else(|| cfg.state_dir.join("published"));
        std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        let key = cfg
            .sign_key
            .as_deref()
            .map(crate::index::snapshot::keys::read_signing)
            .transpose()?;
        let fetchers = cfg.sources.iter().map(Fetcher::new).collect();
        let mut s = Syncer {
            cfg,
            out,
            key,
            warninglists: warninglists.map(Arc::new),
            fetchers,
            state: None,
            since_full: 0,
        };
        s.restore()?;
        Ok(s)
    }

    /// Loads the newest full snapshot of the publication directory and the deltas after it.
    fn restore(&mut self) -> anyhow::Result<()> {
        let files = published(&self.out);
        let vk = self.key.as_ref().map(SigningKey::verifying_key);
        let Some(i) = files.iter().rposition(|(_, full, _)| *full) else {
            return Ok(());
        };
        let (_, _, path) = &files[i];
        let mut state = CompiledIndex::open(path, vk.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut n = 0;
        for (v, full, path) in &files[i + 1..] {
            if *full || *v <= state.header().set_version {
                continue;
            }
            let d = Delta::read(path, vk.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            state = state
                .apply(&d)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            n += 1;
        }
        tracing::info!(
            "resuming at set version {} ({} deltas after {})",
            state.header().set_version,
            n,
            path.display()
        );
        self.state = Some(state);
        self.since_full = n;
        Ok(())
    }

    /// The set version last published.
    pub fn version(&self) -> Option<u64> {
        self.state.as_ref().map(|s| s.header().set_version)
    }

    /// The published set as it stands (the base with its deltas applied).
    pub fn state(&self) -> Option<&CompiledIndex> {
        self.state.as_ref()
    }

    /// Where snapshots and deltas are published.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// Where the sources' states and the status are kept.
    pub fn state_dir(&self) -> &Path {
        &self.cfg.state_dir
    }

    /// Runs one cycle: every source refreshed (a failure is logged and reported, and the
    /// source's last good state used), everything ingested, the change published.
    ///
    /// # Errors
    /// Writing the published file or the status failed; the published chain is then as it
    /// was before the cycle.
    pub fn cycle(&mut self) -> anyhow::Result<CycleReport> {
        let started = now();
        let mut driver = Ingest::with_shared(self.warninglists.clone());
        let mut sources = Vec::with_capacity(self.cfg.sources.len());
        for (src, fetcher) in self.cfg.sources.iter().zip(&self.fetchers) {
            let dir = source::source_dir(&self.cfg.state_dir, &src.name);
            let mut st: SourceState = source::load_state(&dir);
            st.last_attempt = Some(started);
            let result = match fetcher {
                Ok(f) => source::refresh(src, f, &dir, &mut st),
                Err(e) => Err(e.clone()),
            };
            let (ok, changed) = match result {
                Ok(changed) => {
                    st.last_success = Some(started);
                    st.last_error = None;
                    st.consecutive_failures = 0;
                    (true, changed)
                }
                Err(e) => {
                    tracing::warn!(
                        "source {}: {e}; keeping its last good state{}",
                        src.name,
                        st.last_success
                            .map(|t| format!(" (from {})", fmt_time(t)))
                            .unwrap_or_default()
                    );
                    st.last_error = Some(e);
                    st.consecutive_failures += 1;
                    (false, false)
                }
            };
            source::save_state(&dir, &st).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            let before = driver.report().accepted;
            let data = dir.join("data");
            let opts = SourceOptions {
                default_tlp: src.tlp,
                kind: src.list_kind,
                ..SourceOptions::default()
            };
            if data.is_dir() && std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_some()) {
                let files = ingest::expand_sources(std::slice::from_ref(&data), &opts)?;
                ingest::read_all(&files, &opts, &mut driver, |_| {})?;
            }
            sources.push(SourceStatus {
                name: src.name.clone(),
                kind: src.kind.name(),
                url: src.url.clone(),
                ok,
                changed,
                indicators: driver.report().accepted - before,
                last_success: st.last_success,
                last_error: st.last_error.clone(),
                consecutive_failures: st.consecutive_failures,
            });
        }
        let (set, report, _rejects) = driver.finish();
        let version = self
            .version()
            .map_or(1, |v| v + 1)
            .max(u64::try_from(started).unwrap_or(0));
        let builder = IndexBuilder::new()
            .arm_red(self.cfg.arm_red)
            .set_version(version)
            .created_at(started);
        let mut published = Vec::new();
        match &self.state {
            None => published.push(self.publish_full(&builder.build(&set)?)?),
            Some(state) => {
                let (delta, stats) = Delta::compute(state, &set, &builder)?;
                if !delta.is_empty() {
                    published.push(self.publish_delta(&delta, &stats)?);
                    if self.since_full >= self.cfg.compact_every
                        && let Some(state) = &self.state
                    {
                        // A new base under the next version: the chain's files keep theirs.
                        let compacted = state.compact_as(version + 1, started)?;
                        published.push(self.publish_full(&compacted)?);
                    }
                }
            }
        }
        let report = CycleReport {
            started,
            sources,
            ingest: report,
            published,
            version: self.version(),
            indicators: self.state.as_ref().map_or(0, |s| s.len() as u64),
        };
        self.write_status(&report)?;
        Ok(report)
    }

    /// Writes a full snapshot and makes it the state.
    fn publish_full(&mut self, index: &CompiledIndex) -> anyhow::Result<Published> {
        let v = index.header().set_version;
        let bytes = index.to_snapshot(self.key.as_ref());
        let path = self.out.join(format!("set-v{v}.cwnsnap"));
        crate::outfile::replace(&path, &bytes, true)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let vk = self.key.as_ref().map(SigningKey::verifying_key);
        self.state = Some(
            CompiledIndex::open(&path, vk.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
        self.since_full = 0;
        self.prune(v);
        Ok(Published::Full {
            path,
            version: v,
            bytes: bytes.len() as u64,
            indicators: index.len() as u64,
        })
    }

    /// Writes a delta and applies it to the state.
    fn publish_delta(&mut self, delta: &Delta, stats: &DeltaStats) -> anyhow::Result<Published> {
        let v = delta.header().set_version;
        let bytes = delta.to_bytes(self.key.as_ref());
        let path = self.out.join(format!("set-v{v}.cwndelta"));
        crate::outfile::replace(&path, &bytes, true)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Applied as written, so that the state's identity is the file's.
        let written = Delta::from_bytes(&bytes, None)?;
        let state = self
            .state
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("a delta without a base"))?;
        self.state = Some(state.apply(&written)?);
        self.since_full += 1;
        Ok(Published::Delta {
            path,
            version: v,
            bytes: bytes.len() as u64,
            added: stats.added,
            removed: stats.removed,
            changed: stats.changed,
        })
    }

    /// Removes what is older than the full snapshot before the one at `version`: the last
    /// two full snapshots and every delta after the older stay, so that a consumer one
    /// compaction behind can still catch up.
    fn prune(&self, version: u64) {
        let files = published(&self.out);
        let fulls: Vec<u64> = files
            .iter()
            .filter(|(v, full, _)| *full && *v <= version)
            .map(|(v, _, _)| *v)
            .collect();
        let Some(&keep_from) = fulls.len().checked_sub(2).and_then(|i| fulls.get(i)) else {
            return;
        };
        for (v, _, path) in files.iter().filter(|(v, _, _)| *v < keep_from) {
            tracing::debug!("pruning set version {v}: {}", path.display());
            let _ = std::fs::remove_file(path);
        }
    }

    /// `status.json` (the last cycle's report) and `metrics.prom` (Prometheus text format,
    /// for a node exporter's textfile collector) in the state directory.
    fn write_status(&self, report: &CycleReport) -> anyhow::Result<()> {
        let dir = &self.cfg.state_dir;
        let json = serde_json::to_vec_pretty(report)?;
        crate::outfile::replace(&dir.join("status.json"), &json, false)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let mut m = String::new();
        m.push_str("# HELP cwn_sync_source_up Whether the source's last refresh succeeded.\n# TYPE cwn_sync_source_up gauge\n");
        for s in &report.sources {
            m.push_str(&format!(
                "cwn_sync_source_up{{source=\"{}\"}} {}\n",
                s.name,
                u8::from(s.ok)
            ));
        }
        m.push_str("# HELP cwn_sync_source_indicators Indicators accepted from the source.\n# TYPE cwn_sync_source_indicators gauge\n");
        for s in &report.sources {
            m.push_str(&format!(
                "cwn_sync_source_indicators{{source=\"{}\"}} {}\n",
                s.name, s.indicators
            ));
        }
        m.push_str("# HELP cwn_sync_source_failures Failed refreshes in a row.\n# TYPE cwn_sync_source_failures gauge\n");
        for s in &report.sources {
            m.push_str(&format!(
                "cwn_sync_source_failures{{source=\"{}\"}} {}\n",
                s.name, s.consecutive_failures
            ));
        }
        m.push_str(&format!(
            "# HELP cwn_sync_set_version The set version published.\n# TYPE cwn_sync_set_version gauge\ncwn_sync_set_version {}\n",
            report.version.unwrap_or(0)
        ));
        m.push_str(&format!(
            "# HELP cwn_sync_indicators Indicators in the published set.\n# TYPE cwn_sync_indicators gauge\ncwn_sync_indicators {}\n",
            report.indicators
        ));
        m.push_str(&format!(
            "# HELP cwn_sync_last_cycle_seconds Unix time of the last cycle.\n# TYPE cwn_sync_last_cycle_seconds gauge\ncwn_sync_last_cycle_seconds {}\n",
            report.started
        ));
        crate::outfile::replace(&dir.join("metrics.prom"), m.as_bytes(), false)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        Ok(())
    }
}

fn fmt_time(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}
