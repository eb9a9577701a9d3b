//! Principals and memberships at the database: a membership needs an existing app.

use crate::common::Harness;
use switchyard_control_plane::MIGRATOR;
use switchyard_test_support::{NatsServer, TestDb};
use uuid::Uuid;

/// Memberships granted in apps nobody registered (possible before the foreign key) are
/// removed by the migration, the others kept; afterwards the database itself refuses a
/// membership in an unknown app.
#[tokio::test]
async fn the_migration_drops_memberships_of_unknown_apps_and_enforces_the_rule() {
    switchyard_test_support::init_tracing();
    let nats = NatsServer::start().await.unwrap();
    let db = TestDb::create().await.unwrap();
    MIGRATOR.run_to(8, &db.pool).await.unwrap();
    // Runtime queries until the service migrates: the macros check against today's
    // schema, not this one.
    let principal = Uuid::now_v7();
    sqlx::query("INSERT INTO apps (app_id, name) VALUES ('real', 'real')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO principals (id, name, role) VALUES ($1, 'dev', 'developer')")
        .bind(principal)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO principal_apps (principal_id, app_id)
         VALUES ($1, 'real'), ($1, 'ghost')",
    )
    .bind(principal)
    .execute(&db.pool)
    .await
    .unwrap();

    let h = Harness::start_on(nats, db, |_| {}).await;
    let apps = sqlx::query_scalar!(
        "SELECT app_id FROM principal_apps WHERE principal_id = $1 ORDER BY app_id",
        principal
    )
    .fetch_all(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(apps, ["real"]);
    let refused = sqlx::query!(
        "INSERT INTO principal_apps (principal_id, app_id) VALUES ($1, 'ghost')",
        principal
    )
    .execute(&h.db.pool)
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("principal_apps_app_id_fkey"),
        "{refused}"
    );
    h.stop().await;
}
