//! The `switchyard` command's library: the all-in-one platform (`up`), the demo run and
//! an SSE client, shared with the end-to-end tests.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bench;
pub mod demo;
pub mod sse_client;
pub mod up;
