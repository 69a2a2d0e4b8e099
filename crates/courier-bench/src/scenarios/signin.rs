//! `signin`: C password sign-ins at once, R rounds; the server's RSS before, its peak while
//! they run (VmRSS sampled every 5 ms, and VmHWM), and the sign-in latency. Each argon2id hash
//! holds 19 MiB while it runs, so what bounds the peak is how many the server runs at once.
//!
//! The server must allow password sign-up and this many attempts from one address, e.g.
//! `courier serve --signup open --login-attempts-per-ip 100000 --login-attempts-per-account 1000`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::client::http_client;
use crate::report::{Report, hist_summary, new_hist, record, rss_bytes};
use crate::{Common, SigninArgs};

const PASSWORD: &str = "violet-harbor-tractor-91";

pub async fn run(common: &Common, args: &SigninArgs) -> Result<()> {
    let urls = common.base_urls();
    if urls.len() != 1 {
        bail!("signin measures one server's memory: give a single --base-url");
    }
    let base = urls[0].clone();
    let client = http_client(None)?;
    let prefix = common.prefix();
    let c = args.concurrency.max(1);
    let pid = args.pid.or_else(|| crate::report::find_listener_pid(&base));
    let Some(pid) = pid else {
        bail!("signin: no --pid and no local listener on the --base-url port");
    };
    eprintln!("signin: prefix {prefix}, {c} accounts, server pid {pid}");

    // Sign-ups hash too: a few at a time, so they do not set the peak.
    let names: Vec<String> = (0..c).map(|i| format!("{prefix}_s{i}")).collect();
    for chunk in names.chunks(2) {
        let mut calls = Vec::new();
        for name in chunk {
            calls.push(post(&client, &base, "signup", name, 201));
        }
        for call in calls {
            call.await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_bytes(pid)?;
    let hwm_before = status_kb(pid, "VmHWM").map(|kb| kb * 1024);

    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut latency = new_hist();
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let started = Instant::now();
        let calls: Vec<_> = names
            .iter()
            .map(|name| {
                let (client, base, name) = (client.clone(), base.clone(), name.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    post(&client, &base, "signin", &name, 200).await?;
                    anyhow::Ok(t.elapsed())
                })
            })
            .collect();
        for call in calls {
            record(&mut latency, call.await??);
        }
        let wall = started.elapsed().as_secs_f64();
        eprintln!(
            "[signin] round {round}: {c} sign-ins in {wall:.2}s, peak RSS so far {:.1} MB",
            peak.load(Ordering::Relaxed) as f64 / 1e6
        );
        rounds.push(wall);
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    let rss_after = rss_bytes(pid)?;
    let hwm_after = status_kb(pid, "VmHWM").map(|kb| kb * 1024);
    let peak = peak.load(Ordering::Relaxed);

    let report = Report {
        scenario: "signin".into(),
        base_url: common.base_url.clone(),
        params: json!({ "concurrency": c, "rounds": args.rounds, "prefix": prefix }),
        figures: json!({
            "server_rss_before_bytes": rss_before,
            "server_rss_peak_sampled_bytes": peak,
            "server_rss_after_bytes": rss_after,
            "server_rss_growth_bytes": peak.saturating_sub(rss_before),
            "server_vm_hwm_before_bytes": hwm_before,
            "server_vm_hwm_after_bytes": hwm_after,
            "round_wall_s": rounds,
            "signin_latency": hist_summary(&latency),
        }),
        ceiling: Value::Null,
        ratios: Value::Null,
    };
    report.emit(common.out.as_deref())
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    route: &str,
    username: &str,
    want: u16,
) -> Result<()> {
    let response = client
        .post(format!("{base}/api/{route}"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await?;
    let status = response.status();
    if status.as_u16() != want {
        let body = response.text().await.unwrap_or_default();
        bail!("POST /api/{route} {username}: HTTP {status}: {body}");
    }
    Ok(())
}

/// A `kB` line of /proc/PID/status.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
