//! `resume`: K streams each miss M messages, then all reconnect at once with `Last-Event-ID`.
//! Reports the time until every stream has caught up, and checks the exact set of message ids
//! each stream receives: nothing lost, nothing duplicated, nothing unexpected.
//!
//! Set-up (untimed): K receiver users and S sender users; receiver i talks with sender i % S.
//! Each stream connects, receives one baseline message and records its `id:` cursor, then
//! disconnects; then M messages are posted to each receiver (their ids are the expected sets).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::client::{
    Nodes, SseStream, conversations_many, http_client, login_many, parse_msg, post_content,
};
use crate::report::{Report, hist_summary, new_hist, ratio, record, spawn_progress};
use crate::{CeilingOpts, Common, ResumeArgs, ceiling};

#[derive(Default)]
struct StreamResult {
    caught_up: Option<Duration>,
    got: usize,
    duplicates: u64,
    unexpected: u64,
    resets: u64,
    reconnects: u64,
    connect: Option<Duration>,
    error: Option<String>,
}

pub async fn run(common: &Common, args: &ResumeArgs) -> Result<()> {
    crate::raise_nofile();
    let (k, m, s) = (args.streams, args.missed, args.senders.max(1));
    if k > 18_000 {
        bail!(
            "resume runs in one process, which may hold at most ~19,900 sockets here: use --streams <= 18000"
        );
    }
    let client = http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    eprintln!(
        "resume: prefix {prefix}, {k} streams x {m} missed messages, {s} senders, {} node(s)",
        nodes.count()
    );
    let receivers = login_many(
        &nodes,
        (0..k).map(|i| format!("{prefix}_r{i}")).collect(),
        64,
    )
    .await?;
    let senders = login_many(
        &nodes,
        (0..s).map(|i| format!("{prefix}_s{i}")).collect(),
        32,
    )
    .await?;
    let convs = conversations_many(
        &nodes,
        (0..k)
            .map(|i| (senders[i % s].token.clone(), receivers[i].username.clone()))
            .collect(),
        64,
    )
    .await?;
    // Receiver i: baseline stream on node i, the messages to it POSTed on node i + 1, and the
    // timed reconnect on node i + 2 (modulo the nodes): with three nodes each stream resumes on
    // a node that neither served its first stream nor took its messages.
    let posts = (0..k)
        .map(|i| {
            nodes
                .get(i + 1)
                .messages_target(&convs[i], &senders[i % s].token)
        })
        .collect::<Result<Vec<_>>>()?;
    let baseline_streams = receivers
        .iter()
        .enumerate()
        .map(|(i, r)| nodes.get(i).stream_target(&r.token))
        .collect::<Result<Vec<_>>>()?;
    let streams = receivers
        .iter()
        .enumerate()
        .map(|(i, r)| nodes.get(i + 2).stream_target(&r.token))
        .collect::<Result<Vec<_>>>()?;

    // Baseline: connect, receive one message, remember its cursor, disconnect.
    eprintln!("[resume] baseline: connecting {k} streams");
    let mut conns = futures::stream::iter(
        baseline_streams
            .iter()
            .map(|t| SseStream::connect(&client, t, None)),
    )
    .buffered(256)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>>>()
    .context("baseline connect")?;
    let base_ok = futures::stream::iter(posts.iter().enumerate().map(|(i, p)| {
        let client = client.clone();
        async move { post_content(&client, p, &format!("B{i}")).await }
    }))
    .buffer_unordered(128)
    .collect::<Vec<_>>()
    .await;
    if let Some(e) = base_ok.into_iter().find_map(Result::err) {
        return Err(e.context("baseline message"));
    }
    let cursors: Vec<String> =
        futures::stream::iter(conns.iter_mut().enumerate().map(|(i, st)| async move {
            let want = format!("B{i}");
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(30), st.next_event())
                    .await
                    .context("baseline event timeout")??
                    .context("stream ended before the baseline event")?;
                if parse_msg(&ev.data)
                    .map(|m| m.content == want)
                    .unwrap_or(false)
                {
                    return ev
                        .id
                        .or_else(|| st.parser.last_id.clone())
                        .context("baseline event has no id: line; the server cannot be resumed");
                }
            }
        }))
        .buffered(512)
        .collect::<Vec<Result<String>>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    drop(conns);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The missed messages.
    let total = k * m;
    let posted = Arc::new(AtomicU64::new(0));
    let prog = {
        let p = posted.clone();
        spawn_progress("resume: posting missed messages".into(), move || {
            format!("{}/{total}", p.load(Ordering::Relaxed))
        })
    };
    let mut expected: Vec<HashSet<String>> = (0..k).map(|_| HashSet::with_capacity(m)).collect();
    let mut post_errors = 0u64;
    let t_post = Instant::now();
    let mut results = futures::stream::iter((0..m).flat_map(|r| (0..k).map(move |i| (r, i))).map(
        |(r, i)| {
            let (client, p, posted) = (client.clone(), &posts[i], posted.clone());
            async move {
                let res = post_content(&client, p, &format!("M{i}x{r}")).await;
                posted.fetch_add(1, Ordering::Relaxed);
                (i, res)
            }
        },
    ))
    .buffer_unordered(args.post_concurrency);
    while let Some((i, res)) = results.next().await {
        match res {
            Ok(Some(id)) => {
                expected[i].insert(id);
            }
            Ok(None) => bail!("message response without an id"),
            Err(_) => post_errors += 1,
        }
    }
    drop(results);
    prog.abort();
    let post_elapsed = t_post.elapsed();
    eprintln!(
        "[resume] posted {} messages in {:.1}s ({post_errors} errors); reconnecting {k} streams at once",
        total as u64 - post_errors,
        post_elapsed.as_secs_f64()
    );

    // Timed: everyone reconnects at once with Last-Event-ID.
    let expected: Vec<Arc<HashSet<String>>> = expected.into_iter().map(Arc::new).collect();
    let caught = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(k);
    for i in 0..k {
        let (client, t, exp, caught, received, mut stop) = (
            client.clone(),
            streams[i].clone(),
            expected[i].clone(),
            caught.clone(),
            received.clone(),
            stop_rx.clone(),
        );
        let mut cursor = cursors[i].clone();
        handles.push(tokio::spawn(async move {
            let mut r = StreamResult::default();
            let mut got: HashSet<String> = HashSet::with_capacity(exp.len());
            if exp.is_empty() {
                r.caught_up = Some(Duration::ZERO);
                caught.fetch_add(1, Ordering::Relaxed);
            }
            'outer: loop {
                if *stop.borrow() {
                    break;
                }
                let mut st = tokio::select! {
                    c = SseStream::connect(&client, &t, Some(&cursor)) => match c {
                        Ok(st) => st,
                        Err(e) => {
                            r.error.get_or_insert(format!("{e:#}"));
                            r.reconnects += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                r.connect.get_or_insert(start.elapsed());
                loop {
                    let ev = tokio::select! {
                        ev = st.next_event() => ev,
                        _ = stop.changed() => break 'outer,
                    };
                    let ev = match ev {
                        Ok(Some(ev)) => ev,
                        Ok(None) | Err(_) => {
                            if let Some(id) = &st.parser.last_id {
                                cursor = id.clone();
                            }
                            r.reconnects += 1;
                            continue 'outer;
                        }
                    };
                    if let Some(id) = &ev.id {
                        cursor = id.clone();
                    }
                    if ev.event.as_deref() == Some("reset") {
                        r.resets += 1;
                        continue;
                    }
                    if ev.event.is_some() {
                        continue;
                    }
                    let Some(msg) = parse_msg(&ev.data) else {
                        continue;
                    };
                    let id = msg.id.into_string();
                    if !exp.contains(&id) {
                        r.unexpected += 1;
                    } else if !got.insert(id) {
                        r.duplicates += 1;
                    } else {
                        received.fetch_add(1, Ordering::Relaxed);
                        if got.len() == exp.len() {
                            r.caught_up = Some(st.received_at.duration_since(start));
                            caught.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            r.got = got.len();
            r
        }));
    }
    let expected_total: usize = expected.iter().map(|e| e.len()).sum();
    let prog = {
        let (c, rv) = (caught.clone(), received.clone());
        spawn_progress("resume: catching up".into(), move || {
            format!(
                "streams caught up {}/{k}, messages {}/{expected_total}",
                c.load(Ordering::Relaxed),
                rv.load(Ordering::Relaxed)
            )
        })
    };
    let deadline = start + Duration::from_secs_f64(args.timeout);
    while (caught.load(Ordering::Relaxed) as usize) < k && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_caught = start.elapsed();
    // Grace period: keep listening for late duplicates.
    tokio::time::sleep(Duration::from_secs_f64(args.grace)).await;
    let _ = stop_tx.send(true);
    prog.abort();
    let mut catch_hist = new_hist();
    let mut conn_hist = new_hist();
    let (mut caught_n, mut got, mut dups, mut unexp, mut resets, mut reconnects, mut last_caught) =
        (0u64, 0usize, 0u64, 0u64, 0u64, 0u64, Duration::ZERO);
    let mut first_error = None;
    for h in handles {
        let r = h.await?;
        if let Some(c) = r.caught_up {
            caught_n += 1;
            record(&mut catch_hist, c);
            last_caught = last_caught.max(c);
        }
        if let Some(c) = r.connect {
            record(&mut conn_hist, c);
        }
        got += r.got;
        dups += r.duplicates;
        unexp += r.unexpected;
        resets += r.resets;
        reconnects += r.reconnects;
        if first_error.is_none() {
            first_error = r.error;
        }
    }
    let all_ok = caught_n as usize == k && dups == 0 && unexp == 0;
    let catch_up_s = if caught_n as usize == k {
        Some(last_caught.as_secs_f64())
    } else {
        None
    };
    let rate = catch_up_s.map(|s| expected_total as f64 / s.max(1e-9));
    eprintln!(
        "[resume] {caught_n}/{k} streams caught up; all within {:.3}s; lost {}, duplicates {dups}, unexpected {unexp}",
        all_caught.as_secs_f64(),
        expected_total - got
    );

    let ceil = ceiling::obtain(
        common,
        &CeilingOpts {
            sse_streams: Some(k),
            sse_events: Some(m as u64),
            ..Default::default()
        },
    )
    .await?;
    let ceil_rate = ceil
        .pointer("/sse_deliveries/deliveries_per_s")
        .and_then(Value::as_f64);
    let report = Report {
        scenario: "resume".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "streams": k, "missed": m, "senders": s, "timeout_s": args.timeout, "grace_s": args.grace,
            "post_concurrency": args.post_concurrency, "prefix": prefix, "base_urls": urls,
        }),
        figures: json!({
            "ok": all_ok,
            "catch_up_s": catch_up_s,
            "streams_caught_up": caught_n,
            "expected_messages": expected_total,
            "delivered_unique": got,
            "lost": expected_total - got,
            "duplicates": dups,
            "unexpected": unexp,
            "resets": resets,
            "reconnects": reconnects,
            "first_connect_error": first_error,
            "deliveries_per_s": rate.map(f64::round),
            "per_stream_catch_up": hist_summary(&catch_hist),
            "connect_time": hist_summary(&conn_hist),
            "setup_post_errors": post_errors,
            "setup_post_rate": (total as f64 / post_elapsed.as_secs_f64()).round(),
        }),
        ratios: json!({ "deliveries_per_s_vs_sse_ceiling": ratio(rate, ceil_rate) }),
        ceiling: ceil,
    };
    report.emit(common.out.as_deref())
}
