use courier::app::App;
use courier::config::{Command, LogFormat, ServeConfig};

fn main() -> anyhow::Result<()> {
    let command = courier::config::parse_cli().command;
    // Built here rather than by `#[tokio::main]`: `serve --workers` sizes it.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Serve(config) = &command {
        if let Some(workers) = config.workers {
            runtime.worker_threads(usize::from(workers));
        }
        let slice = config.thread_slice;
        if !slice.is_zero() {
            runtime.on_thread_start(move || {
                courier::sched::request_slice(slice);
            });
        }
    }
    runtime.build()?.block_on(async {
        match command {
            Command::Serve(config) => serve(*config).await,
            Command::Backup(args) => courier::ops::backup(&args).await,
            Command::Restore(args) => courier::ops::restore(&args).await,
            Command::Admin(command) => courier::app::admin::run(command).await,
        }
    })
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let json = config.log_format == LogFormat::Json;
    courier::telemetry::init_as(&config.log, json, std::io::stderr);
    tracing::info!(?config, "starting");
    let app = App::build(config).await?;
    // Scripts and tests read this line to find the port.
    println!(
        "courier listening on {}://{}",
        app.scheme(),
        app.local_addr()
    );
    if let Some(addr) = app.metrics_addr() {
        println!("courier metrics on http://{addr}/metrics");
    }
    // On a runtime worker, not in `main`'s `block_on`. From there each new connection cost two
    // thread hand-offs: the I/O driver woke the main thread, which woke a worker for the
    // connection's task. Here the task goes onto the accepting worker's own queue; under stream
    // churn that saved 24-32 % of a connect's server CPU (docs/benchmarks.md, "Issue 12,
    // twelfth pass").
    tokio::spawn(app.run(shutdown_signal())).await?
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
