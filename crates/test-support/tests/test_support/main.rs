//! Integration tests of the test support itself: one test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_model;
mod real_servers;
