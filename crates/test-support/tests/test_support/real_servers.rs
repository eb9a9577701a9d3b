//! The helpers against the real servers: a private nats-server per test and a fresh
//! database on the admin Postgres (`SWITCHYARD_TEST_DATABASE_URL`).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use async_nats::jetstream::{self, stream};
use sqlx::Connection as _;
use switchyard_test_support::{
    DEFAULT_TEST_DATABASE_URL, NatsServer, TEST_DATABASE_URL_ENV, TestDb, free_port, init_tracing,
    nats_server_binary,
};

fn version_at_least_2_10(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.');
    let major: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 10)
}

async fn connect(server: &NatsServer) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(server.url())
        .await
        .with_context(|| format!("connect to {}", server.url()))
}

#[test]
fn binary_is_found() -> anyhow::Result<()> {
    let path = nats_server_binary()?;
    let output = std::process::Command::new(&path)
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        text.contains("nats-server"),
        "unexpected --version output: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn nats_server_is_recent_and_runs_jetstream() -> anyhow::Result<()> {
    init_tracing();
    let server = NatsServer::start().await?;
    ensure!(server.url() == format!("nats://127.0.0.1:{}", server.port()));

    let client = connect(&server).await?;
    let info = client.server_info();
    ensure!(
        version_at_least_2_10(&info.version),
        "nats-server {} is older than 2.10",
        info.version
    );
    ensure!(info.jetstream, "JetStream is not enabled");

    let js = jetstream::new(client);
    let mut created = js
        .create_stream(stream::Config {
            name: "TEST_SUPPORT".into(),
            subjects: vec!["test.support.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    js.publish("test.support.one", "hello".into())
        .await?
        .await?;
    ensure!(created.info().await?.state.messages == 1);
    Ok(())
}

#[tokio::test]
async fn jetstream_survives_kill_and_restart_on_same_port() -> anyhow::Result<()> {
    init_tracing();
    let mut server = NatsServer::start().await?;
    let port = server.port();
    let store = server.store_dir();
    {
        let js = jetstream::new(connect(&server).await?);
        js.create_stream(stream::Config {
            name: "SURVIVOR".into(),
            subjects: vec!["survivor.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        js.publish("survivor.a", "payload".into()).await?.await?;
    }

    let old_pid = server.pid();
    server.kill().await;
    ensure!(server.pid().is_none());
    ensure!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "port {port} still accepts connections after kill"
    );
    ensure!(store.is_dir(), "store dir removed by kill");

    server.restart().await?;
    ensure!(server.port() == port, "restart changed the port");
    ensure!(server.pid().is_some() && server.pid() != old_pid);

    let js = jetstream::new(connect(&server).await?);
    let mut survivor = js.get_stream("SURVIVOR").await?;
    let info = survivor.info().await?;
    ensure!(
        info.state.messages == 1,
        "expected 1 message after restart, found {}",
        info.state.messages
    );
    let message = survivor.get_raw_message(1).await?;
    ensure!(message.payload.as_ref() == b"payload");
    Ok(())
}

#[tokio::test]
async fn graceful_stop_then_restart() -> anyhow::Result<()> {
    init_tracing();
    let mut server = NatsServer::start().await?;
    {
        let js = jetstream::new(connect(&server).await?);
        js.create_stream(stream::Config {
            name: "GRACEFUL".into(),
            subjects: vec!["graceful.>".into()],
            ..Default::default()
        })
        .await?;
    }
    server.stop().await;
    ensure!(server.pid().is_none());
    server.restart().await?;
    let js = jetstream::new(connect(&server).await?);
    js.get_stream("GRACEFUL").await?;
    Ok(())
}

#[tokio::test]
async fn servers_do_not_share_ports() -> anyhow::Result<()> {
    let a = NatsServer::start().await?;
    let b = NatsServer::start().await?;
    ensure!(a.port() != b.port());
    ensure!(a.store_dir() != b.store_dir());
    ensure!(free_port() != 0);
    Ok(())
}

#[tokio::test]
async fn test_db_is_created_usable_and_dropped() -> anyhow::Result<()> {
    init_tracing();
    let db = TestDb::create().await?;
    let name = db.name().to_owned();
    ensure!(name.starts_with("switchyard_test_"));
    ensure!(
        db.url.ends_with(&format!("/{name}")),
        "url {} lacks the db name",
        db.url
    );

    let one: i32 = sqlx::query_scalar("select 1").fetch_one(&db.pool).await?;
    ensure!(one == 1);
    let current: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&db.pool)
        .await?;
    ensure!(current == name);

    // The URL works on its own too.
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    let two: i32 = sqlx::query_scalar("select 2").fetch_one(&mut conn).await?;
    ensure!(two == 2);
    conn.close().await?;

    drop(db);

    let admin_url =
        std::env::var(TEST_DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.into());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let left: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    ensure!(left == 0, "database {name} still exists after drop");
    Ok(())
}

#[tokio::test]
async fn test_dbs_are_distinct() -> anyhow::Result<()> {
    let a = TestDb::create().await?;
    let b = TestDb::create().await?;
    ensure!(a.name() != b.name());
    sqlx::query("create table t (id int)")
        .execute(&a.pool)
        .await?;
    let exists: Option<String> = sqlx::query_scalar("select to_regclass('t')::text")
        .fetch_one(&b.pool)
        .await?;
    ensure!(exists.is_none(), "table leaked between test databases");
    Ok(())
}
