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
//! - [`index`]: the compiled, immutable indexes ([`CompiledIndex`](index::CompiledIndex),
//!   built by [`IndexBuilder`](index::IndexBuilder)) and the signed snapshot file;
//! - [`telemetry`]: field maps and presets, and the readers of partner telemetry (Parquet,
//!   Arrow IPC, JSON lines, Zeek, CSV) into Arrow batches;
//! - [`matcher`]: a batch matched against an index ([`Matcher`](matcher::Matcher)), and the
//!   parallel scan; [`hits`]: hit records, their writers and sightings;
//! - [`generate`]: synthetic MISP feeds and partner telemetry with planted hits (`cwn gen`);
//! - [`route`]: the entity registry, the constituency index and the TLP policy that decide
//!   who may learn of a hit;
//! - [`hub`]: the sans-IO distribution core — durable per-entity notification logs, acked
//!   offsets, bounded subscriber queues, and the wire frames;
//! - [`net`] (feature `net`): the hub as a QUIC server with mutual TLS, its clients and a
//!   small PKI; [`net::config`] (the hub's `hub.toml`) is built without the feature too;
//! - [`status`]: the hub's metrics registry, `/metrics`, the HTML status page and its listener.
//!
//! The flow end to end, in memory: a CERT's list ingested (defanged values normalised), compiled
//! into the index a snapshot holds, and a partner's DNS log matched against it.
//!
//! ```
//! use cwn::index::IndexBuilder;
//! use cwn::indicator::Tlp;
//! use cwn::ingest::{self, Detected, Ingest, SourceOptions};
//! use cwn::matcher::Matcher;
//! use cwn::telemetry::{self, FieldMap, InputFormat};
//!
//! // Ingest: a plain list as CERTs publish them; it carries no TLP label, so say it.
//! let opts = SourceOptions { default_tlp: Tlp::Green, ..SourceOptions::default() };
//! let list = b"# C2 servers\nevil[.]example\nhxxp://198.51.100.7/gate.php\n";
//! let mut ingest = Ingest::new(None);
//! ingest.add(ingest::parse_bytes(Detected::Plain, "c2.txt", list, &opts));
//! let (set, report, _rejects) = ingest.finish();
//! assert_eq!(report.accepted, 2);
//!
//! // Compile: the immutable index.
//! let index = IndexBuilder::new().build(&set).unwrap();
//!
//! // Match: telemetry rows through a field map (a domain under a listed one hits).
//! let fields = FieldMap::from_specs(["query=domain".parse().unwrap()]).unwrap();
//! let rows = "{\"query\":\"www.evil.example\"}\n{\"query\":\"fine.example\"}\n";
//! let batches =
//!     telemetry::read_all(std::io::Cursor::new(rows), "dns.jsonl", InputFormat::Jsonl, &fields)
//!         .unwrap();
//! let matcher = Matcher::new(&index, &fields, 1_750_000_000);
//! let mut hits = Vec::new();
//! for b in &batches {
//!     matcher.match_batch(b, &mut hits);
//! }
//! assert_eq!(hits.len(), 1);
//! assert_eq!((hits[0].row, hits[0].value.as_str()), (0, "www.evil.example"));
//! assert_eq!(index.meta().value(hits[0].ord), "evil.example");
//! ```

#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
mod hash;
pub mod hits;
pub mod hub;
pub mod index;
pub mod indicator;
pub mod ingest;
pub mod matcher;
pub mod net;
pub mod notify;
pub mod outfile;
pub mod route;
pub mod sightings;
pub mod status;
pub mod sync;
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
