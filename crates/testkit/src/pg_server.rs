//! A throwaway PostgreSQL cluster a test owns: started from the installed binaries on a port of
//! its own, and stopped (`pg_ctl stop -m fast`), started again on the same port and data
//! directory, or its backends terminated — the faults an outage or a failover brings. Never the
//! machine's shared server.
use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A PostgreSQL cluster of the test's own (see the module's documentation). Dropping it stops the
/// server and removes its files.
pub struct PostgresServer {
    bin: PathBuf,
    /// Holds `data/`, the socket and `postgres.log`.
    dir: PathBuf,
    port: u16,
    /// The OS user the server runs as when the test runs as root (PostgreSQL refuses root).
    os_user: Option<String>,
}

/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A role or database name we build SQL from: lower case letters, digits and `_`.
fn plain_name(name: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "name {name:?}: lower case letters, digits and _ only"
    );
    Ok(name)
}

impl PostgresServer {
    /// Creates a cluster in a new temp dir (`initdb`, trust authentication on 127.0.0.1) and
    /// starts it on a free port. As root, the server runs as the OS user `EH_TEST_PG_OS_USER`
    /// (default `postgres`), through `runuser`.
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os("EH_TEST_PG_BIN")
            .map(PathBuf::from)
            .or_else(super::pg_bin)
            .context("no PostgreSQL binaries: install postgresql or set EH_TEST_PG_BIN")?;
        let dir = tempfile::Builder::new()
            .prefix("eh-pg-owned-")
            .tempdir()?
            .keep();
        let os_user = running_as_root()
            .then(|| std::env::var("EH_TEST_PG_OS_USER").unwrap_or_else(|_| "postgres".into()));
        let server = Self {
            bin,
            dir,
            port: super::free_port()?,
            os_user,
        };
        if let Some(user) = &server.os_user {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&server.dir)
                .status()
                .context("chown")?;
            anyhow::ensure!(
                status.success(),
                "chown {user}: {} failed (is there an OS user {user}? set EH_TEST_PG_OS_USER)",
                server.dir.display()
            );
        }
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-U", SUPERUSER, "--auth=trust", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .context("initdb")?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "\n# eh-testkit: a throwaway cluster\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 200\n",
            server.port,
            server.dir.display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(server.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .context("write postgresql.conf")?;
        server.start_again()?;
        Ok(server)
    }

    /// A command of the installed binaries, as the server's OS user.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.os_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log (`pg_ctl -l`), for a test to show when something went wrong.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL of database `postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// `url` (a database of this server) as its superuser, who bypasses row-level security.
    pub fn as_superuser(&self, url: &str) -> String {
        super::with_user(url, SUPERUSER)
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("pg_ctl")?;
        if !out.status.success() {
            bail!(
                "pg_ctl {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts the server (again) on the same port and data directory; returns once it accepts
    /// connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-t", "60", "start"])?;
        super::wait_for(&format!("127.0.0.1:{}", self.port), "owned PostgreSQL")
    }

    /// Stops the server as an operator would for maintenance (`pg_ctl stop -m fast`: every
    /// session is terminated, open transactions roll back); returns once it is down.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "stop"])
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A new database owned by `role` (created when missing: LOGIN, neither SUPERUSER nor
    /// BYPASSRLS), as production has it; its URL, connecting as that role.
    pub async fn fresh_database(&self, role: &str) -> anyhow::Result<String> {
        let role = plain_name(role)?;
        super::ensure_role(&self.admin_url(), role).await?;
        let name = format!("eh_owned_{}", uuid::Uuid::new_v4().simple());
        let db = Database::connect(self.admin_url())
            .await
            .with_context(|| format!("connect {}", self.admin_url()))?;
        db.execute_unprepared(&format!("CREATE DATABASE {name} OWNER {role}"))
            .await?;
        db.close().await.ok();
        Ok(format!("postgres://{role}@127.0.0.1:{}/{name}", self.port))
    }

    /// Terminates every session of `role` (`pg_terminate_backend`), as a failover or a network
    /// cut does to a client: (sessions terminated, of which inside a transaction that had
    /// written).
    pub async fn terminate_backends(&self, role: &str) -> anyhow::Result<(i64, i64)> {
        let db = self.admin().await?;
        let counts = Self::counts(&db, &Self::terminate_sql(role, false)?).await;
        db.close().await.ok();
        counts
    }

    /// Waits (up to `within`, looking every few milliseconds) until a session of `role` is inside
    /// a transaction that has written (it holds a transaction id: a batch mid-flight), and
    /// terminates every session of `role` at that moment; after `within`, terminates them anyway.
    /// (Sessions terminated, of which inside a transaction that had written.)
    pub async fn terminate_backends_mid_write(
        &self,
        role: &str,
        within: std::time::Duration,
    ) -> anyhow::Result<(i64, i64)> {
        let db = self.admin().await?;
        let when_busy = Self::terminate_sql(role, true)?;
        let deadline = tokio::time::Instant::now() + within;
        let counts = loop {
            let (terminated, writing) = Self::counts(&db, &when_busy).await?;
            if terminated > 0 {
                break Ok((terminated, writing));
            }
            if tokio::time::Instant::now() > deadline {
                break Self::counts(&db, &Self::terminate_sql(role, false)?).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        };
        db.close().await.ok();
        counts
    }

    /// One statement: the sessions of `role` as they are now, all terminated (when
    /// `only_if_writing`, only if one of them is inside a transaction that has written).
    fn terminate_sql(role: &str, only_if_writing: bool) -> anyhow::Result<String> {
        let role = plain_name(role)?;
        let condition = if only_if_writing {
            "WHERE EXISTS (SELECT 1 FROM s WHERE writing)"
        } else {
            ""
        };
        Ok(format!(
            "WITH s AS MATERIALIZED (
               SELECT pid, backend_xid IS NOT NULL AS writing
                 FROM pg_stat_activity
                WHERE usename = '{role}' AND pid <> pg_backend_pid())
             SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)),
                    COUNT(*) FILTER (WHERE writing)
               FROM s {condition}"
        ))
    }

    async fn admin(&self) -> anyhow::Result<sea_orm::DatabaseConnection> {
        let mut opts = sea_orm::ConnectOptions::new(self.admin_url());
        opts.max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        Database::connect(opts)
            .await
            .with_context(|| format!("connect {}", self.admin_url()))
    }

    async fn counts(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<(i64, i64)> {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.to_string(),
            ))
            .await?
            .context("no row")?;
        Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
    }

    /// The directory holding the cluster (for a test to keep or show).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.pg_ctl(&["-w", "-t", "30", "-m", "immediate", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(url: &str) -> anyhow::Result<i64> {
        let mut opts = sea_orm::ConnectOptions::new(url);
        opts.connect_timeout(std::time::Duration::from_secs(2))
            .acquire_timeout(std::time::Duration::from_secs(2));
        let db = Database::connect(opts).await?;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM pg_roles WHERE rolname = current_user AND NOT rolsuper",
            ))
            .await?
            .context("no row")?;
        let n = row.try_get_by_index(0)?;
        db.close().await.ok();
        Ok(n)
    }

    /// The cluster starts, serves an ordinary role's database, goes away when stopped, comes
    /// back on the same port with the data kept, and its sessions can be cut.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stops_starts_again_and_cuts_sessions() -> anyhow::Result<()> {
        let pg = std::sync::Arc::new(tokio::task::spawn_blocking(PostgresServer::start).await??);
        let url = pg.fresh_database("eh_owned_test").await?;
        assert_eq!(one(&url).await?, 1, "connected as an ordinary role");
        let held = Database::connect(&url).await?;
        held.execute_unprepared("CREATE TABLE kept (x INT); INSERT INTO kept VALUES (1)")
            .await?;
        let (terminated, _) = pg.terminate_backends("eh_owned_test").await?;
        assert!(terminated >= 1, "the held session was cut");

        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.stop()).await??;
        assert!(!pg.is_running());
        assert!(one(&url).await.is_err(), "nothing answers while stopped");
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.start_again()).await??;
        let db = Database::connect(&url).await?;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM kept",
            ))
            .await?
            .context("no row")?;
        assert_eq!(row.try_get_by_index::<i64>(0)?, 1, "the data survived");
        db.close().await.ok();
        assert!(
            pg.admin_url()
                .ends_with(&format!(":{}/postgres", pg.port()))
        );
        Ok(())
    }
}
