//! The Postgres connection pool: connecting (creating the configured database when it
//! does not exist yet) and applying the migrations.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};
use std::str::FromStr as _;
use std::time::Duration;
use switchyard_platform::config::{DatabaseConfig, ExposeSecret as _};

/// Postgres: "database does not exist".
const INVALID_CATALOG_NAME: &str = "3D000";
/// Postgres: "database already exists".
const DUPLICATE_DATABASE: &str = "42P04";
/// Postgres: unique violation, which is what a concurrent CREATE DATABASE may report.
const UNIQUE_VIOLATION: &str = "23505";
/// A pooled connection idle for longer is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    #[error("`database.url` is not a valid postgres URL")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("`database.url` names no database")]
    NoDatabaseName,
    #[error("cannot connect to Postgres database {database}: {source}")]
    Connect {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create Postgres database {database}: {source}")]
    Create {
        database: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Connects a pool to the configured database, creating the database first when the
/// server says it does not exist (a fresh deployment or a fresh test server).
pub(crate) async fn connect(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    let options = PgConnectOptions::from_str(config.url.expose_secret())
        .map_err(DatabaseError::InvalidUrl)?;
    let database = options
        .get_database()
        .ok_or(DatabaseError::NoDatabaseName)?
        .to_owned();
    let pool_options = pool_options(
        config.max_connections,
        Duration::from_millis(config.connect_timeout_ms),
    );
    match pool_options.clone().connect_with(options.clone()).await {
        Ok(pool) => Ok(pool),
        Err(e) if database_error_code(&e).as_deref() == Some(INVALID_CATALOG_NAME) => {
            create_database(&options, &database).await?;
            pool_options
                .connect_with(options)
                .await
                .map_err(|source| DatabaseError::Connect { database, source })
        }
        Err(source) => Err(DatabaseError::Connect { database, source }),
    }
}

/// A pool of `max_connections` of its own on `pool`'s database, for a background task
/// that must not queue for a connection behind a burst of API requests (each holds one
/// for its commit): the status projection. Connects lazily, so an unreachable Postgres
/// shows up in the task's own retries.
pub(crate) fn dedicated(pool: &PgPool, max_connections: u32) -> PgPool {
    pool_options(max_connections, pool.options().get_acquire_timeout())
        .connect_lazy_with((*pool.connect_options()).clone())
}

fn pool_options(max_connections: u32, acquire_timeout: Duration) -> PgPoolOptions {
    // sqlx pings every connection it hands out by default: a second round trip for
    // every statement (0.1–0.3 ms of a run's start on this kind of machine). Only a
    // connection that sat idle is checked; one in steady use that broke (Postgres
    // restarted) fails its statement, is dropped, and its user retries (a request
    // answers 503).
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Applies the migrations. sqlx holds a Postgres advisory lock while it migrates, so
/// two control-planes starting at once apply each migration once.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), DatabaseError> {
    crate::MIGRATOR
        .run(pool)
        .await
        .map_err(DatabaseError::Migrate)
}

async fn create_database(options: &PgConnectOptions, database: &str) -> Result<(), DatabaseError> {
    let create_error = |source| DatabaseError::Create {
        database: database.to_owned(),
        source,
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(create_error)?;
    // Identifiers cannot be bound as parameters; quoting (with embedded quotes doubled)
    // makes any name a single identifier.
    let statement = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match result {
        Ok(_) => {
            tracing::info!(database, "created the Postgres database");
            Ok(())
        }
        // Another control-plane created it at the same moment: that is what we wanted.
        Err(e)
            if matches!(
                database_error_code(&e).as_deref(),
                Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(create_error(source)),
    }
}

fn database_error_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// True when the error means Postgres could not be reached, did not answer in time or
/// aborted the transaction for concurrency reasons (the same work may succeed later), as
/// opposed to a rejected statement.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    ) || matches!(
        database_error_code(e).as_deref(),
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
        // serialization_failure, deadlock_detected
        Some("57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
    )
}
