//! `GET /internal/health`: what only the control-plane can tell the gateway's health
//! check (`GET /api/health` there): whether Postgres answers and every migration this
//! build carries is applied, and the live executors' presence records. Gateways only
//! ([`super::access::enforce`] checks the internal token); the answer carries no secret.

use crate::providers;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sqlx::migrate::Migrate as _;
use std::collections::HashSet;
use std::time::Duration;
use switchyard_contracts::health::{ControlPlaneHealth, PendingMigration, PostgresHealth};
use switchyard_platform::http::Json;

/// The table sqlx records applied migrations in (its default, which
/// [`crate::MIGRATOR`] keeps).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// Bound on the Postgres part: the health check must answer even when Postgres hangs.
const POSTGRES_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/internal/health", get(health))
}

async fn health(State(state): State<AppState>) -> Json<ControlPlaneHealth> {
    let (postgres, executors) = tokio::join!(
        postgres(&state.pool),
        providers::live(&state.js, state.nats_timeout)
    );
    let (executors, executors_problem) = match executors {
        Ok(live) => (Some(live), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Json(ControlPlaneHealth {
        postgres,
        executors,
        executors_problem,
    })
}

async fn postgres(pool: &sqlx::PgPool) -> PostgresHealth {
    let applied = tokio::time::timeout(POSTGRES_TIMEOUT, async {
        let mut conn = pool.acquire().await?;
        conn.list_applied_migrations(MIGRATIONS_TABLE)
            .await
            .map_err(sqlx::Error::from)
    })
    .await;
    let applied = match applied {
        Ok(Ok(applied)) => applied,
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer within {POSTGRES_TIMEOUT:?}")),
    };
    let versions: HashSet<i64> = applied.iter().map(|m| m.version).collect();
    PostgresHealth {
        reachable: true,
        problem: None,
        applied: u32::try_from(applied.len()).unwrap_or(u32::MAX),
        latest_applied: versions.iter().max().copied(),
        pending: pending(&versions),
    }
}

/// The migrations of this build (up migrations only) whose version is not applied.
fn pending(applied: &HashSet<i64>) -> Vec<PendingMigration> {
    crate::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| PendingMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect()
}

fn unreachable(problem: String) -> PostgresHealth {
    tracing::warn!(%problem, "health check: Postgres does not answer");
    PostgresHealth {
        reachable: false,
        problem: Some(problem),
        applied: 0,
        latest_applied: None,
        pending: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_is_pending_on_an_empty_database_and_none_once_applied() {
        let all = pending(&HashSet::new());
        assert!(!all.is_empty());
        let applied: HashSet<i64> = all.iter().map(|m| m.version).collect();
        assert!(pending(&applied).is_empty());
        let mut one_missing = applied.clone();
        let last = *applied.iter().max().unwrap();
        one_missing.remove(&last);
        assert_eq!(
            pending(&one_missing)
                .iter()
                .map(|m| m.version)
                .collect::<Vec<_>>(),
            [last]
        );
    }
}
