//! [`Arr<T>`]: the immutable arrays every compiled structure is made of, either owned (as a
//! builder makes them) or viewed in place in a shared snapshot buffer (as a load finds them),
//! so that loading a snapshot copies nothing.
//!
//! A view holds a reference-counted handle on the whole buffer (an aligned copy of the file, or
//! its memory map), so a structure outlives the reader it came from and clones cheaply. When a
//! section's bytes are not aligned for `T` (a buffer of unknown alignment, or a section that
//! starts at an offset that is not a multiple of `align_of::<T>()`), the view falls back to one
//! copy: always correct, and free in the common case, since snapshots align every section to
//! [`SECTION_ALIGN`](super::snapshot::SECTION_ALIGN).
//!
//! ```
//! use cwn::index::array::Arr;
//!
//! let a: Arr<u32> = vec![1, 2, 3].into();
//! assert_eq!(&a[..], [1, 2, 3]);
//! assert_eq!(a.iter().sum::<u32>(), 6);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, Range};

use bytemuck::Pod;
use bytes::Bytes;

/// An immutable array of plain-old-data values that dereferences to `&[T]`: owned, or a view
/// into a shared buffer (see the [module docs](self)).
///
/// Invariant: `bytes` is aligned for `T` and its length is a multiple of `size_of::<T>()`, so
/// dereferencing is two pointer loads and a check that cannot fail.
pub struct Arr<T> {
    bytes: Bytes,
    _values: PhantomData<T>,
}

/// A `Vec<T>` as the owner of a [`Bytes`].
struct PodVec<T>(Vec<T>);

impl<T: Pod> AsRef<[u8]> for PodVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Bytes in a buffer aligned to 16, the largest alignment of a stored element (`u128`).
struct Aligned {
    words: Vec<u128>,
    len: usize,
}

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }
}

/// A shared copy of `bytes` that starts at a 16-aligned address, for views of any element type.
pub fn aligned_copy(bytes: &[u8]) -> Bytes {
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    Bytes::from_owner(Aligned {
        words,
        len: bytes.len(),
    })
}

impl<T: Pod + Send> Arr<T> {
    /// An empty array.
    pub fn new() -> Self {
        Vec::new().into()
    }

    /// The values of `backing[range]`, viewed in place when the bytes are aligned for `T`,
    /// copied once otherwise; `None` when the range is out of bounds or its length is not a
    /// whole number of values.
    pub fn view(backing: &Bytes, range: Range<usize>) -> Option<Self> {
        let bytes = backing.get(range.clone())?;
        let size = size_of::<T>();
        if size == 0 || !bytes.len().is_multiple_of(size) {
            return None;
        }
        if bytes.is_empty() {
            return Some(Self::new());
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
            return Some(bytemuck::pod_collect_to_vec::<u8, T>(bytes).into());
        }
        Some(Arr {
            bytes: backing.slice(range),
            _values: PhantomData,
        })
    }

    /// Number of values (without the slice cast of `deref`).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<T>()
    }

    /// Whether there are no values.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Value `i`, or `None` past the end. Reads the bytes directly, without the alignment and
    /// length checks of a slice cast: for hot single-value reads such as a filter word.
    #[inline(always)]
    pub fn get_value(&self, i: usize) -> Option<T> {
        let size = size_of::<T>();
        let at = i.checked_mul(size)?;
        let bytes = self.bytes.get(at..at.checked_add(size)?)?;
        Some(bytemuck::pod_read_unaligned(bytes))
    }

    /// Whether the values live inside `backing` (a view rather than a copy).
    pub fn is_view_of(&self, backing: &Bytes) -> bool {
        let (b, s) = (backing.as_ptr_range(), self.bytes.as_ptr_range());
        !self.bytes.is_empty() && b.start <= s.start && s.end <= b.end
    }

    /// Replaces the values by `f` applied to a copy of them (for tests that corrupt a
    /// structure on purpose).
    #[cfg(test)]
    pub(crate) fn edit(&mut self, f: impl FnOnce(&mut Vec<T>)) {
        let mut v = self.to_vec();
        f(&mut v);
        *self = v.into();
    }
}

impl<T: Pod> Deref for Arr<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // Cannot fail: every constructor checks alignment and length.
        bytemuck::cast_slice(&self.bytes)
    }
}

impl<T: Pod + Send> From<Vec<T>> for Arr<T> {
    fn from(values: Vec<T>) -> Self {
        Arr {
            bytes: Bytes::from_owner(PodVec(values)),
            _values: PhantomData,
        }
    }
}

impl<T: Pod + Send> Default for Arr<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Arr<T> {
    /// Shares the values (a reference count), never copies them.
    fn clone(&self) -> Self {
        Arr {
            bytes: self.bytes.clone(),
            _values: PhantomData,
        }
    }
}

impl<'a, T: Pod> IntoIterator for &'a Arr<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Pod + PartialEq> PartialEq for Arr<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Pod + Eq> Eq for Arr<T> {}

impl<T: Pod + fmt::Debug> fmt::Debug for Arr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_in_place_when_aligned_and_copies_otherwise() {
        let values: Vec<u64> = (0..10).collect();
        let mut raw = vec![0u8; 8];
        raw.extend_from_slice(bytemuck::cast_slice(&values));
        raw.extend_from_slice(&[0; 8]);
        let backing = aligned_copy(&raw);
        let aligned = Arr::<u64>::view(&backing, 8..88).unwrap();
        assert!(aligned.is_view_of(&backing));
        assert_eq!(&aligned[..], &values[..]);
        // One byte further: misaligned for u64, so copied, with the same values shifted.
        let shifted = Arr::<u64>::view(&backing, 9..89).unwrap();
        assert!(!shifted.is_view_of(&backing));
        assert_eq!(shifted.len(), 10);
        assert_eq!(bytemuck::cast_slice::<u64, u8>(&shifted), &raw[9..89]);
        // u128 at an 8-aligned offset that is not 16-aligned: copied.
        let wide = Arr::<u128>::view(&backing, 8..88).unwrap();
        assert!(!wide.is_view_of(&backing));
        assert_eq!(wide.len(), 5);
        assert!(
            Arr::<u64>::view(&backing, 8..87).is_none(),
            "not whole values"
        );
        assert!(
            Arr::<u64>::view(&backing, 8..200).is_none(),
            "out of bounds"
        );
        assert!(Arr::<u64>::view(&backing, 3..3).unwrap().is_empty());
        let cloned = aligned.clone();
        assert!(cloned.is_view_of(&backing));
        assert_eq!(cloned, aligned);
    }
}
