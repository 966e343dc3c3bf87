//! Synthetic data for benchmarks and tests: indicator feeds and partner telemetry
//! (`cwn gen`).
//!
//! - [`feed`]: a MISP feed directory ([`feed::write_feed`]) with a realistic mix of kinds,
//!   TLP levels, distributions, validity hints and revocations, that ingests with no rejects;
//! - [`telemetry`]: Zeek, Suricata EVE or ECS rows ([`telemetry::TelemetryGenerator`]) as
//!   Parquet, Arrow IPC or JSON lines, with hits planted at a chosen rate from a compiled
//!   index and background that provably misses it;
//! - [`rng`]: the seeded generator and Zipf sampler both use, so that a seed fixes the bytes.
//!
//! This module reads a [`CompiledIndex`](crate::index::CompiledIndex) (to plant hits and to
//! check background) and the [`Matcher`](crate::matcher::Matcher)'s lookups, and nothing
//! reads it: no stage of the pipeline depends on generated data.
//!
//! ```
//! use cwn::generate::rng::{Rng, Zipf};
//!
//! let mut a = Rng::new(42);
//! let mut b = Rng::new(42);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let z = Zipf::new(100, 1.1);
//! assert!(z.sample(&mut a) < 100);
//! ```

pub mod feed;
pub mod md5;
pub mod rng;
pub mod telemetry;
pub mod values;
