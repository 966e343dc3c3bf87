//! The one integration-test binary: a module per area.

mod cli;
mod plain;
mod util;
