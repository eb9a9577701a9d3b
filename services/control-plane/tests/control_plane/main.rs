//! Integration tests of the control-plane against a real nats-server and a real
//! Postgres (see `common`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod common;
mod control;
mod conversations;
mod default_provider;
mod durations;
mod human_loop;
mod idempotency;
mod lifecycle;
mod outbox;
mod principals;
mod projection;
mod providers;
mod reconcile;
mod workspaces;
