//! End-to-end tests: HTTP in through the gateway, JetStream and Postgres in the middle,
//! SSE out — the whole platform, real servers, the scripted provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod bad_input;
mod budget;
mod cli;
mod control;
mod control_plane_crash;
mod crash;
mod credentials;
mod drain;
mod garbage;
mod harness;
mod health;
mod isolation;
mod lifecycle;
mod metrics;
mod nats_auth;
mod openapi;
mod portal_sessions;
mod provider_support;
mod providers;
mod queueing;
mod rbac;
mod resume;
mod revocation;
mod scale;
mod shared;
mod start_check;
mod stress;
