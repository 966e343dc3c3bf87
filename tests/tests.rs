//! The one integration-test binary: a module per area.

mod cli;
mod fuzz_corpus;
mod normalize;
mod plain;
mod util;
