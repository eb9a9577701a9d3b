//! End-to-end tests of the provider adapters with the real, pinned CLIs
//! (`scripts/install-providers.sh`) against the fake model server, through an
//! in-process executor driven over NATS. One module per adapter; `common` holds the
//! harness. Also: the credentials bootstrap script, binary discovery, and conversations
//! (workspace, CLI state and session shared by the runs of one conversation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bootstrap_env;
mod claude;
mod codex;
mod common;
mod conversations;
mod credentials;
mod faults;
mod missing_binary;
mod opencode;
