//! The delivery configuration file of `cwn subscribe --deliver-config FILE`, and the
//! recommended-action templates (`--templates FILE`, per sector).
//!
//! ```toml
//! spool = "/var/lib/cwn/spool"      # default: --spool
//! update_every = "15m"              # default: --update-every
//! templates = "actions.toml"        # the network's templates, per sector
//! sector = "health"
//!
//! [actions]                         # this entity's own texts, by indicator kind (or "default")
//! domain = "Block {indicator} in the DNS filter and call the service desk about {assets}."
//!
//! [[target]]
//! deliver = "webhook:https://soc.example/cwn"
//! secret_file = "webhook.secret"
//! outside = true                    # a third party's service: nothing above TLP:GREEN …
//! allow_amber = false               # … unless the entity allows TLP:AMBER there
//!
//! [[target]]
//! deliver = "smtp:mail.example:587"
//! mail_from = "cwn@hospital.example"
//! mail_to = ["ict@hospital.example"]
//! digest = "60m"
//! starttls = true
//! user = "cwn"
//! password_file = "smtp.password"
//! ca = "internal-ca.pem"
//!
//! [[target]]
//! deliver = "syslog:siem.example:6514"
//! tls = true
//! format = "cef"
//!
//! [[target]]
//! deliver = "taxii:https://taxii.example/api1/collections/9c3d…/"
//! user = "cwn"
//! password_file = "taxii.password"
//! ```
//!
//! A templates file (distributed by the NCSC, say) holds texts by indicator kind for every
//! sector and per sector; `{indicator}` and `{assets}` are filled in:
//!
//! ```toml
//! [default]
//! domain = "…"
//! [sector.health]
//! domain = "… Report to Z-CERT as well."
//! ```
//!
//! The text for a kind is the entity's own `[actions]`, else its sector's, else the file's
//! `[default]`, else the built-in one ([`super::default_action`]); within each, a kind's own
//! entry before the table's `default`. Relative paths are relative to the file that names
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::deliver::{SyslogOptions, Target, TargetConfig, read_secret};
use super::smtp::SmtpConfig;

/// Recommended-action templates by indicator kind, resolved for one entity: see the
/// [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Actions {
    /// Tables in the order they are consulted (the entity's, its sector's, the default).
    layers: Vec<BTreeMap<String, String>>,
}

impl Actions {
    /// The template for indicator `kind`.
    pub fn template(&self, kind: &str) -> String {
        for l in &self.layers {
            if let Some(t) = l.get(kind).or_else(|| l.get("default")) {
                return t.clone();
            }
        }
        super::default_action(kind).to_string()
    }

    /// `own` consulted before what is already here.
    fn over(mut self, own: BTreeMap<String, String>) -> Self {
        if !own.is_empty() {
            self.layers.insert(0, own);
        }
        self
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatesFile {
    #[serde(default)]
    default: BTreeMap<String, String>,
    #[serde(default)]
    sector: BTreeMap<String, BTreeMap<String, String>>,
}

fn check_templates(t: &BTreeMap<String, String>, what: &str) -> Result<(), String> {
    for (kind, text) in t {
        if kind != "default" && kind.parse::<crate::indicator::Kind>().is_err() {
            return Err(format!(
                "{what}: {kind:?} is not an indicator kind (domain, ipv4, url, sha256, …) or \
                 \"default\""
            ));
        }
        if text.trim().is_empty() {
            return Err(format!("{what}.{kind}: empty"));
        }
    }
    Ok(())
}

/// Reads a templates file and resolves it for `sector` (the file's `[default]` only when
/// `None` or a sector it does not name).
///
/// # Errors
/// The file cannot be read or is not a templates file (the message names the file, line and
/// key).
pub fn load_templates(path: &Path, sector: Option<&str>) -> Result<Actions, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: TemplatesFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |w: &str| format!("{}: [{w}]", path.display());
    check_templates(&f.default, &at("default"))?;
    for (s, t) in &f.sector {
        check_templates(t, &at(&format!("sector.{s}")))?;
    }
    let mut layers = Vec::new();
    if let Some(t) = sector.and_then(|s| f.sector.get(s)) {
        layers.push(t.clone());
    }
    layers.push(f.default);
    Ok(Actions { layers })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    spool: Option<PathBuf>,
    update_every: Option<String>,
    templates: Option<PathBuf>,
    sector: Option<String>,
    #[serde(default)]
    actions: BTreeMap<String, String>,
    #[serde(default)]
    target: Vec<TargetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    deliver: String,
    #[serde(default)]
    outside: bool,
    #[serde(default)]
    allow_amber: bool,
    secret_file: Option<PathBuf>,
    mail_from: Option<String>,
    #[serde(default)]
    mail_to: Vec<String>,
    digest: Option<String>,
    #[serde(default)]
    starttls: bool,
    user: Option<String>,
    password_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    #[serde(default)]
    tls: bool,
    format: Option<String>,
}

/// A delivery configuration file, read and checked: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct DeliverConfig {
    /// The spool directory, when the file names one.
    pub spool: Option<PathBuf>,
    /// How often an alert's update may go out, when the file says.
    pub update_every: Option<Duration>,
    /// The targets, each with its own options and credentials read.
    pub targets: Vec<TargetConfig>,
    /// The recommended-action templates.
    pub actions: Actions,
}

/// Whether `a` looks like an e-mail address that is safe in an SMTP command.
pub fn is_mail_address(a: &str) -> bool {
    a.contains('@') && !a.contains(['<', '>', '\r', '\n', ' '])
}

/// Reads and checks `path`; `sector` and `templates` given on the command line win over the
/// file's.
///
/// # Errors
/// The file cannot be read, is not valid, or names a secret or certificate file that cannot
/// be read; the message names the file and the target.
pub fn load(
    path: &Path,
    sector: Option<&str>,
    templates: Option<&Path>,
) -> Result<DeliverConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| base.join(p);
    let update_every = f
        .update_every
        .as_deref()
        .map(crate::net::config::parse_duration)
        .transpose()
        .map_err(|e| format!("{}: update_every: {e}", path.display()))?;
    check_templates(&f.actions, &format!("{}: [actions]", path.display()))?;
    let sector = sector.or(f.sector.as_deref());
    let actions = match templates
        .map(Path::to_path_buf)
        .or(f.templates.map(|t| rel(&t)))
    {
        Some(t) => load_templates(&t, sector)?,
        None => Actions::default(),
    }
    .over(f.actions);
    let mut targets = Vec::new();
    for (i, t) in f.target.into_iter().enumerate() {
        let what = format!("{}: target {} ({})", path.display(), i + 1, t.deliver);
        let target = match t.deliver.parse().map_err(|e| format!("{what}: {e}"))? {
            Target::Stix(d) => Target::Stix(rel(&d)),
            Target::Jsonl(f) => Target::Jsonl(rel(&f)),
            other => other,
        };
        let mut c = TargetConfig::new(target.clone());
        c.outside = t.outside;
        c.allow_amber = t.allow_amber;
        if t.allow_amber && !t.outside {
            return Err(format!(
                "{what}: allow_amber only means something with outside = true"
            ));
        }
        let read = |p: &Path| {
            std::fs::read(rel(p)).map_err(|e| format!("{what}: {}: {e}", rel(p).display()))
        };
        let password = |p: &Option<PathBuf>| -> Result<Option<String>, String> {
            p.as_deref()
                .map(|p| {
                    let b = read_secret(&rel(p)).map_err(|e| format!("{what}: {e}"))?;
                    String::from_utf8(b).map_err(|_| format!("{what}: {}: not UTF-8", p.display()))
                })
                .transpose()
        };
        let allowed: &[&str] = match &target {
            Target::Webhook(_) => &["secret_file"],
            Target::Smtp(_) => &[
                "mail_from",
                "mail_to",
                "digest",
                "starttls",
                "user",
                "password_file",
                "ca",
            ],
            Target::Syslog(_) => &["tls", "ca", "format"],
            Target::Taxii(_) => &["user", "password_file"],
            Target::Stix(_) | Target::Jsonl(_) => &[],
        };
        let given = [
            ("secret_file", t.secret_file.is_some()),
            ("mail_from", t.mail_from.is_some()),
            ("mail_to", !t.mail_to.is_empty()),
            ("digest", t.digest.is_some()),
            ("starttls", t.starttls),
            ("user", t.user.is_some()),
            ("password_file", t.password_file.is_some()),
            ("ca", t.ca.is_some()),
            ("tls", t.tls),
            ("format", t.format.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(format!("{what}: {k} does not apply to this kind of target"));
        }
        if t.user.is_some() != t.password_file.is_some() {
            return Err(format!("{what}: user and password_file go together"));
        }
        match &target {
            Target::Webhook(_) => {
                let f = t
                    .secret_file
                    .as_deref()
                    .ok_or_else(|| format!("{what}: a webhook needs secret_file"))?;
                c.secret = Some(read_secret(&rel(f)).map_err(|e| format!("{what}: {e}"))?);
            }
            Target::Smtp(server) => {
                let from = t
                    .mail_from
                    .clone()
                    .ok_or_else(|| format!("{what}: mail_from is required"))?;
                if t.mail_to.is_empty() {
                    return Err(format!("{what}: mail_to is required"));
                }
                if let Some(a) = std::iter::once(&from)
                    .chain(&t.mail_to)
                    .find(|a| !is_mail_address(a))
                {
                    return Err(format!("{what}: {a:?} is not an e-mail address"));
                }
                c.mail = Some(SmtpConfig {
                    server: server.clone(),
                    from,
                    to: t.mail_to.clone(),
                    require_tls: t.starttls,
                    auth: t.user.clone().zip(password(&t.password_file)?),
                    ca: t.ca.as_deref().map(read).transpose()?,
                });
                c.digest_every = t
                    .digest
                    .as_deref()
                    .map(crate::net::config::parse_duration)
                    .transpose()
                    .map_err(|e| format!("{what}: digest: {e}"))?;
            }
            Target::Syslog(_) => {
                c.syslog = SyslogOptions {
                    tls: t.tls,
                    ca: t.ca.as_deref().map(read).transpose()?,
                    cef: match t.format.as_deref() {
                        None | Some("rfc5424") => false,
                        Some("cef") => true,
                        Some(o) => {
                            return Err(format!("{what}: format {o:?} is rfc5424 or cef"));
                        }
                    },
                };
                if c.syslog.ca.is_some() && !c.syslog.tls {
                    return Err(format!("{what}: ca needs tls = true"));
                }
            }
            Target::Taxii(_) => c.taxii_auth = t.user.clone().zip(password(&t.password_file)?),
            Target::Stix(_) | Target::Jsonl(_) => {}
        }
        targets.push(c);
    }
    Ok(DeliverConfig {
        spool: f.spool.map(|s| rel(&s)),
        update_every,
        targets,
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_each_target_its_own_options_and_templates_go_entity_sector_default() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("hook.secret"), "s3cret\n").unwrap();
        std::fs::write(p.join("smtp.password"), "pw\n").unwrap();
        std::fs::write(
            p.join("actions.toml"),
            "[default]\ndomain = \"generic {indicator}\"\nipv4 = \"generic ip {indicator}\"\n\
             [sector.health]\ndomain = \"health {indicator} at {assets}\"\n",
        )
        .unwrap();
        std::fs::write(
            p.join("deliver.toml"),
            "spool = \"spool\"\nupdate_every = \"15m\"\ntemplates = \"actions.toml\"\n\
             sector = \"health\"\n[actions]\nsha256 = \"own {indicator}\"\n\
             [[target]]\ndeliver = \"webhook:https://soc.example/hook\"\nsecret_file = \"hook.secret\"\n\
             outside = true\n\
             [[target]]\ndeliver = \"smtp:127.0.0.1:25\"\nmail_from = \"cwn@h.example\"\n\
             mail_to = [\"ict@h.example\"]\ndigest = \"60m\"\nuser = \"cwn\"\npassword_file = \"smtp.password\"\n\
             [[target]]\ndeliver = \"syslog:127.0.0.1:514\"\nformat = \"cef\"\n",
        )
        .unwrap();
        let c = load(&p.join("deliver.toml"), None, None).unwrap();
        assert_eq!(c.spool.as_deref(), Some(p.join("spool").as_path()));
        assert_eq!(c.update_every, Some(Duration::from_secs(900)));
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.targets[0].secret.as_deref(), Some(&b"s3cret"[..]));
        assert!(c.targets[0].outside && !c.targets[0].allow_amber);
        let mail = c.targets[1].mail.as_ref().unwrap();
        assert_eq!(mail.auth, Some(("cwn".into(), "pw".into())));
        assert_eq!(c.targets[1].digest_every, Some(Duration::from_secs(3600)));
        assert!(c.targets[2].syslog.cef);
        assert_eq!(c.actions.template("sha256"), "own {indicator}");
        assert_eq!(
            c.actions.template("domain"),
            "health {indicator} at {assets}"
        );
        assert_eq!(c.actions.template("ipv4"), "generic ip {indicator}");
        assert_eq!(
            c.actions.template("email"),
            crate::notify::default_action("email")
        );
        // Another sector: the file's default.
        let other = load(&p.join("deliver.toml"), Some("water"), None).unwrap();
        assert_eq!(other.actions.template("domain"), "generic {indicator}");

        for (bad, says) in [
            (
                "[[target]]\ndeliver = \"webhook:https://x.example/\"\n",
                "needs secret_file",
            ),
            (
                "[[target]]\ndeliver = \"stix:out\"\nmail_to = [\"a@b\"]\n",
                "mail_to does not apply",
            ),
            (
                "[[target]]\ndeliver = \"smtp:h:25\"\nmail_from = \"a@b\"\n",
                "mail_to is required",
            ),
            (
                "[[target]]\ndeliver = \"syslog:h:514\"\nformat = \"leef\"\n",
                "rfc5424 or cef",
            ),
            (
                "[[target]]\ndeliver = \"pigeon:x\"\n",
                "unknown target kind",
            ),
            ("[actions]\ndomian = \"x\"\n", "not an indicator kind"),
            (
                "[[target]]\ndeliver = \"stix:out\"\nsecert_file = \"x\"\n",
                "unknown field",
            ),
        ] {
            std::fs::write(p.join("bad.toml"), bad).unwrap();
            let e = load(&p.join("bad.toml"), None, None).unwrap_err();
            assert!(e.contains("bad.toml") && e.contains(says), "{bad}: {e}");
        }
    }
}
