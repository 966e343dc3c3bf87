//! Compiled, immutable lookup structures over indicator ordinals.
//!
//! Every structure here maps an observable (an address, a name, a digest, a piece of text) to
//! the ordinals (`u32`) of the indicators that match it, and is stored in a snapshot as a few
//! flat little-endian arrays ([`Sections`]), so that loading a snapshot is a handful of bulk
//! copies and checks, never a per-entry deserialisation. This module owns those arrays and
//! their invariants (each structure has a `validate()`); it knows nothing about files, TLP
//! policy or telemetry formats.

pub mod hash;
pub mod ip;

use std::fmt;

#[cfg(target_endian = "big")]
compile_error!("cwn snapshots are little-endian arrays; big-endian targets are not supported");

/// A snapshot section could not be turned back into a structure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{structure}: {reason}")]
pub struct FormatError {
    /// Which structure was being read.
    pub structure: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl FormatError {
    /// A new error for `structure`.
    pub fn new(structure: &'static str, reason: impl fmt::Display) -> Self {
        FormatError {
            structure,
            reason: reason.to_string(),
        }
    }
}

/// Collects the flat arrays of one or more structures, in order.
#[derive(Debug, Default)]
pub struct SectionWriter {
    /// The arrays written so far, as little-endian bytes.
    pub sections: Vec<Vec<u8>>,
}

impl SectionWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an array of plain-old-data values (`u8`, `u16`, `u32`, `u64`, `u128`, arrays of
    /// them) as one section.
    pub fn put<T: bytemuck::Pod>(&mut self, values: &[T]) {
        self.sections.push(bytemuck::cast_slice(values).to_vec());
    }
}

/// Reads back, in the same order, the arrays a [`SectionWriter`] collected.
#[derive(Debug)]
pub struct SectionReader<'a> {
    sections: &'a [&'a [u8]],
    next: usize,
}

impl<'a> SectionReader<'a> {
    /// A reader over the given sections.
    pub fn new(sections: &'a [&'a [u8]]) -> Self {
        SectionReader { sections, next: 0 }
    }

    /// The next section as an array of `T`; an error if there is none or its length is not a
    /// multiple of `size_of::<T>()`. Copies (one `memcpy`), so the bytes need no alignment.
    pub fn take<T: bytemuck::Pod>(
        &mut self,
        structure: &'static str,
    ) -> Result<Vec<T>, FormatError> {
        let Some(bytes) = self.sections.get(self.next) else {
            return Err(FormatError::new(structure, "section missing"));
        };
        self.next += 1;
        let size = std::mem::size_of::<T>();
        if size != 0 && bytes.len() % size != 0 {
            return Err(FormatError::new(
                structure,
                format!(
                    "section of {} bytes is not a whole number of {size}-byte values",
                    bytes.len()
                ),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(bytes))
    }

    /// How many sections have been taken.
    pub fn position(&self) -> usize {
        self.next
    }
}

/// A structure stored as flat arrays in a snapshot.
pub trait Sections: Sized {
    /// Appends its arrays to `w`, always in the same order and number.
    fn write_sections(&self, w: &mut SectionWriter);
    /// Rebuilds it from the arrays written by `write_sections`, then checks every invariant
    /// (`validate`) so that a corrupt snapshot is refused rather than trusted.
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self, FormatError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_reject_bad_lengths() {
        let mut w = SectionWriter::new();
        w.put(&[1u32, 2, 3]);
        w.put(&[7u64]);
        let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
        let mut r = SectionReader::new(&slices);
        assert_eq!(r.take::<u32>("t").unwrap(), vec![1, 2, 3]);
        assert_eq!(r.take::<u64>("t").unwrap(), vec![7]);
        assert!(r.take::<u32>("t").is_err());
        let bad: [&[u8]; 1] = [&[1, 2, 3]];
        assert!(SectionReader::new(&bad).take::<u32>("t").is_err());
    }
}
