//! A service process a test runs from a built binary (e.g. `env!("CARGO_BIN_EXE_earlyhelp")`),
//! with its output in a log file; stopped gracefully (SIGTERM) or killed (SIGKILL), started again
//! with the same arguments and environment.
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// One running (or stopped) process of a service binary.
pub struct ServiceProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How it ended, once it has (kept after [`ServiceProcess::exited`] reaped it).
    ended: Option<ExitStatus>,
}

impl ServiceProcess {
    /// Starts `program args` with `env` added to the test's environment; stdout and stderr are
    /// appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut p = Self {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.to_vec(),
            log: log.to_path_buf(),
            child: None,
            ended: None,
        };
        p.start()?;
        Ok(p)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.ended = None;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How it ended, if it has (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            self.child = None;
            self.ended = Some(status);
        }
        self.ended
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        if let Some(pid) = self.id() {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .context("kill")?;
            anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `grace` for it to exit (SIGKILL after that); how it ended.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited().is_some() {
            return Ok(self.ended);
        }
        self.signal("-TERM")?;
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return Ok(self.ended);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        Ok(self.ended)
    }

    /// SIGKILL, as a crash or an evicted pod; waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.ended = c.wait().ok();
        }
    }

    /// Starts it again (after [`ServiceProcess::kill`] or an exit) with the same arguments,
    /// environment and log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `GET /readyz` on `127.0.0.1:port` answers 200 now.
pub async fn http_ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        Ok::<bool, std::io::Error>(
            buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}

/// Runs `program [config args] migrate` once, as production's migration Job does: as the
/// database's owner (`EH__DATABASE__MIGRATE_URL` = `owner_url`) beside `env` — the services'
/// environment, whose `EH__DATABASE__URL` names the services' role, which the migrations grant the
/// use of the tables. Its standard output.
///
/// # Errors
/// It cannot be run or fails (with its standard error).
pub fn migrate_as_owner(
    program: &Path,
    config_args: &[&str],
    env: &[(String, String)],
    owner_url: &str,
) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(config_args)
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("EH__DATABASE__MIGRATE_URL", owner_url)
        .output()
        .with_context(|| format!("start {}", program.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "earlyhelp migrate (as the owner) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Who is connected to the database of `url` and who owns its tables, as `admin_url` (a
/// superuser of the same server) sees it: (the roles with a session there, other than the
/// superuser's; the owners of its tables).
pub async fn database_roles(
    admin_url: &str,
    url: &str,
) -> anyhow::Result<(
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
)> {
    use sea_orm::ConnectionTrait;
    let database = url
        .rsplit_once('/')
        .map(|(_, d)| d.split('?').next().unwrap_or(d).to_string())
        .context("no database in the URL")?;
    let on = |sql: &str| {
        sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            [database.clone().into()],
        )
    };
    // The tables' owners are seen from inside the database; the sessions from anywhere.
    let inside = crate::with_user(url, &super_user(admin_url));
    let db = sea_orm::Database::connect(&inside).await?;
    let mut owners = std::collections::BTreeSet::new();
    for r in db
        .query_all_raw(on(
            "SELECT DISTINCT tableowner FROM pg_tables
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND $1 = current_database()",
        ))
        .await?
    {
        owners.insert(r.try_get_by_index::<String>(0)?);
    }
    let mut sessions = std::collections::BTreeSet::new();
    for r in db
        .query_all_raw(on("SELECT DISTINCT usename::text FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND usename IS NOT NULL
               AND usename <> current_user"))
        .await?
    {
        sessions.insert(r.try_get_by_index::<String>(0)?);
    }
    db.close().await.ok();
    Ok((sessions, owners))
}

fn super_user(admin_url: &str) -> String {
    admin_url
        .split_once("://")
        .and_then(|(_, r)| r.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or(userinfo).to_string())
        .unwrap_or_else(|| "postgres".into())
}
