//! Compiled, immutable lookup structures over indicator ordinals.
//!
//! Every structure here maps an observable (an address, a name, a digest, a piece of text) to
//! the ordinals (`u32`) of the indicators that match it, and is stored in a snapshot as a few
//! flat little-endian arrays ([`Sections`]). A loaded structure uses those arrays in place
//! ([`Arr`], views into the mapped or copied file), so that loading a snapshot is its digest
//! checks plus O(1) checks per structure, never a per-entry deserialisation. Each structure's
//! full invariants are its `validate()` (O(n), for tests, fuzzers and `cwn inspect --check`);
//! its lookups are bounded against any array content, so a snapshot that passes its digests
//! but breaks an invariant yields wrong answers, never a panic or a hang. This module owns the
//! arrays and their invariants; it knows nothing about TLP policy or telemetry formats.

pub mod array;
pub mod compiled;
pub mod delta;
pub mod domain;
pub mod exact;
pub mod hash;
pub mod ip;
pub mod meta;
pub mod snapshot;
pub mod substring;

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

pub use array::Arr;

pub(crate) use compiled::Key as IndexKey;
pub use compiled::{BuildError, BuildReport, CompiledIndex, IndexBuilder, OpenError};

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

/// Reads back, in the same order, the arrays a [`SectionWriter`] collected, as views into one
/// shared buffer (see [`array`](mod@array)).
#[derive(Debug)]
pub struct SectionReader {
    backing: Bytes,
    sections: Vec<Range<usize>>,
    next: usize,
}

impl SectionReader {
    /// A reader over copies of the given sections, each placed at a
    /// [`SECTION_ALIGN`](snapshot::SECTION_ALIGN)-aligned offset of one buffer.
    pub fn new(sections: &[&[u8]]) -> Self {
        let mut buf = Vec::new();
        let mut ranges = Vec::with_capacity(sections.len());
        for s in sections {
            buf.resize(buf.len().next_multiple_of(snapshot::SECTION_ALIGN), 0);
            ranges.push(buf.len()..buf.len() + s.len());
            buf.extend_from_slice(s);
        }
        Self::over(array::aligned_copy(&buf), ranges)
    }

    /// A reader over `sections`, ranges of `backing` (as [`snapshot::decode_ranges`] returns
    /// them).
    pub fn over(backing: Bytes, sections: Vec<Range<usize>>) -> Self {
        SectionReader {
            backing,
            sections,
            next: 0,
        }
    }

    /// The next section as an array of `T`; an error if there is none or its length is not a
    /// multiple of `size_of::<T>()`. A view in place when the section is aligned for `T`, a
    /// copy otherwise.
    pub fn take<T: bytemuck::Pod + Send>(
        &mut self,
        structure: &'static str,
    ) -> Result<Arr<T>, FormatError> {
        let Some(range) = self.sections.get(self.next).cloned() else {
            return Err(FormatError::new(structure, "section missing"));
        };
        self.next += 1;
        let len = range.len();
        Arr::view(&self.backing, range).ok_or_else(|| {
            FormatError::new(
                structure,
                format!(
                    "section of {len} bytes is not a whole number of {}-byte values",
                    size_of::<T>()
                ),
            )
        })
    }

    /// How many sections have been taken.
    pub fn position(&self) -> usize {
        self.next
    }

    /// How many sections there are.
    pub fn len(&self) -> usize {
        self.sections.len()
    }

    /// Whether there are no sections at all.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }
}

/// A structure stored as flat arrays in a snapshot.
pub trait Sections: Sized {
    /// Appends its arrays to `w`, always in the same order and number.
    fn write_sections(&self, w: &mut SectionWriter);
    /// Takes back the arrays written by `write_sections` (views, not copies) and checks what
    /// costs O(1) per array: lengths consistent with each other and with the shape they imply.
    /// The full O(n) check is each structure's `validate()`; lookups never rely on more than
    /// these cheap checks, so that no content of a snapshot can make them panic or loop.
    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError>;
}

/// An index of `values` (one TLP:GREEN indicator per pair, from source `test`), for unit tests.
#[cfg(test)]
pub(crate) fn test_index(values: &[(crate::indicator::Kind, &str)]) -> CompiledIndex {
    use crate::indicator::{Indicator, IndicatorSet, Tlp};
    let mut set = IndicatorSet::new();
    for (i, (kind, v)) in values.iter().enumerate() {
        let ind = Indicator::new(
            format!("t:{i}"),
            *kind,
            *v,
            std::sync::Arc::from("test"),
            Tlp::Green,
        );
        set.insert(ind).expect("no duplicates in the fixture");
    }
    IndexBuilder::new().build(&set).expect("index builds")
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
        assert_eq!(&r.take::<u32>("t").unwrap()[..], [1, 2, 3]);
        assert_eq!(&r.take::<u64>("t").unwrap()[..], [7]);
        assert!(r.take::<u32>("t").is_err());
        let bad: [&[u8]; 1] = [&[1, 2, 3]];
        assert!(SectionReader::new(&bad).take::<u32>("t").is_err());
    }
}
