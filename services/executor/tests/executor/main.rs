//! Integration tests of the executor against a real nats-server: the executor is
//! started in-process with `start()` and driven over NATS and HTTP only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod budget;
mod common;
mod control;
mod dispatch;
mod file_changes;
mod http_api;
mod lifecycle;
mod workspaces;
