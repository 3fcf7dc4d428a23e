//! CPU time and resident memory of a process, from `/proc`.
//!
//! CPU time is the sum over the process's threads of `/proc/<pid>/task/<tid>/schedstat`
//! (nanoseconds on a CPU), which is exact where `stat`'s clock ticks are 10 ms coarse.

use std::path::Path;

/// Nanoseconds the process's live threads have spent on a CPU.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        total += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))
}

/// CPU readings of several processes taken together.
pub struct CpuSample(Vec<(u32, u64)>);

impl CpuSample {
    pub fn take(pids: &[u32]) -> anyhow::Result<Self> {
        Ok(Self(pids.iter().map(|&p| cpu_ns(p).map(|ns| (p, ns))).collect::<anyhow::Result<_>>()?))
    }

    /// Nanoseconds `pid` used since this sample.
    pub fn since(&self, pid: u32) -> anyhow::Result<u64> {
        let before = self.0.iter().find(|(p, _)| *p == pid).map_or(0, |(_, ns)| *ns);
        Ok(cpu_ns(pid)?.saturating_sub(before))
    }
}
