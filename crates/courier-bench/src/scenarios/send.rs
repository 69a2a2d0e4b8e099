//! `send`: C concurrent senders, each in its own conversation, closed loop for T seconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::client::{FastPoster, Nodes, PostTarget, conversations_many, login_many};
use crate::report::{Report, hist_summary, new_hist, ratio, record, spawn_progress};
use crate::{CeilingOpts, Common, SendArgs, ceiling};

pub struct ClosedLoop {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Value,
    pub error_kinds: BTreeMap<String, u64>,
}

impl ClosedLoop {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "accepted": self.ok,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "accepted_per_s": (self.rate() * 10.0).round() / 10.0,
            "post_latency": self.latency,
            "error_kinds": self.error_kinds,
        })
    }
}

/// One task per target, each with its own HTTP/1.1 connection, POSTing `{"content"}` back to
/// back for `duration`, after one untimed warm-up request each (which also connects).
pub async fn closed_loop(
    targets: &[PostTarget],
    duration: Duration,
    label: &str,
) -> Result<ClosedLoop> {
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
    let warmed = Arc::new(AtomicU64::new(0));
    let warm_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut handles = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let (t, ok, err, warmed, warm_err, mut go) = (
            t.clone(),
            ok.clone(),
            err.clone(),
            warmed.clone(),
            warm_err.clone(),
            go_rx.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut h = new_hist();
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            let mut poster = FastPoster::new(&t).await;
            // Warm-up, outside the timed window.
            match &mut poster {
                Ok(p) => {
                    if let Err(e) = p.post(&format!("warm{i}")).await {
                        warm_err.lock().unwrap().get_or_insert(format!("{e:#}"));
                    }
                }
                Err(e) => {
                    warm_err.lock().unwrap().get_or_insert(format!("{e:#}"));
                }
            }
            warmed.fetch_add(1, Ordering::Relaxed);
            let Ok(end) = go.wait_for(Option::is_some).await.map(|v| v.unwrap()) else {
                return (h, kinds);
            };
            let Ok(mut poster) = poster else {
                return (h, kinds);
            };
            let mut n = 0u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let r = poster.post(&format!("s{i}n{n}")).await;
                n += 1;
                match r {
                    Ok(_) => {
                        record(&mut h, t0.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        err.fetch_add(1, Ordering::Relaxed);
                        let k = e.to_string();
                        let k = k.split(':').next().unwrap_or("").to_string();
                        *kinds.entry(k).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (h, kinds)
        }));
    }
    while (warmed.load(Ordering::Relaxed) as usize) < targets.len() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(e) = warm_err.lock().unwrap().clone() {
        eprintln!("[{label}] warm-up error (first of possibly several): {e}");
    }
    let prog = {
        let (ok, err) = (ok.clone(), err.clone());
        let mut last = 0;
        spawn_progress(label.to_string(), move || {
            let o = ok.load(Ordering::Relaxed);
            let s = format!(
                "ok={o} (+{}/s) errors={}",
                o - last,
                err.load(Ordering::Relaxed)
            );
            last = o;
            s
        })
    };
    let start = Instant::now();
    let _ = go_tx.send(Some(start + duration));
    let mut h = new_hist();
    let mut kinds = BTreeMap::new();
    for j in handles {
        let (hh, kk) = j.await?;
        h.add(hh)?;
        for (k, v) in kk {
            *kinds.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();
    prog.abort();
    let r = ClosedLoop {
        ok: ok.load(Ordering::Relaxed),
        errors: err.load(Ordering::Relaxed),
        elapsed,
        latency: hist_summary(&h),
        error_kinds: kinds,
    };
    if r.ok == 0 {
        bail!(
            "no request succeeded ({} errors: {:?})",
            r.errors,
            r.error_kinds
        );
    }
    Ok(r)
}

pub async fn run(common: &Common, args: &SendArgs) -> Result<()> {
    let client = crate::client::http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    let c = args.concurrency;
    eprintln!(
        "send: prefix {prefix}, {c} senders, {}s, {} node(s)",
        args.duration,
        nodes.count()
    );

    let senders = login_many(
        &nodes,
        (0..c).map(|i| format!("{prefix}_s{i}")).collect(),
        32,
    )
    .await?;
    let receivers = login_many(
        &nodes,
        (0..c).map(|i| format!("{prefix}_r{i}")).collect(),
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
    // Sender i POSTs to node i % nodes.
    let targets: Vec<PostTarget> = senders
        .iter()
        .zip(&convs)
        .enumerate()
        .map(|(i, (s, cid))| nodes.get(i).messages_target(cid, &s.token))
        .collect::<Result<_>>()?;

    let res = closed_loop(&targets, Duration::from_secs_f64(args.duration), "send").await?;

    // Ceiling: the same client code against the minimal server's POST /json.
    let ceil = ceiling::obtain(
        common,
        &CeilingOpts {
            http_concurrency: Some(c),
            http_duration: Some(args.duration.min(3.0)),
            ..Default::default()
        },
    )
    .await?;
    let ceil_rps = ceil
        .get("http")
        .and_then(|h| h.get("accepted_per_s"))
        .and_then(Value::as_f64);
    let p50 = res.latency.get("p50_us").and_then(Value::as_f64);
    let ceil_p50 = ceil
        .get("http")
        .and_then(|h| h.pointer("/post_latency/p50_us"))
        .and_then(Value::as_f64);
    let report = Report {
        scenario: "send".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "concurrency": c, "duration_s": args.duration, "prefix": prefix, "base_urls": urls,
        }),
        figures: res.to_json(),
        ratios: json!({
            "accepted_per_s_vs_http_ceiling": ratio(Some(res.rate()), ceil_rps),
            "post_p50_vs_http_ceiling_p50": ratio(p50, ceil_p50),
        }),
        ceiling: ceil,
    };
    report.emit(common.out.as_deref())
}
