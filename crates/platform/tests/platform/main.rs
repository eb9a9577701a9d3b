//! Integration tests of the platform crate: one test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cursor_properties;
mod event_batches;
mod http_server;
mod provisioning;
