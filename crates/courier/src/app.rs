//! Composition root: picks the backends by URL, applies migrations, builds the router with
//! its layers, binds the listener and serves until shutdown. The only room that names a
//! concrete backend.

use crate::api::{self, ApiSettings, ApiState, DevLogin, Services};
use crate::bus::{Bus, LocalBus};
use crate::config::{ServeConfig, SignupMode, SqliteSynchronous};
use crate::model::TrustedProxies;
use crate::realtime::{Realtime, StreamLimits};
use crate::service::presence::{Presence, PresenceSettings};
use crate::service::push::{PushSettings, Pusher, VapidKey};
use crate::service::{
    AccountSettings, Accounts, Admin, Messenger, OAuth, OAuthSettings, ProviderKind,
    ProviderSettings, Signals, Signup, Tokens, UploadSettings, Uploads,
};
use crate::store::{FileStore, SqliteOptions, SqliteStore, Store};
use crate::telemetry;
use crate::tls::{self, CertResolver};
use crate::web;
use anyhow::{Context, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub mod admin;
mod control;
pub mod metrics;
mod notify;
mod serve;

/// Streams end on shutdown; this bounds how long the rest may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: https:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub struct App {
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: serve::ConnLimits,
    /// Set when serving HTTPS directly (`--tls-cert`, `--acme-domain`).
    tls: Option<Tls>,
    /// For waiting on its background work at shutdown.
    messenger: Arc<Messenger>,
    /// `--metrics-listen`, bound, and the bus whose traffic it reports.
    metrics: Option<(
        TcpListener,
        metrics_exporter_prometheus::PrometheusHandle,
        Arc<dyn Bus>,
    )>,
    /// The control socket's task; it removes the socket file as it ends.
    control: Option<tokio::task::JoinHandle<()>>,
    /// Background writers with a last write to make at shutdown (presence's last-seen times,
    /// session activity): `run` waits for them before the store goes.
    flushes: TaskTracker,
}

enum Tls {
    Files {
        resolver: Arc<CertResolver>,
        reload_every: Duration,
    },
    Acme(tls::AcmeSettings),
}

impl App {
    /// Opens the store and bus, then binds the listener (port 0 picks one).
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = open_store(&config).await?;
        let bus = open_bus(&config, store.instance_id()).await?;
        let secret = match &config.token_secret {
            Some(secret) => secret.0.clone().into_bytes(),
            None => load_or_create_secret(&config.data_dir)?,
        };
        if config.trust_forwarded_for {
            bail!(
                "--trust-forwarded-for (COURIER_TRUST_FORWARDED_FOR) was replaced by --trusted-proxies <CIDR,…>: list your reverse proxies' addresses"
            );
        }
        let dev_login = config.dev_login_enabled();
        if dev_login {
            tracing::warn!(
                "DEV LOGIN IS ON: anyone who can reach this server can sign in as any username. Use --dev-login=false in production."
            );
        }

        let shutdown = CancellationToken::new();
        let presence = Arc::new(Presence::new(PresenceSettings {
            heartbeat: config.presence_heartbeat,
            grace: config.presence_grace,
        }));
        let flushes = TaskTracker::new();
        presence.spawn(store.clone(), bus.clone(), shutdown.clone(), &flushes);
        let signals = Arc::new(Signals::new(store.clone(), bus.clone(), presence.clone()));
        let mut messenger = Messenger::new(
            store.clone(),
            bus.clone(),
            config.max_message_chars,
            config.max_group_members,
        )
        .with_edit_window(config.edit_window.0)
        .with_signals(signals.clone());
        if config.push {
            let key = match &config.vapid_private_key {
                Some(hex_key) => hex::decode(hex_key.0.trim())
                    .ok()
                    .and_then(|bytes| VapidKey::from_bytes(&bytes))
                    .context("--vapid-private-key must be 64 hex characters of a P-256 key")?,
                None => load_or_create_vapid_key(&config.data_dir)?,
            };
            let subject = config.push_subject.clone().unwrap_or_else(|| {
                config
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", config.listen))
            });
            let settings = PushSettings {
                subject,
                ttl: config.push_ttl,
                allow_insecure_endpoints: config.push_allow_insecure_endpoints,
            };
            let pusher = Pusher::new(store.clone(), presence.clone(), key, settings);
            messenger = messenger.with_pusher(Arc::new(pusher));
        }
        let uploads = Arc::new(open_uploads(&config, store.clone())?);
        uploads.spawn_sweeper(shutdown.clone());
        let messenger = Arc::new(messenger.with_uploads(uploads.clone()));
        let background = messenger.clone();
        let limits = StreamLimits {
            heartbeat: config.heartbeat,
            buffer: config.stream_buffer,
            max_streams_per_user: config.max_streams_per_user,
            retry: config.sse_retry,
        };
        spawn_janitor(messenger.clone(), shutdown.clone());
        let realtime = Arc::new(Realtime::new(
            store.clone(),
            bus.clone(),
            limits,
            shutdown.clone(),
            presence,
        ));
        let tokens = Tokens::new(&secret, config.token_lifetime)?;
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            bus.clone(),
            tokens,
            account_settings(&config),
        ));
        accounts.watch_revocations();
        accounts.write_touches(shutdown.clone(), &flushes);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::Files {
                resolver: CertResolver::open(cert.clone(), key.clone())?,
                reload_every: config.tls_reload_every,
            }),
            _ if !config.acme_domain.is_empty() => Some(Tls::Acme(tls::AcmeSettings {
                domains: config.acme_domain.clone(),
                directory: config.acme_directory.clone(),
                contact: config.acme_contact.clone(),
                ca_root: config.acme_ca_root.clone(),
                cache_dir: config.data_dir.join("acme"),
            })),
            _ => None,
        };
        // Bound before the sign-in providers: the default public URL names the real port.
        let listener = bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let oauth = OAuth::new(
            oauth_settings(&config, scheme, listener.local_addr()?),
            &secret,
            accounts.clone(),
        )
        .map_err(anyhow::Error::msg)
        .context("configuring sign-in providers")?;
        let oauth = Arc::new(oauth);
        oauth.warm_up();
        if let Some(smtp) = &config.smtp_url {
            let public_url = config.public_url.clone().unwrap_or_else(|| {
                format!(
                    "{scheme}://{}",
                    listener.local_addr().unwrap_or(config.listen)
                )
            });
            let mailer = crate::service::Mailer::new(smtp, &config.smtp_from, &public_url)
                .map_err(anyhow::Error::msg)?;
            accounts.set_mailer(mailer);
        }
        let admin = Arc::new(Admin::new(
            store.clone(),
            accounts.clone(),
            messenger.clone(),
            config.reports_per_hour,
        ));
        let mut control = None;
        if config.control_socket {
            let path = control::socket_path(&config.data_dir);
            match control::listen(path.clone(), admin.clone(), shutdown.clone()).await {
                Ok(task) => control = Some(task),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "no control socket; `courier admin` opens the database itself")
                }
            }
        }
        let state = ApiState::new(Services {
            messenger,
            realtime,
            accounts,
            admin,
            oauth,
            signals,
            uploads,
            settings: Arc::new(ApiSettings {
                dev_login: DevLogin::new(dev_login, config.dev_login == Some(true)),
                token_lifetime: config.token_lifetime,
                secure_cookies: config.secure_cookies || tls.is_some(),
                trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            }),
        });
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let handle = metrics::recorder();
                Some((metrics::bind(addr).await?, handle, bus.clone()))
            }
            None => None,
        };
        let router = router(
            state,
            RouterLayers {
                max_body_bytes: config.max_body_bytes,
                hsts: tls.is_some(),
                metrics: metrics.is_some(),
            },
        );
        let max_connections = config.max_connections.resolve(open_files_limit());
        tracing::info!(
            max_connections = ?max_connections,
            open_files = ?open_files_limit(),
            "connection cap"
        );
        Ok(Self {
            listener,
            router,
            shutdown,
            limits: serve::ConnLimits {
                header_read: config.header_read_timeout,
                keep_alive: config.keep_alive_timeout,
                write: config.write_timeout,
                body: config.request_body_timeout,
                max_connections,
                max_per_address: config.max_connections_per_address,
                trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
                send_buffer: config.socket_send_buffer,
            },
            tls,
            messenger: background,
            metrics,
            control,
            flushes,
        })
    }

    /// `https` when serving TLS directly, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served (`--metrics-listen`), when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, ..)| listener.local_addr().ok())
    }

    /// Cancelling this token shuts the server down, as a signal does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `signal` completes (or the shutdown token is cancelled), then ends open
    /// streams and waits at most `SHUTDOWN_GRACE` for in-flight requests.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = signal => shutdown.cancel(),
                    _ = shutdown.cancelled() => {}
                }
                notify::notify("STOPPING=1");
            }
        });
        if let Some((listener, handle, bus)) = self.metrics {
            tokio::spawn(metrics::serve(listener, handle, bus, shutdown.clone()));
        }
        let acceptor = match self.tls {
            None => None,
            Some(Tls::Files {
                resolver,
                reload_every,
            }) => {
                resolver.watch(reload_every, shutdown.clone());
                Some(tls::server_config(resolver, false)?)
            }
            Some(Tls::Acme(settings)) => Some(tls::server_config(
                tls::acme(&settings, shutdown.clone())?,
                true,
            )?),
        };
        notify::notify("READY=1");
        serve::serve(
            self.listener,
            self.router,
            self.limits,
            acceptor,
            shutdown,
            SHUTDOWN_GRACE,
        )
        .await;
        // Pushes in flight hold the store (and SQLite's one-process lock): let them end.
        self.messenger.finish(SHUTDOWN_GRACE).await;
        self.flushes.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.flushes.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: last-seen and session activity writes did not finish");
        }
        if let Some(control) = self.control {
            let _ = control.await;
        }
        Ok(())
    }
}

/// Hourly, deletes what no request can use any more (see `Messenger::purge_expired`).
fn spawn_janitor(messenger: Arc<Messenger>, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(60 * 60);
    tokio::spawn(async move {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(60), EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => match messenger.purge_expired().await {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "purged expired idempotency keys, sessions and spent sign-in flows"),
                    Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
                },
            }
        }
    });
}

/// Files under the data directory, or in object storage with `--object-store-url`.
fn open_uploads(config: &ServeConfig, store: Arc<dyn Store>) -> anyhow::Result<Uploads> {
    let files = match &config.object_store_url {
        Some(url) => FileStore::object_store(url, &config.object_store_options, &config.data_dir)
            .map_err(anyhow::Error::msg)
            .context("opening --object-store-url")?,
        None => FileStore::local(&config.data_dir).context("creating the uploads directory")?,
    };
    Ok(Uploads::new(
        store,
        Arc::new(files),
        UploadSettings {
            max_bytes: config.max_upload_bytes,
            quota_bytes: config.upload_quota_bytes,
            grace: config.upload_grace,
            sweep_every: config.upload_sweep_every,
            max_avatar_bytes: config.max_avatar_bytes,
        },
    ))
}

fn account_settings(config: &ServeConfig) -> AccountSettings {
    AccountSettings {
        passwords: config.password_auth,
        password_min_len: config.password_min_length,
        signup: match config.signup {
            SignupMode::Open => Signup::Open,
            SignupMode::Closed => Signup::Closed,
            SignupMode::Invite => Signup::Invite(
                config
                    .invite_codes
                    .iter()
                    .map(|c| c.trim().to_owned())
                    .collect(),
            ),
        },
        attempts_per_account: config.login_attempts_per_account,
        attempts_per_ip: config.login_attempts_per_ip,
        max_sessions: config.max_sessions_per_user,
        dev_logins_per_ip: std::num::NonZeroU32::new(config.dev_login_per_minute),
        hash_concurrency: match config.password_hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        },
        members_can_invite: config.members_can_invite,
        invite_max_lifetime: chrono::TimeDelta::from_std(config.invite_max_lifetime)
            .unwrap_or(chrono::TimeDelta::days(30)),
        invite_max_uses: i64::from(config.invite_max_uses.max(1)),
        password_link_lifetime: chrono::TimeDelta::from_std(config.password_link_lifetime)
            .unwrap_or(chrono::TimeDelta::hours(1)),
        username_reservation: chrono::TimeDelta::from_std(config.username_reservation)
            .unwrap_or(chrono::TimeDelta::MAX),
    }
}

/// GitHub (when it has a client id and secret) first, then the OIDC providers in order.
fn oauth_settings(config: &ServeConfig, scheme: &str, bound: SocketAddr) -> OAuthSettings {
    let mut providers = Vec::new();
    if let (Some(id), Some(secret)) = (&config.github_client_id, &config.github_client_secret) {
        providers.push(ProviderSettings {
            id: "github".into(),
            name: "GitHub".into(),
            client_id: id.clone(),
            client_secret: secret.0.clone(),
            scopes: Vec::new(),
            kind: ProviderKind::GitHub {
                auth_url: config.github_auth_url.clone(),
                token_url: config.github_token_url.clone(),
                api_url: config.github_api_url.clone(),
            },
        });
    }
    for p in &config.oidc {
        providers.push(ProviderSettings {
            id: p.id.clone(),
            name: p.name.clone(),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.0.clone(),
            scopes: p.scopes.clone(),
            kind: ProviderKind::Oidc {
                issuer: p.issuer.clone(),
            },
        });
    }
    OAuthSettings {
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{bound}")),
        providers,
    }
}

/// What wraps the routes besides the API's own layers.
struct RouterLayers {
    max_body_bytes: usize,
    /// `Strict-Transport-Security` on every answer (Courier serves HTTPS itself).
    hsts: bool,
    /// Request counts and durations by route (`/metrics` is served).
    metrics: bool,
}

/// The app's routes under the layers every request passes.
///
/// The layers wrap the router once, as one service, not each route: `Router::layer` boxes
/// every route again per layer, and each request then clones and boxes through every level.
/// Once costs 4.2 µs a request where per route cost 6.1 (`benches/router_layers.rs`). Only
/// the metrics layer stays per route: it labels requests by axum's `MatchedPath`, which exists
/// only inside the router.
fn router(state: ApiState, layers: RouterLayers) -> Router {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    let mut routes = Router::new()
        .nest("/api", api::router(state.clone()))
        .merge(api::health_router(state))
        .fallback(web::serve);
    if layers.metrics {
        routes = routes.layer(axum::middleware::from_fn(metrics::track));
    }
    let stack = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http().make_span_with(telemetry::request_span))
        // Browsers that once came over HTTPS never try plain HTTP here again.
        .option_layer(
            layers
                .hsts
                .then(|| header("strict-transport-security", "max-age=31536000")),
        )
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
        .layer(DefaultBodyLimit::max(layers.max_body_bytes))
        .service(routes);
    Router::new().fallback_service(stack)
}

async fn open_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn Store>> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", config.data_dir.join("courier.db").display()),
    };
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "sqlite" => {
            let options = SqliteOptions {
                synchronous_full: config.sqlite_synchronous == SqliteSynchronous::Full,
                on_writer_thread: if config.thread_slice.is_zero() {
                    || {}
                } else {
                    || {
                        crate::sched::request_slice(crate::sched::SHORTEST_SLICE);
                    }
                },
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(&url, &options)
                .await
                .with_context(|| format!("opening SQLite database {url}"))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let options = crate::store::PgOptions {
                writers: usize::from(config.pg_writers),
                ..crate::store::PgOptions::default()
            };
            let store = crate::store::PgStore::open(&url, &options)
                .await
                .context("opening the PostgreSQL database")?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => {
            bail!("this build has no PostgreSQL support (cargo feature `postgres`)")
        }
        other => bail!("unknown database URL scheme {other:?}: expected sqlite:// or postgres://"),
    }
}

/// `instance` (the store's id) prefixes the NATS subjects, so communities sharing one NATS never cross.
async fn open_bus(config: &ServeConfig, instance: &str) -> anyhow::Result<Arc<dyn Bus>> {
    match &config.nats_url {
        None => Ok(Arc::new(LocalBus::new())),
        #[cfg(feature = "nats")]
        Some(url) => {
            use crate::bus::nats::Routing;
            let routing = if broadcast_bus() {
                Routing::Broadcast
            } else {
                Routing::Targeted
            };
            let bus = crate::bus::NatsBus::connect_with(url, instance, routing)
                .await
                .context("connecting to NATS")?;
            Ok(Arc::new(bus))
        }
        #[cfg(not(feature = "nats"))]
        Some(_) => {
            let _ = instance;
            bail!("this build has no NATS support (cargo feature `nats`)")
        }
    }
}

/// Whether every event goes to every node over NATS, as before per-user subjects. Never,
/// except in a benchmark's control run, which sets the hidden `COURIER_BENCH_BROADCAST_BUS=1`
/// on every node to measure what targeted routing saves (see `bus::nats`).
#[cfg(feature = "nats")]
fn broadcast_bus() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("COURIER_BENCH_BROADCAST_BUS").as_deref() == Ok("1"))
}

/// The process's soft limit on open files; `None` when unlimited or unknown.
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Binds with a long accept queue: a reconnect storm (every client of a restarted node at
/// once) must not overflow it, or each dropped SYN costs its client a 1 s retransmit.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    const BACKLOG: u32 = 4096;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Reads the VAPID key from the data directory, creating it (mode 0600) on first start.
fn load_or_create_vapid_key(data_dir: &Path) -> anyhow::Result<VapidKey> {
    let path = data_dir.join("vapid-private-key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return hex::decode(text.trim())
                .ok()
                .and_then(|bytes| VapidKey::from_bytes(&bytes))
                .with_context(|| format!("{} is not a P-256 key in hex", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let key = VapidKey::generate();
    write_private(&path, hex::encode(key.secret_bytes()).as_bytes())?;
    Ok(key)
}

/// Creates `path` readable by its owner only, with `contents`.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents)?;
    file.sync_all()?;
    Ok(())
}

/// Reads the signing secret from the data directory, creating it (mode 0600) on first start.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("token-secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => return Ok(secret.trim().as_bytes().to_vec()),
        Ok(_) => bail!("{} is shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}
