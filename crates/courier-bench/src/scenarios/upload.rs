//! `upload`: C concurrent uploaders, closed loop for T seconds, each POSTing files of S bytes
//! to `/api/uploads` (distinct content every time, so content-addressed dedupe saves nothing).
//! Run the server with `--upload-quota-bytes 0`: a timed run uploads gigabytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::{Nodes, login_many};
use crate::report::{Report, hist_summary, new_hist, record, spawn_progress};
use crate::{Common, UploadArgs};

/// `size` bytes of text that differ from every other call's in the first line.
fn body(uploader: usize, n: u64, size: usize) -> Vec<u8> {
    let mut bytes = format!("uploader {uploader} file {n}\n").into_bytes();
    let filler = b"the quick brown fox jumps over the lazy dog\n";
    while bytes.len() < size {
        let take = filler.len().min(size - bytes.len());
        bytes.extend_from_slice(&filler[..take]);
    }
    bytes
}

pub async fn run(common: &Common, args: &UploadArgs) -> Result<()> {
    let client = crate::client::http_client(None)?;
    let urls = common.base_urls();
    let nodes = Nodes::new(&client, &urls)?;
    let prefix = common.prefix();
    let c = args.concurrency;
    eprintln!(
        "upload: prefix {prefix}, {c} uploaders, {} bytes each, {}s",
        args.size, args.duration
    );
    let uploaders = login_many(
        &nodes,
        (0..c).map(|i| format!("{prefix}_u{i}")).collect(),
        32,
    )
    .await?;

    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let progress = {
        let ok = ok.clone();
        spawn_progress("upload".into(), move || {
            format!("ok={}", ok.load(Ordering::Relaxed))
        })
    };
    let mut tasks = Vec::with_capacity(c);
    for (i, session) in uploaders.into_iter().enumerate() {
        let url = format!("{}/api/uploads?name=bench-{i}.txt", urls[i % urls.len()]);
        let (client, ok, errors, size) = (client.clone(), ok.clone(), errors.clone(), args.size);
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut n = 0;
            while Instant::now() < end {
                let payload = body(i, n, size);
                n += 1;
                let t0 = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(&session.token)
                    .header("content-type", "text/plain")
                    .body(payload)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        record(&mut hist, t0.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!(
                                "[upload] first error: {} {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("[upload] first error: {e:#}");
                        }
                    }
                }
            }
            hist
        }));
    }
    let mut hist = new_hist();
    for task in tasks {
        hist.add(task.await?)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    progress.abort();
    let done = ok.load(Ordering::Relaxed);
    if done == 0 {
        bail!(
            "no upload succeeded ({} errors)",
            errors.load(Ordering::Relaxed)
        );
    }
    let per_s = done as f64 / elapsed;
    let report = Report {
        scenario: "upload".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "concurrency": c, "duration_s": args.duration, "size_bytes": args.size,
            "prefix": prefix, "base_urls": urls,
        }),
        figures: json!({
            "uploads": done,
            "errors": errors.load(Ordering::Relaxed),
            "elapsed_s": elapsed,
            "uploads_per_s": (per_s * 10.0).round() / 10.0,
            "mb_per_s": (per_s * args.size as f64 / 1e6 * 10.0).round() / 10.0,
            "upload_latency": hist_summary(&hist),
        }),
        ratios: json!({}),
        ceiling: json!(null),
    };
    report.emit(common.out.as_deref())
}
