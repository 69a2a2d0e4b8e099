use clap::Parser;
use courier::app::App;
use courier::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Cli::parse().command {
        Command::Serve(config) => config,
        Command::Admin(command) => return courier::app::admin::run(command).await,
    };
    courier::telemetry::init(&config.log, std::io::stderr);
    tracing::info!(?config, "starting");
    let app = App::build(config).await?;
    // Scripts and tests read this line to find the port.
    println!(
        "courier listening on {}://{}",
        app.scheme(),
        app.local_addr()
    );
    app.run(shutdown_signal()).await
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
