//! A worker child process of the bench, spoken to in JSON lines: its configuration first,
//! then commands on stdin, answers on stdout. `idle` and `fanout` spread their streams over
//! these (one process holds at most ~19,900 sockets on this machine).

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub struct WorkerProcess {
    pub child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    name: &'static str,
}

impl WorkerProcess {
    /// Starts `<this bench> <subcommand>` and sends it `config` as its first line.
    pub async fn spawn(subcommand: &'static str, config: &impl Serialize) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = tokio::process::Command::new(exe);
        command.arg(subcommand);
        Self::start(command, subcommand, config).await
    }

    /// As [`spawn`](Self::spawn), at the `SCHED_IDLE` policy (through util-linux's `chrt`, which
    /// execs the bench in place, so the child's pid is the bench's): every thread of the child
    /// then runs only on a core nothing else wants, the nearest a shared machine gets to a
    /// load generated on other machines.
    pub async fn spawn_idle(subcommand: &'static str, config: &impl Serialize) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = tokio::process::Command::new("chrt");
        command.args(["--idle", "0"]).arg(exe).arg(subcommand);
        Self::start(command, subcommand, config)
            .await
            .context("running the child under `chrt --idle` (util-linux)")
    }

    async fn start(
        mut command: tokio::process::Command,
        subcommand: &'static str,
        config: &impl Serialize,
    ) -> Result<Self> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {subcommand}"))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        let mut worker = Self {
            child,
            stdin,
            lines,
            name: subcommand,
        };
        worker.send(config).await?;
        Ok(worker)
    }

    pub async fn send(&mut self, message: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub async fn recv(&mut self) -> Result<Value> {
        let line = self
            .lines
            .next_line()
            .await?
            .with_context(|| format!("{} exited", self.name))?;
        Ok(serde_json::from_str(&line)?)
    }
}
