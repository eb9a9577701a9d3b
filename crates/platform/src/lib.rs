//! What every Switchyard service shares at run time: configuration loading, telemetry,
//! NATS connection, lifecycle and provisioning, the run event log, SSE cursors and the
//! SSE client parser, HTTP errors and health endpoints, and shutdown handling.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod routes;
pub mod service;
pub mod shutdown;
pub mod sse;
pub mod telemetry;
pub mod trace;
