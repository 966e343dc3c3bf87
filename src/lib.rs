//! # cwn — the indicator engine of the Cyberweerbaarheidsnetwerk
//!
//! cwn moves threat indicators from the people who know them (the NCSC, national CERTs, the
//! National Detection Network) to the people who need them, and evidence of attacks from the
//! partners who see it to the organisations that are hit. Data flows one way:
//!
//! ```text
//! MISP / STIX 2.1 / lists ──ingest──▶ IndicatorSet ──compile──▶ CompiledIndex ══match══▶ Hits ──route──▶ Notifications
//! ```
//!
//! - [`indicator`]: the model ([`Indicator`](indicator::Indicator), [`Kind`](indicator::Kind),
//!   [`Tlp`](indicator::Tlp)) and the normalisation shared by indicators and telemetry;
//! - [`ingest`]: MISP feeds, STIX 2.1 bundles, plain and CSV lists, MISP warninglists;
//! - [`generate`]: synthetic MISP feeds and partner telemetry with planted hits (`cwn gen`);
//! - [`route`]: the entity registry, the constituency index and the TLP policy that decide
//!   who may learn of a hit;
//! - [`hub`]: the sans-IO distribution core — durable per-entity notification logs, acked
//!   offsets, bounded subscriber queues, and the wire frames;
//! - [`net`] (feature `net`): the hub as a QUIC server with mutual TLS, its clients and a
//!   small PKI; [`net::config`] (the hub's `hub.toml`) is built without the feature too;
//! - [`status`]: the hub's metrics registry, `/metrics`, the HTML status page and its listener.
//!
//! ```
//! use cwn::indicator::{normalize, Kind};
//!
//! let n = normalize::guess("hxxps://Bad-Login[.]Example[.]com:443/owa/./auth.php#x").unwrap();
//! assert_eq!(n.kind, Kind::Url);
//! assert_eq!(n.value, "https://bad-login.example.com/owa/auth.php");
//! ```

#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
pub mod hits;
pub mod hub;
pub mod index;
pub mod indicator;
pub mod ingest;
pub mod matcher;
pub mod net;
pub mod outfile;
pub mod route;
pub mod status;
pub mod telemetry;

#[cfg(test)]
mod testoibits {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<crate::indicator::IndicatorSet>();
        assert_send_sync::<crate::ingest::Warninglists>();
        assert_send_sync::<crate::ingest::Batch>();
        assert_send_sync::<crate::route::Router>();
        assert_send_sync::<crate::route::registry::Registry>();
        assert_send_sync::<crate::status::Metrics>();
        assert_send_sync::<crate::hub::Notification>();
        assert_send_sync::<crate::hub::Frame>();
    }
}
