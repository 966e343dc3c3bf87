//! The one integration-test binary: a module per area.

mod cli;
mod fuzz_corpus;
mod hub;
mod misp;
mod normalize;
mod plain;
mod real;
mod reference;
mod stix;
mod util;
mod warninglist;
