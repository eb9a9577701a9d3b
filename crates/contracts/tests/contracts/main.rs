//! Integration tests of the wire types: one test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod garbage_decoding;
mod schema_drift;
