//! `signals`: typing and presence must never slow messages. Message latency is measured as in
//! `latency` (P pairs, open-loop rate R, from each message's scheduled send time to its
//! arrival on the recipient's stream), in rounds that alternate:
//! - **quiet**: messages only;
//! - **loaded**: the same, plus a typing storm (every sender and receiver, 2P people, calls
//!   `POST /typing` in their conversation once a second, so each receiver's stream also
//!   carries its partner's typing events) and presence churn (C churn users, each in a direct
//!   conversation with a receiver, open a stream, hold it H s, drop it and stay away G s:
//!   C/(H+G) connects and as many disconnects per second; with G longer than the server's
//!   `--presence-grace` every cycle is a real online → offline change announced to a
//!   measured stream).
//!
//! Rounds run in ABBA order (quiet, loaded; loaded, quiet; ...), so a drift over the run falls
//! on both kinds alike. An unmeasured warm-up (`--warmup`) comes first, sends alone and then
//! with the load: the server's first WAL checkpoint after the set-up copies the pages of
//! thousands of new accounts and conversations (on a slow disk it stalled sends for 0.3–0.6 s,
//! always in quiet round 1), and the load's first pass makes the server's state for thousands
//! of churn and typing users (loaded round 1 was its run's worst in 3 of 13 six-round runs and
//! in both two-round runs, at 90 and 123 ms).
//!
//! Reports each round's p99, the p99 of all of each kind's messages pooled, their ratio (the
//! headline), the median of the rounds' p99s as before, and messages lost (sent but never
//! delivered) in any round. Why pooled: on the 2-core VM one sync of the disk sometimes takes
//! 20–100 ms, whatever the load (a bare `pwrite` + `fdatasync` loop sees it too), and the sends
//! queued behind it make that round's p99. The median of three rounds then
//! flips with where the stalls fell: a control run with no load at all gave a "ratio" of 30.
//! `--control` runs the loaded rounds without the load, to show that noise floor.
//!
//! Each round also reports the cores busy (`cores_busy`: the server's, or in a cluster the first
//! node's, when it is local; this process's; the load child's; the whole machine's; and what
//! the host stole, `steal`: on a shared VM, noise that no process here accounts for). With the
//! load generated on the server's own cores the load's CPU is the server's loss: on the 2-core
//! VM the machine went from 0.9–1.2 cores busy (median of a run's quiet rounds) to 1.3–1.6, and
//! a send then queues for a CPU ("Issue 12, tenth pass"). And the server's CPU per message
//! sent (`server_cpu_us_per_message`; medians in the figures): quiet rounds do the same work in
//! every run, so this compares the VM's speed across runs where `steal` shows nothing (on
//! 2026-12-05 the ratio followed it: "Issue 12, sixteenth pass").
//!
//! The load shares this process's runtime and connection pool, so the measurer's own queueing
//! under load counts as message latency. `--load-in-child` runs it in a child process
//! (`signals-load`) instead, as on other people's machines; on the 2-core VM that did not lower
//! the loaded p99 and raised the quiet one (docs/benchmarks.md, "Issue 16, sixth pass").
//! `--load-idle` runs that child at `SCHED_IDLE`, so the generator's CPU yields to the server
//! and the measurer, as a load from other machines would; what is left is the server's own work
//! for the load ("Issue 12, eleventh pass").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Client;
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::child::WorkerProcess;
use super::latency::{Pair, Run, measure_runs};
use crate::client::{
    Nodes, SseStream, StreamTarget, bearer, conversations_many, http2_clients, login_many,
};
use crate::report::{CpuWindow, Report, find_listener_pid, hist_summary, new_hist, spawn_progress};
use crate::{Common, SignalsArgs};
use hdrhistogram::Histogram;

#[derive(Default)]
struct LoadCounters {
    typing_ok: AtomicU64,
    typing_limited: AtomicU64,
    typing_errors: AtomicU64,
    connects: AtomicU64,
    connect_errors: AtomicU64,
    signal_events: AtomicU64,
}

impl LoadCounters {
    fn report(&self, secs: f64) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let calls = get(&self.typing_ok) + get(&self.typing_limited) + get(&self.typing_errors);
        json!({
            "seconds": (secs * 10.0).round() / 10.0,
            "typing_calls_per_s": (calls as f64 / secs).round(),
            "typing_ok": get(&self.typing_ok),
            "typing_limited": get(&self.typing_limited),
            "typing_errors": get(&self.typing_errors),
            "stream_connects_per_s": (get(&self.connects) as f64 / secs).round(),
            "stream_connect_errors": get(&self.connect_errors),
            "signals_seen_by_churn_streams": get(&self.signal_events),
        })
    }

    fn progress(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "typing ok={} limited={} errors={} connects={} signals seen by churners={}",
            get(&self.typing_ok),
            get(&self.typing_limited),
            get(&self.typing_errors),
            get(&self.connects),
            get(&self.signal_events),
        )
    }
}

/// Who types where, who churns, and how often: all the load needs (the child's first line).
#[derive(Serialize, Deserialize)]
struct LoadPlan {
    /// (typing URL, token)
    typists: Vec<(String, String)>,
    /// (stream URL, token)
    churners: Vec<(String, String)>,
    typing_rate: f64,
    churn_hold: f64,
    churn_gap: f64,
    /// Churn streams over shared HTTP/2 connections instead of one HTTP/1.1 connection each.
    churn_http2: bool,
}

/// (URL, token) pairs as requests' targets.
fn targets(pairs: &[(String, String)]) -> Result<Arc<Vec<StreamTarget>>> {
    pairs
        .iter()
        .map(|(url, token)| {
            Ok(StreamTarget {
                url: url.clone(),
                auth: Some(bearer(token)?),
            })
        })
        .collect::<Result<_>>()
        .map(Arc::new)
}

/// One loaded round's load, from its start to its stop.
struct LoadRound {
    counters: Arc<LoadCounters>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    progress: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl LoadRound {
    fn start(client: &Client, plan: &LoadPlan) -> Result<Self> {
        let (typists, churners) = (targets(&plan.typists)?, targets(&plan.churners)?);
        let counters = Arc::new(LoadCounters::default());
        let stop = CancellationToken::new();
        let churn_clients = if plan.churn_http2 {
            http2_clients(churners.len())?
        } else {
            vec![client.clone()]
        };
        let tasks = start_load(
            client,
            &churn_clients,
            &typists,
            &churners,
            plan,
            &counters,
            &stop,
        );
        let progress = {
            let counters = counters.clone();
            spawn_progress("load".into(), move || counters.progress())
        };
        Ok(Self {
            counters,
            stop,
            tasks,
            progress,
            started: Instant::now(),
        })
    }

    async fn stop(self) -> Value {
        self.stop.cancel();
        self.progress.abort();
        for task in self.tasks {
            let _ = task.await;
        }
        self.counters.report(self.started.elapsed().as_secs_f64())
    }
}

/// `signals-load`: the child process that runs the load. Reads its [`LoadPlan`], then
/// `"start"` and `"stop"` lines; answers `"started"`, and each stop with the round's counters.
pub async fn load_worker() -> Result<()> {
    crate::raise_nofile();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let plan: LoadPlan = serde_json::from_str(&lines.next_line().await?.context("no load plan")?)?;
    let client = crate::client::http_client(None)?;
    let mut out = tokio::io::stdout();
    let mut round = None;
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<String>(&line)?.as_str() {
            "start" => {
                round = Some(LoadRound::start(&client, &plan)?);
                json!("started")
            }
            "stop" => match round.take() {
                Some(r) => r.stop().await,
                None => Value::Null,
            },
            other => anyhow::bail!("signals-load: unknown command {other:?}"),
        };
        let mut answer = serde_json::to_vec(&answer)?;
        answer.push(b'\n');
        out.write_all(&answer).await?;
        out.flush().await?;
    }
    Ok(())
}

/// Where the load runs: beside the measurer, or in a child process.
enum LoadRunner {
    Child(Box<WorkerProcess>),
    InProcess(Client, LoadPlan, Option<LoadRound>),
}

impl LoadRunner {
    async fn start(&mut self) -> Result<()> {
        match self {
            Self::Child(worker) => {
                worker.send(&"start").await?;
                worker.recv().await?;
            }
            Self::InProcess(client, plan, round) => *round = Some(LoadRound::start(client, plan)?),
        }
        Ok(())
    }

    /// The round's counters.
    async fn stop(&mut self) -> Result<Value> {
        match self {
            Self::Child(worker) => {
                worker.send(&"stop").await?;
                worker.recv().await
            }
            Self::InProcess(_, _, round) => Ok(match round.take() {
                Some(r) => r.stop().await,
                None => Value::Null,
            }),
        }
    }
}

/// Runs the typing storm and the presence churn until `stop`.
fn start_load(
    client: &Client,
    churn_clients: &[Client],
    typists: &Arc<Vec<StreamTarget>>,
    churners: &Arc<Vec<StreamTarget>>,
    plan: &LoadPlan,
    counters: &Arc<LoadCounters>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let every = Duration::from_secs_f64(1.0 / plan.typing_rate);
    for i in 0..typists.len() {
        let (client, typists, counters, stop) = (
            client.clone(),
            typists.clone(),
            counters.clone(),
            stop.clone(),
        );
        // Phases spread evenly over the interval: a steady storm, not a pulse.
        let phase = every.mul_f64(i as f64 / typists.len() as f64);
        tasks.push(tokio::spawn(async move {
            let t = &typists[i];
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let mut post = client.post(&t.url);
                if let Some(auth) = &t.auth {
                    post = post.header(AUTHORIZATION, auth.clone());
                }
                let sent = post.send().await;
                let counter = match sent.map(|r| r.status().as_u16()) {
                    Ok(204) => &counters.typing_ok,
                    Ok(429) => &counters.typing_limited,
                    _ => &counters.typing_errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (hold, gap) = (
        Duration::from_secs_f64(plan.churn_hold),
        Duration::from_secs_f64(plan.churn_gap),
    );
    let cycle = hold + gap;
    for i in 0..churners.len() {
        let (client, churners, counters, stop) = (
            churn_clients[i % churn_clients.len()].clone(),
            churners.clone(),
            counters.clone(),
            stop.clone(),
        );
        let phase = cycle.mul_f64(i as f64 / churners.len() as f64);
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(phase) => {}
            }
            loop {
                let until = tokio::time::Instant::now() + hold;
                match SseStream::connect(&client, &churners[i], None).await {
                    Ok(mut stream) => {
                        counters.connects.fetch_add(1, Ordering::Relaxed);
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep_until(until) => break,
                                event = stream.next_event() => match event {
                                    Ok(Some(ev)) if ev.event.is_some() => {
                                        counters.signal_events.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(Some(_)) => {}
                                    _ => break,
                                },
                            }
                        }
                    }
                    Err(_) => {
                        counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Dropped: the stream is closed; away for the gap.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(gap) => {}
                }
            }
        }));
    }
    tasks
}

fn p99(point: &Value) -> Option<f64> {
    point
        .pointer("/e2e_from_scheduled/p99_us")
        .and_then(Value::as_f64)
}

/// Keeps a run's point, and adds its latencies to its kind's distribution.
fn pool(runs: Vec<Run>, points: &mut Vec<Value>, all: &mut Histogram<u64>) -> Result<()> {
    for run in runs {
        all.add(&run.e2e).context("pooling a round's latencies")?;
        points.push(run.point);
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

pub async fn run(common: &Common, args: &SignalsArgs) -> Result<()> {
    crate::raise_nofile();
    let client = crate::client::http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    let p = args.pairs;
    eprintln!(
        "signals: prefix {prefix}, {p} pairs at {} msg/s, {}s per round, {} rounds; load: {} typists at {}/s, {} churn users ({}s on, {}s off)",
        args.rate,
        args.duration,
        args.rounds,
        2 * p,
        args.typing_rate,
        args.churn_users,
        args.churn_hold,
        args.churn_gap
    );
    let senders = login_many(
        &nodes,
        (0..p).map(|i| format!("{prefix}_s{i}")).collect(),
        32,
    )
    .await?;
    let receivers = login_many(
        &nodes,
        (0..p).map(|i| format!("{prefix}_r{i}")).collect(),
        32,
    )
    .await?;
    let churn = login_many(
        &nodes,
        (0..args.churn_users)
            .map(|i| format!("{prefix}_c{i}"))
            .collect(),
        32,
    )
    .await?;
    let convs = conversations_many(
        &nodes,
        senders
            .iter()
            .zip(&receivers)
            .map(|(s, r)| (s.token.clone(), r.username.clone()))
            .collect(),
        32,
    )
    .await?;
    // Each churn user shares a conversation with a receiver: their comings and goings are
    // announced on the measured streams.
    conversations_many(
        &nodes,
        churn
            .iter()
            .enumerate()
            .map(|(i, c)| (c.token.clone(), receivers[i % p].username.clone()))
            .collect(),
        32,
    )
    .await?;
    let pairs: Vec<Pair> = (0..p)
        .map(|i| {
            Ok(Pair {
                post: nodes
                    .get(i + 1)
                    .messages_target(&convs[i], &senders[i].token)?,
                stream: nodes.get(i).stream_target(&receivers[i].token)?,
            })
        })
        .collect::<Result<_>>()?;
    let mut typists = Vec::with_capacity(2 * p);
    for (i, conv) in convs.iter().enumerate() {
        for (node, who) in [(i + 1, &senders[i]), (i, &receivers[i])] {
            typists.push((
                nodes
                    .get(node)
                    .url(&format!("/api/conversations/{conv}/typing")),
                who.token.clone(),
            ));
        }
    }
    let churners = churn
        .iter()
        .enumerate()
        .map(|(i, c)| (nodes.get(i).url("/api/messages"), c.token.clone()))
        .collect();
    let plan = LoadPlan {
        typists,
        churners,
        typing_rate: args.typing_rate,
        churn_hold: args.churn_hold,
        churn_gap: args.churn_gap,
        churn_http2: args.churn_http2,
    };
    let mut runner = if args.load_idle {
        LoadRunner::Child(Box::new(
            WorkerProcess::spawn_idle("signals-load", &plan).await?,
        ))
    } else if args.load_in_child {
        LoadRunner::Child(Box::new(WorkerProcess::spawn("signals-load", &plan).await?))
    } else {
        LoadRunner::InProcess(client.clone(), plan, None)
    };

    // Cores busy per round: the ratio means little once the two cores are nearly all busy
    // (sends then queue for a CPU), so each round says how busy they were.
    let watched = [
        ("server", urls.first().and_then(|u| find_listener_pid(u))),
        ("bench", Some(std::process::id())),
        (
            "load_child",
            match &runner {
                LoadRunner::Child(worker) => worker.child.id(),
                LoadRunner::InProcess(..) => None,
            },
        ),
    ];
    let duration = Duration::from_secs_f64(args.duration);
    let grace = Duration::from_secs_f64(args.grace);
    let settle = Duration::from_secs_f64(args.settle);
    let measure = async |label: &str| -> Result<Vec<Run>> {
        let cpu = CpuWindow::start(&watched);
        let mut runs = measure_runs(&client, &pairs, &[args.rate], duration, grace, label).await?;
        let cores = cpu.cores();
        let server_seconds = cpu.seconds("server");
        eprintln!("[{label}] cores busy: {cores}");
        for run in &mut runs {
            // The same quiet round costs the server the same CPU on a machine of steady speed:
            // compared across runs, this says whether the VM was as fast (steal does not show
            // a host that is slower without stealing).
            let server_us = server_seconds.map(|s| s * 1e6);
            let sent = run.point["sent"].as_f64().filter(|&n| n > 0.0);
            if let (Some(us), Some(sent)) = (server_us, sent) {
                run.point["server_cpu_us_per_message"] = json!((us / sent * 10.0).round() / 10.0);
            }
            run.point["cores_busy"] = cores.clone();
        }
        Ok(runs)
    };
    if args.warmup > 0.0 {
        // Measured like a round, and thrown away: sends alone, then with the load, so that
        // what happens once (the first checkpoint, the server's first state for thousands of
        // churn and typing users) is not in round 1 of either kind.
        let warmup = Duration::from_secs_f64(args.warmup);
        measure_runs(&client, &pairs, &[args.rate], warmup, grace, "warm-up").await?;
        tokio::time::sleep(settle).await;
        if !args.control {
            runner.start().await?;
            tokio::time::sleep(settle).await;
            let runs = measure_runs(&client, &pairs, &[args.rate], warmup, grace, "warm-up").await;
            runner.stop().await?;
            runs?;
            tokio::time::sleep(settle).await;
        }
    }
    let (mut quiet, mut loaded, mut load) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quiet_all, mut loaded_all) = (new_hist(), new_hist());
    for round in 0..args.rounds {
        // ABBA: quiet first in even rounds, loaded first in odd ones, so a drift over the run
        // (the database growing, the disk's moods) falls on both kinds alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_load in order {
            let kind = if with_load { "loaded" } else { "quiet" };
            let label = format!("{kind} {}", round + 1);
            if !with_load {
                pool(measure(&label).await?, &mut quiet, &mut quiet_all)?;
                tokio::time::sleep(settle).await;
                continue;
            }
            if !args.control {
                runner.start().await?;
            }
            // Let the storm and the churn reach their steady rate before measuring.
            tokio::time::sleep(settle).await;
            let runs = measure(&label).await;
            if !args.control {
                load.push(runner.stop().await?);
            }
            pool(runs?, &mut loaded, &mut loaded_all)?;
            // The churn's last streams go offline after the server's grace period.
            tokio::time::sleep(settle).await;
        }
    }

    let pooled = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64);
    let (quiet_p99, loaded_p99) = (pooled(&quiet_all), pooled(&loaded_all));
    let quiet_median = median(quiet.iter().filter_map(p99).collect());
    let loaded_median = median(loaded.iter().filter_map(p99).collect());
    let machine_cores = |points: &[Value]| {
        median(
            points
                .iter()
                .filter_map(|pt| pt.pointer("/cores_busy/machine").and_then(Value::as_f64))
                .collect(),
        )
        .map(|c| (c * 100.0).round() / 100.0)
    };
    let (quiet_cores, loaded_cores) = (machine_cores(&quiet), machine_cores(&loaded));
    let server_cpu_per_message = |points: &[Value]| {
        median(
            points
                .iter()
                .filter_map(|pt| pt["server_cpu_us_per_message"].as_f64())
                .collect(),
        )
    };
    let steal_max = quiet
        .iter()
        .chain(&loaded)
        .filter_map(|pt| pt.pointer("/cores_busy/steal").and_then(Value::as_f64))
        .reduce(f64::max);
    let lost: u64 = quiet
        .iter()
        .chain(&loaded)
        .filter_map(|pt| pt["lost"].as_u64())
        .sum();
    let ratio = |q: Option<f64>, l: Option<f64>| match (q, l) {
        (Some(q), Some(l)) if q > 0.0 => Some((l / q * 1000.0).round() / 1000.0),
        _ => None,
    };
    let (pooled_ratio, median_ratio) = (
        ratio(quiet_p99, loaded_p99),
        ratio(quiet_median, loaded_median),
    );
    eprintln!(
        "signals{}: message p99 of all rounds quiet {quiet_p99:?} µs, loaded {loaded_p99:?} µs, ratio {pooled_ratio:?} (median of rounds' p99: ratio {median_ratio:?}), lost {lost}; machine cores busy (median of rounds) quiet {quiet_cores:?}, loaded {loaded_cores:?}; most cores stolen by the host in a round {steal_max:?}",
        if args.control {
            " (control: no load)"
        } else {
            ""
        }
    );
    let report = Report {
        scenario: "signals".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "pairs": p, "rate": args.rate, "duration_s": args.duration, "rounds": args.rounds,
            "warmup_s": args.warmup,
            "typists": 2 * p, "typing_rate": args.typing_rate, "churn_users": args.churn_users,
            "churn_hold_s": args.churn_hold, "churn_gap_s": args.churn_gap, "churn_http2": args.churn_http2,
            "load_in_child": args.load_in_child || args.load_idle, "load_idle": args.load_idle, "control": args.control,
            "prefix": prefix, "base_urls": urls,
        }),
        figures: json!({
            "quiet": quiet,
            "loaded": loaded,
            "load": load,
            "quiet_all": hist_summary(&quiet_all),
            "loaded_all": hist_summary(&loaded_all),
            "p99_us_quiet_median": quiet_median,
            "p99_us_loaded_median": loaded_median,
            "machine_cores_busy_quiet_median": quiet_cores,
            "machine_cores_busy_loaded_median": loaded_cores,
            "steal_cores_max": steal_max,
            "server_cpu_us_per_message_quiet_median": server_cpu_per_message(&quiet),
            "server_cpu_us_per_message_loaded_median": server_cpu_per_message(&loaded),
            "lost": lost,
        }),
        ceiling: Value::Null,
        ratios: json!({
            "p99_loaded_vs_quiet": pooled_ratio,
            "p99_loaded_vs_quiet_median_of_rounds": median_ratio,
        }),
    };
    report.emit(common.out.as_deref())
}
