//! What a run cost the machine: the CPU time every process on it used while the load ran
//! (`/proc/stat`), per request. The load tool, the suite and PostgreSQL share the machine when
//! benchmarking, and a shared machine's rate swings from run to run with its neighbours; the CPU
//! each request took swings much less, so it tells whether a change made a path cheaper.

use std::time::{Duration, Instant};

/// The machine's CPU time so far, in clock ticks summed over its cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// user, nice, system, irq and softirq.
    busy: u64,
    /// Time the hypervisor gave this machine's CPUs to someone else.
    steal: u64,
    /// Everything, idle and I/O wait included.
    total: u64,
    cores: u32,
}

impl CpuTimes {
    /// Now; `None` where there is no `/proc/stat` (not Linux).
    pub fn now() -> Option<CpuTimes> {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| CpuTimes::parse(&stat))
    }

    /// Parses `/proc/stat`: its `cpu` line (user nice system idle iowait irq softirq steal, in
    /// ticks; guest time is already in user) and the count of its `cpuN` lines.
    fn parse(stat: &str) -> Option<CpuTimes> {
        let mut fields = stat.lines().next()?.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
            return None;
        };
        let cores = stat
            .lines()
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        Some(CpuTimes {
            busy: user + nice + system + irq + softirq,
            steal,
            total: user + nice + system + idle + iowait + irq + softirq + steal,
            cores: u32::try_from(cores).ok()?.max(1),
        })
    }
}

/// What the machine's CPUs did between two readings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineCpu {
    /// Share of all cores' time spent busy (0..=100).
    pub busy_pct: f64,
    /// Share of all cores' time taken by the hypervisor for others (a noisy neighbour).
    pub steal_pct: f64,
    pub cores: u32,
    /// Busy time, in seconds of one core.
    pub busy_core_seconds: f64,
}

impl MachineCpu {
    /// Between the readings `start` and `end`, taken `wall` apart; `None` if they cannot be
    /// compared (a counter went back, no time passed, a core came or went).
    pub fn between(start: CpuTimes, end: CpuTimes, wall: Duration) -> Option<MachineCpu> {
        if start.cores != end.cores {
            return None;
        }
        let total = end.total.checked_sub(start.total).filter(|t| *t > 0)? as f64;
        let busy = end.busy.checked_sub(start.busy)? as f64 / total;
        let steal = end.steal.checked_sub(start.steal)? as f64 / total;
        Some(MachineCpu {
            busy_pct: busy * 100.0,
            steal_pct: steal * 100.0,
            cores: end.cores,
            busy_core_seconds: busy * f64::from(end.cores) * wall.as_secs_f64(),
        })
    }

    /// Busy CPU per request, in µs of one core.
    pub fn micros_each(&self, requests: u64) -> Option<f64> {
        (requests > 0).then(|| self.busy_core_seconds * 1e6 / requests as f64)
    }
}

/// A reading taken when a run's load starts.
#[derive(Clone, Copy, Debug)]
pub struct CpuStart {
    times: Option<CpuTimes>,
    at: Instant,
}

impl CpuStart {
    pub fn now() -> CpuStart {
        CpuStart {
            times: CpuTimes::now(),
            at: Instant::now(),
        }
    }

    /// The machine's CPU since this reading; `None` where it cannot be read.
    pub fn since(&self) -> Option<MachineCpu> {
        MachineCpu::between(self.times?, CpuTimes::now()?, self.at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  2255 34 2290 22625563 6290 127 456 12 0 0
cpu0 1132 34 1441 11311718 3675 127 438 6 0 0
cpu1 1123 0 849 11313845 2615 0 18 6 0 0
intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]
ctxt 1990473
btime 1062191376
processes 2915
procs_running 1
procs_blocked 0
softirq 183433 0 21755 12 39 1137 231 21459 2263
";

    #[test]
    fn reads_the_cpu_line_and_counts_the_cores() {
        let times = CpuTimes::parse(STAT).expect("parsed");
        assert_eq!(
            times,
            CpuTimes {
                busy: 2255 + 34 + 2290 + 127 + 456,
                steal: 12,
                total: 2255 + 34 + 2290 + 22_625_563 + 6290 + 127 + 456 + 12,
                cores: 2,
            }
        );
    }

    #[test]
    fn an_unexpected_file_is_no_reading() {
        assert_eq!(CpuTimes::parse(""), None);
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn busy_time_is_shared_out_over_the_requests() {
        let start = CpuTimes {
            busy: 1_000,
            steal: 10,
            total: 10_000,
            cores: 2,
        };
        // 10 s on two cores at 100 ticks a second: 2,000 ticks, 1,500 of them busy, 20 stolen.
        let end = CpuTimes {
            busy: 2_500,
            steal: 30,
            total: 12_000,
            cores: 2,
        };
        let cpu = MachineCpu::between(start, end, Duration::from_secs(10)).expect("comparable");
        assert!((cpu.busy_pct - 75.0).abs() < 1e-9);
        assert!((cpu.steal_pct - 1.0).abs() < 1e-9);
        assert!((cpu.busy_core_seconds - 15.0).abs() < 1e-9);
        // 15 core-seconds over 50,000 requests: 300 µs each.
        assert!((cpu.micros_each(50_000).expect("some requests") - 300.0).abs() < 1e-9);
        assert_eq!(cpu.micros_each(0), None);
        assert_eq!(
            MachineCpu::between(end, start, Duration::from_secs(1)),
            None
        );
        assert_eq!(
            MachineCpu::between(start, start, Duration::from_secs(1)),
            None
        );
        let one_core_more = CpuTimes { cores: 3, ..end };
        assert_eq!(
            MachineCpu::between(start, one_core_more, Duration::from_secs(10)),
            None
        );
    }
}
