//! `courier admin …`: account administration for installs without a browser. It opens the
//! database itself (run it beside a stopped or running server; both stores take concurrent
//! writers) and goes through the same account rules as the web app.

use super::open_store;
use crate::bus::LocalBus;
use crate::config::{AdminCommand, CreateUser, ServeConfig};
use crate::service::{Accounts, Signup, Tokens};
use anyhow::{Context, bail};
use std::sync::Arc;

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser(args) => create_user(args).await,
    }
}

async fn create_user(args: CreateUser) -> anyhow::Result<()> {
    let password = match std::env::var("COURIER_NEW_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let mut config = ServeConfig::for_data_dir(&args.data_dir);
    config.database_url = args.database_url.clone();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = open_store(&config).await?;
    // Nothing here issues a token: a throwaway secret is enough.
    let tokens = Tokens::new(&rand::random::<[u8; 32]>(), config.token_lifetime)?;
    let mut settings = super::account_settings(&config);
    settings.signup = Signup::Open;
    settings.password_min_len = args.password_min_length;
    let accounts = Accounts::new(store, Arc::new(LocalBus::new()), tokens, settings);
    let user = match accounts
        .create_user(&args.username, &password, args.admin)
        .await
    {
        Ok(user) => user,
        Err(e) => bail!("could not create {:?}: {e}", args.username),
    };
    let flags = accounts.flags(user.id).await?;
    println!(
        "created {} (id {}){}",
        user.username,
        user.id,
        if flags.is_admin { ", server admin" } else { "" }
    );
    Ok(())
}
