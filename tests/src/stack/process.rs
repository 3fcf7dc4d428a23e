//! Starting the stack's processes: each with its log file, killed on drop, and waited for
//! until it answers (a start-up failure carries the tail of its log).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// The errors in a log, then its last lines: what a failed start-up needs to show.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("[critical]") || l.contains("[error]") || l.contains("ERROR"))
        .collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    if errors.is_empty() { tail } else { format!("{}\n...\n{tail}", errors.join("\n")) }
}

pub(crate) fn spawn_logged(mut cmd: Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
    cmd.spawn().with_context(|| format!("starting {:?}", cmd.as_std().get_program()))
}

/// Polls `check` until it returns true, or fails after `timeout` with the tail of `log`.
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    log: &Path,
    child: &mut Child,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited ({status}) before it was ready; log:\n{}", log_tail(log));
        }
        if check().await {
            return Ok(());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{what} not ready after {timeout:?}; log:\n{}", log_tail(log));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
