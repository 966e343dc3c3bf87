//! Reading one cell of a telemetry column as text: the one cell reader for every Arrow type
//! the readers produce.
//!
//! Readers hand on what the input holds: `Utf8` and `List<Utf8>` from the row formats; from
//! Parquet and Arrow IPC also large and view strings, dictionaries of any key type (pyarrow's
//! and Spark's default for strings), binary strings written without the UTF-8 annotation,
//! numbers and timestamps. Everything that reads a cell's value — the matcher, the joined
//! URL columns, the router's victim side — reads it here, so that a column type cannot be
//! read in one place and silently skipped in another.

use std::borrow::Cow;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_buffer::ArrowNativeType;
use arrow_schema::{DataType, TimeUnit};

/// The value of row `r` of a scalar column (strings, binary strings, dictionaries of them,
/// numbers, timestamps as Unix seconds); `None` for a null, a list, invalid UTF-8 or an
/// unreadable type. Strings are borrowed; only numbers are formatted.
pub fn scalar_text(a: &dyn Array, r: usize) -> Option<Cow<'_, str>> {
    if r >= a.len() || a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => Cow::Borrowed(a.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => Cow::Borrowed(a.as_string::<i64>().value(r)),
        DataType::Utf8View => Cow::Borrowed(a.as_string_view().value(r)),
        // Parquet strings written without the UTF8 annotation arrive as bytes.
        DataType::Binary => Cow::Borrowed(std::str::from_utf8(a.as_binary::<i32>().value(r)).ok()?),
        DataType::LargeBinary => {
            Cow::Borrowed(std::str::from_utf8(a.as_binary::<i64>().value(r)).ok()?)
        }
        DataType::BinaryView => {
            Cow::Borrowed(std::str::from_utf8(a.as_binary_view().value(r)).ok()?)
        }
        DataType::Dictionary(_, _) => {
            let values = a.as_any_dictionary().values();
            return scalar_text(values.as_ref(), dict_key(a, r)?);
        }
        DataType::Int8 => number::<Int8Type>(a, r),
        DataType::Int16 => number::<Int16Type>(a, r),
        DataType::Int32 => number::<Int32Type>(a, r),
        DataType::Int64 => number::<Int64Type>(a, r),
        DataType::UInt8 => number::<UInt8Type>(a, r),
        DataType::UInt16 => number::<UInt16Type>(a, r),
        DataType::UInt32 => number::<UInt32Type>(a, r),
        DataType::UInt64 => number::<UInt64Type>(a, r),
        DataType::Float32 => number::<Float32Type>(a, r),
        DataType::Float64 => number::<Float64Type>(a, r),
        DataType::Timestamp(unit, _) => Cow::Owned(timestamp_seconds(a, unit, r).to_string()),
        _ => return None,
    })
}

/// The values of row `r` as text: one for a scalar, each non-null element for a list (of any
/// element type [`scalar_text`] reads), nothing for a null.
pub fn texts<'a>(a: &'a dyn Array, r: usize, out: &mut Vec<Cow<'a, str>>) {
    if r >= a.len() || a.is_null(r) {
        return;
    }
    let (values, range) = match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            (l.values(), o[r].as_usize()..o[r + 1].as_usize())
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            (l.values(), o[r].as_usize()..o[r + 1].as_usize())
        }
        _ => {
            out.extend(scalar_text(a, r));
            return;
        }
    };
    for i in range {
        out.extend(scalar_text(values.as_ref(), i));
    }
}

/// The first value of row `r`: the scalar, or a list's first non-null element.
pub fn first_text(a: &dyn Array, r: usize) -> Option<Cow<'_, str>> {
    match a.data_type() {
        DataType::List(_) | DataType::LargeList(_) => {
            let mut v = Vec::new();
            texts(a, r, &mut v);
            v.into_iter().next()
        }
        _ => scalar_text(a, r),
    }
}

/// Whether [`scalar_text`] or [`texts`] can read values of this type.
pub fn is_readable(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) => {
            !matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_))
                && is_readable(f.data_type())
        }
        DataType::Dictionary(_, v) => is_readable(v),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Timestamp(_, _) => true,
        _ => false,
    }
}

/// Unix seconds of a timestamp array's row `r` (not null), rounded down.
pub fn timestamp_seconds(a: &dyn Array, unit: &TimeUnit, r: usize) -> i64 {
    match unit {
        TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(r),
        TimeUnit::Millisecond => a
            .as_primitive::<TimestampMillisecondType>()
            .value(r)
            .div_euclid(1_000),
        TimeUnit::Microsecond => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(r)
            .div_euclid(1_000_000),
        TimeUnit::Nanosecond => a
            .as_primitive::<TimestampNanosecondType>()
            .value(r)
            .div_euclid(1_000_000_000),
    }
}

/// The key of row `r` of a dictionary array, whatever its key type; `None` for a key that is
/// negative or not a dictionary.
pub(crate) fn dict_key(a: &dyn Array, r: usize) -> Option<usize> {
    let DataType::Dictionary(k, _) = a.data_type() else {
        return None;
    };
    fn key<K: arrow_array::types::ArrowDictionaryKeyType>(a: &dyn Array, r: usize) -> Option<usize>
    where
        K::Native: ArrowNativeType,
    {
        a.as_dictionary::<K>().keys().value(r).to_usize()
    }
    match k.as_ref() {
        DataType::Int8 => key::<Int8Type>(a, r),
        DataType::Int16 => key::<Int16Type>(a, r),
        DataType::Int32 => key::<Int32Type>(a, r),
        DataType::Int64 => key::<Int64Type>(a, r),
        DataType::UInt8 => key::<UInt8Type>(a, r),
        DataType::UInt16 => key::<UInt16Type>(a, r),
        DataType::UInt32 => key::<UInt32Type>(a, r),
        DataType::UInt64 => key::<UInt64Type>(a, r),
        _ => None,
    }
}

fn number<T>(a: &dyn Array, r: usize) -> Cow<'_, str>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: ToString,
{
    Cow::Owned(a.as_primitive::<T>().value(r).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{LargeListBuilder, ListBuilder, StringDictionaryBuilder};
    use arrow_array::types::{Int8Type, UInt16Type};
    use arrow_array::{ArrayRef, LargeStringArray, StringArray, StringViewArray};

    use super::*;

    fn all(a: &dyn Array) -> Vec<Vec<String>> {
        (0..a.len())
            .map(|r| {
                let mut v = Vec::new();
                texts(a, r, &mut v);
                v.into_iter().map(|s| s.into_owned()).collect()
            })
            .collect()
    }

    #[test]
    fn every_string_layout_reads_the_same() {
        let want = vec![
            vec!["a.test".to_string()],
            vec![],
            vec!["10.1.2.3".to_string()],
        ];
        let vals = [Some("a.test"), None, Some("10.1.2.3")];
        let mut d8 = StringDictionaryBuilder::<Int8Type>::new();
        let mut d16 = StringDictionaryBuilder::<UInt16Type>::new();
        for v in vals {
            d8.append_option(v);
            d16.append_option(v);
        }
        let mut list = ListBuilder::new(StringDictionaryBuilder::<Int8Type>::new());
        let mut large = LargeListBuilder::new(arrow_array::builder::StringBuilder::new());
        for v in vals {
            match v {
                Some(v) => {
                    list.values().append_value(v);
                    list.append(true);
                    large.values().append_value(v);
                    large.append(true);
                }
                None => {
                    list.append(false);
                    large.append(false);
                }
            }
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vals.to_vec())),
            Arc::new(LargeStringArray::from(vals.to_vec())),
            Arc::new(StringViewArray::from(vals.to_vec())),
            Arc::new(d8.finish()),
            Arc::new(d16.finish()),
            Arc::new(list.finish()),
            Arc::new(large.finish()),
        ];
        for a in &arrays {
            assert!(is_readable(a.data_type()), "{}", a.data_type());
            assert_eq!(all(a.as_ref()), want, "{}", a.data_type());
        }
    }
}
