//! Unit tests of telemetry generation.
