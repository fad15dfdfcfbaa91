//! A CPU quota for the server under test (`sweep --server-quota`): the process and all its
//! threads in a cgroup of their own whose CPU bandwidth is capped, so that a server the client
//! could otherwise not saturate (one client core offers ~80 k gRPC calls/s, about what the
//! gRPC ceilings take) is the bottleneck, and accepted requests per second compare servers by
//! what each does with the same CPU.
//!
//! cgroup v2 (`cpu.max`) where it is mounted with the `cpu` controller, else cgroup v1's
//! `cpu` hierarchy (`cpu.cfs_quota_us`); either needs the right to create a cgroup (root).

use std::path::{Path, PathBuf};

/// The bandwidth period: short, so that a capped server runs in slices of a few
/// milliseconds rather than stalling for tens of them (which would show as latency).
const PERIOD_US: u64 = 10_000;

/// A cgroup with a CPU cap, removed when dropped (after the processes in it have ended).
pub(crate) struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    /// A cgroup named `name` capped at `cpus` CPUs' worth of time (0.5: half of one).
    pub(crate) fn new(name: &str, cpus: f64) -> Result<Self, String> {
        if !(cpus.is_finite() && cpus >= 0.01) {
            return Err(format!(
                "--server-quota {cpus} is not a CPU share; give a number of CPUs of at least 0.01 \
                 (0.5: half of one CPU)"
            ));
        }
        let quota_us = (cpus * PERIOD_US as f64).round() as u64;
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let v2_cpu =
            std::fs::read_to_string(v2).is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let (dir, files) = if v2_cpu {
            let dir = Path::new("/sys/fs/cgroup").join(name);
            let max = format!("{quota_us} {PERIOD_US}");
            (dir, vec![("cpu.max", max)])
        } else {
            let dir = Path::new("/sys/fs/cgroup/cpu").join(name);
            (
                dir,
                vec![
                    ("cpu.cfs_period_us", PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota_us.to_string()),
                ],
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "--server-quota needs a cgroup with the cpu controller (cgroup v2's cpu.max or \
                 v1's cpu hierarchy, as root): cannot create {}: {e}",
                dir.display()
            )
        })?;
        let quota = Self { dir };
        for (file, value) in files {
            let path = quota.dir.join(file);
            std::fs::write(&path, &value)
                .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))?;
        }
        Ok(quota)
    }

    /// Moves the process `pid`, with every thread it has and will have, into the cgroup.
    pub(crate) fn add(&self, pid: u32) -> Result<(), String> {
        let path = self.dir.join("cgroup.procs");
        std::fs::write(&path, pid.to_string())
            .map_err(|e| format!("cannot move process {pid} into {}: {e}", path.display()))
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // The processes were killed and reaped before; a cgroup with none left is removable.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
