//! `send`: C concurrent senders, each in its own conversation, closed loop for T seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::Client;
use serde_json::{Value, json};

use crate::client::{Api, PostTarget, conversations_many, login_many, post_content};
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

/// One task per target, each POSTing `{"content"}` back to back for `duration`, after one
/// untimed warm-up request each (which also opens the connections).
pub async fn closed_loop(
    client: &Client,
    targets: &[PostTarget],
    duration: Duration,
    label: &str,
) -> Result<ClosedLoop> {
    // Warm-up: one request per sender, concurrently, outside the timed window.
    let warm = futures::future::join_all(
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| async move { post_content(client, t, &format!("warm{i}")).await }),
    )
    .await;
    let warm_err = warm.iter().filter(|r| r.is_err()).count();
    if warm_err == targets.len() {
        let e = warm.into_iter().find_map(Result::err).unwrap();
        return Err(e.context("every warm-up request failed"));
    }

    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
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
    let end = start + duration;
    let mut handles = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let (client, t, ok, err) = (client.clone(), t.clone(), ok.clone(), err.clone());
        handles.push(tokio::spawn(async move {
            let mut h = new_hist();
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            let mut n = 0u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let r = post_content(&client, &t, &format!("s{i}n{n}")).await;
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
    Ok(ClosedLoop {
        ok: ok.load(Ordering::Relaxed),
        errors: err.load(Ordering::Relaxed),
        elapsed,
        latency: hist_summary(&h),
        error_kinds: kinds,
    })
}

pub async fn run(common: &Common, args: &SendArgs) -> Result<()> {
    let client = crate::client::http_client(None)?;
    let api = Api::new(client.clone(), &common.base_url);
    let prefix = common.prefix();
    let c = args.concurrency;
    eprintln!("send: prefix {prefix}, {c} senders, {}s", args.duration);

    let senders = login_many(&api, (0..c).map(|i| format!("{prefix}_s{i}")).collect(), 32).await?;
    let receivers =
        login_many(&api, (0..c).map(|i| format!("{prefix}_r{i}")).collect(), 32).await?;
    let convs = conversations_many(
        &api,
        senders
            .iter()
            .zip(&receivers)
            .map(|(s, r)| (s.token.clone(), r.username.clone()))
            .collect(),
        32,
    )
    .await?;
    let targets: Vec<PostTarget> = senders
        .iter()
        .zip(&convs)
        .map(|(s, cid)| api.messages_target(cid, &s.token))
        .collect::<Result<_>>()?;

    let res = closed_loop(
        &client,
        &targets,
        Duration::from_secs_f64(args.duration),
        "send",
    )
    .await?;

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
        params: json!({ "concurrency": c, "duration_s": args.duration, "prefix": prefix }),
        figures: res.to_json(),
        ratios: json!({
            "accepted_per_s_vs_http_ceiling": ratio(Some(res.rate()), ceil_rps),
            "post_p50_vs_http_ceiling_p50": ratio(p50, ceil_p50),
        }),
        ceiling: ceil,
    };
    report.emit(common.out.as_deref())
}
