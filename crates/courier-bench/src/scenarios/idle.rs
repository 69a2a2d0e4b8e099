//! `idle`: K concurrent streams held open, spread over several client processes (one process
//! may hold at most 20,000 open files here) and several 127.0.0.x source addresses (when the
//! ephemeral port range would run short). Reports the server's RSS per stream (VmRSS before
//! opening the streams vs after, divided by the streams opened) and proves that a probe
//! message reaches the last stream opened.
//!
//! The bench re-executes itself as `courier-bench idle-worker`; parent and worker speak JSON
//! lines over the worker's stdin/stdout.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::child::WorkerProcess;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{
    Api, Nodes, SseStream, StreamTarget, bearer, http_client, http2_clients, login_many, parse_msg,
    random_prefix,
};
use crate::report::{Report, ratio, rss_bytes};
use crate::{CeilingOpts, Common, IdleArgs, ceiling};

/// Streams one worker process holds at most (leaves room under the 20,000 open-file limit).
pub const PER_WORKER: usize = 18_000;

pub struct IdleSpec {
    pub url: String,
    /// One token per stream (cycled), or empty for no auth.
    pub tokens: Vec<String>,
    pub streams: usize,
    pub pid: Option<u32>,
    pub workers: Option<usize>,
    pub src_ips: Option<usize>,
    pub hold: Duration,
    pub connect_concurrency: usize,
    pub label: String,
    /// Open the streams over HTTP/2 with prior knowledge, many per connection.
    pub http2: bool,
}

#[derive(Serialize, Deserialize)]
struct WorkerCfg {
    url: String,
    tokens: Vec<String>,
    count: usize,
    src_ips: Vec<IpAddr>,
    connect_concurrency: usize,
    #[serde(default)]
    http2: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Cmd {
    Watch {
        index: usize,
        tag: String,
        timeout_ms: u64,
    },
    Status,
    Quit,
}

pub(crate) fn port_range() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let v: Vec<usize> = s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 2 && v[1] > v[0]).then(|| v[1] - v[0] + 1)
        })
        .unwrap_or(28_232)
}

struct Worker {
    io: WorkerProcess,
    offset: usize,
    opened: u64,
    last: Option<usize>,
}

/// Open `spec.streams` streams through worker processes, measure RSS, then probe the last one.
/// `probe(global_index, tag)` must cause a message with content `tag` to reach that stream.
pub async fn measure<F, Fut>(spec: &IdleSpec, probe: F) -> Result<Value>
where
    F: FnOnce(usize, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let k = spec.streams;
    let workers = spec
        .workers
        .unwrap_or(k.div_ceil(PER_WORKER))
        .clamp(1, k.max(1));
    let n_ips = spec
        .src_ips
        .unwrap_or_else(|| (k as f64 / (port_range() as f64 * 0.8)).ceil() as usize)
        .max(1);
    let ips: Vec<IpAddr> = if n_ips <= 1 {
        Vec::new()
    } else {
        (1..=n_ips.min(254))
            .map(|i| IpAddr::from([127, 0, 0, i as u8]))
            .collect()
    };
    let label = &spec.label;
    let rss_before = spec.pid.map(rss_bytes).transpose()?;
    eprintln!(
        "[{label}] {k} streams over {workers} worker process(es), {} source address(es); server RSS before: {}",
        ips.len().max(1),
        rss_before
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or("n/a (no --pid)".into())
    );
    let t_open = Instant::now();
    let mut ws: Vec<Worker> = Vec::new();
    let mut failed = 0u64;
    let mut errors = Vec::new();
    let per = k.div_ceil(workers);
    // Workers open their streams one after another, so the last stream of the last worker is
    // the last stream opened overall.
    for w in 0..workers {
        let offset = w * per;
        let count = per.min(k - offset.min(k));
        if count == 0 {
            break;
        }
        let tokens: Vec<String> = if spec.tokens.is_empty() {
            Vec::new()
        } else {
            (offset..offset + count)
                .map(|i| spec.tokens[i % spec.tokens.len()].clone())
                .collect()
        };
        let cfg = WorkerCfg {
            url: spec.url.clone(),
            tokens,
            count,
            src_ips: ips.clone(),
            connect_concurrency: spec.connect_concurrency,
            http2: spec.http2,
        };
        let mut wk = Worker {
            io: WorkerProcess::spawn("idle-worker", &cfg).await?,
            offset,
            opened: 0,
            last: None,
        };
        loop {
            let v = wk.io.recv().await?;
            match v["type"].as_str() {
                Some("progress") => eprintln!(
                    "[{label}] worker {w}: opened {}/{count}, failed {} (total {:.1}s)",
                    v["opened"],
                    v["failed"],
                    t_open.elapsed().as_secs_f64()
                ),
                Some("ready") => {
                    wk.opened = v["opened"].as_u64().unwrap_or(0);
                    wk.last = v["last"].as_u64().map(|x| x as usize);
                    failed += v["failed"].as_u64().unwrap_or(0);
                    if let Some(e) = v["error"].as_str() {
                        errors.push(format!("worker {w}: {e}"));
                    }
                    eprintln!("[{label}] worker {w}: ready, {} open", wk.opened);
                    break;
                }
                _ => bail!("unexpected worker line {v}"),
            }
        }
        ws.push(wk);
    }
    let open_elapsed = t_open.elapsed();
    let opened: u64 = ws.iter().map(|w| w.opened).sum();
    eprintln!(
        "[{label}] {opened} streams open in {:.1}s; holding {:?}",
        open_elapsed.as_secs_f64(),
        spec.hold
    );
    tokio::time::sleep(spec.hold).await;
    let rss_after = spec.pid.map(rss_bytes).transpose()?;

    // Probe the last stream opened.
    let mut probe_v = json!({ "delivered": false });
    if let Some(wi) = ws.iter().rposition(|w| w.last.is_some()) {
        let local = ws[wi].last.unwrap();
        let global = ws[wi].offset + local;
        let tag = format!("P{}", random_prefix(10));
        ws[wi]
            .io
            .send(&Cmd::Watch {
                index: local,
                tag: tag.clone(),
                timeout_ms: 10_000,
            })
            .await?;
        let ack = ws[wi].io.recv().await?;
        if ack["type"] != "watching" {
            bail!("unexpected worker answer {ack}");
        }
        let t0 = Instant::now();
        let perr = probe(global, tag).await.err();
        let ans = ws[wi].io.recv().await?;
        probe_v = json!({
            "stream_index": global,
            "delivered": ans["ok"].as_bool().unwrap_or(false),
            "probe_latency_ms": (t0.elapsed().as_secs_f64() * 1e5).round() / 100.0,
            "post_error": perr.map(|e| format!("{e:#}")),
        });
    }
    let mut alive = 0u64;
    for w in ws.iter_mut() {
        w.io.send(&Cmd::Status).await?;
        alive += w.io.recv().await?["alive"].as_u64().unwrap_or(0);
    }
    for w in ws.iter_mut() {
        let _ = w.io.send(&Cmd::Quit).await;
    }
    for mut w in ws {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.io.child.wait()).await;
    }
    let per_stream = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) / opened as f64),
        _ => None,
    };
    Ok(json!({
        "streams_requested": k,
        "streams_opened": opened,
        "failed": failed,
        "errors": errors,
        "alive_at_end": alive,
        "workers": workers,
        "source_addresses": ips.len().max(1),
        "open_elapsed_s": open_elapsed.as_secs_f64(),
        "server_rss_before_bytes": rss_before,
        "server_rss_after_bytes": rss_after,
        "rss_per_stream_bytes": per_stream.map(|x| x.round()),
        "probe": probe_v,
    }))
}

/// The worker process: reads its config on stdin, opens its streams, answers commands.
pub async fn worker() -> Result<()> {
    crate::raise_nofile();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let cfg: WorkerCfg = serde_json::from_str(&lines.next_line().await?.context("no config")?)?;
    let clients = if cfg.http2 {
        // As a reverse proxy speaks upstream: many streams on each connection.
        http2_clients(cfg.count)?
    } else if cfg.src_ips.is_empty() {
        vec![http_client(None)?]
    } else {
        cfg.src_ips
            .iter()
            .map(|ip| http_client(Some(*ip)))
            .collect::<Result<Vec<_>>>()?
    };
    let n = cfg.count;
    let alive: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let order: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let seq = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.connect_concurrency.max(1)));
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        let t = StreamTarget {
            url: cfg.url.clone(),
            auth: if cfg.tokens.is_empty() {
                None
            } else {
                Some(bearer(&cfg.tokens[i])?)
            },
        };
        let (alive, order, seq, failed, first_err, tx, sem) = (
            alive.clone(),
            order.clone(),
            seq.clone(),
            failed.clone(),
            first_err.clone(),
            tx.clone(),
            sem.clone(),
        );
        tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let mut s = None;
            for attempt in 0..3u32 {
                match SseStream::connect(&client, &t, None).await {
                    Ok(x) => {
                        s = Some(x);
                        break;
                    }
                    Err(e) => {
                        first_err
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
            let Some(mut s) = s else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            alive[i].store(true, Ordering::Relaxed);
            order[i].store(seq.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
            drop(permit);
            while let Ok(Some(ev)) = s.next_event().await {
                if let Some(m) = parse_msg(&ev.data) {
                    let _ = tx.send((i, m.content));
                }
            }
            alive[i].store(false, Ordering::Relaxed);
        });
    }
    drop(tx);
    let out = |v: Value| println!("{v}");
    let mut last_print = Instant::now();
    loop {
        let o = seq.load(Ordering::Relaxed);
        let f = failed.load(Ordering::Relaxed);
        if o + f >= n as u64 {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            out(json!({ "type": "progress", "opened": o, "failed": f }));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = (0..n)
        .filter(|&i| order[i].load(Ordering::Relaxed) > 0)
        .max_by_key(|&i| order[i].load(Ordering::Relaxed));
    out(json!({
        "type": "ready",
        "opened": seq.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
        "last": last,
        "error": first_err.lock().unwrap().clone(),
    }));
    let mut watch: Option<(usize, String, tokio::time::Instant)> = None;
    loop {
        let deadline = watch
            .as_ref()
            .map(|w| w.2)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            l = lines.next_line() => {
                let Ok(Some(l)) = l else { break };
                match serde_json::from_str::<Cmd>(&l)? {
                    Cmd::Watch { index, tag, timeout_ms } => {
                        watch = Some((index, tag, tokio::time::Instant::now() + Duration::from_millis(timeout_ms)));
                        out(json!({ "type": "watching" }));
                    }
                    Cmd::Status => {
                        let a = alive.iter().filter(|x| x.load(Ordering::Relaxed)).count();
                        out(json!({ "type": "status", "alive": a }));
                    }
                    Cmd::Quit => break,
                }
            }
            ev = rx.recv() => {
                let Some((i, content)) = ev else { continue };
                if let Some((wi, tag, _)) = &watch
                    && *wi == i
                    && *tag == content
                {
                    out(json!({ "type": "probe", "ok": true }));
                    watch = None;
                }
            }
            _ = tokio::time::sleep_until(deadline), if watch.is_some() => {
                out(json!({ "type": "probe", "ok": false }));
                watch = None;
            }
        }
    }
    Ok(())
}

pub async fn run(common: &Common, args: &IdleArgs) -> Result<()> {
    crate::raise_nofile();
    let urls = common.base_urls();
    if urls.len() != 1 {
        bail!("idle measures one server's memory: give a single --base-url");
    }
    let client = http_client(None)?;
    let api = Api::new(client.clone(), &urls[0]);
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    let k = args.streams;
    let users = args.users.unwrap_or(k).clamp(1, k.max(1));
    eprintln!("idle: prefix {prefix}, {k} streams for {users} users");
    let sessions = login_many(
        &nodes,
        (0..users).map(|i| format!("{prefix}_u{i}")).collect(),
        64,
    )
    .await?;
    let prober = api.login(&format!("{prefix}_probe")).await?;
    let tokens: Vec<String> = sessions.iter().map(|s| s.token.clone()).collect();
    let pid = args.pid.or_else(|| {
        let p = crate::report::find_listener_pid(&urls[0]);
        match p {
            Some(p) => eprintln!(
                "idle: server pid {p} (found listening on the --base-url port; --pid overrides)"
            ),
            None => {
                eprintln!("idle: no --pid and no local listener found: RSS per stream will be null")
            }
        }
        p
    });
    let spec = IdleSpec {
        url: api.url("/api/messages"),
        tokens,
        streams: k,
        pid,
        workers: args.workers,
        src_ips: args.src_ips,
        hold: Duration::from_secs_f64(args.hold),
        connect_concurrency: args.connect_concurrency,
        label: "idle".into(),
        http2: args.http2,
    };
    let api2 = api.clone();
    let fig = measure(&spec, |global, tag| async move {
        let who = &sessions[global % sessions.len()].username;
        let cid = api2.conversation_with(&prober.token, who).await?;
        crate::client::post_content(
            &api2.client,
            &api2.messages_target(&cid, &prober.token)?,
            &tag,
        )
        .await?;
        Ok(())
    })
    .await?;
    let ceil = ceiling::obtain(
        common,
        &CeilingOpts {
            idle_streams: Some(args.ceiling_streams.unwrap_or(k)),
            idle_workers: args.workers,
            idle_src_ips: args.src_ips,
            idle_hold: Some(args.hold),
            ..Default::default()
        },
    )
    .await?;
    let per = fig["rss_per_stream_bytes"].as_f64();
    let cper = ceil
        .pointer("/idle/rss_per_stream_bytes")
        .and_then(Value::as_f64);
    let report = Report {
        scenario: "idle".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "streams": k, "users": users, "workers": args.workers, "src_ips": args.src_ips, "http2": args.http2,
            "pid": pid, "hold_s": args.hold, "prefix": prefix, "base_urls": urls,
        }),
        figures: fig,
        ratios: json!({ "rss_per_stream_vs_minimal_sse_server": ratio(per, cper) }),
        ceiling: ceil,
    };
    report.emit(common.out.as_deref())
}
