//! Wire contracts of Switchyard: every message that crosses a process boundary.
//!
//! This crate depends on serde (and schemars for the checked-in JSON Schemas) only, so
//! every service, tool and test can use it without pulling in a runtime. Field names
//! are camelCase on the wire; enums are tagged so that unknown variants fail loudly at
//! the edge instead of deep inside a service.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod auth;
pub mod budget;
pub mod command;
pub mod control;
pub mod dispatch;
pub mod event;
pub mod health;
pub mod ids;
pub mod presence;
pub mod principals;
pub mod provider;
pub mod schema;
pub mod session;
pub mod subjects;

pub use command::RunCommand;
pub use event::{FailureReason, RunEvent, RunEventKind, RunStatus, TerminalStatus};
pub use ids::{
    AppId, ExecutorId, HumanLoopRequestId, InvalidId, PrincipalId, ProfileName, TokenId, WorkerId,
};
pub use provider::ProviderName;

/// A run's identity. UUIDv7, so ids sort by creation time in logs and listings.
pub type RunId = uuid::Uuid;
