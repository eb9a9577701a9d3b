//! One platform shared by the tests of this binary that only use its HTTP API: nothing
//! killed, restarted or added, no settings of their own, no direct NATS or database
//! access. Each such test isolates itself by what it creates (its own app ids, principals
//! and runs) and stops the runs it leaves running. Booting a platform (nats-server,
//! database, migrations, four services) once instead of once per test is most of what
//! these tests used to cost.
//!
//! Two things need care:
//!
//! * Every `#[tokio::test]` has a runtime of its own that ends with the test, and a
//!   service's tasks belong to the runtime it was started on. The shared services
//!   therefore run on a runtime of their own, built on a thread of their own and kept
//!   in a `static`; tests reach them over HTTP only, with a client of their own ([`Api`]).
//! * A `static` is never dropped, so the nats-server process, its store, the test
//!   database and the executor's workspace root would outlive the test binary. They are
//!   owned by a child process instead — this binary run again as the ignored test
//!   [`infrastructure`], in a process group of its own — that makes them, reports where
//!   they are, and waits for its standard input to close, which happens when this
//!   process exits however it exits (a failed assertion, Ctrl-C, SIGKILL); then it drops
//!   them: kills nats-server, removes the store and the workspaces, drops the database.

use crate::harness::{
    Api, Service, client, platform_env, start_executor, start_front, start_manager, workspace_root,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use switchyard_test_support::{NatsServer, TestDb};

/// Set (to anything) in the environment of the child process that owns the
/// infrastructure; [`infrastructure`] does nothing without it.
const CHILD_ENV: &str = "SWITCHYARD_E2E_SHARED_INFRASTRUCTURE";
/// The line the child prints, followed by its [`Infrastructure`] as JSON.
const READY_PREFIX: &str = "switchyard-e2e-shared-infrastructure: ";

/// Where the child's servers are.
#[derive(Serialize, Deserialize)]
struct Infrastructure {
    nats_url: String,
    database_url: String,
    /// The executor's workspace root.
    workspace: std::path::PathBuf,
}

struct Platform {
    control_plane_base: String,
    base: String,
    /// The services' runtime and the services on it; never dropped (see the module doc).
    _runtime: tokio::runtime::Runtime,
    _services: Vec<Service>,
    /// The child owning nats-server and the database, and our end of its standard
    /// input: closed when this process exits, which tells the child to clean up.
    _child: Child,
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

static PLATFORM: OnceLock<Result<Platform, String>> = OnceLock::new();

/// The shared platform (started by the first test that asks), as seen by a client of
/// the calling test's own: a control-plane, a gateway, one executor (capacity 16) and
/// one executor-manager.
pub(crate) async fn shared() -> Api {
    let platform = tokio::task::spawn_blocking(|| PLATFORM.get_or_init(boot).as_ref())
        .await
        .expect("the shared platform's start did not panic");
    let platform = match platform {
        Ok(platform) => platform,
        Err(err) => panic!("the shared platform did not start: {err}"),
    };
    Api {
        http: client(),
        base: platform.base.clone(),
        control_plane_base: platform.control_plane_base.clone(),
    }
}

fn boot() -> Result<Platform, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this test binary: {e}"))?;
    let mut child = Command::new(exe)
        .args([
            "shared::infrastructure",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        // Its own process group, so that a Ctrl-C (or a kill of the test's group) ends
        // only this process, and the child still cleans up after it.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start the infrastructure process: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
    // libtest prints its own lines around ours; ours has the prefix. The child gives up (and exits, closing this pipe) when a server does not start.
    let infrastructure = loop {
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let status = child.wait().ok();
                return Err(format!(
                    "the infrastructure process ended ({status:?}) before its servers were up"
                ));
            }
            Ok(_) => {}
        }
        // libtest prints "test shared::infrastructure ... " in front of it.
        if let Some(at) = line.find(READY_PREFIX) {
            let json = line[at + READY_PREFIX.len()..].trim_end();
            break serde_json::from_str::<Infrastructure>(json)
                .map_err(|e| format!("the infrastructure process said {json:?}: {e}"))?;
        }
    };

    // A plain thread: this one is a blocking thread of a test's runtime, inside which no
    // other runtime may block.
    let services = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shared-platform")
            .enable_all()
            .build()
            .map_err(|e| format!("the shared platform's runtime: {e}"))?;
        let started = runtime.block_on(async {
            switchyard_test_support::init_tracing();
            let env = platform_env(infrastructure.nats_url, infrastructure.database_url);
            let (control_plane, gateway, api, env) = start_front(env).await;
            let executor = start_executor(&env, &infrastructure.workspace, 16, None, &[]).await;
            let manager = start_manager(&env).await;
            (api, vec![control_plane, gateway, executor, manager])
        });
        Ok::<_, String>((runtime, started))
    })
    .join()
    .map_err(|_| "the shared platform's services did not start (see the panic above)")??;
    let (runtime, (api, services)) = services;
    Ok(Platform {
        control_plane_base: api.control_plane_base,
        base: api.base,
        _runtime: runtime,
        _services: services,
        _child: child,
        _stdin: stdin,
        _stdout: stdout,
    })
}

/// Not a test: the body of the child process that owns the shared platform's
/// nats-server and database (see the module doc). Run by [`shared`] with `CHILD_ENV`
/// set; without it (`cargo test -- --ignored`) it returns at once.
#[test]
#[ignore = "the shared platform's infrastructure process, started by the shared platform"]
fn infrastructure() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (nats, db) = runtime.block_on(async {
        let nats = NatsServer::start().await.expect("nats-server");
        let db = TestDb::create().await.expect("test database");
        (nats, db)
    });
    let workspace = workspace_root();
    let ready = Infrastructure {
        nats_url: nats.url(),
        database_url: db.url.clone(),
        workspace: workspace.path().to_owned(),
    };
    println!(
        "{READY_PREFIX}{}",
        serde_json::to_string(&ready).expect("JSON")
    );
    // Our parent holds the other end of stdin and never writes: EOF means it is gone.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    // The services that used the database died with the parent; `WITH (FORCE)` ends
    // any connection the server has not noticed yet.
    let _runtime = runtime.enter();
    drop(db);
    drop(nats);
    drop(workspace);
    // Nobody reads what libtest would print next (our parent is gone): end here rather
    // than have it fail on the closed pipe.
    std::process::exit(0);
}
