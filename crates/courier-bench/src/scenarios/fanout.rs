//! `fanout`: one group of K members, every member holding its own stream, while S of them post
//! into the group at an open-loop total rate R for D seconds. Every 201-acknowledged message
//! must reach all K streams exactly once. Reports, per rate:
//! - deliveries/s: message events received over all streams, divided by the time from the
//!   first scheduled POST to the last delivery. The offered load bounds it at K·R
//!   (`offered_deliveries_per_s`), so it measures the server's fan-out capacity only when K·R
//!   exceeds it;
//! - post → last delivery p50/p99: for each message, from the moment its POST was sent to the
//!   moment the LAST of the K streams received it (when the whole group has it), also from the
//!   scheduled send time (a slow server cannot hide queueing: no coordinated omission) and to
//!   the first delivery;
//! - lost and duplicates, per (stream, message): an acknowledged message missing from a stream
//!   is one loss, a second copy on a stream that already had it one duplicate. Messages are
//!   identified by the `id` in the event's data JSON; ids that no 201 answered are
//!   `unexpected`. Named events (`event: member`, `event: conversation`, ...) are not messages:
//!   they are counted, never matched;
//! - the ratio of deliveries/s to the minimal server's SSE broadcast deliveries/s (the figure
//!   `resume` compares with).
//!
//! Set-up (untimed): K members log in; member 0 creates the group with the first `--chunk`
//! usernames and adds the rest in chunks (request bodies are limited, 16 KB by default). Then
//! `--workers` child processes (`courier-bench fanout-worker`, JSON lines over stdin/stdout as
//! in `idle`; one process may hold at most 20,000 open files here) open one stream per member,
//! and a warm-up message into the group must reach every stream before the clock starts.
//!
//! Clocks: deliveries are timed in the workers, POSTs in the parent, so times cross processes
//! as nanoseconds since the Unix epoch. Each process reads the system clock once and advances
//! it with its own monotonic clock; processes on one machine share that system clock, so an
//! interval between two processes is exact to well under a microsecond unless the system clock
//! is stepped while they start.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::child::WorkerProcess;
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use reqwest::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{
    Nodes, PostTarget, SseStream, StreamTarget, bearer, http_client, login_many, parse_msg,
    post_content,
};
use crate::report::{
    Report, cpu_seconds, find_listener_pid, hist_summary, machine_busy_seconds, new_hist, ratio,
    record,
};
use crate::scenarios::idle::{PER_WORKER, port_range};
use crate::{CeilingOpts, Common, FanoutArgs, ceiling};

/// Wall-clock nanoseconds comparable across the bench's processes (see the module docs).
#[derive(Clone, Copy)]
struct Clock {
    at: Instant,
    unix_ns: u64,
}

impl Clock {
    fn new() -> Clock {
        let at = Instant::now();
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock { at, unix_ns }
    }

    fn ns(&self, t: Instant) -> u64 {
        self.unix_ns + t.saturating_duration_since(self.at).as_nanos() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Accounting (pure)

/// What some streams saw of one message id.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct IdAgg {
    /// Streams that received it at least once.
    streams: u64,
    /// Copies received, duplicates included.
    copies: u64,
    /// Earliest and latest *first* receipt over those streams (ns, see [`Clock`]).
    first_ns: u64,
    last_ns: u64,
}

impl IdAgg {
    fn merge(&mut self, o: &IdAgg) {
        self.streams += o.streams;
        self.copies += o.copies;
        self.first_ns = self.first_ns.min(o.first_ns);
        self.last_ns = self.last_ns.max(o.last_ns);
    }
}

/// Fold one stream's receipts `(message id, receive time)` into the per-id aggregate. Only a
/// stream's first copy of an id counts for timing: a late duplicate does not make a message
/// "delivered later", it is counted as a duplicate.
fn fold_stream(recs: &[(String, u64)], agg: &mut HashMap<String, IdAgg>) {
    let mut seen: HashSet<&str> = HashSet::with_capacity(recs.len());
    for (id, t) in recs {
        let first = seen.insert(id.as_str());
        let e = match agg.get_mut(id.as_str()) {
            Some(e) => e,
            None => agg.entry(id.clone()).or_insert(IdAgg {
                streams: 0,
                copies: 0,
                first_ns: u64::MAX,
                last_ns: 0,
            }),
        };
        e.copies += 1;
        if first {
            e.streams += 1;
            e.first_ns = e.first_ns.min(*t);
            e.last_ns = e.last_ns.max(*t);
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// (stream, message) pairs acknowledged 201 but never received.
    lost: u64,
    /// Extra copies of a message on a stream that already had it.
    duplicates: u64,
    /// Acknowledged messages that reached all K streams.
    complete: u64,
    /// Ids that no 201 answered (e.g. a POST that timed out on the client but was stored), and
    /// their copies.
    unexpected_ids: u64,
    unexpected_copies: u64,
    /// For each complete message: (seq, first receipt ns, last first-receipt ns).
    complete_times: Vec<(usize, u64, u64)>,
}

/// Check the merged receipts against the acknowledged messages (`id → seq`), K streams each.
fn tally(expected: &HashMap<String, usize>, agg: &HashMap<String, IdAgg>, k: u64) -> Tally {
    let mut t = Tally::default();
    for (id, &seq) in expected {
        let Some(a) = agg.get(id) else {
            t.lost += k;
            continue;
        };
        let streams = a.streams.min(k);
        t.lost += k - streams;
        t.duplicates += a.copies - a.streams;
        if streams == k {
            t.complete += 1;
            t.complete_times.push((seq, a.first_ns, a.last_ns));
        }
    }
    for (id, a) in agg {
        if !expected.contains_key(id) {
            t.unexpected_ids += 1;
            t.unexpected_copies += a.copies;
        }
    }
    t.complete_times.sort_unstable();
    t
}

// ---------------------------------------------------------------------------------------------
// The worker process

#[derive(Serialize, Deserialize)]
struct WorkerCfg {
    /// `/api/messages` of each node; the stream of member `offset + i` goes to node
    /// `(offset + i) % len`.
    stream_urls: Vec<String>,
    offset: usize,
    /// One member token per stream.
    tokens: Vec<String>,
    src_ips: Vec<IpAddr>,
    connect_concurrency: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Cmd {
    /// Answer `watching`, then `warm` once every stream has seen the message `W<round>` (or the
    /// timeout passed).
    Warm {
        round: u64,
        timeout_ms: u64,
    },
    Status,
    /// Hand over (and forget) every receipt since the last report, aggregated per message id.
    Report,
    Quit,
}

#[derive(Default)]
struct Slot {
    /// `(message id, receive time ns)` of every message event, in arrival order.
    recs: Mutex<Vec<(String, u64)>>,
    /// Highest warm-up round seen.
    warm: AtomicU64,
    alive: AtomicBool,
}

struct WorkerState {
    clock: Clock,
    slots: Vec<Slot>,
    /// Message events recorded since the last report.
    events: AtomicU64,
    named: AtomicU64,
    reconnects: AtomicU64,
    /// Failed reconnection attempts (50 ms apart), and the first reasons.
    reconnect_failures: AtomicU64,
    first_drop: Mutex<Option<String>>,
    first_reconnect_error: Mutex<Option<String>>,
    opened: AtomicU64,
    failed: AtomicU64,
    first_err: Mutex<Option<String>>,
}

async fn hold_stream(
    st: Arc<WorkerState>,
    i: usize,
    client: Client,
    t: StreamTarget,
    sem: Arc<tokio::sync::Semaphore>,
) {
    let permit = sem.acquire_owned().await;
    let mut s = None;
    for attempt in 0..3u32 {
        match SseStream::connect(&client, &t, None).await {
            Ok(x) => {
                s = Some(x);
                break;
            }
            Err(e) => {
                st.first_err
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    let Some(mut s) = s else {
        st.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    drop(permit);
    let slot = &st.slots[i];
    slot.alive.store(true, Ordering::Relaxed);
    st.opened.fetch_add(1, Ordering::Relaxed);
    loop {
        match s.next_event().await {
            Ok(Some(ev)) => {
                if ev.event.is_some() {
                    st.named.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(m) = parse_msg(&ev.data) else {
                    continue;
                };
                if let Some(round) = m.content.strip_prefix('W').and_then(|r| r.parse().ok()) {
                    slot.warm.fetch_max(round, Ordering::Relaxed);
                    continue;
                }
                let at = st.clock.ns(s.received_at);
                slot.recs.lock().unwrap().push((m.id.into_string(), at));
                st.events.fetch_add(1, Ordering::Relaxed);
            }
            end => {
                // Like a real client: resume from the last id seen, so a loss is the server's.
                slot.alive.store(false, Ordering::Relaxed);
                st.reconnects.fetch_add(1, Ordering::Relaxed);
                let why = match end {
                    Err(e) => format!("{e:#}"),
                    _ => "the server ended the stream".into(),
                };
                st.first_drop.lock().unwrap().get_or_insert(why);
                let last = s.parser.last_id.clone();
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match SseStream::connect(&client, &t, last.as_deref()).await {
                        Ok(n) => {
                            s = n;
                            s.parser.last_id = last;
                            break;
                        }
                        Err(e) => {
                            st.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                            st.first_reconnect_error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                slot.alive.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// `courier-bench fanout-worker`: reads its config on stdin, opens its streams, answers
/// commands (one JSON line each) until `quit` or the end of stdin.
pub async fn worker() -> Result<()> {
    crate::raise_nofile();
    let clock = Clock::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let cfg: WorkerCfg = serde_json::from_str(&lines.next_line().await?.context("no config")?)?;
    let clients = if cfg.src_ips.is_empty() {
        vec![http_client(None)?]
    } else {
        cfg.src_ips
            .iter()
            .map(|ip| http_client(Some(*ip)))
            .collect::<Result<Vec<_>>>()?
    };
    let n = cfg.tokens.len();
    let st = Arc::new(WorkerState {
        clock,
        slots: (0..n).map(|_| Slot::default()).collect(),
        events: AtomicU64::new(0),
        named: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        reconnect_failures: AtomicU64::new(0),
        first_drop: Mutex::new(None),
        first_reconnect_error: Mutex::new(None),
        opened: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_err: Mutex::new(None),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.connect_concurrency.max(1)));
    for i in 0..n {
        let g = cfg.offset + i;
        let t = StreamTarget {
            url: cfg.stream_urls[g % cfg.stream_urls.len()].clone(),
            auth: Some(bearer(&cfg.tokens[i])?),
        };
        tokio::spawn(hold_stream(
            st.clone(),
            i,
            clients[i % clients.len()].clone(),
            t,
            sem.clone(),
        ));
    }
    let out = |v: Value| println!("{v}");
    let mut last_print = Instant::now();
    loop {
        let (o, f) = (
            st.opened.load(Ordering::Relaxed),
            st.failed.load(Ordering::Relaxed),
        );
        if o + f >= n as u64 {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            out(json!({ "type": "progress", "opened": o, "failed": f }));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out(json!({
        "type": "ready",
        "opened": st.opened.load(Ordering::Relaxed),
        "failed": st.failed.load(Ordering::Relaxed),
        "error": st.first_err.lock().unwrap().clone(),
    }));
    while let Ok(Some(l)) = lines.next_line().await {
        match serde_json::from_str::<Cmd>(&l)? {
            Cmd::Warm { round, timeout_ms } => {
                out(json!({ "type": "watching" }));
                let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                loop {
                    let warmed = st
                        .slots
                        .iter()
                        .filter(|s| s.warm.load(Ordering::Relaxed) >= round)
                        .count();
                    if warmed == n || Instant::now() >= deadline {
                        out(json!({ "type": "warm", "warmed": warmed, "of": n }));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Cmd::Status => {
                let alive = st
                    .slots
                    .iter()
                    .filter(|s| s.alive.load(Ordering::Relaxed))
                    .count();
                out(json!({
                    "type": "status",
                    "alive": alive,
                    "events": st.events.load(Ordering::Relaxed),
                    "named": st.named.load(Ordering::Relaxed),
                    "reconnects": st.reconnects.load(Ordering::Relaxed),
                    "reconnect_failures": st.reconnect_failures.load(Ordering::Relaxed),
                    "first_drop": st.first_drop.lock().unwrap().clone(),
                    "first_reconnect_error": st.first_reconnect_error.lock().unwrap().clone(),
                }));
            }
            Cmd::Report => {
                let events = st.events.swap(0, Ordering::Relaxed);
                let mut agg = HashMap::new();
                let mut last_ns = 0u64;
                for s in &st.slots {
                    let recs = std::mem::take(&mut *s.recs.lock().unwrap());
                    last_ns = recs.iter().map(|r| r.1).fold(last_ns, u64::max);
                    fold_stream(&recs, &mut agg);
                }
                out(json!({
                    "type": "report",
                    "events": events,
                    "last_ns": last_ns,
                    "ids": agg.into_iter().collect::<Vec<(String, IdAgg)>>(),
                }));
            }
            Cmd::Quit => break,
        }
    }
    // Do not wait for thousands of stream tasks to be torn down.
    std::process::exit(0)
}

// ---------------------------------------------------------------------------------------------
// The parent

struct Proc {
    io: WorkerProcess,
    pid: Option<u32>,
}

impl Proc {
    async fn send(&mut self, cmd: &Cmd) -> Result<()> {
        self.io.send(cmd).await
    }

    async fn recv(&mut self) -> Result<Value> {
        self.io.recv().await
    }

    /// Receive a line of the given `type`, or fail.
    async fn expect(&mut self, ty: &str) -> Result<Value> {
        let v = self.recv().await?;
        if v["type"] != ty {
            bail!("fanout worker answered {v}, expected {ty}");
        }
        Ok(v)
    }
}

#[derive(Default, Debug)]
struct Status {
    alive: u64,
    events: u64,
    named: u64,
    reconnects: u64,
    reconnect_failures: u64,
    first_drop: Option<String>,
    first_reconnect_error: Option<String>,
}

async fn status(ws: &mut [Proc]) -> Result<Status> {
    for w in ws.iter_mut() {
        w.send(&Cmd::Status).await?;
    }
    let mut s = Status::default();
    for w in ws.iter_mut() {
        let v = w.expect("status").await?;
        let g = |k: &str| v[k].as_u64().unwrap_or(0);
        s.alive += g("alive");
        s.events += g("events");
        s.named += g("named");
        s.reconnects += g("reconnects");
        s.reconnect_failures += g("reconnect_failures");
        let text = |k: &str| v[k].as_str().map(str::to_string);
        s.first_drop = s.first_drop.take().or_else(|| text("first_drop"));
        s.first_reconnect_error = s
            .first_reconnect_error
            .take()
            .or_else(|| text("first_reconnect_error"));
    }
    Ok(s)
}

/// CPU seconds used so far by the server (when local), this process, the workers and the whole
/// machine (whatever else runs on it shows as the difference).
fn cpu_snapshot(server: Option<u32>, ws: &[Proc]) -> [Option<f64>; 4] {
    let workers = ws
        .iter()
        .map(|w| w.pid.and_then(cpu_seconds))
        .sum::<Option<f64>>();
    [
        server.and_then(cpu_seconds),
        cpu_seconds(std::process::id()),
        workers,
        machine_busy_seconds(),
    ]
}

struct RunState {
    run: usize,
    start: Instant,
    ns_per_msg: f64,
    /// When each POST was sent (ns, see [`Clock`]; 0 = not yet).
    post_start_ns: Vec<AtomicU64>,
    /// The id each 201 answered.
    ids: Vec<Mutex<Option<String>>>,
    post_lat: Mutex<Histogram<u64>>,
    dispatch_lag: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: AtomicU64,
    done: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct RunCtx<'a> {
    client: &'a Client,
    clock: Clock,
    posts: Arc<Vec<PostTarget>>,
    k: usize,
    duration: Duration,
    grace: Duration,
    server_pid: Option<u32>,
}

/// One rate: the open-loop schedule, the wait for deliveries, then the workers' receipts
/// checked against the acknowledged ids.
async fn measure_rate(cx: &RunCtx<'_>, ws: &mut [Proc], run: usize, rate: f64) -> Result<Value> {
    let k = cx.k;
    let total = (rate * cx.duration.as_secs_f64()).round().max(1.0) as usize;
    let label = format!("fanout R={rate}");
    let st = Arc::new(RunState {
        run,
        start: Instant::now() + Duration::from_millis(20),
        ns_per_msg: 1e9 / rate,
        post_start_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        ids: (0..total).map(|_| Mutex::new(None)).collect(),
        post_lat: Mutex::new(new_hist()),
        dispatch_lag: Mutex::new(new_hist()),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        done: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let before = status(ws).await?;
    let cpu0 = cpu_snapshot(cx.server_pid, ws);
    let t_cpu = Instant::now();
    // Open loop, as in `latency`: message `seq` is due at start + seq/R whatever happened
    // before it, scheduled on its own OS thread (tokio's 1 ms timer would add its own delay).
    let handle = tokio::runtime::Handle::current();
    let mut sched = {
        let (st, client, posts, clock) =
            (st.clone(), cx.client.clone(), cx.posts.clone(), cx.clock);
        tokio::task::spawn_blocking(move || {
            let mut max_lag = Duration::ZERO;
            for seq in 0..total {
                let due = st.start + Duration::from_nanos((seq as f64 * st.ns_per_msg) as u64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else {
                    max_lag = max_lag.max(now - due);
                }
                let (client, st, posts) = (client.clone(), st.clone(), posts.clone());
                handle.spawn(async move {
                    let t0 = Instant::now();
                    st.post_start_ns[seq].store(clock.ns(t0), Ordering::Relaxed);
                    record(
                        &mut st.dispatch_lag.lock().unwrap(),
                        t0.saturating_duration_since(due),
                    );
                    let target = &posts[seq % posts.len()];
                    let res = post_content(&client, target, &format!("F{}x{seq}", st.run)).await;
                    match res {
                        Ok(Some(id)) => {
                            record(&mut st.post_lat.lock().unwrap(), t0.elapsed());
                            *st.ids[seq].lock().unwrap() = Some(id);
                            st.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            st.errors.fetch_add(1, Ordering::Relaxed);
                            st.first_error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| "201 without a message id".into());
                        }
                        Err(e) => {
                            st.errors.fetch_add(1, Ordering::Relaxed);
                            st.first_error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    st.done.fetch_add(1, Ordering::Relaxed);
                });
            }
            max_lag
        })
    };
    let progress = |st: &RunState, s: &Status| {
        eprintln!(
            "[{label}] t={:.0}s sent={} errors={} deliveries={} / {}",
            st.start.elapsed().as_secs_f64(),
            st.ok.load(Ordering::Relaxed),
            st.errors.load(Ordering::Relaxed),
            s.events - before.events,
            total * k
        )
    };
    let max_lag = loop {
        tokio::select! {
            r = &mut sched => break r?,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let s = status(ws).await?;
                progress(&st, &s);
            }
        }
    };
    let send_elapsed = st.start.elapsed();
    let wait_end = Instant::now() + Duration::from_secs(60);
    while (st.done.load(Ordering::Relaxed) as usize) < total && Instant::now() < wait_end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Deliveries: done when every acknowledged message reached every stream, or when nothing
    // arrived for `grace` (what is missing then counts as lost). A server that is slow but
    // still delivering is waited for, up to 5 minutes.
    let want = st.ok.load(Ordering::Relaxed) * k as u64;
    let (mut seen, mut last_change, mut last_print) = (0, Instant::now(), Instant::now());
    let hard_end = Instant::now() + Duration::from_secs(300);
    loop {
        let s = status(ws).await?;
        let got = s.events - before.events;
        if got >= want || Instant::now() >= hard_end {
            break;
        }
        if got != seen {
            seen = got;
            last_change = Instant::now();
        } else if last_change.elapsed() >= cx.grace {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            progress(&st, &s);
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu1 = cpu_snapshot(cx.server_pid, ws);
    let cpu_wall = t_cpu.elapsed().as_secs_f64();
    // Keep listening a moment for late duplicates.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = status(ws).await?;

    // The receipts of every stream, merged per message id.
    for w in ws.iter_mut() {
        w.send(&Cmd::Report).await?;
    }
    let mut agg: HashMap<String, IdAgg> = HashMap::new();
    let (mut events, mut last_ns) = (0u64, 0u64);
    for w in ws.iter_mut() {
        let v = w.expect("report").await?;
        events += v["events"].as_u64().unwrap_or(0);
        last_ns = last_ns.max(v["last_ns"].as_u64().unwrap_or(0));
        let ids: Vec<(String, IdAgg)> = serde_json::from_value(v["ids"].clone())?;
        for (id, a) in ids {
            agg.entry(id).and_modify(|e| e.merge(&a)).or_insert(a);
        }
    }
    let expected: HashMap<String, usize> = st
        .ids
        .iter()
        .enumerate()
        .filter_map(|(seq, id)| id.lock().unwrap().clone().map(|id| (id, seq)))
        .collect();
    let t = tally(&expected, &agg, k as u64);

    let start_ns = cx.clock.ns(st.start);
    let (mut to_last, mut to_first, mut sched_to_last) = (new_hist(), new_hist(), new_hist());
    for &(seq, first, last) in &t.complete_times {
        let post = st.post_start_ns[seq].load(Ordering::Relaxed);
        let due = start_ns + (seq as f64 * st.ns_per_msg) as u64;
        record(
            &mut to_last,
            Duration::from_nanos(last.saturating_sub(post)),
        );
        record(
            &mut to_first,
            Duration::from_nanos(first.saturating_sub(post)),
        );
        record(
            &mut sched_to_last,
            Duration::from_nanos(last.saturating_sub(due)),
        );
    }
    let window_s = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(1e-9);
    let deliveries_per_s = (events > 0).then(|| (events as f64 / window_s).round());
    let ok = st.ok.load(Ordering::Relaxed);
    let cpu = |i: usize| -> Value {
        match (cpu0[i], cpu1[i]) {
            (Some(a), Some(b)) => json!({
                "cpu_s": ((b - a) * 100.0).round() / 100.0,
                "cores_busy": ((b - a) / cpu_wall * 100.0).round() / 100.0,
            }),
            _ => Value::Null,
        }
    };
    let point = json!({
        "offered_rate": rate,
        "duration_s": cx.duration.as_secs_f64(),
        "scheduled": total,
        "sent": ok,
        "send_errors": st.errors.load(Ordering::Relaxed),
        "first_send_error": st.first_error.lock().unwrap().clone(),
        "achieved_send_rate": (ok as f64 / send_elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "scheduler_max_lag_us": max_lag.as_micros() as u64,
        "offered_deliveries_per_s": (rate * k as f64).round(),
        "expected_deliveries": ok * k as u64,
        "deliveries": events,
        "delivery_window_s": window_s,
        "deliveries_per_s": deliveries_per_s,
        "lost": t.lost,
        "duplicates": t.duplicates,
        "unexpected_ids": t.unexpected_ids,
        "unexpected_copies": t.unexpected_copies,
        "messages_complete": t.complete,
        "messages_incomplete": ok - t.complete,
        "post_to_last_delivery": hist_summary(&to_last),
        "post_to_first_delivery": hist_summary(&to_first),
        "scheduled_to_last_delivery": hist_summary(&sched_to_last),
        "post_latency": hist_summary(&st.post_lat.lock().unwrap()),
        "client_dispatch_lag": hist_summary(&st.dispatch_lag.lock().unwrap()),
        "streams_alive_at_end": after.alive,
        "stream_reconnects": after.reconnects - before.reconnects,
        "stream_reconnect_failures": after.reconnect_failures - before.reconnect_failures,
        "first_stream_drop": after.first_drop,
        "first_reconnect_error": after.first_reconnect_error,
        "named_events": after.named - before.named,
        "cpu": {
            "wall_s": (cpu_wall * 100.0).round() / 100.0,
            "server": cpu(0),
            "bench_parent": cpu(1),
            "bench_workers": cpu(2),
            "whole_machine": cpu(3),
        },
    });
    eprintln!(
        "[{label}] sent {ok}, deliveries {events} / {} in {window_s:.2}s ({} /s), lost {}, duplicates {}, post→last p50 {} µs, p99 {} µs",
        ok * k as u64,
        deliveries_per_s.unwrap_or(0.0),
        t.lost,
        t.duplicates,
        point
            .pointer("/post_to_last_delivery/p50_us")
            .unwrap_or(&Value::Null),
        point
            .pointer("/post_to_last_delivery/p99_us")
            .unwrap_or(&Value::Null),
    );
    Ok(point)
}

pub async fn run(common: &Common, args: &FanoutArgs) -> Result<()> {
    crate::raise_nofile();
    let k = args.members;
    if k < 2 {
        bail!("a group needs at least 2 members (-k)");
    }
    let s = args.senders.clamp(1, k);
    let chunk = args.chunk.max(1);
    let workers = args.workers.clamp(1, k);
    let per = k.div_ceil(workers);
    if per > PER_WORKER {
        bail!(
            "{per} streams per worker process; one process may hold at most ~19,900 sockets here: use --workers {} or more",
            k.div_ceil(PER_WORKER)
        );
    }
    let client = http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    eprintln!(
        "fanout: prefix {prefix}, group of {k} members, {s} senders, rates {:?}, {}s each, {workers} worker processes, {} node(s)",
        args.rates,
        args.duration,
        nodes.count()
    );

    let t0 = Instant::now();
    let members = login_many(
        &nodes,
        (0..k).map(|i| format!("{prefix}_m{i}")).collect(),
        64,
    )
    .await?;
    let login_s = t0.elapsed().as_secs_f64();

    // The group: member 0 creates it with the first chunk, then adds the rest chunk by chunk
    // (chunk c on node c + 1).
    let t0 = Instant::now();
    let owner = &members[0].token;
    let others: Vec<String> = members[1..].iter().map(|m| m.username.clone()).collect();
    let (first, rest) = others.split_at(chunk.min(others.len()));
    let created = nodes
        .get(0)
        .create_group(owner, first, &format!("Bench group {prefix}"))
        .await?;
    let gid = match &created["id"] {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        v => bail!("group id is not a string: {v}"),
    };
    if created["kind"] != "group" {
        eprintln!(
            "fanout: warning: the new conversation's kind is {}",
            created["kind"]
        );
    }
    let n_chunks = rest.len().div_ceil(chunk);
    for (c, ch) in rest.chunks(chunk).enumerate() {
        nodes.get(c + 1).add_members(owner, &gid, ch).await?;
        if (c + 1) % 5 == 0 || c + 1 == n_chunks {
            eprintln!(
                "[fanout] group {gid}: added member chunk {}/{n_chunks}",
                c + 1
            );
        }
    }
    let group_s = t0.elapsed().as_secs_f64();
    // What the server says the group holds (the warm-up below is the proof that counts).
    let member_count = tokio::time::timeout(
        Duration::from_secs(10),
        nodes
            .get(0)
            .get_json(owner, &format!("/api/conversations/{gid}")),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .and_then(|v| v["memberCount"].as_u64())
    .or(created["memberCount"].as_u64().filter(|_| rest.is_empty()));
    eprintln!(
        "[fanout] group {gid} created in {group_s:.1}s; memberCount {}",
        member_count.map_or("not reported".into(), |n| n.to_string())
    );
    if member_count.is_some_and(|n| n != k as u64) {
        eprintln!("fanout: warning: the server reports {member_count:?} members, expected {k}");
    }

    // The streams, over the worker processes, all opening at once.
    let stream_urls: Vec<String> = (0..nodes.count())
        .map(|i| nodes.get(i).url("/api/messages"))
        .collect();
    let n_ips = args
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
    let t0 = Instant::now();
    let mut ws: Vec<Proc> = Vec::new();
    for w in 0..workers {
        let offset = w * per;
        let count = per.min(k.saturating_sub(offset));
        if count == 0 {
            break;
        }
        let cfg = WorkerCfg {
            stream_urls: stream_urls.clone(),
            offset,
            tokens: members[offset..offset + count]
                .iter()
                .map(|m| m.token.clone())
                .collect(),
            src_ips: ips.clone(),
            connect_concurrency: args.connect_concurrency,
        };
        let io = WorkerProcess::spawn("fanout-worker", &cfg).await?;
        let pid = io.child.id();
        ws.push(Proc { io, pid });
    }
    let (mut opened, mut failed, mut errors) = (0u64, 0u64, Vec::new());
    for (w, wk) in ws.iter_mut().enumerate() {
        loop {
            let v = wk.recv().await?;
            match v["type"].as_str() {
                Some("progress") => eprintln!(
                    "[fanout] worker {w}: opened {}, failed {} (t={:.1}s)",
                    v["opened"],
                    v["failed"],
                    t0.elapsed().as_secs_f64()
                ),
                Some("ready") => {
                    opened += v["opened"].as_u64().unwrap_or(0);
                    failed += v["failed"].as_u64().unwrap_or(0);
                    if let Some(e) = v["error"].as_str() {
                        errors.push(format!("worker {w}: {e}"));
                    }
                    break;
                }
                _ => bail!("unexpected fanout worker line {v}"),
            }
        }
    }
    let streams_s = t0.elapsed().as_secs_f64();
    if opened < k as u64 {
        bail!("only {opened} of {k} streams opened ({failed} failed): {errors:?}");
    }
    eprintln!("[fanout] {opened} streams open in {streams_s:.1}s");

    // Sender j is member j and POSTs on node j + 1 (with several nodes, the group's messages
    // then cross the bus to most streams).
    let posts: Vec<PostTarget> = (0..s)
        .map(|j| nodes.get(j + 1).messages_target(&gid, &members[j].token))
        .collect::<Result<_>>()?;

    // Warm-up: one message into the group must reach every stream (a stream whose response
    // head arrived may not be subscribed yet; a few rounds allow for that).
    let mut warmed = 0u64;
    let mut warm_ms = 0.0;
    for round in 1..=3u64 {
        for w in ws.iter_mut() {
            w.send(&Cmd::Warm {
                round,
                timeout_ms: 15_000,
            })
            .await?;
        }
        for w in ws.iter_mut() {
            w.expect("watching").await?;
        }
        let t0 = Instant::now();
        post_content(&client, &posts[0], &format!("W{round}"))
            .await
            .context("warm-up message into the group")?;
        warmed = 0;
        for w in ws.iter_mut() {
            warmed += w.expect("warm").await?["warmed"].as_u64().unwrap_or(0);
        }
        warm_ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!("[fanout] warm-up {round}: {warmed}/{k} streams received it in {warm_ms:.0} ms");
        if warmed == k as u64 {
            break;
        }
    }
    if warmed < k as u64 {
        bail!("only {warmed} of {k} streams received the warm-up message");
    }

    let server_pid = (urls.len() == 1)
        .then(|| find_listener_pid(&urls[0]))
        .flatten();
    let cx = RunCtx {
        client: &client,
        clock: Clock::new(),
        posts: Arc::new(posts),
        k,
        duration: Duration::from_secs_f64(args.duration),
        grace: Duration::from_secs_f64(args.grace),
        server_pid,
    };
    let mut points = Vec::new();
    for (run, &rate) in args.rates.iter().enumerate() {
        points.push(measure_rate(&cx, &mut ws, run, rate).await?);
    }
    for w in ws.iter_mut() {
        let _ = w.send(&Cmd::Quit).await;
    }
    for mut w in ws {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.io.child.wait()).await;
    }

    // The ceiling: the minimal server broadcasting as fast as it can to as many streams (one
    // client process, so at most PER_WORKER), as many events as one rate's messages (≤ 200).
    let max_rate = args.rates.iter().cloned().fold(0.0, f64::max);
    let ceil = ceiling::obtain(
        common,
        &CeilingOpts {
            sse_streams: Some(k.min(PER_WORKER)),
            sse_events: Some((max_rate * args.duration).round().clamp(20.0, 200.0) as u64),
            ..Default::default()
        },
    )
    .await?;
    let ceil_rate = ceil
        .pointer("/sse_deliveries/deliveries_per_s")
        .and_then(Value::as_f64);
    let ratios: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({
                "offered_rate": p["offered_rate"],
                "deliveries_per_s_vs_sse_ceiling": ratio(p["deliveries_per_s"].as_f64(), ceil_rate),
            })
        })
        .collect();
    let report = Report {
        scenario: "fanout".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "members": k, "rates": args.rates, "duration_s": args.duration, "senders": s,
            "workers": workers, "grace_s": args.grace, "chunk": chunk,
            "source_addresses": ips.len().max(1), "prefix": prefix, "base_urls": urls,
        }),
        figures: json!({
            "group_id": gid,
            "member_count_reported": member_count,
            "streams_open": opened,
            "server_pid": server_pid,
            "setup": {
                "login_s": login_s,
                "group_s": group_s,
                "streams_open_s": streams_s,
                "warmup_to_all_ms": (warm_ms * 10.0).round() / 10.0,
            },
            "rates": points,
        }),
        ratios: json!({ "rates": ratios }),
        ceiling: ceil,
    };
    report.emit(common.out.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(i, t)| (i.to_string(), *t)).collect()
    }

    #[test]
    fn a_stream_counts_once_per_id_and_times_its_first_copy() {
        let mut agg = HashMap::new();
        fold_stream(&recs(&[("1", 10), ("2", 12), ("1", 50)]), &mut agg);
        fold_stream(&recs(&[("1", 20), ("2", 11)]), &mut agg);
        assert_eq!(
            agg["1"],
            IdAgg {
                streams: 2,
                copies: 3,
                first_ns: 10,
                last_ns: 20
            }
        );
        assert_eq!(
            agg["2"],
            IdAgg {
                streams: 2,
                copies: 2,
                first_ns: 11,
                last_ns: 12
            }
        );
    }

    #[test]
    fn merging_workers_adds_streams_and_widens_times() {
        let mut a = IdAgg {
            streams: 2,
            copies: 2,
            first_ns: 5,
            last_ns: 9,
        };
        a.merge(&IdAgg {
            streams: 3,
            copies: 4,
            first_ns: 7,
            last_ns: 30,
        });
        assert_eq!(
            a,
            IdAgg {
                streams: 5,
                copies: 6,
                first_ns: 5,
                last_ns: 30
            }
        );
    }

    #[test]
    fn tally_counts_losses_duplicates_and_strangers() {
        // Three streams; "1" reached all (one duplicate), "2" two of them, "3" none; "9" was
        // never acknowledged.
        let mut agg = HashMap::new();
        fold_stream(
            &recs(&[("1", 100), ("2", 101), ("1", 150), ("9", 1)]),
            &mut agg,
        );
        fold_stream(&recs(&[("1", 103), ("2", 104)]), &mut agg);
        fold_stream(&recs(&[("1", 120)]), &mut agg);
        let expected: HashMap<String, usize> = [
            ("1".to_string(), 0),
            ("2".to_string(), 1),
            ("3".to_string(), 2),
        ]
        .into();
        let t = tally(&expected, &agg, 3);
        assert_eq!(t.lost, 1 + 3);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.complete, 1);
        assert_eq!(t.complete_times, vec![(0, 100, 120)]);
        assert_eq!((t.unexpected_ids, t.unexpected_copies), (1, 1));
    }

    #[test]
    fn a_perfect_run_tallies_clean() {
        let mut agg = HashMap::new();
        for s in 0..4u64 {
            fold_stream(&recs(&[("7", 10 + s), ("8", 20 + s)]), &mut agg);
        }
        let expected: HashMap<String, usize> = [("7".to_string(), 0), ("8".to_string(), 1)].into();
        let t = tally(&expected, &agg, 4);
        assert_eq!((t.lost, t.duplicates, t.unexpected_ids), (0, 0, 0));
        assert_eq!(t.complete_times, vec![(0, 10, 13), (1, 20, 23)]);
    }
}
