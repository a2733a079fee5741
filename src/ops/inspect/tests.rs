//! Unit tests of the bundle summary.
