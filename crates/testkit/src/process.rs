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
