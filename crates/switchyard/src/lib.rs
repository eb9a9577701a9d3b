//! The `switchyard` command's library: the all-in-one platform (`up`), the demo run and
//! an SSE client, shared with the end-to-end tests.

pub mod demo;
pub mod sse_client;
pub mod up;
