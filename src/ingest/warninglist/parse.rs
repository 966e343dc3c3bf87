//! Reading one `list.json`: its fields, its entries checked and compiled per list type.

use super::*;

/// Parses one list file into a list and its entry problems.
pub(super) fn parse_list(
    path: &str,
    bytes: &[u8],
) -> Result<(List, Vec<String>), WarninglistError> {
    let err = |reason: String| WarninglistError::new(path, reason);
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not a JSON document: {e}")))?;
    let Value::Object(mut doc) = doc else {
        return Err(err(format!(
            "a warninglist is a JSON object, found {}",
            crate::ingest::json_kind(&doc)
        )));
    };
    let name = match doc.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(err("`name` is empty".into())),
        Some(v) => {
            return Err(err(format!(
                "`name` must be a string, found {}",
                crate::ingest::json_kind(v)
            )));
        }
        None => return Err(err("no `name`".into())),
    };
    let version = match doc.get("version") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            err(format!(
                "`version` must be a non-negative integer, found {n}"
            ))
        })?,
        // PyMISPWarningLists reads it with int(): accept a numeric string too.
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            err(format!(
                "`version` must be a non-negative integer, found \"{}\"",
                shorten(s)
            ))
        })?,
        Some(v) => {
            return Err(err(format!(
                "`version` must be an integer, found {}",
                crate::ingest::json_kind(v)
            )));
        }
        None => return Err(err("no `version`".into())),
    };
    let description = match doc.get("description") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => {
            return Err(err(format!(
                "`description` must be a string, found {}",
                crate::ingest::json_kind(v)
            )));
        }
    };
    let list_type = match doc.get("type") {
        // MISP treats a list without a type as a string list.
        None | Some(Value::Null) => ListType::String,
        Some(Value::String(s)) => ListType::from_name(s.trim()).ok_or_else(|| {
            err(format!(
                "unknown `type` \"{}\" (expected string, substring, hostname, cidr or regex)",
                shorten(s)
            ))
        })?,
        Some(v) => {
            return Err(err(format!(
                "`type` must be a string, found {}",
                crate::ingest::json_kind(v)
            )));
        }
    };
    let matching_attributes = match doc.get("matching_attributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                v => Err(err(format!(
                    "`matching_attributes` must hold strings, found {}",
                    crate::ingest::json_kind(v)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(err(format!(
                "`matching_attributes` must be an array, found {}",
                crate::ingest::json_kind(v)
            )));
        }
    };
    let raw_entries: Vec<Value> = match doc.remove("list") {
        Some(Value::Array(a)) => a,
        // MISP also accepts an object value → comment.
        Some(Value::Object(o)) => o.into_iter().map(|(k, _)| Value::String(k)).collect(),
        Some(v) => {
            return Err(err(format!(
                "`list` must be an array of strings or an object, found {}",
                crate::ingest::json_kind(&v)
            )));
        }
        None => return Err(err("no `list`".into())),
    };

    let mut list = List {
        name,
        version,
        description,
        list_type,
        path: path.to_string(),
        applies: kind_mask(&matching_attributes),
        matching_attributes,
        entries: Vec::with_capacity(raw_entries.len()),
        skipped: 0,
    };
    let mut problems = Vec::new();
    for raw in raw_entries {
        let text = match raw {
            Value::String(s) => s,
            v => {
                list.skipped += 1;
                problems.push(format!(
                    "{}: entry `{}`: not a string",
                    list.label(),
                    shorten(&v.to_string())
                ));
                continue;
            }
        };
        let text = text.trim();
        match compile_entry(list_type, text) {
            Ok(form) => list.entries.push(Entry {
                text: text.into(),
                form,
            }),
            Err(reason) => {
                list.skipped += 1;
                problems.push(format!(
                    "{}: entry `{}`: {reason}",
                    list.label(),
                    shorten(text)
                ));
            }
        }
    }
    Ok((list, problems))
}

/// The kinds a list applies to, as a bit mask over [`kind_bit`].
pub(super) fn kind_mask(matching_attributes: &[String]) -> u32 {
    if matching_attributes.is_empty() {
        return Kind::ALL.iter().fold(0, |m, &k| m | kind_bit(k));
    }
    Kind::ALL
        .iter()
        .filter(|k| {
            k.misp_types()
                .iter()
                .any(|t| matching_attributes.iter().any(|a| a == t))
        })
        .fold(0, |m, &k| m | kind_bit(k))
}

pub(super) const fn kind_bit(kind: Kind) -> u32 {
    1 << (kind as u32)
}

/// The lower-cased, dot-trimmed form under which string entries are indexed.
pub(super) fn fold(s: &str) -> std::borrow::Cow<'_, str> {
    let t = s.trim_matches('.');
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(t.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(t)
    }
}

/// Compiles one entry of a list of type `ty`, or says why it cannot be used.
pub(super) fn compile_entry(ty: ListType, text: &str) -> Result<Form, String> {
    if text.is_empty() {
        return Err("empty entry".into());
    }
    match ty {
        ListType::String => {
            let key = fold(text);
            if key.is_empty() {
                return Err("nothing but dots".into());
            }
            Ok(Form::Key((key != text).then(|| key.into())))
        }
        ListType::Substring => Ok(Form::Substring),
        ListType::Hostname => host_entry(text).map(|h| Form::Key((h != text).then(|| h.into()))),
        ListType::Cidr => parse_net(text).map(Form::Net),
        ListType::Regex => {
            let pattern = translate_pcre(text)?;
            Regex::new(&pattern).map(Form::Regex).map_err(|e| {
                format!(
                    "E_WL_REGEX: the regex engine cannot run this pattern: {}",
                    regex_reason(&e)
                )
            })
        }
    }
}

/// A `hostname` entry in the form hosts are compared in: lower case, no dots at either end,
/// A-labels. Single labels (`com`, `local`) and addresses are kept as they are.
pub(super) fn host_entry(text: &str) -> Result<String, String> {
    let t = text.trim_matches('.');
    if t.is_empty() {
        return Err("nothing but dots".into());
    }
    if let Ok(ip) = normalize::ip(t) {
        return Ok(ip.to_string());
    }
    match normalize::domain(t) {
        Ok(d) => Ok(d),
        Err(e) => {
            // A single label (`com`, `local`, `рф`), which `domain` refuses as an indicator.
            let lower = idna::domain_to_ascii(t).unwrap_or_else(|_| t.to_ascii_lowercase());
            let single_label = !lower.contains('.')
                && !lower.is_empty()
                && lower.len() <= 63
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if single_label {
                Ok(lower)
            } else {
                Err(format!("not a host name: {e}"))
            }
        }
    }
}

/// A `cidr` entry: a network or a single address; host bits are ignored, IPv4-mapped IPv6
/// networks become IPv4 networks.
pub(super) fn parse_net(text: &str) -> Result<IpNet, String> {
    let net = if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|_| "not a network in CIDR notation".to_string())?
    } else {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| "not an IP address or network".to_string())?;
        IpNet::from(ip)
    };
    let net = match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    };
    Ok(net.trunc())
}
