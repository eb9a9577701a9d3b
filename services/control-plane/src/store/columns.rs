//! The Postgres enum types of the closed-set columns, as Rust enums the query macros
//! decode and encode (`status AS "status: StoredRunStatus"`, `status as StoredRunStatus`).
//!
//! The wire types in `switchyard-contracts` stay serde-only, so each column has its own
//! enum here with conversions both ways. The conversions are exhaustive matches: a
//! variant added to a wire type fails to compile until it has a column value too (and a
//! migration adding it to the Postgres type). The test at the bottom holds each enum's
//! names to its Postgres type's labels.

use switchyard_contracts::RunStatus;
use switchyard_contracts::auth::Role;
use switchyard_contracts::event::{HumanLoopDecision, HumanLoopResolver};

/// `runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "run_status", rename_all = "snake_case")]
pub(crate) enum StoredRunStatus {
    Queued,
    Claimed,
    Dispatched,
    Running,
    WaitingForHuman,
    Succeeded,
    Failed,
    Stopped,
    TimedOut,
}

impl From<RunStatus> for StoredRunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Queued => Self::Queued,
            RunStatus::Claimed => Self::Claimed,
            RunStatus::Dispatched => Self::Dispatched,
            RunStatus::Running => Self::Running,
            RunStatus::WaitingForHuman => Self::WaitingForHuman,
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Failed => Self::Failed,
            RunStatus::Stopped => Self::Stopped,
            RunStatus::TimedOut => Self::TimedOut,
        }
    }
}

impl From<StoredRunStatus> for RunStatus {
    fn from(status: StoredRunStatus) -> Self {
        match status {
            StoredRunStatus::Queued => Self::Queued,
            StoredRunStatus::Claimed => Self::Claimed,
            StoredRunStatus::Dispatched => Self::Dispatched,
            StoredRunStatus::Running => Self::Running,
            StoredRunStatus::WaitingForHuman => Self::WaitingForHuman,
            StoredRunStatus::Succeeded => Self::Succeeded,
            StoredRunStatus::Failed => Self::Failed,
            StoredRunStatus::Stopped => Self::Stopped,
            StoredRunStatus::TimedOut => Self::TimedOut,
        }
    }
}

/// `principals.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "principal_role", rename_all = "snake_case")]
pub(crate) enum StoredRole {
    Admin,
    Operator,
    Developer,
    Viewer,
}

impl From<Role> for StoredRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Operator => Self::Operator,
            Role::Developer => Self::Developer,
            Role::Viewer => Self::Viewer,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(role: StoredRole) -> Self {
        match role {
            StoredRole::Admin => Self::Admin,
            StoredRole::Operator => Self::Operator,
            StoredRole::Developer => Self::Developer,
            StoredRole::Viewer => Self::Viewer,
        }
    }
}

/// `human_loop_requests.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "human_loop_status", rename_all = "snake_case")]
pub(crate) enum HumanLoopStatus {
    Pending,
    Resolved,
}

impl HumanLoopStatus {
    /// The name the API shows (the column's label).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Resolved => "resolved",
        }
    }
}

/// `human_loop_requests.decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "human_loop_decision", rename_all = "snake_case")]
pub(crate) enum StoredDecision {
    Approve,
    Deny,
}

impl From<HumanLoopDecision> for StoredDecision {
    fn from(decision: HumanLoopDecision) -> Self {
        match decision {
            HumanLoopDecision::Approve => Self::Approve,
            HumanLoopDecision::Deny => Self::Deny,
        }
    }
}

impl From<StoredDecision> for HumanLoopDecision {
    fn from(decision: StoredDecision) -> Self {
        match decision {
            StoredDecision::Approve => Self::Approve,
            StoredDecision::Deny => Self::Deny,
        }
    }
}

/// `human_loop_requests.resolved_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "human_loop_resolver", rename_all = "snake_case")]
pub(crate) enum StoredResolver {
    Human,
    Timeout,
    RunEnded,
}

impl From<HumanLoopResolver> for StoredResolver {
    fn from(resolver: HumanLoopResolver) -> Self {
        match resolver {
            HumanLoopResolver::Human => Self::Human,
            HumanLoopResolver::Timeout => Self::Timeout,
            HumanLoopResolver::RunEnded => Self::RunEnded,
        }
    }
}

impl From<StoredResolver> for HumanLoopResolver {
    fn from(resolver: StoredResolver) -> Self {
        match resolver {
            StoredResolver::Human => Self::Human,
            StoredResolver::Timeout => Self::Timeout,
            StoredResolver::RunEnded => Self::RunEnded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire name of a contracts enum (its serde name).
    fn wire<T: serde::Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Every label of each Postgres type decodes into its enum, in the type's order, to
    /// exactly the enum's variants (so neither side has a name the other lacks), and each
    /// label is the wire name of the contracts value the variant converts to.
    #[tokio::test]
    async fn each_enum_is_its_postgres_type_and_speaks_the_wire_names() {
        let db = switchyard_test_support::TestDb::create().await.unwrap();
        crate::MIGRATOR.run(&db.pool).await.unwrap();
        let pool = &db.pool;

        let rows = sqlx::query!(
            r#"SELECT v AS "value!: StoredRunStatus", v::text AS "label!"
               FROM unnest(enum_range(NULL::run_status)) AS v"#
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let values: Vec<_> = rows.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [
                StoredRunStatus::Queued,
                StoredRunStatus::Claimed,
                StoredRunStatus::Dispatched,
                StoredRunStatus::Running,
                StoredRunStatus::WaitingForHuman,
                StoredRunStatus::Succeeded,
                StoredRunStatus::Failed,
                StoredRunStatus::Stopped,
                StoredRunStatus::TimedOut,
            ]
        );
        for row in &rows {
            let status = RunStatus::from(row.value);
            assert_eq!(row.label, status.as_str());
            assert_eq!(StoredRunStatus::from(status), row.value);
        }

        let rows = sqlx::query!(
            r#"SELECT v AS "value!: StoredRole", v::text AS "label!"
               FROM unnest(enum_range(NULL::principal_role)) AS v"#
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let values: Vec<Role> = rows.iter().map(|r| r.value.into()).collect();
        assert_eq!(values, Role::ALL);
        for row in &rows {
            assert_eq!(row.label, Role::from(row.value).as_str());
            assert_eq!(StoredRole::from(Role::from(row.value)), row.value);
        }

        let rows = sqlx::query!(
            r#"SELECT v AS "value!: HumanLoopStatus", v::text AS "label!"
               FROM unnest(enum_range(NULL::human_loop_status)) AS v"#
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let values: Vec<_> = rows.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [HumanLoopStatus::Pending, HumanLoopStatus::Resolved]
        );
        for row in &rows {
            assert_eq!(row.label, row.value.as_str());
        }

        let rows = sqlx::query!(
            r#"SELECT v AS "value!: StoredDecision", v::text AS "label!"
               FROM unnest(enum_range(NULL::human_loop_decision)) AS v"#
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let values: Vec<_> = rows.iter().map(|r| r.value).collect();
        assert_eq!(values, [StoredDecision::Approve, StoredDecision::Deny]);
        for row in &rows {
            let decision = HumanLoopDecision::from(row.value);
            assert_eq!(row.label, wire(decision));
            assert_eq!(StoredDecision::from(decision), row.value);
        }

        let rows = sqlx::query!(
            r#"SELECT v AS "value!: StoredResolver", v::text AS "label!"
               FROM unnest(enum_range(NULL::human_loop_resolver)) AS v"#
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let values: Vec<_> = rows.iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            [
                StoredResolver::Human,
                StoredResolver::Timeout,
                StoredResolver::RunEnded
            ]
        );
        for row in &rows {
            let resolver = HumanLoopResolver::from(row.value);
            assert_eq!(row.label, wire(resolver));
            assert_eq!(StoredResolver::from(resolver), row.value);
        }
    }
}
