//! What the benchmark reads from the operating system: the machine it ran on, this
//! process's resident memory, and CPU time (this process, nats-server, the whole
//! machine), all from `/proc`. Linux only; elsewhere the readings are `None` and the
//! figures that need them say so.

use serde::Serialize;
use std::time::Instant;

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub memory_mib: Option<u64>,
    pub kernel: Option<String>,
    /// `/proc/loadavg` when the benchmark started: how busy the machine already was.
    pub load_average_at_start: Option<String>,
    /// Open-file limit of this process: every socket is a file descriptor.
    pub open_files_limit: Option<u64>,
}

impl MachineInfo {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = kib_field(&meminfo, "MemTotal:").map(|kib| kib / 1024);
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            memory_mib,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load_average_at_start: load_average(),
            open_files_limit: open_files_limit(),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> Option<String> {
    read_trimmed("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The soft `Max open files` limit of this process.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's resident set size in KiB (`VmRSS`).
pub fn rss_kib() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// Clock ticks per second of `/proc` CPU times (`AT_CLKTCK` from the auxiliary vector;
/// 100 on every Linux this runs on, but read rather than assumed).
fn clock_ticks_per_second() -> Option<u64> {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").ok()?;
    auxv.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_CLKTCK).then_some(value)
    })
}

/// User + system CPU ticks of a process (`/proc/<pid>/stat` fields 14 and 15).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of the whole machine (`/proc/stat`, first line).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    let total: u64 = values.iter().take(8).sum();
    Some((total - idle, total))
}

/// A CPU-time reading, to be subtracted from a later one.
#[derive(Debug, Clone)]
pub struct CpuMark {
    at: Instant,
    own: Option<u64>,
    nats: Option<u64>,
    machine: Option<(u64, u64)>,
    nats_pid: Option<u32>,
    /// Postgres backend processes serving the benchmark's database, and their ticks.
    postgres: Vec<(u32, Option<u64>)>,
}

/// Where CPU time went between two marks, in cores (1.0 = one core busy the whole time).
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    pub seconds: f64,
    /// This process: every Switchyard service and the load generator.
    pub switchyard_process_cores: Option<f64>,
    pub nats_server_cores: Option<f64>,
    /// The Postgres backends connected to the benchmark's database (not the WAL writer
    /// and other shared server processes).
    pub postgres_backends_cores: Option<f64>,
    /// Everything busy on the machine, other engineers' builds and Postgres included.
    pub machine_busy_cores: Option<f64>,
}

impl CpuMark {
    pub fn now(nats_pid: Option<u32>, postgres_pids: &[u32]) -> Self {
        Self {
            at: Instant::now(),
            own: process_ticks("self"),
            nats: nats_pid.and_then(|pid| process_ticks(&pid.to_string())),
            machine: machine_ticks(),
            nats_pid,
            postgres: postgres_pids
                .iter()
                .map(|pid| (*pid, process_ticks(&pid.to_string())))
                .collect(),
        }
    }

    pub fn usage_since(&self) -> CpuUsage {
        let pids: Vec<u32> = self.postgres.iter().map(|(pid, _)| *pid).collect();
        let later = CpuMark::now(self.nats_pid, &pids);
        // Only backends alive at both marks count; a backend that exited took its
        // ticks with it.
        let postgres = self
            .postgres
            .iter()
            .zip(&later.postgres)
            .filter_map(|((_, a), (_, b))| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
            .reduce(|a, b| a + b);
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let hz = clock_ticks_per_second().map(|t| t as f64);
        let cores = |a: Option<u64>, b: Option<u64>| -> Option<f64> {
            let (a, b, hz) = (a?, b?, hz?);
            (seconds > 0.0).then(|| b.saturating_sub(a) as f64 / hz / seconds)
        };
        let cpus = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let machine = match (self.machine, later.machine) {
            (Some((busy_a, total_a)), Some((busy_b, total_b))) if total_b > total_a => {
                Some((busy_b - busy_a) as f64 / (total_b - total_a) as f64 * cpus)
            }
            _ => None,
        };
        CpuUsage {
            seconds,
            switchyard_process_cores: cores(self.own, later.own),
            nats_server_cores: cores(self.nats, later.nats),
            postgres_backends_cores: postgres.and_then(|ticks| cores(Some(0), Some(ticks))),
            machine_busy_cores: machine,
        }
    }
}
