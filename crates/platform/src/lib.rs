//! What every Switchyard service shares at run time: configuration loading, telemetry,
//! NATS connection and provisioning, the run event log, SSE cursors, HTTP errors and
//! health endpoints, and shutdown handling. Linking it also sets the allocator of every
//! Switchyard binary (and test binary): mimalloc.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

/// glibc's malloc took over a third of the platform's CPU under load (perf:
/// `_int_malloc`, `malloc_consolidate`, `free`): events, frames and messages are many
/// short-lived allocations freed on other threads, which mimalloc handles better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod config;
pub mod events;
pub mod http;
pub mod nats;
pub mod service;
pub mod shutdown;
pub mod sse;
pub mod telemetry;
