//! Operational status of a hub: what it serves, who it reaches, how fast, and what went wrong.
//!
//! The hub and the network shell call into a [`Metrics`] registry; this module renders its
//! [`Status`] three ways, all from the same figures:
//!
//! - [`prometheus`]: the `/metrics` text exposition (`cwn_…` series);
//! - [`page`]: a self-contained HTML status page (inline CSS and SVG, no external assets)
//!   whose every figure names its Prometheus series in a `data-metric` attribute;
//! - `/api/status.json`: [`Status`] serialised.
//!
//! [`http`] is the pure HTTP/1.1 request parser and router; `server` (feature `net`) is the thin
//! tokio listener around it.
//!
//! This module observes and never steers: nothing in the match, route or hub stages depends on
//! it, and it never calls back into them. It has no clock of its own: callers pass `now`.
//!
//! ```
//! use std::time::Duration;
//! use cwn::status::{EntityInfo, Metrics};
//!
//! let now = jiff::Timestamp::from_second(1_750_000_000).unwrap();
//! let metrics = Metrics::default();
//! metrics.set_entities([EntityInfo::new("hospital-b", ["subscriber"], Some("health"))]);
//! metrics.connected("hospital-b", now);
//! metrics.queued("hospital-b", 1);
//! metrics.delivered("hospital-b", Duration::from_millis(12));
//!
//! let status = metrics.status(now);
//! assert_eq!(status.subscribers.connected, 1);
//! let html = cwn::status::page::render(&status);
//! assert!(html.contains(r#"data-metric="cwn_subscribers_connected""#));
//! ```

pub mod http;
pub mod metrics;
pub mod page;
pub mod prometheus;
#[cfg(feature = "net")]
pub mod server;

pub use metrics::{EntityInfo, Metrics, MetricsConfig, SnapshotInfo, Status};
#[cfg(feature = "net")]
pub use server::{DEFAULT_STATUS_LISTEN, StatusServer};
