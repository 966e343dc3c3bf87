//! The one integration-test binary: a module per area.

mod cli;
mod fuzz_corpus;
mod hub;
mod misp;
#[cfg(feature = "net")]
mod net;
mod normalize;
mod plain;
mod real;
mod reference;
mod route;
mod stix;
mod util;
mod warninglist;
