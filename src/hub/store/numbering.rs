//! Entity numbering: the durable number of each registry entity, the one a log folder is
//! named by. Registry ordinals follow the file's order and change when an entity is added in
//! the middle; a log must stay with its entity whatever the registry's order, or a subscriber
//! would be handed another entity's notifications. Numbers are assigned once and never reused.
//!
//! Two records, each able to rebuild or check the other: the numbering file (`entities.json`,
//! id → number, replaced atomically and synced), and beside each log folder
//! `NNNNNNNNNN` the file `NNNNNNNNNN.entity` holding the id of the entity it belongs to. A lost
//! numbering file is rebuilt from the owners; one that disagrees with them is refused.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use super::LogError;
use crate::hub::EntityId;

/// Beside each entity's log folder `NNNNNNNNNN`, the file `NNNNNNNNNN.entity` holds the
/// registry id of the entity that log belongs to.
pub const ENTITY_NAME_SUFFIX: &str = "entity";

/// The stable number of each named entity (in `names`' order), kept in the numbering file
/// `path` and checked against the name beside each log in `logs` ([`ENTITY_NAME_SUFFIX`]): a
/// lost or stale numbering file can never hand one entity's log to another.
pub fn stable_numbers(path: &Path, logs: &Path, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
    let file_err = |p: &Path, reason: String| LogError::Inconsistent {
        path: p.to_path_buf(),
        reason,
    };
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LogError::Io { path: p, source }
    };
    let name = path
        .file_name()
        .map_or(path.display(), |n| Path::new(n).display());
    let saved: Option<BTreeMap<String, u32>> = match fs::read(path) {
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| file_err(path, e.to_string()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(path)(e)),
    };
    // What lies beside the logs: every log folder's number, with its recorded owner.
    let mut on_disk: BTreeMap<u32, Option<String>> = Default::default();
    match fs::read_dir(logs) {
        Ok(dir) => {
            for e in dir {
                let e = e.map_err(io(logs))?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let (stem, named) = match name.split_once('.') {
                    Some((stem, ENTITY_NAME_SUFFIX)) => (stem, true),
                    Some(_) => continue,
                    None => (name, false),
                };
                let Some(n) = (stem.len() == 10)
                    .then(|| stem.parse::<u32>().ok())
                    .flatten()
                else {
                    continue;
                };
                let slot = on_disk.entry(n).or_default();
                if named {
                    let owner = fs::read_to_string(e.path()).map_err(io(&e.path()))?;
                    *slot = Some(owner.trim().to_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(logs)(e)),
    }
    let name_path = |n: u32| logs.join(format!("{n:010}.{ENTITY_NAME_SUFFIX}"));
    let mut changed = saved.is_none();
    let mut map = match saved {
        Some(map) => map,
        None => {
            let unnamed: Vec<u32> = on_disk
                .iter()
                .filter(|(_, owner)| owner.is_none())
                .map(|(&n, _)| n)
                .collect();
            if !unnamed.is_empty() {
                return Err(file_err(
                    path,
                    format!(
                        "is missing while {} holds {} entity logs without a recorded owner \
                         (numbers {}): numbering the registry again could hand one entity's \
                         notifications to another; restore {} from a backup, or \
                         move {} aside to start with empty logs",
                        logs.display(),
                        unnamed.len(),
                        unnamed
                            .iter()
                            .take(5)
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        name,
                        logs.display()
                    ),
                ));
            }
            if !on_disk.is_empty() {
                tracing::warn!(
                    "{} is missing: rebuilt from the owners recorded beside {} entity logs",
                    path.display(),
                    on_disk.len()
                );
            }
            on_disk
                .iter()
                .filter_map(|(&n, owner)| owner.clone().map(|o| (o, n)))
                .collect()
        }
    };
    let mut owners: HashMap<u32, &str> = HashMap::new();
    for (name, &n) in &map {
        if let Some(other) = owners.insert(n, name) {
            return Err(file_err(
                path,
                format!("gives log number {n} to both `{other}` and `{name}`"),
            ));
        }
        if let Some(Some(owner)) = on_disk.get(&n)
            && owner != name
        {
            return Err(file_err(
                path,
                format!(
                    "gives log number {n} to `{name}`, but {} says that log belongs to \
                     `{owner}`: {name} is stale or from another hub; restore the \
                     right one before starting",
                    name_path(n).display()
                ),
            ));
        }
    }
    // Numbers are never reused, not even those of folders the mapping does not name.
    let mut next = map
        .values()
        .copied()
        .chain(on_disk.keys().copied())
        .max()
        .map_or(0, |m| m + 1);
    let ids: Vec<EntityId> = names
        .iter()
        .map(|&id| {
            EntityId(*map.entry(id.to_owned()).or_insert_with(|| {
                changed = true;
                next += 1;
                next - 1
            }))
        })
        .collect();
    if changed {
        let bytes = serde_json::to_vec_pretty(&map).expect("a map of strings to numbers");
        crate::outfile::replace(path, &bytes, true).map_err(io(path))?;
    }
    // Record the owner beside every log that lacks it (new entities, and logs of hubs that
    // predate the record). Not synced one by one: a lost record is written again at the next
    // start from the synced `entities.json`, and a missing one is never read as a wrong one.
    fs::create_dir_all(logs).map_err(io(logs))?;
    for (name, &n) in &map {
        if !matches!(on_disk.get(&n), Some(Some(_))) {
            let p = name_path(n);
            fs::write(&p, name).map_err(io(&p))?;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_stale_entity_map_never_hands_a_log_to_another_entity() {
        let d = tempfile::tempdir().unwrap();
        let (file, logs) = (d.path().join("entities.json"), d.path().join("logs"));
        let number = |names: &[&str]| stable_numbers(&file, &logs, names);
        let first = number(&["a", "b", "c"]).unwrap();
        assert_eq!(first, [EntityId(0), EntityId(1), EntityId(2)]);
        for n in 0..3 {
            fs::create_dir_all(logs.join(format!("{n:010}"))).unwrap();
        }
        // Lost: rebuilt from the owners beside the logs, whatever the registry's new order.
        fs::remove_file(&file).unwrap();
        let again = number(&["new", "c", "b", "a"]).unwrap();
        assert_eq!(again, [EntityId(3), EntityId(2), EntityId(1), EntityId(0)]);
        // Stale (a copy from before `b` and `c` swapped numbers): refused, naming both.
        let good = fs::read(&file).unwrap();
        fs::write(&file, r#"{"a": 0, "b": 2, "c": 1, "new": 3}"#).unwrap();
        let err = number(&["a", "b", "c"]).unwrap_err().to_string();
        assert!(err.contains("log number 2 to `b`"), "{err}");
        assert!(err.contains("belongs to `c`"), "{err}");
        fs::write(&file, good).unwrap();
        // Logs without a recorded owner (a hub from before the record) and no map: refused.
        fs::remove_file(&file).unwrap();
        fs::remove_file(logs.join("0000000001.entity")).unwrap();
        let err = number(&["a", "b", "c"]).unwrap_err().to_string();
        assert!(
            err.contains("without a recorded owner (numbers 1)"),
            "{err}"
        );
    }
}
