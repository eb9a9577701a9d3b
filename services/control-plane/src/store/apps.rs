//! Apps and their execution profiles.

use super::{StoreError, stored_id};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::BTreeMap;
use switchyard_contracts::api::{AppView, RuntimeDefaults};
use switchyard_contracts::{AppId, ProfileName};

#[derive(Debug)]
struct AppRow {
    app_id: String,
    name: String,
    runtime_defaults: Json<RuntimeDefaults>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug)]
struct ProfileRow {
    app_id: String,
    name: String,
    settings: Json<RuntimeDefaults>,
}

/// What to store for an app (already validated).
#[derive(Debug)]
pub(crate) struct AppRecord<'a> {
    pub(crate) app_id: &'a AppId,
    pub(crate) name: &'a str,
    pub(crate) runtime_defaults: &'a RuntimeDefaults,
    pub(crate) execution_profiles: &'a BTreeMap<ProfileName, RuntimeDefaults>,
}

/// Which of `app_ids` are not registered, in the order given.
pub(crate) async fn missing<'a>(
    pool: &PgPool,
    app_ids: &'a [AppId],
) -> Result<Vec<&'a AppId>, StoreError> {
    let ids: Vec<String> = app_ids.iter().map(|id| id.as_str().to_owned()).collect();
    let known: Vec<String> = sqlx::query_scalar!(
        "SELECT app_id FROM apps WHERE app_id = ANY($1::text[])",
        &ids
    )
    .fetch_all(pool)
    .await?;
    Ok(app_ids
        .iter()
        .filter(|id| !known.iter().any(|k| k == id.as_str()))
        .collect())
}

/// Inserts or replaces an app and its whole set of profiles. Returns the stored view
/// and whether the app is new.
pub(crate) async fn upsert(
    pool: &PgPool,
    app: AppRecord<'_>,
) -> Result<(AppView, bool), StoreError> {
    let mut tx = pool.begin().await?;
    // `xmax = 0` only for a row this statement inserted (an update leaves the old
    // version's xid there): the cheapest way to tell 201 from 200 in one round trip.
    // `Json` of a wire type cannot be matched against `serde_json::Value` by the macro:
    // `as _` takes its encoding as given.
    let row = sqlx::query!(
        r#"INSERT INTO apps (app_id, name, runtime_defaults) VALUES ($1, $2, $3)
           ON CONFLICT (app_id) DO UPDATE
              SET name = EXCLUDED.name,
                  runtime_defaults = EXCLUDED.runtime_defaults,
                  updated_at = now()
           RETURNING created_at, updated_at, (xmax = 0) AS "inserted!""#,
        app.app_id.as_str(),
        app.name,
        Json(app.runtime_defaults) as _,
    )
    .fetch_one(&mut *tx)
    .await?;
    let names: Vec<String> = app
        .execution_profiles
        .keys()
        .map(|name| name.as_str().to_owned())
        .collect();
    sqlx::query!(
        "DELETE FROM execution_profiles WHERE app_id = $1 AND NOT (name = ANY($2))",
        app.app_id.as_str(),
        &names,
    )
    .execute(&mut *tx)
    .await?;
    for (name, settings) in app.execution_profiles {
        sqlx::query!(
            "INSERT INTO execution_profiles (app_id, name, settings) VALUES ($1, $2, $3)
             ON CONFLICT (app_id, name) DO UPDATE
                SET settings = EXCLUDED.settings, updated_at = now()",
            app.app_id.as_str(),
            name.as_str(),
            Json(settings) as _,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let view = AppView {
        app_id: app.app_id.clone(),
        name: app.name.to_owned(),
        runtime_defaults: app.runtime_defaults.clone(),
        execution_profiles: app.execution_profiles.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok((view, row.inserted))
}

/// One app with its profiles.
pub(crate) async fn get(pool: &PgPool, app_id: &AppId) -> Result<Option<AppView>, StoreError> {
    let Some(row) = sqlx::query_as!(
        AppRow,
        r#"SELECT app_id, name, runtime_defaults AS "runtime_defaults: Json<RuntimeDefaults>",
                  created_at, updated_at
           FROM apps WHERE app_id = $1"#,
        app_id.as_str()
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let profiles = sqlx::query_as!(
        ProfileRow,
        r#"SELECT app_id, name, settings AS "settings: Json<RuntimeDefaults>"
           FROM execution_profiles WHERE app_id = $1 ORDER BY name"#,
        app_id.as_str()
    )
    .fetch_all(pool)
    .await?;
    view(row, profiles).map(Some)
}

/// Every app with its profiles, by app id.
pub(crate) async fn list(pool: &PgPool) -> Result<Vec<AppView>, StoreError> {
    let apps = sqlx::query_as!(
        AppRow,
        r#"SELECT app_id, name, runtime_defaults AS "runtime_defaults: Json<RuntimeDefaults>",
                  created_at, updated_at
           FROM apps ORDER BY app_id"#
    )
    .fetch_all(pool)
    .await?;
    let mut profiles: BTreeMap<String, Vec<ProfileRow>> = BTreeMap::new();
    for profile in sqlx::query_as!(
        ProfileRow,
        r#"SELECT app_id, name, settings AS "settings: Json<RuntimeDefaults>"
           FROM execution_profiles ORDER BY app_id, name"#
    )
    .fetch_all(pool)
    .await?
    {
        profiles
            .entry(profile.app_id.clone())
            .or_default()
            .push(profile);
    }
    apps.into_iter()
        .map(|app| {
            let own = profiles.remove(&app.app_id).unwrap_or_default();
            view(app, own)
        })
        .collect()
}

/// Apps that have a profile called `name` (a run may name a profile without its app).
pub(crate) async fn apps_with_profile(
    pool: &PgPool,
    name: &ProfileName,
) -> Result<Vec<AppId>, StoreError> {
    sqlx::query_scalar!(
        "SELECT app_id FROM execution_profiles WHERE name = $1 ORDER BY app_id LIMIT 2",
        name.as_str()
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|id| stored_id("app id", id))
    .collect()
}

fn view(app: AppRow, profiles: Vec<ProfileRow>) -> Result<AppView, StoreError> {
    Ok(AppView {
        app_id: stored_id("app id", app.app_id)?,
        name: app.name,
        runtime_defaults: app.runtime_defaults.0,
        execution_profiles: profiles
            .into_iter()
            .map(|p| Ok((stored_id("execution profile name", p.name)?, p.settings.0)))
            .collect::<Result<_, StoreError>>()?,
        created_at: app.created_at,
        updated_at: app.updated_at,
    })
}
