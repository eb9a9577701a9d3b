//! The `switchyard` command's library: the command line ([`cli`]), the all-in-one
//! platform (`up`), one service per process (`serve`), the demo run and an SSE client,
//! shared with the end-to-end tests.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod demo;
pub mod serve;
pub mod sse_client;
pub mod up;
