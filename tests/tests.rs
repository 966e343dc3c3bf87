//! The one integration-test binary: a module per area.

mod cli;
mod cluster;
mod delta;
#[cfg(feature = "net")]
mod demo;
mod formats;
mod fuzz_corpus;
mod r#gen;
mod hub;
mod misp;
mod nats;
#[cfg(feature = "net")]
mod net;
mod normalize;
#[cfg(feature = "net")]
mod notify;
mod plain;
mod presets;
mod real;
mod reference;
mod route;
mod scan;
mod status;
mod stix;
#[cfg(feature = "net")]
mod sync;
mod tour;
mod util;
mod warninglist;
