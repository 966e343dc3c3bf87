//! STIX 2.1 bundles (FORMATS.md §3).

use std::sync::Arc;

use super::{Batch, Category, SourceOptions};

/// Parses a STIX 2.1 bundle.
pub fn parse_bundle(_bytes: &[u8], file: &Arc<str>, _opts: &SourceOptions, out: &mut Batch) {
    out.reject(
        file,
        "file",
        Category::Unsupported,
        "STIX reader not yet built",
    );
}
