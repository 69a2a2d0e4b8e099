//! courier-bench: a load generator for Courier's public HTTP/SSE API, reporting every figure
//! both absolute and as a ratio to the machine's own ceiling measured in the same run.

mod ceiling;
mod client;
mod plot;
mod report;
mod scenarios;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "courier-bench",
    version,
    about = "Load generator for Courier's public HTTP/SSE API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// C concurrent senders, each in its own conversation, closed loop for T seconds.
    Send(SendArgs),
    /// P sender/receiver pairs, open-loop total rate R: end-to-end latency POST → stream.
    Latency(LatencyArgs),
    /// K idle streams: server RSS per stream, probe delivered to the last stream opened.
    Idle(IdleArgs),
    /// K streams each miss M messages, then all reconnect at once with Last-Event-ID.
    Resume(ResumeArgs),
    /// One group of K members, each with a stream; senders post into it at open-loop rate R.
    Fanout(FanoutArgs),
    /// Message p99 over P pairs at rate R, alone and under a typing storm plus presence churn.
    Signals(SignalsArgs),
    /// N messages over K conversations, then search p50/p99 for one-word and phrase queries.
    Search(SearchArgs),
    /// C password sign-ins at once: the server's peak RSS while it hashes them.
    Signin(SigninArgs),
    /// C uploaders POST files of S bytes to /api/uploads back to back for T seconds.
    Upload(UploadArgs),
    /// The machine's ceiling: a minimal axum server measured with the same client code.
    Ceiling(CeilingArgs),
    /// Write an SVG of latency against offered rate from JSON-lines result files.
    Plot(PlotArgs),
    /// (internal) the minimal server used by `ceiling`.
    #[command(hide = true)]
    CeilingServer(CeilingServerArgs),
    /// (internal) a child process holding idle streams for `idle`.
    #[command(hide = true)]
    IdleWorker,
    /// (internal) a child process holding group members' streams for `fanout`.
    #[command(hide = true)]
    FanoutWorker,
    /// (internal) a child process running the typing storm and presence churn for `signals`.
    #[command(hide = true)]
    SignalsLoad,
}

#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Base URL of the server under test; for a cluster, a comma-separated list of its nodes
    /// (set-up spreads users over them round-robin; see the README for who talks to which).
    #[arg(
        long,
        default_value = "http://127.0.0.1:3000",
        env = "COURIER_BENCH_BASE_URL"
    )]
    pub base_url: String,
    /// Take the ceiling figures from a previous `ceiling` run's JSON line (file of JSON lines).
    #[arg(long)]
    pub ceiling_json: Option<PathBuf>,
    /// Skip the ceiling measurement (ratios become null).
    #[arg(long)]
    pub no_ceiling: bool,
    /// Also append the JSON result line to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Username prefix for this run's users (default: 6 random characters).
    #[arg(long)]
    pub prefix: Option<String>,
}

impl Common {
    pub fn prefix(&self) -> String {
        self.prefix.clone().expect("prefix filled in main")
    }

    /// The `--base-url` list: one entry per node, without trailing slashes.
    pub fn base_urls(&self) -> Vec<String> {
        self.base_url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }
}

fn parse_rates(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0)
        .ok_or_else(|| format!("bad rate {s:?}"))
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent senders (C), each in its own conversation.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Timed window in seconds (T).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent uploaders (C), each its own user.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub concurrency: usize,
    /// Bytes per file (S).
    #[arg(short = 's', long, default_value_t = 1_000_000)]
    pub size: usize,
    /// Timed window in seconds (T).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Args, Debug)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sender/receiver pairs (P).
    #[arg(short = 'p', long, default_value_t = 500)]
    pub pairs: usize,
    /// Total offered rates in messages/s, run one after another (R), e.g. 500,1000,2000.
    #[arg(short = 'r', long, value_delimiter = ',', default_value = "2000", value_parser = parse_rates)]
    pub rates: Vec<f64>,
    /// Seconds per rate (T).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for stragglers after the last POST has returned.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Also write an SVG plot of latency vs offered rate.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages to seed (N).
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Conversations of the searcher, one partner each (K).
    #[arg(short = 'k', long, default_value_t = 1000)]
    pub conversations: usize,
    /// Concurrent seeding tasks (each posts to its share of the conversations).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Queries per kind (one word, phrase), one at a time.
    #[arg(short = 'q', long, default_value_t = 300)]
    pub queries: usize,
    /// Search an earlier run's corpus (same `--prefix`) without seeding.
    #[arg(long)]
    pub skip_seed: bool,
}

#[derive(Args, Debug)]
pub struct SignalsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sender/receiver pairs (P); every sender and receiver also types (2P typists).
    #[arg(short = 'p', long, default_value_t = 500)]
    pub pairs: usize,
    /// Total offered message rate, messages/s (R).
    #[arg(short = 'r', long, default_value_t = 2000.0, value_parser = parse_rates)]
    pub rate: f64,
    /// Seconds of messages per round (T).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Quiet/loaded round pairs, in ABBA order; the report gives the p99 of all of each
    /// kind's messages (and, as before, the median of the rounds' p99s).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Typing calls per second per typist.
    #[arg(long, default_value_t = 1.0, value_parser = parse_rates)]
    pub typing_rate: f64,
    /// Churn users (C): each opens a stream, holds it, drops it, stays away, again.
    #[arg(long, default_value_t = 3000)]
    pub churn_users: usize,
    /// Seconds a churn user's stream stays open (H).
    #[arg(long, default_value_t = 1.0)]
    pub churn_hold: f64,
    /// Seconds a churn user stays away between streams (G); longer than the server's
    /// `--presence-grace` makes every cycle an online → offline change.
    #[arg(long, default_value_t = 2.0)]
    pub churn_gap: f64,
    /// Seconds to wait for stragglers after the last POST of a round has returned.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Seconds for the load to reach its steady rate (and to die down) around a loaded round.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Seconds of unmeasured sends before the first round, alone and then again with the load,
    /// so what happens once (the first WAL checkpoint after the set-up, the server's first
    /// state for the load's thousands of users) falls outside the rounds (0: none).
    #[arg(long, default_value_t = 6.0)]
    pub warmup: f64,
    /// Run the load in a child process instead of beside the measurer (on this 2-core VM it
    /// made the quiet rounds slower, not the loaded ones faster: docs/benchmarks.md).
    #[arg(long)]
    pub load_in_child: bool,
    /// Run the load in a child process at the `SCHED_IDLE` policy (implies `--load-in-child`):
    /// the generator's own CPU then yields to the server and the measurer, as a load coming
    /// from other machines would. Needs util-linux's `chrt`.
    #[arg(long)]
    pub load_idle: bool,
    /// Control run: the "loaded" rounds run without the load, so the ratio shows what this
    /// machine's noise alone gives two identical phases.
    #[arg(long)]
    pub control: bool,
    /// Open the churn streams over HTTP/2 (prior knowledge), many to a connection, as a browser
    /// does over Courier's own TLS (which offers `h2`) and a reverse proxy may upstream: a
    /// stream's close is then a stream reset, not a TCP close.
    #[arg(long)]
    pub churn_http2: bool,
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Streams to hold open (K).
    #[arg(short = 'k', long, default_value_t = 1000)]
    pub streams: usize,
    /// Users to spread the streams over (default: one user per stream).
    #[arg(long)]
    pub users: Option<usize>,
    /// Client processes (default: one per 18,000 streams).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses 127.0.0.1..=127.0.0.N (default: enough for the ephemeral port range).
    #[arg(long)]
    pub src_ips: Option<usize>,
    /// Server process id, for VmRSS before/after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to hold the streams before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Streams being opened at once per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Streams for the minimal server's RSS measurement (default: K).
    #[arg(long)]
    pub ceiling_streams: Option<usize>,
    /// Open the streams over HTTP/2 (prior knowledge, as a reverse proxy speaks upstream),
    /// 100 per connection, instead of one HTTP/1.1 connection each.
    #[arg(long)]
    pub http2: bool,
}

#[derive(Args, Debug)]
pub struct SigninArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sign-ins at once (C), one account each.
    #[arg(short = 'c', long, default_value_t = 100)]
    pub concurrency: usize,
    /// Rounds of C sign-ins.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub rounds: usize,
    /// Server process id, for VmRSS (default: the local process listening on the port).
    #[arg(long)]
    pub pid: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Streams (K), one receiver user each.
    #[arg(short = 'k', long, default_value_t = 1000)]
    pub streams: usize,
    /// Messages each stream misses (M).
    #[arg(short = 'm', long, default_value_t = 10)]
    pub missed: usize,
    /// Sender users; receiver i talks with sender i % S.
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Seconds to wait for everyone to catch up.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Seconds to keep listening for duplicates after everyone caught up.
    #[arg(long, default_value_t = 1.0)]
    pub grace: f64,
    /// POSTs in flight while posting the missed messages (set-up).
    #[arg(long, default_value_t = 128)]
    pub post_concurrency: usize,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Group members (K), one stream each.
    #[arg(short = 'k', long, default_value_t = 1000)]
    pub members: usize,
    /// Total offered rates into the group in messages/s, run one after another (R), e.g. 20,50.
    #[arg(short = 'r', long = "rate", value_delimiter = ',', default_value = "20", value_parser = parse_rates)]
    pub rates: Vec<f64>,
    /// Seconds per rate (D).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Members who post (S); message n is posted by member n % S.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Client processes holding the streams (one process may hold at most 20,000 open files).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// After the last POST has returned, stop waiting once no delivery arrived for this many
    /// seconds; what has not arrived by then counts as lost.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
    /// Usernames per create-group / add-members request (the server's default 16 KB body limit
    /// fits 500 of the bench's usernames).
    #[arg(long, default_value_t = 500)]
    pub chunk: usize,
    /// Source addresses 127.0.0.1..=127.0.0.N (default: enough for the ephemeral port range).
    #[arg(long)]
    pub src_ips: Option<usize>,
    /// Streams being opened at once per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

#[derive(Args, Debug)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections for the HTTP req/s ceiling.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds for the HTTP measurement and for each latency rate.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Streams for the SSE deliveries/s measurement.
    #[arg(long, default_value_t = 1000)]
    pub sse_streams: usize,
    /// Events broadcast to every stream.
    #[arg(long, default_value_t = 200)]
    pub sse_events: u64,
    /// Pairs for the SSE latency measurement (0 to skip).
    #[arg(short = 'p', long, default_value_t = 500)]
    pub pairs: usize,
    /// Offered rates for the SSE latency measurement.
    #[arg(short = 'r', long, value_delimiter = ',', default_value = "2000", value_parser = parse_rates)]
    pub rates: Vec<f64>,
    /// Idle streams for the RSS-per-stream measurement (0 to skip).
    #[arg(long, default_value_t = 1000)]
    pub idle_streams: usize,
    /// Client processes for the idle measurement.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses for the idle measurement.
    #[arg(long)]
    pub src_ips: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CeilingServerArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Listen backlog.
    #[arg(long, default_value_t = 4096)]
    pub backlog: u32,
    /// Capacity of the global broadcast channel.
    #[arg(long, default_value_t = 65536)]
    pub capacity: usize,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// JSON-lines files from `latency` (and `ceiling`) runs.
    #[arg(short = 'i', long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    #[arg(short = 'o', long, default_value = "latency.svg")]
    pub output: PathBuf,
}

/// Which ceiling measurements a scenario wants (None = skip).
#[derive(Default, Clone, Debug)]
pub struct CeilingOpts {
    pub http_concurrency: Option<usize>,
    pub http_duration: Option<f64>,
    pub sse_streams: Option<usize>,
    pub sse_events: Option<u64>,
    pub latency_pairs: Option<usize>,
    pub latency_rates: Option<Vec<f64>>,
    pub latency_duration: Option<f64>,
    pub idle_streams: Option<usize>,
    pub idle_workers: Option<usize>,
    pub idle_src_ips: Option<usize>,
    pub idle_hold: Option<f64>,
}

/// Raise RLIMIT_NOFILE to the hard limit.
pub fn raise_nofile() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise RLIMIT_NOFILE: {e}");
    }
}

fn fill(c: &mut Common) -> Result<()> {
    if c.base_urls().is_empty() {
        anyhow::bail!("--base-url is empty");
    }
    if c.prefix.is_none() {
        c.prefix = Some(client::random_prefix(6));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    raise_nofile();
    match cli.cmd {
        Cmd::Send(mut a) => {
            fill(&mut a.common)?;
            scenarios::send::run(&a.common, &a).await
        }
        Cmd::Search(mut a) => {
            fill(&mut a.common)?;
            scenarios::search::run(&a.common, &a).await
        }
        Cmd::Latency(mut a) => {
            fill(&mut a.common)?;
            scenarios::latency::run(&a.common, &a).await
        }
        Cmd::Idle(mut a) => {
            fill(&mut a.common)?;
            scenarios::idle::run(&a.common, &a).await
        }
        Cmd::Resume(mut a) => {
            fill(&mut a.common)?;
            scenarios::resume::run(&a.common, &a).await
        }
        Cmd::Signin(mut a) => {
            fill(&mut a.common)?;
            scenarios::signin::run(&a.common, &a).await
        }
        Cmd::Signals(mut a) => {
            fill(&mut a.common)?;
            scenarios::signals::run(&a.common, &a).await
        }
        Cmd::Fanout(mut a) => {
            fill(&mut a.common)?;
            scenarios::fanout::run(&a.common, &a).await
        }
        Cmd::Upload(mut a) => {
            fill(&mut a.common)?;
            scenarios::upload::run(&a.common, &a).await
        }
        Cmd::Ceiling(mut a) => {
            fill(&mut a.common)?;
            ceiling::run(&a.common, &a).await
        }
        Cmd::Plot(a) => plot::run(&a.input, &a.output),
        Cmd::CeilingServer(a) => ceiling::serve(&a).await,
        Cmd::IdleWorker => scenarios::idle::worker().await,
        Cmd::FanoutWorker => scenarios::fanout::worker().await,
        Cmd::SignalsLoad => scenarios::signals::load_worker().await,
    }
}
