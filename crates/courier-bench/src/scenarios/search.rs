//! `search`: N messages over K direct conversations of one searcher, then search latency for
//! one-word and phrase queries, one query at a time (the searcher sees every message, the
//! worst case for visibility filtering).
//!
//! The text is 12 words a message from a vocabulary of 5,000 made-up words, drawn
//! log-uniformly (a few words are very common, most are rare, as in chat), from a fixed seed so
//! two runs search the same corpus. Queries draw their words the same way; a phrase is two
//! adjacent words of a freshly generated message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::{FastPoster, Nodes, bearer, conversations_many, login_many};
use crate::report::{Report, hist_summary, new_hist, record, spawn_progress};
use crate::{Common, SearchArgs};

const VOCABULARY: u64 = 5_000;
const WORDS_PER_MESSAGE: usize = 12;

/// xorshift64*: fast, seeded, good enough for text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A word rank in 0..VOCABULARY, log-uniform.
    fn rank(&mut self) -> u64 {
        ((VOCABULARY as f64).powf(self.unit()) as u64).saturating_sub(1)
    }
}

/// The made-up word of a rank: syllables of its base-20 digits ("kalo", "rimu"…).
fn word(rank: u64) -> String {
    const SYLLABLES: [&str; 20] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "we", "ba", "de", "fo", "gi", "hu",
        "ja", "ke", "li", "mo", "ny",
    ];
    let mut n = rank + 20; // at least two syllables
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[(n % 20) as usize]);
        n /= 20;
    }
    out
}

fn message(rng: &mut Rng) -> Vec<String> {
    (0..WORDS_PER_MESSAGE).map(|_| word(rng.rank())).collect()
}

pub async fn run(common: &Common, args: &SearchArgs) -> Result<()> {
    let client = crate::client::http_client(None)?;
    let nodes = Nodes::new(&client, &common.base_urls())?;
    let prefix = common.prefix();
    let k = args.conversations;
    eprintln!(
        "search: prefix {prefix}, {} messages over {k} conversations",
        args.messages
    );
    let searcher = login_many(&nodes, vec![format!("{prefix}_q")], 1)
        .await?
        .remove(0);
    let partners = login_many(
        &nodes,
        (0..k).map(|i| format!("{prefix}_p{i}")).collect(),
        32,
    )
    .await?;
    let convs = conversations_many(
        &nodes,
        partners
            .iter()
            .map(|p| (p.token.clone(), searcher.username.clone()))
            .collect(),
        32,
    )
    .await?;

    let mut seed_figures = json!(null);
    if !args.skip_seed {
        let sent = Arc::new(AtomicU64::new(0));
        let per_task = args.messages.div_ceil(args.concurrency as u64);
        let prog = {
            let sent = sent.clone();
            let total = args.messages;
            spawn_progress("seed".into(), move || {
                format!("{}/{total}", sent.load(Ordering::Relaxed))
            })
        };
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..args.concurrency {
            let targets: Vec<_> = (0..k)
                .filter(|i| i % args.concurrency == t)
                .map(|i| nodes.get(i).messages_target(&convs[i], &partners[i].token))
                .collect::<Result<_>>()?;
            if targets.is_empty() {
                continue;
            }
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                let mut posters = Vec::new();
                for target in &targets {
                    posters.push(FastPoster::new(target).await?);
                }
                for n in 0..per_task {
                    let i = (n as usize) % posters.len();
                    posters[i].post(&message(&mut rng).join(" ")).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        prog.abort();
        let elapsed = start.elapsed().as_secs_f64();
        let n = sent.load(Ordering::Relaxed);
        seed_figures = json!({ "messages": n, "elapsed_s": elapsed, "per_s": n as f64 / elapsed });
    }

    let api = nodes.get(0).clone();
    let auth = bearer(&searcher.token)?;
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut figures = json!({ "seed": seed_figures });
    for kind in ["one_word", "phrase"] {
        let mut h = new_hist();
        let mut hits_total = 0usize;
        for _ in 0..args.queries {
            let q = match kind {
                "one_word" => word(rng.rank()),
                _ => {
                    let m = message(&mut rng);
                    format!("\"{} {}\"", m[0], m[1])
                }
            };
            let t0 = Instant::now();
            let resp = api
                .client
                .get(api.url("/api/search"))
                .query(&[("q", q.as_str())])
                .header(reqwest::header::AUTHORIZATION, auth.clone())
                .send()
                .await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            record(&mut h, t0.elapsed());
            if !status.is_success() {
                bail!("search {q:?}: {status} {body}");
            }
            hits_total += body["results"].as_array().map_or(0, Vec::len);
        }
        figures[kind] = json!({
            "latency": hist_summary(&h),
            "mean_hits_first_page": hits_total as f64 / args.queries as f64,
        });
    }
    let report = Report {
        scenario: "search".into(),
        base_url: common.base_url.clone(),
        params: json!({
            "messages": args.messages, "conversations": k, "queries": args.queries,
            "concurrency": args.concurrency, "skip_seed": args.skip_seed, "prefix": prefix,
        }),
        figures,
        ceiling: json!(null),
        ratios: json!(null),
    };
    report.emit(common.out.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_per_rank_and_ranks_stay_in_the_vocabulary() {
        assert_ne!(word(0), word(1));
        assert_ne!(word(19), word(20));
        let mut rng = Rng(7);
        assert!((0..10_000).all(|_| rng.rank() < VOCABULARY));
    }
}
