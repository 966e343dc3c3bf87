//! MISP attribute types and what cwn makes of each (FORMATS.md §1.9, §1.10).
//!
//! One table decides, per type, whether an attribute becomes indicators (and of which kind),
//! is context that is never armed, is rule text, or is a real indicator type for which cwn has
//! no telemetry field yet. Everything not in the table is an unknown type.

use crate::indicator::{Direction, Kind};

/// What an attribute of one type turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handling {
    /// One indicator of `kind`; `tag` is added to its tags (`x509` for certificate digests).
    Single {
        /// The kind handed to the normaliser.
        kind: Kind,
        /// `ip-src` / `ip-dst`.
        direction: Option<Direction>,
        /// An extra tag saying what the value is beyond its kind.
        tag: Option<&'static str>,
    },
    /// `ip-src|port`, `ip-dst|port`: one `ip:port` indicator.
    IpPort(Direction),
    /// `domain|ip`: two independent indicators, the domain and the address.
    DomainIp,
    /// `hostname|port`: the host name, with the port kept as a `port:N` tag.
    HostnamePort,
    /// `filename|<digest>` and `malware-sample`: the digest after the last `|`, the file name
    /// kept as a `filename:<name>` tag.
    FilenameDigest(Kind),
    /// Not an indicator: a reference or descriptive context. The text says which.
    Context(&'static str),
    /// Rule text (`snort`, `yara`, …): `E_RULE_TYPE`.
    Rule,
    /// A real indicator type that no telemetry field cwn reads can match yet.
    NoTelemetry(&'static str),
    /// A type cwn does not know.
    Unknown,
}

const DIGEST_NO_FIELD: &str = "no telemetry cwn reads carries this digest";

/// The handling of an attribute type. Types are compared case-insensitively after trimming.
pub(super) fn handling(misp_type: &str) -> Handling {
    use Handling::*;
    let t = misp_type.trim().to_ascii_lowercase();
    let single = |kind| Single {
        kind,
        direction: None,
        tag: None,
    };
    match t.as_str() {
        // The address kinds all go through the IP/CIDR normaliser, which decides v4/v6/CIDR.
        "ip-src" => Single {
            kind: Kind::Ipv4,
            direction: Some(Direction::Src),
            tag: None,
        },
        "ip-dst" => Single {
            kind: Kind::Ipv4,
            direction: Some(Direction::Dst),
            tag: None,
        },
        "ip-src|port" => IpPort(Direction::Src),
        "ip-dst|port" => IpPort(Direction::Dst),
        "domain" => single(Kind::Domain),
        "hostname" => single(Kind::Hostname),
        "domain|ip" => DomainIp,
        "hostname|port" => HostnamePort,
        "url" => single(Kind::Url),
        "uri" => single(Kind::Uri),
        "user-agent" => single(Kind::UserAgent),
        "email" | "email-src" | "email-dst" | "target-email" => single(Kind::Email),
        "md5" => single(Kind::Md5),
        "sha1" => single(Kind::Sha1),
        "sha256" => single(Kind::Sha256),
        "sha512" => single(Kind::Sha512),
        "filename|md5" | "malware-sample" => FilenameDigest(Kind::Md5),
        "filename|sha1" => FilenameDigest(Kind::Sha1),
        "filename|sha256" => FilenameDigest(Kind::Sha256),
        "filename|sha512" => FilenameDigest(Kind::Sha512),
        "ja3-fingerprint-md5" => single(Kind::Ja3),
        "ja3s-fingerprint-md5" => single(Kind::Ja3s),
        "ja4-fingerprint" => single(Kind::Ja4),
        "x509-fingerprint-md5" => Single {
            kind: Kind::Md5,
            direction: None,
            tag: Some("x509"),
        },
        "x509-fingerprint-sha1" => Single {
            kind: Kind::Sha1,
            direction: None,
            tag: Some("x509"),
        },
        "x509-fingerprint-sha256" => Single {
            kind: Kind::Sha256,
            direction: None,
            tag: Some("x509"),
        },

        "link" => Context("a reference link, not an indicator"),
        "comment" | "text" | "other" | "anonymised" => Context("free text, context only"),
        "port" => Context("a port alone is context only: it would match all traffic on that port"),
        "as" => Context("an AS number is context only"),
        "filename" | "filename-pattern" => {
            Context("a file name is context only: indicators match on a digest")
        }
        "http-method" => Context("an HTTP method is context only"),
        "email-subject"
        | "email-body"
        | "email-header"
        | "email-reply-to"
        | "email-x-mailer"
        | "email-message-id"
        | "email-display-name"
        | "email-attachment"
        | "email-mime-boundary"
        | "email-thread-index"
        | "email-dst-display-name"
        | "email-src-display-name" => Context("e-mail message data is context only"),
        "whois-registrant-email"
        | "whois-registrant-name"
        | "whois-registrant-phone"
        | "whois-registrant-org"
        | "whois-registrar"
        | "whois-creation-date" => Context("whois registration data is context only"),
        "target-user" | "target-machine" | "target-org" | "target-location" | "target-external" => {
            Context("targeting data is context only")
        }
        "datetime" | "counter" | "size-in-bytes" | "float" | "boolean" | "hex" | "mime-type"
        | "attachment" | "vulnerability" | "weakness" | "threat-actor" | "campaign-name"
        | "campaign-id" | "cpe" | "process-state" => Context("descriptive data, context only"),

        "snort" | "yara" | "sigma" | "zeek" | "bro" | "stix2-pattern" | "kusto-query" => Rule,
        _ if t.starts_with("pattern-in-") => Rule,

        "sha224" | "sha384" | "sha512/224" | "sha512/256" | "sha3-224" | "sha3-256"
        | "sha3-384" | "sha3-512" | "ssdeep" | "tlsh" | "imphash" | "impfuzzy" | "authentihash"
        | "vhash" | "pehash" | "telfhash" | "cdhash" => NoTelemetry(DIGEST_NO_FIELD),
        _ if t.starts_with("filename|") => NoTelemetry(DIGEST_NO_FIELD),
        "jarm-fingerprint" => NoTelemetry("no telemetry cwn reads carries JARM fingerprints"),
        "hassh-md5" | "hasshserver-md5" => {
            NoTelemetry("no telemetry cwn reads carries HASSH fingerprints")
        }
        "mac-address" | "mac-eui-64" => NoTelemetry("no telemetry cwn reads carries MAC addresses"),
        "community-id" => NoTelemetry("flow hashes are not matched yet"),
        "mutex"
        | "regkey"
        | "regkey|value"
        | "named pipe"
        | "windows-service-name"
        | "windows-service-displayname"
        | "windows-scheduled-task"
        | "onion-address"
        | "favicon-mmh3"
        | "dom-hash"
        | "btc"
        | "xmr"
        | "dkim"
        | "dkim-signature"
        | "cookie" => NoTelemetry("host and application artefacts are not matched by cwn"),
        _ => Unknown,
    }
}

/// MISP's default `to_ids` for a type, used when an attribute does not say (MISP's own type
/// definitions: User-Agents and target addresses are context by default).
pub(super) fn default_to_ids(misp_type: &str) -> bool {
    let t = misp_type.trim();
    !(t.eq_ignore_ascii_case("user-agent") || t.eq_ignore_ascii_case("target-email"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_maps_to_its_kind() {
        let cases = [
            ("ip-src", Kind::Ipv4),
            ("ip-dst", Kind::Ipv4),
            ("domain", Kind::Domain),
            ("hostname", Kind::Hostname),
            ("url", Kind::Url),
            ("uri", Kind::Uri),
            ("user-agent", Kind::UserAgent),
            ("email", Kind::Email),
            ("email-src", Kind::Email),
            ("email-dst", Kind::Email),
            ("target-email", Kind::Email),
            ("md5", Kind::Md5),
            ("sha1", Kind::Sha1),
            ("sha256", Kind::Sha256),
            ("sha512", Kind::Sha512),
            ("ja3-fingerprint-md5", Kind::Ja3),
            ("ja3s-fingerprint-md5", Kind::Ja3s),
            ("ja4-fingerprint", Kind::Ja4),
            ("x509-fingerprint-md5", Kind::Md5),
            ("x509-fingerprint-sha1", Kind::Sha1),
            ("x509-fingerprint-sha256", Kind::Sha256),
            ("IP-DST", Kind::Ipv4),
        ];
        for (t, want) in cases {
            match handling(t) {
                Handling::Single { kind, .. } => assert_eq!(kind, want, "{t}"),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn composites_rules_context_and_unknowns() {
        let cases = [
            ("ip-dst|port", Handling::IpPort(Direction::Dst)),
            ("ip-src|port", Handling::IpPort(Direction::Src)),
            ("domain|ip", Handling::DomainIp),
            ("hostname|port", Handling::HostnamePort),
            ("filename|sha256", Handling::FilenameDigest(Kind::Sha256)),
            ("malware-sample", Handling::FilenameDigest(Kind::Md5)),
            ("yara", Handling::Rule),
            ("pattern-in-traffic", Handling::Rule),
            ("filename|ssdeep", Handling::NoTelemetry(DIGEST_NO_FIELD)),
            ("sha384", Handling::NoTelemetry(DIGEST_NO_FIELD)),
            ("no-such-type", Handling::Unknown),
        ];
        for (t, want) in cases {
            assert_eq!(handling(t), want, "{t}");
        }
        for t in [
            "link",
            "comment",
            "text",
            "other",
            "port",
            "AS",
            "filename",
            "http-method",
        ] {
            assert!(matches!(handling(t), Handling::Context(_)), "{t}");
        }
    }

    #[test]
    fn user_agents_are_context_by_default() {
        assert!(!default_to_ids("user-agent"));
        assert!(!default_to_ids("target-email"));
        assert!(default_to_ids("ip-dst"));
    }
}
