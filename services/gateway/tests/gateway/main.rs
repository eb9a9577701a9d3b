//! Integration tests of the gateway against a real nats-server and a control-plane
//! stand-in (see `common`): one test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod common;
mod session;
mod streams;
