//! `cwn sync`: follow live indicator sources (MISP feeds, TAXII 2.1 collections, lists) and
//! publish each change as a signed delta ([`delta`](crate::index::delta)).
//!
//! [`config`] is `sync.toml`, checked without I/O.

pub mod config;
#[cfg(feature = "net")]
pub mod fetch;
#[cfg(feature = "net")]
pub mod run;
#[cfg(feature = "net")]
pub mod source;
