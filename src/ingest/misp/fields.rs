//! Tolerant readers for the scalar fields of MISP JSON.
//!
//! MISP writes almost every scalar as a string (`"distribution": "5"`), other exporters write
//! integers, and hand-made feeds mix both. Each reader accepts every spelling that means one
//! thing and refuses the rest with a reason that names the field and shows what was found, so
//! that a feed owner can fix the record. `null` counts as absent everywhere, as in MISP.

use serde_json::{Map, Value};

use crate::ingest::plain::shorten;

/// A JSON object.
pub(super) type Obj = Map<String, Value>;

/// What a value is, for reasons: `the string "yes"`, `the number 3`, `an array`.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{}\"", shorten(s).escape_debug()),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn wrong(key: &str, v: &Value, expected: &str) -> String {
    format!("`{key}` is {}, expected {expected}", describe(v))
}

/// The value of `key`, `None` when absent or `null`.
pub(super) fn get<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

/// A string field.
pub(super) fn string<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a str>, String> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong(key, v, "a string")),
    }
}

/// A boolean: `true`/`false`, `0`/`1`, or the strings `"0"`, `"1"`, `"true"`, `"false"` (what
/// MISP's own API accepts on input).
pub(super) fn flag(o: &Obj, key: &str) -> Result<Option<bool>, String> {
    let Some(v) = get(o, key) else {
        return Ok(None);
    };
    let b = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    };
    b.map(Some).ok_or_else(|| wrong(key, v, "true or false"))
}

/// A non-negative integer written as a number or as a string of digits. An empty string counts
/// as absent (MISP writes `"sharing_group_id": ""` on some versions).
pub(super) fn uint(o: &Obj, key: &str) -> Result<Option<u64>, String> {
    let Some(v) = get(o, key) else {
        return Ok(None);
    };
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong(key, v, "a non-negative integer")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| wrong(key, v, "a non-negative integer")),
        _ => Err(wrong(key, v, "a non-negative integer")),
    }
}

/// An array field; absent is empty.
pub(super) fn array<'a>(o: &'a Obj, key: &str) -> Result<&'a [Value], String> {
    match get(o, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wrong(key, v, "an array")),
    }
}

/// An object field.
pub(super) fn object<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a Obj>, String> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(wrong(key, v, "an object")),
    }
}

/// The MISP `distribution` of an event (`0`–`4`) or of an object or attribute (`0`–`5`, where
/// `5` means "inherit" and is returned as `None`).
pub(super) fn distribution(o: &Obj, inherit_allowed: bool) -> Result<Option<u8>, String> {
    let Some(d) = uint(o, "distribution")? else {
        return Ok(None);
    };
    match d {
        0..=4 => Ok(Some(d as u8)),
        5 if inherit_allowed => Ok(None),
        5 => {
            Err("`distribution` is 5 (inherit), but an event has no parent to inherit from".into())
        }
        _ => Err(format!(
            "`distribution` is {d}, expected 0-{}",
            if inherit_allowed { 5 } else { 4 }
        )),
    }
}

/// Whether `s` is a UUID in the usual 8-4-4-4-12 hex form (any case).
pub(super) fn looks_like_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A `uuid` field, checked and lower-cased (MISP writes lower case; identity must not depend
/// on case).
pub(super) fn uuid(o: &Obj, key: &str) -> Result<Option<String>, String> {
    match string(o, key)? {
        None => Ok(None),
        Some(s) if looks_like_uuid(s.trim()) => Ok(Some(s.trim().to_ascii_lowercase())),
        Some(s) => Err(format!(
            "`{key}` \"{}\" is not a UUID",
            shorten(s).escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn flags_accept_misp_spellings_and_name_the_field_otherwise() {
        let cases = [
            (json!({"to_ids": true}), Ok(Some(true))),
            (json!({"to_ids": false}), Ok(Some(false))),
            (json!({"to_ids": "1"}), Ok(Some(true))),
            (json!({"to_ids": 0}), Ok(Some(false))),
            (json!({"to_ids": null}), Ok(None)),
            (json!({}), Ok(None)),
            (
                json!({"to_ids": "yes"}),
                Err("`to_ids` is the string \"yes\", expected true or false".to_string()),
            ),
            (
                json!({"to_ids": 2}),
                Err("`to_ids` is the number 2, expected true or false".to_string()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(flag(&obj(input.clone()), "to_ids"), want, "{input}");
        }
    }

    #[test]
    fn integers_may_be_strings() {
        let cases = [
            (json!({"n": "1741681800"}), Ok(Some(1_741_681_800))),
            (json!({"n": 7}), Ok(Some(7))),
            (json!({"n": ""}), Ok(None)),
            (
                json!({"n": "-1"}),
                Err("`n` is the string \"-1\", expected a non-negative integer".to_string()),
            ),
            (
                json!({"n": 1.5}),
                Err("`n` is the number 1.5, expected a non-negative integer".to_string()),
            ),
            (
                json!({"n": [1]}),
                Err("`n` is an array, expected a non-negative integer".to_string()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(uint(&obj(input.clone()), "n"), want, "{input}");
        }
    }

    #[test]
    fn distribution_knows_inherit_and_range() {
        let cases = [
            (json!({"distribution": "5"}), true, Ok(None)),
            (json!({"distribution": "4"}), false, Ok(Some(4))),
            (json!({"distribution": 0}), true, Ok(Some(0))),
            (json!({}), false, Ok(None)),
        ];
        for (input, inherit, want) in cases {
            assert_eq!(distribution(&obj(input.clone()), inherit), want, "{input}");
        }
        assert!(
            distribution(&obj(json!({"distribution": "5"})), false)
                .unwrap_err()
                .contains("no parent")
        );
        assert_eq!(
            distribution(&obj(json!({"distribution": "9"})), true),
            Err("`distribution` is 9, expected 0-5".to_string())
        );
    }

    #[test]
    fn uuids_are_checked_and_lower_cased() {
        assert_eq!(
            uuid(
                &obj(json!({"uuid": "5E3D3C80-EBA8-5531-84DB-FE0B24A2BBED"})),
                "uuid"
            ),
            Ok(Some("5e3d3c80-eba8-5531-84db-fe0b24a2bbed".to_string()))
        );
        assert_eq!(
            uuid(&obj(json!({"uuid": "x/../../etc"})), "uuid"),
            Err("`uuid` \"x/../../etc\" is not a UUID".to_string())
        );
        assert!(!looks_like_uuid("5e3d3c80eba8553184dbfe0b24a2bbed"));
    }

    #[test]
    fn long_strings_are_shortened_in_reasons() {
        let big = "a".repeat(10_000);
        let reason = string(&obj(json!({"value": [big]})), "value").unwrap_err();
        assert_eq!(reason, "`value` is an array, expected a string");
        let reason = flag(&obj(json!({"deleted": big})), "deleted").unwrap_err();
        assert!(reason.len() < 300, "{reason}");
        assert!(reason.contains("(10000 bytes)"), "{reason}");
    }
}
