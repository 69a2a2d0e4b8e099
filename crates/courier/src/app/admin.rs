//! `courier admin …`: administration for installs without a browser. `create-user` opens the
//! database itself. Every other command is a `service::AdminRequest`: it goes to the running
//! server over its control socket (see `control`) when one answers in the data directory, and
//! otherwise runs here against the database, through the same `service::Admin` code. On
//! PostgreSQL without a local server, pass the cluster's `--nats-url` so sign-outs (disable,
//! revoke) close streams on the running nodes; without it they end at the nodes' next session
//! check (`SESSION_TRUST`).

use super::open_store;
use crate::bus::LocalBus;
use crate::config::{AdminCommand, AdminTarget, CreateUser, ServeConfig};
use crate::service::{Accounts, Actor, Admin, AdminRequest, Messenger, Signup, Tokens};
use anyhow::{Context, bail};
use std::sync::Arc;

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser(args) => create_user(args).await,
        other => {
            let (target, request) = request_of(other);
            let value = execute(&target, request).await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}

fn request_of(command: AdminCommand) -> (AdminTarget, AdminRequest) {
    use AdminCommand as C;
    use AdminRequest as R;
    match command {
        C::CreateUser(_) => unreachable!("create-user opens the database itself"),
        C::ListUsers(a) => (
            a.target,
            R::ListUsers {
                search: a.args.search,
            },
        ),
        C::Disable(a) => (
            a.target,
            R::Disable {
                username: a.args.username,
            },
        ),
        C::Enable(a) => (
            a.target,
            R::Enable {
                username: a.args.username,
            },
        ),
        C::MakeAdmin(a) => (
            a.target,
            R::SetAdmin {
                username: a.args.username,
                admin: true,
            },
        ),
        C::RevokeAdmin(a) => (
            a.target,
            R::SetAdmin {
                username: a.args.username,
                admin: false,
            },
        ),
        C::DeleteUser(a) => (
            a.target,
            R::DeleteUser {
                username: a.args.username,
                remove_content: a.args.remove_messages,
            },
        ),
        C::ResetPassword(a) => (
            a.target,
            R::ResetPassword {
                username: a.args.username,
            },
        ),
        C::ListSessions(a) => (
            a.target,
            R::ListSessions {
                username: a.args.username,
            },
        ),
        C::RevokeSessions(a) => (
            a.target,
            R::RevokeSessions {
                username: a.args.username,
                session: a.args.session,
            },
        ),
        C::CreateInvite(a) => (
            a.target,
            R::CreateInvite {
                expires_in_hours: a.args.expires_in_hours,
                max_uses: a.args.max_uses,
            },
        ),
        C::ListInvites(a) => (a.target, R::ListInvites),
        C::ExportUser(a) => (
            a.target,
            R::ExportUser {
                username: a.args.username,
            },
        ),
        C::ListReports(a) => (a.target, R::ListReports { all: a.args.all }),
        C::ResolveReport(a) => (a.target, R::ResolveReport { id: a.args.id }),
        C::DeleteMessage(a) => (
            a.target,
            R::DeleteMessage {
                conversation_id: a.args.conversation_id,
                message_id: a.args.message_id,
            },
        ),
        C::DeleteConversation(a) => (
            a.target,
            R::DeleteConversation {
                conversation_id: a.args.conversation_id,
            },
        ),
    }
}

/// Over the control socket when a server answers there, else against the database directly.
async fn execute(target: &AdminTarget, request: AdminRequest) -> anyhow::Result<serde_json::Value> {
    let socket = super::control::socket_path(&target.data_dir);
    if let Some(value) = super::control::request(&socket, &request).await? {
        return Ok(value);
    }
    let mut config = ServeConfig::for_data_dir(&target.data_dir);
    config.database_url = target.database_url.clone();
    config.nats_url = target.nats_url.clone();
    let store = open_store(&config)
        .await
        .context("opening the database (no server answers on the control socket)")?;
    let bus = super::open_bus(&config, store.instance_id()).await?;
    // Nothing here issues a token: a throwaway secret is enough.
    let tokens = Tokens::new(&rand::random::<[u8; 32]>(), config.token_lifetime)?;
    let accounts = Arc::new(Accounts::new(
        store.clone(),
        bus.clone(),
        tokens,
        super::account_settings(&config),
    ));
    // Deletes go through the messenger, so members' streams hear of them through this bus.
    let messenger = Arc::new(Messenger::new(
        store.clone(),
        bus.clone(),
        config.max_message_chars,
        config.max_group_members,
    ));
    let admin = Admin::new(store, accounts, messenger, config.reports_per_hour);
    let value = admin
        .execute(Actor::Operator, request)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Running nodes hear of the change only if the events leave before this process does;
    // if not, their streams still find it in the store at a later heartbeat.
    if let Err(e) = bus.settle().await {
        eprintln!("warning: running nodes may hear of this late: {e}");
    }
    Ok(value)
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
