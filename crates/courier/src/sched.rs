//! Short scheduler slices for the threads a message waits on.
//!
//! Linux's EEVDF scheduler (6.6+) lets a thread that wakes run at once only if it asks for a
//! shorter slice than the one running (6.12+); otherwise it waits for that slice to end,
//! 0.7 ms × (1 + log₂ cores) by default (1.4 ms on 2 cores). Under a typing storm and presence
//! churn the cores are busy with requests for them, and a send wakes its runtime worker and
//! then the SQLite writer, each of which may find a core taken. With `serve --thread-slice`
//! the runtime workers ask for a short slice, and the writer, which every send on SQLite
//! waits on, for the shortest the kernel grants. A shorter slice is a turn sooner, not more
//! CPU: the thread is also preempted sooner, so a long poll shares the core as before. Off by
//! default: on a 2-core machine it made the loaded message p99 steadier but raised the quiet
//! one about as much (docs/benchmarks.md, "Issue 12, eighteenth pass"). Threads a worker starts
//! inherit its slice (sqlx's SQLite connection threads, which answer requests too); the
//! password hashers, started from the main thread, keep the default, so hashing never cuts in.
//!
//! Written by hand: no maintained crate wraps `sched_setattr(2)` for ordinary threads (they
//! cover real-time policies), and it is one call on a `#[repr(C)]` struct. Elsewhere, and on
//! kernels that do not know the request, it does nothing.

use std::time::Duration;

/// The shortest slice the kernel grants (it clamps requests to 0.1–100 ms).
pub const SHORTEST_SLICE: Duration = Duration::from_micros(100);

/// `struct sched_attr`, the size `SCHED_ATTR_SIZE_VER1` of `sched_setattr(2)`.
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Asks that the calling thread run in slices of `slice` (kept at `SCHED_OTHER` and its nice
/// value). `false` when the kernel refused; `Duration::ZERO` asks nothing.
pub fn request_slice(slice: Duration) -> bool {
    if slice.is_zero() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let nice = rustix::process::getpriority_process(None).unwrap_or(0);
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            nice,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            ..SchedAttr::default()
        };
        // SAFETY: `attr` is a live, initialised `sched_attr` whose `size` field is its size;
        // the kernel only reads it. Pid 0 is the calling thread.
        let done =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "scheduler slice not granted");
        }
        done == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The slice the kernel reports for the calling thread, where it reports one.
    fn reported_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for() {
        std::thread::spawn(|| {
            let Some(before) = reported_slice() else {
                return; // a kernel without EEVDF slices: nothing to check
            };
            let asked = Duration::from_micros(300);
            assert!(request_slice(asked), "the kernel refused the slice");
            assert_eq!(reported_slice(), Some(asked.as_nanos() as u64));
            assert_ne!(before, asked.as_nanos() as u64);
            assert!(!request_slice(Duration::ZERO));
        })
        .join()
        .unwrap();
    }
}
