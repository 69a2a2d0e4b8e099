//! Output: one JSON line per run on stdout (and optionally appended to a file), a readable
//! table on stderr, progress lines on stderr, machine facts, histogram summaries.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latency histogram in microseconds, 1 µs .. 1 h, 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

pub fn hist_summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": (h.mean() * 10.0).round() / 10.0,
    })
}

/// Print `[label] t=Ns <status>` to stderr about once a second until aborted.
pub fn spawn_progress<F>(label: String, mut f: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> String + Send + 'static,
{
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!("[{label}] t={:.0}s {}", start.elapsed().as_secs_f64(), f());
        }
    })
}

pub fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = meminfo_kb("MemTotal");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({
        "cores": cores,
        "memory_bytes": mem_kb.map(|k| k * 1024),
        "memory_gib": mem_kb.map(|k| ((k as f64) / 1048576.0 * 10.0).round() / 10.0),
        "kernel": kernel,
    })
}

fn meminfo_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

/// CPU time (user + system) a process has used so far, in seconds, from /proc/PID/stat
/// (clock ticks of 1/100 s, the Linux default).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU time the whole machine has spent busy (not idle, not waiting for I/O) since boot, in
/// seconds, from /proc/stat.
pub fn machine_busy_seconds() -> Option<f64> {
    machine_seconds().map(|(busy, _)| busy)
}

/// (busy, stolen) CPU seconds since boot from /proc/stat. Stolen time is the hypervisor
/// running other guests while this one had work: on a shared VM it is the noise that no
/// process here accounts for, and busy includes it.
fn machine_seconds() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?;
    Some((busy as f64 / 100.0, *f.get(7)? as f64 / 100.0))
}

/// Cores busy over a window: for each named process (CPU seconds from /proc/PID/stat), for
/// the whole machine (so what else runs shows as the difference), and stolen by the host. A
/// figure is null where a process is not local or /proc is missing.
pub struct CpuWindow {
    started: Instant,
    processes: Vec<(&'static str, Option<u32>, Option<f64>)>,
    machine: Option<(f64, f64)>,
}

impl CpuWindow {
    pub fn start(processes: &[(&'static str, Option<u32>)]) -> Self {
        Self {
            started: Instant::now(),
            processes: processes
                .iter()
                .map(|&(name, pid)| (name, pid, pid.and_then(cpu_seconds)))
                .collect(),
            machine: machine_seconds(),
        }
    }

    /// CPU seconds the process named `name` used from the start to now.
    pub fn seconds(&self, name: &str) -> Option<f64> {
        let &(_, pid, before) = self.processes.iter().find(|p| p.0 == name)?;
        Some(cpu_seconds(pid?)? - before?)
    }

    /// `{"<name>": cores, ..., "machine": cores, "steal": cores}` from the start to now.
    pub fn cores(&self) -> Value {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(a), Some(b)) if wall > 0.0 => json!(((b - a) / wall * 100.0).round() / 100.0),
            _ => Value::Null,
        };
        let mut out = serde_json::Map::new();
        for &(name, pid, before) in &self.processes {
            out.insert(name.into(), cores(before, pid.and_then(cpu_seconds)));
        }
        let now = machine_seconds();
        out.insert(
            "machine".into(),
            cores(self.machine.map(|m| m.0), now.map(|m| m.0)),
        );
        out.insert(
            "steal".into(),
            cores(self.machine.map(|m| m.1), now.map(|m| m.1)),
        );
        Value::Object(out)
    }
}

/// RFC 3339 UTC with seconds, from the system clock.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

pub struct Report {
    pub scenario: String,
    pub base_url: String,
    pub params: Value,
    pub figures: Value,
    pub ceiling: Value,
    pub ratios: Value,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "base_url": self.base_url,
            "date": now_rfc3339(),
            "machine": machine(),
            "params": self.params,
            "figures": self.figures,
            "ceiling": self.ceiling,
            "ratios": self.ratios,
        })
    }

    /// JSON line on stdout (and appended to `out`), table on stderr.
    pub fn emit(&self, out: Option<&Path>) -> Result<()> {
        let v = self.to_json();
        let line = serde_json::to_string(&v)?;
        {
            let mut so = std::io::stdout().lock();
            writeln!(so, "{line}")?;
            so.flush()?;
        }
        if let Some(p) = out {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            writeln!(f, "{line}")?;
        }
        eprintln!("{}", table(&v));
        Ok(())
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::Null => {}
        Value::Number(n) => out.push((prefix.to_string(), fmt_num(n))),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn fmt_num(n: &serde_json::Number) -> String {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.abs() >= 100.0 {
            format!("{f:.0}")
        } else {
            format!("{f:.3}")
        }
    } else {
        n.to_string()
    }
}

/// A two-column table of every leaf of the report, grouped by section.
pub fn table(v: &Value) -> String {
    let mut s = String::new();
    let scen = v.get("scenario").and_then(Value::as_str).unwrap_or("?");
    s.push_str(&format!("== courier-bench {scen} ==\n"));
    for section in ["params", "figures", "ceiling", "ratios", "machine"] {
        let mut rows = Vec::new();
        if let Some(x) = v.get(section) {
            flatten("", x, &mut rows);
        }
        if rows.is_empty() {
            continue;
        }
        s.push_str(&format!("-- {section}\n"));
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, val) in rows {
            s.push_str(&format!("  {k:<w$}  {val}\n"));
        }
    }
    if let Some(d) = v.get("date").and_then(Value::as_str) {
        s.push_str(&format!("-- date {d}\n"));
    }
    s
}

/// `a / b`, rounded, or null when either is missing or b is 0.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => json!((a / b * 10000.0).round() / 10000.0),
        _ => Value::Null,
    }
}

/// The process listening on `base_url`'s TCP port on this machine, from /proc/net/tcp{,6} and
/// /proc/*/fd, for when `--pid` is not given.
pub fn find_listener_pid(base_url: &str) -> Option<u32> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let port = url.port_or_known_default()?;
    let mut inodes = std::collections::HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in s.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 9
                && c[3] == "0A"
                && c[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
            {
                inodes.insert(format!("socket:[{}]", c[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path())
                && inodes.contains(t.to_string_lossy().as_ref())
            {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_format() {
        let d = super::now_rfc3339();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20"));
    }
}
