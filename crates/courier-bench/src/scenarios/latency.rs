//! `latency`: P sender/receiver pairs, receivers holding streams, open-loop total rate R for T
//! seconds. Latency is measured from the message's *scheduled* send time (so a slow server
//! cannot hide queueing: no coordinated omission) and also from the actual POST start, to
//! receipt of the event on the recipient's stream. Messages are matched by a content tag
//! `L<run>x<seq>`.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use reqwest::Client;
use serde_json::{Value, json};

use crate::client::{
    Nodes, PostTarget, SseStream, StreamTarget, conversations_many, login_many, parse_msg,
    post_content,
};
use crate::report::{Report, hist_summary, new_hist, ratio, record, spawn_progress};
use crate::{CeilingOpts, Common, LatencyArgs, ceiling};

#[derive(Clone)]
pub struct Pair {
    pub post: PostTarget,
    pub stream: StreamTarget,
}

struct RunState {
    run: u32,
    start: Instant,
    ns_per_msg: f64,
    post_start_ns: Vec<AtomicU64>,
    received: Vec<AtomicU8>,
    sent_ok: Vec<AtomicBool>,
    e2e_sched: Mutex<Histogram<u64>>,
    e2e_post: Mutex<Histogram<u64>>,
    post_lat: Mutex<Histogram<u64>>,
    dispatch_lag: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    done: AtomicU64,
}

struct Shared {
    current: RwLock<Option<Arc<RunState>>>,
    warmed: Vec<AtomicBool>,
    warm_count: AtomicU64,
    connected: AtomicU64,
    stream_errors: AtomicU64,
    reconnects: AtomicU64,
    other_events: AtomicU64,
}

fn on_event(shared: &Shared, idx: usize, content: &str, at: Instant) {
    if let Some(rest) = content.strip_prefix('W') {
        if rest.parse::<usize>().ok() == Some(idx)
            && !shared.warmed[idx].swap(true, Ordering::Relaxed)
        {
            shared.warm_count.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let Some(rest) = content.strip_prefix('L') else {
        shared.other_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some((run, seq)) = rest.split_once('x') else {
        return;
    };
    let (Ok(run), Ok(seq)) = (run.parse::<u32>(), seq.parse::<usize>()) else {
        return;
    };
    let cur = shared.current.read().unwrap().clone();
    let Some(st) = cur.filter(|s| s.run == run) else {
        return;
    };
    if seq >= st.received.len() {
        return;
    }
    if st.received[seq].fetch_add(1, Ordering::Relaxed) > 0 {
        st.duplicates.fetch_add(1, Ordering::Relaxed);
        return;
    }
    st.delivered.fetch_add(1, Ordering::Relaxed);
    let sched = st.start + Duration::from_nanos((seq as f64 * st.ns_per_msg) as u64);
    record(
        &mut st.e2e_sched.lock().unwrap(),
        at.saturating_duration_since(sched),
    );
    let ps = st.post_start_ns[seq].load(Ordering::Relaxed);
    if ps > 0 {
        let post_start = st.start + Duration::from_nanos(ps);
        record(
            &mut st.e2e_post.lock().unwrap(),
            at.saturating_duration_since(post_start),
        );
    }
}

/// Connect every pair's stream, prove each is subscribed with one warm-up message, then run
/// each rate in turn. Returns one JSON point per rate.
pub async fn measure(
    client: &Client,
    pairs: &[Pair],
    rates: &[f64],
    duration: Duration,
    grace: Duration,
    label: &str,
) -> Result<Vec<Value>> {
    let runs = measure_runs(client, pairs, rates, duration, grace, label).await?;
    Ok(runs.into_iter().map(|run| run.point).collect())
}

/// One rate's run: its JSON point, and every message's latency from its scheduled send time
/// (for callers that pool several runs into one distribution).
pub struct Run {
    pub point: Value,
    pub e2e: Histogram<u64>,
}

/// [`measure`], keeping each run's latency histogram.
pub async fn measure_runs(
    client: &Client,
    pairs: &[Pair],
    rates: &[f64],
    duration: Duration,
    grace: Duration,
    label: &str,
) -> Result<Vec<Run>> {
    let p = pairs.len();
    let shared = Arc::new(Shared {
        current: RwLock::new(None),
        warmed: (0..p).map(|_| AtomicBool::new(false)).collect(),
        warm_count: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        stream_errors: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        other_events: AtomicU64::new(0),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut receivers = Vec::with_capacity(p);
    for (idx, pair) in pairs.iter().enumerate() {
        let (client, t, shared, sem) = (
            client.clone(),
            pair.stream.clone(),
            shared.clone(),
            sem.clone(),
        );
        receivers.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await;
            let mut s = match SseStream::connect(&client, &t, None).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("stream {idx}: {e:#}");
                    shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            drop(permit);
            shared.connected.fetch_add(1, Ordering::Relaxed);
            // Like a real client: when the server ends the stream (e.g. a slow reader is cut
            // off), reconnect with Last-Event-ID. Losses then are real losses.
            loop {
                match s.next_event().await {
                    Ok(Some(ev)) => {
                        if ev.event.is_some() {
                            continue;
                        }
                        if let Some(m) = parse_msg(&ev.data) {
                            on_event(&shared, idx, &m.content, s.received_at);
                        }
                    }
                    Ok(None) | Err(_) => {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        let last = s.parser.last_id.clone();
                        loop {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if let Ok(n) = SseStream::connect(&client, &t, last.as_deref()).await {
                                s = n;
                                s.parser.last_id = last;
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    let t0 = Instant::now();
    while shared.connected.load(Ordering::Relaxed) + shared.stream_errors.load(Ordering::Relaxed)
        < p as u64
    {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "only {} of {p} streams connected",
                shared.connected.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if shared.stream_errors.load(Ordering::Relaxed) > 0 {
        bail!(
            "{} of {p} streams failed to connect",
            shared.stream_errors.load(Ordering::Relaxed)
        );
    }
    // Warm-up: one message per pair, proving every stream is subscribed.
    futures::future::join_all(pairs.iter().enumerate().map(|(i, pair)| async move {
        for _ in 0..3 {
            if post_content(client, &pair.post, &format!("W{i}"))
                .await
                .is_ok()
            {
                break;
            }
        }
    }))
    .await;
    let t0 = Instant::now();
    while shared.warm_count.load(Ordering::Relaxed) < p as u64 {
        if t0.elapsed() > Duration::from_secs(15) {
            bail!(
                "only {} of {p} streams received their warm-up message within 15 s",
                shared.warm_count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("[{label}] {p} streams connected and warmed up");

    let mut points = Vec::new();
    for (run, &rate) in rates.iter().enumerate() {
        let total = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
        let st = Arc::new(RunState {
            run: run as u32,
            start: Instant::now() + Duration::from_millis(20),
            ns_per_msg: 1e9 / rate,
            post_start_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
            received: (0..total).map(|_| AtomicU8::new(0)).collect(),
            sent_ok: (0..total).map(|_| AtomicBool::new(false)).collect(),
            e2e_sched: Mutex::new(new_hist()),
            e2e_post: Mutex::new(new_hist()),
            post_lat: Mutex::new(new_hist()),
            dispatch_lag: Mutex::new(new_hist()),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            done: AtomicU64::new(0),
        });
        let rc0 = shared.reconnects.load(Ordering::Relaxed);
        *shared.current.write().unwrap() = Some(st.clone());
        let prog = {
            let st = st.clone();
            spawn_progress(format!("{label} R={rate}"), move || {
                format!(
                    "sent={} errors={} delivered={} / {total}",
                    st.ok.load(Ordering::Relaxed),
                    st.errors.load(Ordering::Relaxed),
                    st.delivered.load(Ordering::Relaxed)
                )
            })
        };
        // Open loop: message `seq` is due at start + seq/R, whatever happened before it. The
        // schedule runs on its own OS thread with std::thread::sleep (tens of µs of slack),
        // not tokio's 1 ms timer wheel, which would add up to ~1-2 ms of client-side delay.
        let posts: Arc<Vec<PostTarget>> = Arc::new(pairs.iter().map(|x| x.post.clone()).collect());
        let handle = tokio::runtime::Handle::current();
        let sched = {
            let (st, client) = (st.clone(), client.clone());
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
                        st.post_start_ns[seq]
                            .store((t0 - st.start).as_nanos().max(1) as u64, Ordering::Relaxed);
                        record(
                            &mut st.dispatch_lag.lock().unwrap(),
                            t0.saturating_duration_since(due),
                        );
                        let target = &posts[seq % posts.len()];
                        match post_content(&client, target, &format!("L{}x{seq}", st.run)).await {
                            Ok(_) => {
                                record(&mut st.post_lat.lock().unwrap(), t0.elapsed());
                                st.sent_ok[seq].store(true, Ordering::Relaxed);
                                st.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                st.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        st.done.fetch_add(1, Ordering::Relaxed);
                    });
                }
                max_lag
            })
        };
        let max_lag = sched.await?;
        let send_elapsed = st.start.elapsed();
        // Wait for every POST to finish, then a grace period for stragglers.
        let wait_end = Instant::now() + Duration::from_secs(60);
        while (st.done.load(Ordering::Relaxed) as usize) < total && Instant::now() < wait_end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let grace_end = Instant::now() + grace;
        while st.delivered.load(Ordering::Relaxed) < st.ok.load(Ordering::Relaxed)
            && Instant::now() < grace_end
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        *shared.current.write().unwrap() = None;
        prog.abort();
        let lost = (0..total)
            .filter(|&i| {
                st.sent_ok[i].load(Ordering::Relaxed) && st.received[i].load(Ordering::Relaxed) == 0
            })
            .count();
        let ok = st.ok.load(Ordering::Relaxed);
        let point = json!({
            "offered_rate": rate,
            "duration_s": duration.as_secs_f64(),
            "scheduled": total,
            "sent": ok,
            "send_errors": st.errors.load(Ordering::Relaxed),
            "achieved_send_rate": (ok as f64 / send_elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "scheduler_max_lag_us": max_lag.as_micros() as u64,
            "delivered": st.delivered.load(Ordering::Relaxed),
            "lost": lost,
            "duplicates": st.duplicates.load(Ordering::Relaxed),
            "stream_reconnects": shared.reconnects.load(Ordering::Relaxed) - rc0,
            "e2e_from_scheduled": hist_summary(&st.e2e_sched.lock().unwrap()),
            "e2e_from_post_start": hist_summary(&st.e2e_post.lock().unwrap()),
            "post_latency": hist_summary(&st.post_lat.lock().unwrap()),
            "client_dispatch_lag": hist_summary(&st.dispatch_lag.lock().unwrap()),
        });
        eprintln!(
            "[{label}] R={rate}: sent {ok}, delivered {}, lost {lost}, p50 {} µs, p99 {} µs",
            st.delivered.load(Ordering::Relaxed),
            point
                .pointer("/e2e_from_scheduled/p50_us")
                .unwrap_or(&Value::Null),
            point
                .pointer("/e2e_from_scheduled/p99_us")
                .unwrap_or(&Value::Null),
        );
        let e2e = std::mem::replace(&mut *st.e2e_sched.lock().unwrap(), new_hist());
        points.push(Run { point, e2e });
    }
    for r in receivers {
        r.abort();
    }
    Ok(points)
}

pub async fn run(common: &Common, args: &LatencyArgs) -> Result<()> {
    crate::raise_nofile();
    let client = crate::client::http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    let p = args.pairs;
    eprintln!(
        "latency: prefix {prefix}, {p} pairs, rates {:?}, {}s each, {} node(s)",
        args.rates,
        args.duration,
        nodes.count()
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
    // Pair i: the receiver's stream on node i, the sender's POSTs on node i + 1 (modulo the
    // nodes), so with several nodes every delivery crosses the bus between nodes.
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
    let points = measure(
        &client,
        &pairs,
        &args.rates,
        Duration::from_secs_f64(args.duration),
        Duration::from_secs_f64(args.grace),
        "latency",
    )
    .await?;

    let ceil = ceiling::obtain(
        common,
        &CeilingOpts {
            latency_pairs: Some(p),
            latency_rates: Some(args.rates.clone()),
            latency_duration: Some(args.duration.min(3.0)),
            ..Default::default()
        },
    )
    .await?;
    let ratios: Vec<Value> = points
        .iter()
        .map(|pt| {
            let rate = pt["offered_rate"].as_f64();
            let cp = ceil
                .get("sse_latency")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["offered_rate"].as_f64() == rate));
            let g = |v: Option<&Value>, k: &str| {
                v.and_then(|v| v.pointer(&format!("/e2e_from_scheduled/{k}")))
                    .and_then(Value::as_f64)
            };
            json!({
                "offered_rate": rate,
                "p50_vs_ceiling": ratio(g(Some(pt), "p50_us"), g(cp, "p50_us")),
                "p99_vs_ceiling": ratio(g(Some(pt), "p99_us"), g(cp, "p99_us")),
            })
        })
        .collect();
    let report = Report {
        scenario: "latency".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "pairs": p, "rates": args.rates, "duration_s": args.duration, "grace_s": args.grace,
            "prefix": prefix, "base_urls": urls,
        }),
        figures: json!({ "rates": points }),
        ceiling: ceil,
        ratios: json!({ "rates": ratios }),
    };
    report.emit(common.out.as_deref())?;
    if let Some(path) = &args.plot {
        crate::plot::plot_reports(&[report.to_json()], path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
