//! The machine's own ceiling: a minimal axum server (run as a child process of the bench, so
//! client and server are separate processes as they are with Courier), measured with the same
//! client code as the scenarios.
//!
//! Routes of the minimal server:
//! - `GET /json`, `POST /json {"content"}`: a small JSON answer (201 for POST);
//! - `GET /sse[?key=K]`: SSE fed by one tokio broadcast channel (or K's own channel), starting
//!   with a `: ok` comment once subscribed;
//! - `POST /publish[/{key}] {"content"}`: one event `{"id","content"}` to the channel;
//! - `POST /broadcast?n=N`: N events into the global channel as fast as possible.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use reqwest::Client;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

use crate::client::{PostTarget, SseStream, StreamTarget, http_client, parse_msg, post_content};
use crate::report::{Report, spawn_progress};
use crate::scenarios::{idle, latency, send};
use crate::{CeilingArgs, CeilingOpts, CeilingServerArgs, Common};

type Item = (u64, Arc<str>);

struct Srv {
    global: broadcast::Sender<Item>,
    keys: Mutex<HashMap<String, broadcast::Sender<Item>>>,
    seq: AtomicU64,
}

impl Srv {
    fn channel(&self, key: Option<&str>) -> broadcast::Sender<Item> {
        match key {
            None => self.global.clone(),
            Some(k) => self
                .keys
                .lock()
                .unwrap()
                .entry(k.to_string())
                .or_insert_with(|| broadcast::channel(1024).0)
                .clone(),
        }
    }

    fn publish(&self, key: Option<&str>, content: &str) -> Value {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let msg = json!({ "id": id.to_string(), "content": content });
        let _ = self.channel(key).send((id, msg.to_string().into()));
        msg
    }
}

#[derive(Deserialize)]
struct ContentBody {
    content: String,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

#[derive(Deserialize)]
struct NQuery {
    n: u64,
}

async fn sse(
    State(s): State<Arc<Srv>>,
    Query(q): Query<KeyQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.channel(q.key.as_deref()).subscribe();
    let first = futures::stream::once(async { Ok(Event::default().comment("ok")) });
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok((id, data)) => {
                    return Some((Ok(Event::default().id(id.to_string()).data(&*data)), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(first.chain(rest)).keep_alive(KeepAlive::default())
}

pub async fn serve(args: &CeilingServerArgs) -> Result<()> {
    crate::raise_nofile();
    let srv = Arc::new(Srv {
        global: broadcast::channel(args.capacity).0,
        keys: Mutex::new(HashMap::new()),
        seq: AtomicU64::new(1),
    });
    let app =
        Router::new()
            .route(
                "/json",
                get(|| async { Json(json!({ "id": "1", "ok": true })) }).post(
                    |State(s): State<Arc<Srv>>, Json(b): Json<ContentBody>| async move {
                        let id = s.seq.fetch_add(1, Ordering::Relaxed);
                        (
                            StatusCode::CREATED,
                            Json(json!({ "id": id.to_string(), "content": b.content })),
                        )
                    },
                ),
            )
            .route("/sse", get(sse))
            .route(
                "/publish",
                post(
                    |State(s): State<Arc<Srv>>, Json(b): Json<ContentBody>| async move {
                        (StatusCode::CREATED, Json(s.publish(None, &b.content)))
                    },
                ),
            )
            .route(
                "/publish/{key}",
                post(
                    |State(s): State<Arc<Srv>>,
                     Path(key): Path<String>,
                     Json(b): Json<ContentBody>| async move {
                        (StatusCode::CREATED, Json(s.publish(Some(&key), &b.content)))
                    },
                ),
            )
            .route(
                "/broadcast",
                post(
                    |State(s): State<Arc<Srv>>, Query(q): Query<NQuery>| async move {
                        tokio::spawn(async move {
                            for i in 0..q.n {
                                s.publish(None, &format!("b{i}"));
                                if i % 256 == 255 {
                                    tokio::task::yield_now().await;
                                }
                            }
                        });
                        StatusCode::ACCEPTED
                    },
                ),
            )
            .with_state(srv);
    // An explicit backlog: a reconnect storm must not overflow the accept queue (tokio's
    // `TcpListener::bind` and std's use smaller ones).
    let addr: std::net::SocketAddr = args.listen.parse().context("--listen")?;
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    let listener = sock.listen(args.backlog)?;
    println!("listening http://{}", listener.local_addr()?);
    // Exit when the parent closes our stdin (or dies).
    tokio::spawn(async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
        std::process::exit(0);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// The minimal server running as a child process of this bench.
pub struct CeilingProc {
    _child: tokio::process::Child,
    pub base_url: String,
    pub pid: u32,
}

impl CeilingProc {
    pub async fn spawn() -> Result<CeilingProc> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .args(["ceiling-server", "--listen", "127.0.0.1:0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the ceiling server")?;
        let pid = child.id().context("ceiling server pid")?;
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("ceiling server did not start")??
            .context("ceiling server exited")?;
        let base_url = line
            .strip_prefix("listening ")
            .context("unexpected ceiling server output")?
            .to_string();
        Ok(CeilingProc {
            _child: child,
            base_url,
            pid,
        })
    }
}

/// SSE deliveries/s: `k` streams on `/sse`, then `n` events broadcast to all of them.
pub async fn sse_deliveries(client: &Client, base: &str, k: usize, n: u64) -> Result<Value> {
    let t = StreamTarget {
        url: format!("{base}/sse"),
        auth: None,
    };
    let mut streams = futures::stream::iter((0..k).map(|_| SseStream::connect(client, &t, None)))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    for s in streams.iter_mut() {
        s.wait_first_bytes().await?;
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(k);
    for mut s in streams {
        let delivered = delivered.clone();
        handles.push(tokio::spawn(async move {
            let mut got = 0u64;
            let last = format!("b{}", n - 1);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while got < n {
                match tokio::time::timeout_at(deadline, s.next_event()).await {
                    Ok(Ok(Some(ev))) => {
                        if let Some(m) = parse_msg(&ev.data)
                            && m.content.starts_with('b')
                        {
                            got += 1;
                            delivered.fetch_add(1, Ordering::Relaxed);
                            if m.content == last {
                                break;
                            }
                        }
                    }
                    _ => break,
                }
            }
            (got, s.received_at)
        }));
    }
    let prog = {
        let d = delivered.clone();
        let total = k as u64 * n;
        spawn_progress("ceiling sse broadcast".into(), move || {
            format!("{}/{total}", d.load(Ordering::Relaxed))
        })
    };
    let resp = client
        .post(format!("{base}/broadcast?n={n}"))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("POST /broadcast: {}", resp.status());
    }
    let mut last = start;
    let mut total = 0;
    for h in handles {
        let (got, at) = h.await?;
        total += got;
        last = last.max(at);
    }
    prog.abort();
    let elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
    Ok(json!({
        "streams": k,
        "events": n,
        "delivered": total,
        "missed": k as u64 * n - total,
        "elapsed_s": elapsed,
        "deliveries_per_s": (total as f64 / elapsed).round(),
    }))
}

/// Run the requested ceiling measurements (or load them from `--ceiling-json`).
pub async fn obtain(common: &Common, o: &CeilingOpts) -> Result<Value> {
    if common.no_ceiling {
        return Ok(Value::Null);
    }
    if let Some(p) = &common.ceiling_json {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let v = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .rfind(|v| v["scenario"] == "ceiling")
            .with_context(|| format!("no ceiling line in {}", p.display()))?;
        let mut f = v["figures"].clone();
        f["source"] = json!(p.display().to_string());
        f["date"] = v["date"].clone();
        return Ok(f);
    }
    eprintln!("ceiling: starting the minimal server");
    let proc_ = CeilingProc::spawn().await?;
    let base = proc_.base_url.clone();
    let client = http_client(None)?;
    let mut out = serde_json::Map::new();
    out.insert("server_pid".into(), json!(proc_.pid));
    if let Some(c) = o.http_concurrency.filter(|&c| c > 0) {
        let targets: Vec<PostTarget> = (0..c)
            .map(|_| PostTarget {
                url: format!("{base}/json"),
                auth: None,
            })
            .collect();
        let d = Duration::from_secs_f64(o.http_duration.unwrap_or(3.0));
        let r = send::closed_loop(&targets, d, "ceiling http").await?;
        let mut v = r.to_json();
        v["concurrency"] = json!(c);
        v["request"] = json!("POST /json {\"content\"} -> 201 small JSON");
        out.insert("http".into(), v);
    }
    if let (Some(k), Some(n)) = (
        o.sse_streams.filter(|&k| k > 0),
        o.sse_events.filter(|&n| n > 0),
    ) {
        out.insert(
            "sse_deliveries".into(),
            sse_deliveries(&client, &base, k, n).await?,
        );
    }
    if let (Some(p), Some(rates)) = (o.latency_pairs, &o.latency_rates) {
        let pairs: Vec<latency::Pair> = (0..p)
            .map(|i| latency::Pair {
                post: PostTarget {
                    url: format!("{base}/publish/k{i}"),
                    auth: None,
                },
                stream: StreamTarget {
                    url: format!("{base}/sse?key=k{i}"),
                    auth: None,
                },
            })
            .collect();
        let d = Duration::from_secs_f64(o.latency_duration.unwrap_or(3.0));
        let pts = latency::measure(
            &client,
            &pairs,
            rates,
            d,
            Duration::from_secs(1),
            "ceiling latency",
        )
        .await?;
        out.insert("sse_latency".into(), json!(pts));
    }
    if let Some(k) = o.idle_streams.filter(|&k| k > 0) {
        let c2 = client.clone();
        let b2 = base.clone();
        let v = idle::measure(
            &idle::IdleSpec {
                url: format!("{base}/sse"),
                tokens: Vec::new(),
                streams: k,
                pid: Some(proc_.pid),
                workers: o.idle_workers,
                src_ips: o.idle_src_ips,
                hold: Duration::from_secs_f64(o.idle_hold.unwrap_or(2.0)),
                connect_concurrency: 512,
                label: "ceiling idle".into(),
                http2: false,
            },
            move |_last, tag| async move {
                post_content(
                    &c2,
                    &PostTarget {
                        url: format!("{b2}/publish"),
                        auth: None,
                    },
                    &tag,
                )
                .await?;
                Ok(())
            },
        )
        .await?;
        out.insert("idle".into(), v);
    }
    drop(proc_);
    Ok(Value::Object(out))
}

pub async fn run(common: &Common, a: &CeilingArgs) -> Result<()> {
    let opts = CeilingOpts {
        http_concurrency: Some(a.concurrency),
        http_duration: Some(a.duration),
        sse_streams: Some(a.sse_streams),
        sse_events: Some(a.sse_events),
        latency_pairs: (a.pairs > 0).then_some(a.pairs),
        latency_rates: Some(a.rates.clone()),
        latency_duration: Some(a.duration),
        idle_streams: Some(a.idle_streams),
        idle_workers: a.workers,
        idle_src_ips: a.src_ips,
        idle_hold: Some(2.0),
    };
    let mut c = common.clone();
    c.no_ceiling = false;
    c.ceiling_json = None;
    let figures = obtain(&c, &opts).await?;
    let report = Report {
        scenario: "ceiling".into(),
        base_url: "(minimal axum server inside courier-bench)".into(),
        params: json!({
            "concurrency": a.concurrency, "duration_s": a.duration, "sse_streams": a.sse_streams,
            "sse_events": a.sse_events, "pairs": a.pairs, "rates": a.rates, "idle_streams": a.idle_streams,
        }),
        figures,
        ceiling: Value::Null,
        ratios: Value::Null,
    };
    report.emit(common.out.as_deref())
}
