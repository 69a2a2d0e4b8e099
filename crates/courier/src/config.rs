//! Configuration: one clap struct. Every flag has an env var `COURIER_…` and a default; the
//! doc comments below are `--help` and docs/config.md. A TOML file (`--config`) may set any
//! of them too; see `file` for the order in which they win.

mod file;

pub use file::parse_cli;

use clap::{Parser, Subcommand, ValueEnum};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "courier",
    version,
    about = "Courier: a self-hostable realtime messenger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and the JSON/SSE API.
    Serve(Box<ServeConfig>),
    /// Copy the SQLite database to a file, consistently, also while the server runs.
    Backup(BackupArgs),
    /// Put a backup in place of the SQLite database (the server must be stopped).
    Restore(RestoreArgs),
    /// Administer accounts without a browser (opens the database itself).
    #[command(subcommand)]
    Admin(AdminCommand),
}

/// Which database `backup` and `restore` work on: the server's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Settings file (TOML); its `data-dir` and `database-url` are used.
    #[arg(long, env = "COURIER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory holding the SQLite database.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./courier-data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH`. Default: `<data-dir>/courier.db`.
    #[arg(long, env = "COURIER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The SQLite file, or an error for a PostgreSQL URL (back that up with pg_dump).
    pub fn sqlite_path(&self) -> Result<PathBuf, String> {
        match self.database_url.as_deref() {
            None => Ok(self.data_dir.join("courier.db")),
            Some(url) if url.starts_with("sqlite:") => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                let path = path.split('?').next().unwrap_or(path);
                Ok(PathBuf::from(path))
            }
            Some(_) => Err(
                "this is for SQLite; back up PostgreSQL with pg_dump and restore with pg_restore (docs/deploy.md)"
                    .into(),
            ),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write; it must not exist yet.
    #[arg(long)]
    pub out: PathBuf,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (made by `courier backup`).
    pub file: PathBuf,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `courier admin …`: account administration for installs without a browser.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a password account, printing nothing secret. The password is read from standard
    /// input (one line) unless COURIER_NEW_PASSWORD is set.
    CreateUser(CreateUser),
    /// List people (JSON), optionally those whose username contains SEARCH.
    ListUsers(Admin<SearchArgs>),
    /// Disable an account: it is signed out everywhere and cannot sign in until enabled.
    Disable(Admin<UserArgs>),
    /// Enable a disabled account.
    Enable(Admin<UserArgs>),
    /// Make the account a server admin.
    MakeAdmin(Admin<UserArgs>),
    /// Take the server admin role away.
    RevokeAdmin(Admin<UserArgs>),
    /// Delete an account (its username stays reserved).
    DeleteUser(Admin<DeleteArgs>),
    /// Print a one-time link that sets the account's password (shown once).
    ResetPassword(Admin<UserArgs>),
    /// List the account's active sessions.
    ListSessions(Admin<UserArgs>),
    /// Sign the account out: one session (--session) or all of them.
    RevokeSessions(Admin<RevokeArgs>),
    /// Create an invite link.
    CreateInvite(Admin<InviteArgs>),
    /// List the invite links.
    ListInvites(Admin<NoArgs>),
    /// Print everything about one person as JSON (a data-protection request).
    ExportUser(Admin<UserArgs>),
    /// List reported messages (open ones unless --all).
    ListReports(Admin<ReportsArgs>),
    /// Resolve a report.
    ResolveReport(Admin<ResolveArgs>),
    /// Delete one message, as its author would: members' apps drop the text live, search
    /// forgets it, its files are released. Works in any conversation (the operator's override).
    DeleteMessage(Admin<MessageArgs>),
    /// Delete a whole conversation: every member is removed (their apps drop it live) and
    /// every message is deleted as by delete-message.
    DeleteConversation(Admin<ConversationArgs>),
}

/// Where `courier admin …` finds the server: its control socket in the data directory, or,
/// when no server answers there, the database itself.
#[derive(Debug, Clone, Parser)]
pub struct AdminTarget {
    /// Directory of the SQLite database and the control socket (as for `serve`).
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./courier-data")]
    pub data_dir: PathBuf,
    /// Database URL (as for `serve`).
    #[arg(long, env = "COURIER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// NATS URL (as for `serve`): with PostgreSQL and no local server, sign-outs reach other nodes through it.
    #[arg(long, env = "COURIER_NATS_URL")]
    pub nats_url: Option<String>,
}

#[derive(Debug, Clone, Parser)]
pub struct Admin<T: clap::Args> {
    #[command(flatten)]
    pub target: AdminTarget,
    #[command(flatten)]
    pub args: T,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NoArgs {}

#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// Part of a username, any case.
    #[arg(long)]
    pub search: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UserArgs {
    /// The account's username.
    #[arg(long)]
    pub username: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The account's username.
    #[arg(long)]
    pub username: String,
    /// Also turn every message the person sent into a deleted message.
    #[arg(long, default_value_t = false)]
    pub remove_messages: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// The account's username.
    #[arg(long)]
    pub username: String,
    /// One session id (from list-sessions); all sessions when absent.
    #[arg(long)]
    pub session: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InviteArgs {
    /// Hours until the link expires.
    #[arg(long, default_value_t = 168)]
    pub expires_in_hours: i64,
    /// How many accounts the link admits.
    #[arg(long, default_value_t = 1)]
    pub max_uses: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportsArgs {
    /// Include resolved reports.
    #[arg(long, default_value_t = false)]
    pub all: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResolveArgs {
    /// The report's id (from list-reports).
    #[arg(long)]
    pub id: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MessageArgs {
    /// The conversation's id.
    pub conversation_id: i64,
    /// The message's id.
    pub message_id: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConversationArgs {
    /// The conversation's id.
    pub conversation_id: i64,
}

#[derive(Parser)]
pub struct CreateUser {
    /// The new account's username.
    #[arg(long)]
    pub username: String,
    /// Make the account a server admin (also ends first-run setup).
    #[arg(long, default_value_t = false)]
    pub admin: bool,
    /// Directory of the SQLite database (as for `serve`).
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./courier-data")]
    pub data_dir: PathBuf,
    /// Database URL (as for `serve`).
    #[arg(long, env = "COURIER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Shortest accepted password, in characters (as for `serve`).
    #[arg(long, env = "COURIER_PASSWORD_MIN_LENGTH", default_value_t = 10)]
    pub password_min_length: usize,
}

#[derive(Clone, Parser)]
pub struct ServeConfig {
    /// Settings file (TOML): every flag below is a key, named as the flag without its `--`
    /// (`max-body-bytes = 65536`). A flag given on the command line wins over its environment
    /// variable, which wins over the file, which wins over the default.
    #[arg(long, env = "COURIER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "COURIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and the generated signing secret.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./courier-data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH` or `postgres://…`. Default: `<data-dir>/courier.db`.
    #[arg(long, env = "COURIER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// NATS URL (`nats://host:port`) to share events between nodes. Default: in-process only.
    #[arg(long, env = "COURIER_NATS_URL")]
    pub nats_url: Option<String>,

    /// Enable `POST /api/login` (sign in by username alone, only to accounts with no password
    /// and no provider identity). Default: on only when listening on loopback, and off behind a
    /// proxy (`--public-url` is https, or a request arrives with `X-Forwarded-*` headers) unless
    /// set explicitly.
    #[arg(long, env = "COURIER_DEV_LOGIN", num_args = 0..=1, default_missing_value = "true")]
    pub dev_login: Option<bool>,

    /// Dev logins allowed per minute from one client address (IPv6: one /64); 0 means no limit.
    #[arg(long, env = "COURIER_DEV_LOGIN_PER_MINUTE", default_value_t = 30)]
    pub dev_login_per_minute: u32,

    /// Token signing secret (at least 32 bytes). Default: generated once and kept in `<data-dir>/token-secret`.
    #[arg(long, env = "COURIER_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// How long a token stays valid.
    #[arg(long, env = "COURIER_TOKEN_LIFETIME", default_value = "14days", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,

    /// Longest message, in characters, after whitespace normalisation.
    #[arg(long, env = "COURIER_MAX_MESSAGE_CHARS", default_value_t = 480)]
    pub max_message_chars: usize,

    /// Most members a group may have (its creator included).
    #[arg(long, env = "COURIER_MAX_GROUP_MEMBERS", default_value_t = 1000)]
    pub max_group_members: usize,

    /// How long after sending its author may edit a message: a duration, `0` to forbid
    /// editing, or `unlimited`.
    #[arg(long, env = "COURIER_EDIT_WINDOW", default_value = "unlimited", value_parser = parse_edit_window)]
    pub edit_window: EditWindow,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "COURIER_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Largest uploaded file, in bytes (`POST /api/uploads`; counted as it streams, 413 past it).
    #[arg(long, env = "COURIER_MAX_UPLOAD_BYTES", default_value_t = 25 * 1000 * 1000)]
    pub max_upload_bytes: u64,

    /// Largest profile picture upload, in bytes (`PUT /api/account/avatar`; 413 past it). The
    /// picture is stored cropped square, 256 pixels on a side.
    #[arg(long, env = "COURIER_MAX_AVATAR_BYTES", default_value_t = 5 * 1000 * 1000)]
    pub max_avatar_bytes: u64,

    /// Most bytes of files one person may keep stored (their uploads, sent or not); 0 for no
    /// limit. An upload past it gets 413.
    #[arg(long, env = "COURIER_UPLOAD_QUOTA_BYTES", default_value_t = 1000 * 1000 * 1000)]
    pub upload_quota_bytes: u64,

    /// How long an upload that no message has taken is kept before it is deleted.
    #[arg(long, env = "COURIER_UPLOAD_GRACE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub upload_grace: Duration,

    /// How often unused uploads and files no message needs any more are removed.
    #[arg(long, env = "COURIER_UPLOAD_SWEEP_EVERY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub upload_sweep_every: Duration,

    /// Store uploaded files in S3-compatible object storage (`s3://bucket[/prefix]`) instead
    /// of under the data directory; needed when several nodes serve one database. Endpoint,
    /// region and credentials come from the standard `AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_ALLOW_HTTP=true` for a plain-HTTP
    /// endpoint) environment variables.
    #[arg(long, env = "COURIER_OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,

    /// Settings for `--object-store-url` as `key=value`, overriding the `AWS_*` variables,
    /// e.g. `endpoint=http://minio:9000,allow_http=true,region=eu-west-1` (keys as
    /// `object_store`'s `AmazonS3ConfigKey`: `access_key_id`, `secret_access_key`, …).
    #[arg(
        long = "object-store-option",
        env = "COURIER_OBJECT_STORE_OPTIONS",
        value_delimiter = ','
    )]
    pub object_store_options: Vec<String>,

    /// Interval between SSE heartbeat comments.
    #[arg(long, env = "COURIER_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Events buffered per stream; a stream whose reader falls this far behind is closed (it resumes).
    #[arg(long, env = "COURIER_STREAM_BUFFER", default_value_t = 256)]
    pub stream_buffer: usize,

    /// Open streams allowed per user; more get 429.
    #[arg(long, env = "COURIER_MAX_STREAMS_PER_USER", default_value_t = 32)]
    pub max_streams_per_user: usize,

    /// Nodes share who is connected to them this often; a node not heard from for three of
    /// these is taken for dead and its users go offline.
    #[arg(long, env = "COURIER_PRESENCE_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub presence_heartbeat: Duration,

    /// A person stays online this long after their last stream closes, so a reconnect does not
    /// flicker them offline.
    #[arg(long, env = "COURIER_PRESENCE_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub presence_grace: Duration,

    /// Reconnect delay suggested to SSE clients (`retry:`).
    #[arg(long, env = "COURIER_SSE_RETRY", default_value = "2s", value_parser = humantime::parse_duration)]
    pub sse_retry: Duration,

    /// SQLite durability: `full` syncs every commit that answers a write (a 201 means on disk;
    /// session-activity and last-seen touches go to disk with the next one); `normal` may lose
    /// the last commits on power loss.
    #[arg(long, env = "COURIER_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,

    /// PostgreSQL: transactions committing queued sends at once on this node. Appends wait
    /// for each other only where their conversations or users meet, so a few writers keep
    /// PostgreSQL busy while each waits on its round trips; each holds one pooled connection.
    #[arg(long, env = "COURIER_PG_WRITERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pg_writers: u16,

    /// Runtime worker threads, which serve every request and stream. Default: one per core.
    /// Fewer means fewer thread wake-ups: on a 2-core machine with SQLite, whose commits run on
    /// a thread of their own beside the workers, 1 worker used ~10 % less CPU under the
    /// `signals` load, but fan-out to 1,000 streams waited longer (docs/benchmarks.md, "Issue
    /// 12, fourteenth pass").
    #[arg(long, env = "COURIER_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Scheduler slice the runtime workers ask of the kernel (Linux 6.12+; its default is
    /// 0.7 ms × (1 + log₂ cores)), so that one woken by a send runs at once instead of after
    /// whatever holds the core; the SQLite writer then asks for the shortest granted (0.1 ms).
    /// 0 (the default) asks nothing. On a busy 2-core machine it made the loaded message p99
    /// steadier but the quiet one ~10 % higher (docs/benchmarks.md, "Issue 12, eighteenth pass").
    #[arg(long, env = "COURIER_THREAD_SLICE", default_value = "0s", value_parser = humantime::parse_duration)]
    pub thread_slice: Duration,

    /// Kernel send buffer per connection, in bytes; 0 lets the kernel size it. A small one bounds
    /// what a stalled reader can hold, so its stream is closed (and resumed) sooner.
    #[arg(long, env = "COURIER_SOCKET_SEND_BUFFER", default_value_t = 0)]
    pub socket_send_buffer: usize,

    /// Mark session cookies `Secure` (set this when served over HTTPS without `X-Forwarded-Proto`).
    #[arg(long, env = "COURIER_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Serve HTTPS directly with this PEM certificate chain (needs `--tls-key`). Browsers then
    /// speak HTTP/2; cookies are `Secure` and HSTS is sent. Renewed files are picked up
    /// without a restart (on SIGHUP, or when their modification time changes).
    #[arg(long, env = "COURIER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "COURIER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Obtain and renew the HTTPS certificate for these domains by ACME (TLS-ALPN-01 on the
    /// listen port, which must be the port the domains' 443 reaches). Instead of `--tls-cert`.
    #[arg(
        long,
        env = "COURIER_ACME_DOMAIN",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    pub acme_domain: Vec<String>,

    /// The ACME directory to use with `--acme-domain`.
    #[arg(
        long,
        env = "COURIER_ACME_DIRECTORY",
        default_value = "https://acme-v02.api.letsencrypt.org/directory"
    )]
    pub acme_directory: String,

    /// Contact addresses for the ACME account (`mailto:admin@example.org`).
    #[arg(long, env = "COURIER_ACME_CONTACT", value_delimiter = ',')]
    pub acme_contact: Vec<String>,

    /// Trust only this PEM root for the ACME directory (a private CA or a test server);
    /// by default the usual web roots.
    #[arg(long, env = "COURIER_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,

    /// Web Push (notifications to browsers with Courier closed).
    #[arg(long, env = "COURIER_PUSH", default_value_t = true, action = clap::ArgAction::Set)]
    pub push: bool,

    /// VAPID private key for Web Push: 64 hex characters (a P-256 scalar). Default: generated
    /// once and kept in `<data-dir>/vapid-private-key`. Every node of a cluster needs the same.
    #[arg(long, env = "COURIER_VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<Secret>,

    /// VAPID contact for push services (`mailto:admin@example.org`). Default: the public URL.
    #[arg(long, env = "COURIER_PUSH_SUBJECT")]
    pub push_subject: Option<String>,

    /// How long a push service keeps a notification for an offline browser.
    #[arg(long, env = "COURIER_PUSH_TTL", default_value = "1day", value_parser = humantime::parse_duration)]
    pub push_ttl: Duration,

    /// Accept `http://` push endpoints (tests and private push services only).
    #[arg(long, env = "COURIER_PUSH_ALLOW_INSECURE_ENDPOINTS", hide = true)]
    pub push_allow_insecure_endpoints: bool,

    /// How often to check the TLS certificate files for a renewal.
    #[arg(long, env = "COURIER_TLS_RELOAD_EVERY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tls_reload_every: Duration,

    /// Password accounts (sign-up and sign-in with a username and password).
    #[arg(long, env = "COURIER_PASSWORD_AUTH", default_value_t = true, action = clap::ArgAction::Set)]
    pub password_auth: bool,

    /// Who may create a password account: `open`, `invite` (needs one of --invite-codes), or `closed`.
    #[arg(long, env = "COURIER_SIGNUP", value_enum, default_value_t = SignupMode::Invite)]
    pub signup: SignupMode,

    /// Comma-separated invite codes; each admits one new account.
    #[arg(
        long,
        env = "COURIER_INVITE_CODES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub invite_codes: Vec<String>,

    /// Members, not only the server's admin, may create invite links in the app.
    #[arg(long, env = "COURIER_MEMBERS_CAN_INVITE", default_value_t = false, action = clap::ArgAction::Set)]
    pub members_can_invite: bool,

    /// Longest lifetime of an invite link made in the app.
    #[arg(long, env = "COURIER_INVITE_MAX_LIFETIME", default_value = "30days", value_parser = humantime::parse_duration)]
    pub invite_max_lifetime: Duration,

    /// Most accounts one invite link may admit.
    #[arg(long, env = "COURIER_INVITE_MAX_USES", default_value_t = 100)]
    pub invite_max_uses: u32,

    /// How long a one-time password link (admin reset, "forgot password" mail) stays usable: at
    /// most 1h, so a link lying in a mailbox soon stops being a key (a longer one stops start-up).
    #[arg(long, env = "COURIER_PASSWORD_LINK_LIFETIME", default_value = "1h", value_parser = at_most_an_hour)]
    pub password_link_lifetime: Duration,

    /// How long a deleted account's username stays reserved, so nobody can take it and pass
    /// for them in old threads; afterwards anyone may register it (the old messages still show
    /// "Deleted account").
    #[arg(long, env = "COURIER_USERNAME_RESERVATION", default_value = "180days", value_parser = humantime::parse_duration)]
    pub username_reservation: Duration,

    /// SMTP server for "forgot password" mail: `smtp://host:port` (plain, e.g. a local relay),
    /// `smtp://user:pass@host?tls=required` (STARTTLS) or `smtps://user:pass@host` (TLS).
    /// Unset: no mail, and only the admin's reset links reset passwords.
    #[arg(long, env = "COURIER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The From address of that mail, e.g. `Courier <courier@chat.example.org>`.
    #[arg(
        long,
        env = "COURIER_SMTP_FROM",
        default_value = "Courier <courier@localhost>"
    )]
    pub smtp_from: String,

    /// Shortest accepted password, in characters.
    #[arg(long, env = "COURIER_PASSWORD_MIN_LENGTH", default_value_t = 10)]
    pub password_min_length: usize,

    /// Messages one person may report per hour (beyond that: 429).
    #[arg(long, env = "COURIER_REPORTS_PER_HOUR", default_value = "20")]
    pub reports_per_hour: std::num::NonZeroU32,

    /// Listen on `<data dir>/admin.sock` (mode 0600) for `courier admin …` commands.
    #[arg(long, env = "COURIER_CONTROL_SOCKET", default_value_t = true, action = clap::ArgAction::Set)]
    pub control_socket: bool,

    /// Password attempts allowed per minute for one account.
    #[arg(long, env = "COURIER_LOGIN_ATTEMPTS_PER_ACCOUNT", default_value = "5")]
    pub login_attempts_per_account: std::num::NonZeroU32,

    /// Password attempts (sign-in and sign-up) allowed per minute from one client address.
    #[arg(long, env = "COURIER_LOGIN_ATTEMPTS_PER_IP", default_value = "20")]
    pub login_attempts_per_ip: std::num::NonZeroU32,

    /// Signed-in sessions (devices) kept per person; signing in once more signs out the one
    /// used least recently.
    #[arg(long, env = "COURIER_MAX_SESSIONS_PER_USER", default_value = "50")]
    pub max_sessions_per_user: std::num::NonZeroUsize,

    /// Password hashes (sign-up, sign-in) computed at once; each takes 19 MiB, more wait their
    /// turn. 0 means the number of CPU cores.
    #[arg(long, env = "COURIER_PASSWORD_HASH_CONCURRENCY", default_value_t = 0)]
    pub password_hash_concurrency: usize,

    /// Comma-separated CIDRs of the reverse proxies whose `X-Forwarded-For` is believed: the
    /// client address is the rightmost entry that is not one of them. Empty: the peer address.
    #[arg(
        long,
        env = "COURIER_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1/32,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Removed: use `--trusted-proxies`. Kept so that a setting left in place stops start-up.
    #[arg(long, env = "COURIER_TRUST_FORWARDED_FOR", hide = true)]
    pub trust_forwarded_for: bool,

    /// Time a client has to send a request's headers, from the moment the connection opens or
    /// the first byte of a later request arrives; slower connections are closed.
    #[arg(long, env = "COURIER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no request in flight is closed after this long (keep it longer than
    /// the proxy's upstream keep-alive: nginx 60s).
    #[arg(long, env = "COURIER_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub keep_alive_timeout: Duration,

    /// Open connections allowed from one client address (IPv6: one /64); more are closed at
    /// once. Trusted proxies are exempt. 0 means no limit.
    #[arg(
        long,
        env = "COURIER_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,

    /// Time a client has to send a request's whole body, from the moment its headers arrive;
    /// a slower one (a body trickled byte by byte) is answered 408 and its connection closed.
    #[arg(long, env = "COURIER_REQUEST_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,

    /// Open connections allowed in all; more are closed as soon as they are accepted. `auto`:
    /// the process's open-files limit less a tenth of it (at least 64, at most 512), kept for
    /// the database, NATS and outgoing requests; raise the limit (systemd `LimitNOFILE=`) for
    /// more. 0 means no limit.
    #[arg(long, env = "COURIER_MAX_CONNECTIONS", default_value = "auto")]
    pub max_connections: MaxConnections,

    /// A write to a client that makes no progress for this long (it stopped reading) closes its
    /// connection. Idle streams between heartbeats are not writing, so this never ends them.
    #[arg(long, env = "COURIER_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// Public base URL of this server (`https://chat.example.org`); sign-in redirect URIs are
    /// `<public-url>/api/oauth/<id>/callback`. Default: `http://<listen address>`.
    #[arg(long, env = "COURIER_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// GitHub OAuth app client id. GitHub sign-in is on when this and the client secret are set.
    #[arg(long, env = "COURIER_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,

    /// GitHub OAuth app client secret.
    #[arg(long, env = "COURIER_GITHUB_CLIENT_SECRET", hide_env_values = true, value_parser = client_secret)]
    pub github_client_secret: Option<Secret>,

    /// GitHub's authorization endpoint (override for GitHub Enterprise or tests).
    #[arg(
        long,
        env = "COURIER_GITHUB_AUTH_URL",
        default_value = "https://github.com/login/oauth/authorize"
    )]
    pub github_auth_url: String,

    /// GitHub's token endpoint.
    #[arg(
        long,
        env = "COURIER_GITHUB_TOKEN_URL",
        default_value = "https://github.com/login/oauth/access_token"
    )]
    pub github_token_url: String,

    /// GitHub's REST API base (`GET <api>/user` names the person).
    #[arg(
        long,
        env = "COURIER_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,

    /// An OpenID Connect provider: `id=ID,issuer=URL,client-id=…,client-secret=…` plus optional
    /// `name=Shown name`, `client-secret-file=PATH` (instead of `client-secret`) and
    /// `scopes=email groups`. Repeat the flag for more; in the env var separate them with `;`.
    #[arg(
        long = "oidc",
        env = "COURIER_OIDC",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub oidc: Vec<OidcProvider>,

    /// Serve Prometheus metrics at `http://<this address>/metrics`, on a listener of its own
    /// (keep it private: it is not behind the reverse proxy). Default: off.
    #[arg(long, env = "COURIER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log filter, in `tracing` env-filter syntax.
    #[arg(long, env = "COURIER_LOG", default_value = "info,sqlx=warn")]
    pub log: String,

    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "COURIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A duration of at most one hour (and more than zero).
fn at_most_an_hour(raw: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if lifetime.is_zero() || lifetime > Duration::from_secs(3600) {
        return Err("a password link must expire within an hour (0 < lifetime <= 1h)".into());
    }
    Ok(lifetime)
}

impl ServeConfig {
    /// Defaults for tests and embedding: loopback, port 0, the given data directory.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["serve"]);
        config.listen = "127.0.0.1:0".parse().expect("valid address");
        config.data_dir = data_dir.into();
        config
    }

    /// Dev login at start-up: as set, else only on loopback and not behind an https public URL
    /// (a proxied node listens on loopback too). Requests through a proxy may still turn the
    /// default off at run time (see `api::DevLogin`).
    pub fn dev_login_enabled(&self) -> bool {
        self.dev_login.unwrap_or_else(|| {
            let https = self
                .public_url
                .as_deref()
                .is_some_and(|url| url.to_ascii_lowercase().starts_with("https://"));
            self.listen.ip().is_loopback() && !https
        })
    }
}

impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("admin", &self.admin)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("dev_login", &self.dev_login_enabled())
            .field("token_secret", &self.token_secret)
            .field("max_message_chars", &self.max_message_chars)
            .field("max_group_members", &self.max_group_members)
            .field("edit_window", &self.edit_window)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_avatar_bytes", &self.max_avatar_bytes)
            .field("username_reservation", &self.username_reservation)
            .field("upload_quota_bytes", &self.upload_quota_bytes)
            .field("upload_grace", &self.upload_grace)
            .field("upload_sweep_every", &self.upload_sweep_every)
            .field(
                "object_store_url",
                &self.object_store_url.as_deref().map(redact_url),
            )
            .field(
                "object_store_options",
                &self
                    .object_store_options
                    .iter()
                    .map(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k))
                    .collect::<Vec<_>>(),
            )
            .field("workers", &self.workers)
            .field("thread_slice", &self.thread_slice)
            .field("heartbeat", &self.heartbeat)
            .field("stream_buffer", &self.stream_buffer)
            .field("public_url", &self.public_url)
            .field("github_client_id", &self.github_client_id)
            .field("github_client_secret", &self.github_client_secret)
            .field("oidc", &self.oidc)
            .finish_non_exhaustive()
    }
}

/// The flag reference in docs/config.md, generated from the doc comments above.
pub fn reference_markdown() -> String {
    use clap::CommandFactory;
    let mut out = String::from("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for arg in ServeConfig::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || arg.is_hide_set() {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let default: Vec<_> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy())
            .collect();
        let default = if default.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", default.join(","))
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "| `--{long}` | `{env}` | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}

/// The settings-file example in docs/config.md: every key, commented out, at its default.
pub fn file_example() -> String {
    use clap::CommandFactory;
    let mut out = String::from(
        "# courier.toml: every key is optional; the commented value is the default.\n",
    );
    for arg in ServeConfig::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "config" || arg.is_hide_set() {
            continue;
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let value = |v: &str| {
            let bare = v.parse::<f64>().is_ok() || v == "true" || v == "false";
            if bare { v.to_owned() } else { format!("{v:?}") }
        };
        let line = if let Some(delimiter) = arg.get_value_delimiter() {
            let items: Vec<String> = defaults
                .iter()
                .flat_map(|d| d.split(delimiter))
                .filter(|d| !d.is_empty())
                .map(value)
                .collect();
            format!("{long} = [{}]", items.join(", "))
        } else {
            match defaults.as_slice() {
                [one] => format!("{long} = {}", value(one)),
                _ if matches!(arg.get_action(), clap::ArgAction::SetTrue) => {
                    format!("{long} = false")
                }
                _ => format!("{long} = …  (no default)"),
            }
        };
        out.push_str(&format!("# {line}\n"));
    }
    out
}

/// Hides a password in `scheme://user:password@host`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => match url[start + 3..at].split_once(':') {
            Some((user, _)) => format!("{}://{user}:***{}", &url[..start], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// `--sqlite-synchronous`: SQLite's `synchronous` pragma.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    /// Every commit is synced before it is acknowledged.
    Full,
    /// Commits are synced at checkpoints; a power loss may drop the last ones.
    Normal,
}

/// `--signup`: who may create a password account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignupMode {
    Open,
    /// With one of `--invite-codes`.
    Invite,
    Closed,
}

/// `--max-connections`: a number (0: no limit) or `auto`, derived from the open-files limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxConnections {
    Auto,
    Limit(usize),
}

impl std::str::FromStr for MaxConnections {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.trim()
            .parse()
            .map(Self::Limit)
            .map_err(|_| format!("expected a number or `auto`, found {s:?}"))
    }
}

impl MaxConnections {
    /// The cap itself (`None`: no cap), given the open-files limit (`None`: unknown or
    /// unlimited). Every connection is a file; so are the SQLite files, the PostgreSQL and
    /// NATS connections, outgoing push and sign-in requests and the listener. Were the
    /// connections allowed to take every file, `accept` would fail and nothing else could
    /// open one: a tenth of the limit stays free for the rest, at least 64 and at most 512
    /// (measured: an idle SQLite node holds 22 files, a PostgreSQL and NATS one 15 plus its
    /// pool of up to 16 connections; outgoing pushes add at most 64 sockets).
    pub fn resolve(self, open_files: Option<u64>) -> Option<usize> {
        const FALLBACK: u64 = 1024;
        match self {
            Self::Limit(0) => None,
            Self::Limit(n) => Some(n),
            Self::Auto => {
                let files = open_files.unwrap_or(FALLBACK);
                let reserve = (files / 10).clamp(64, 512);
                Some(usize::try_from(files.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX))
            }
        }
    }
}

/// A secret string whose Debug output never shows it.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 32 {
            return Err("the token secret must be at least 32 bytes".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// An OAuth client secret: any non-empty value (unlike the token secret, no minimum length).
fn client_secret(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("the client secret is empty".into());
    }
    Ok(Secret(s.trim().to_owned()))
}

/// One `--oidc` value. Debug never shows the client secret.
#[derive(Clone, Debug)]
pub struct OidcProvider {
    /// `[a-z0-9_-]`, at most 32: the route `/api/oauth/<id>` and the key identities are
    /// linked under, so it must not change once people have signed in.
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
}

impl std::str::FromStr for OidcProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut id, mut name, mut issuer, mut client_id, mut secret) =
            (None, None, None, None, None);
        let mut scopes = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, found {item:?}"))?;
            let value = value.trim().to_owned();
            match key.trim() {
                "id" => id = Some(value),
                "name" => name = Some(value),
                "issuer" => issuer = Some(value),
                "client-id" => client_id = Some(value),
                "client-secret" => secret = Some(client_secret(&value)?),
                "client-secret-file" => {
                    let read = std::fs::read_to_string(&value)
                        .map_err(|e| format!("reading client-secret-file {value}: {e}"))?;
                    secret = Some(client_secret(&read)?);
                }
                "scopes" => scopes = value.split_whitespace().map(str::to_owned).collect(),
                other => return Err(format!("unknown OIDC setting {other:?}")),
            }
        }
        let id = id.ok_or("missing id=")?;
        let valid_id = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_id {
            return Err(format!("id {id:?}: use 1 to 32 of a-z, 0-9, - and _"));
        }
        let issuer = issuer.ok_or("missing issuer=")?;
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(format!("issuer {issuer:?} is not an http(s) URL"));
        }
        Ok(Self {
            name: name.unwrap_or_else(|| id.clone()),
            id,
            issuer,
            client_id: client_id.ok_or("missing client-id=")?,
            client_secret: secret.ok_or("missing client-secret= (or client-secret-file=)")?,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let mut config = ServeConfig::for_data_dir("/tmp/x");
        config.token_secret = Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".parse().unwrap());
        config.database_url = Some("postgres://courier:hunter2@db/courier".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// Both docs tests rewrite docs/config.md under UPDATE_DOCS: one at a time.
    static DOCS_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn docs_config_md_lists_every_flag_as_the_code_documents_it() {
        let _one_at_a_time = DOCS_FILE.lock().unwrap_or_else(|e| e.into_inner());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let (start, end) = ("<!-- flags:start -->\n", "<!-- flags:end -->");
        let reference = reference_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let (head, rest) = doc.split_once(start).expect("start marker");
            let (_, tail) = rest.split_once(end).expect("end marker");
            std::fs::write(path, format!("{head}{start}{reference}{end}{tail}")).unwrap();
            return;
        }
        assert!(
            doc.contains(&format!("{start}{reference}{end}")),
            "docs/config.md is stale: run `UPDATE_DOCS=1 cargo test -p courier docs_config_md`"
        );
    }

    #[test]
    fn docs_config_md_shows_every_settings_file_key_as_the_code_knows_it() {
        let _one_at_a_time = DOCS_FILE.lock().unwrap_or_else(|e| e.into_inner());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let (start, end) = ("<!-- file:start -->\n```toml\n", "```\n<!-- file:end -->");
        let example = file_example();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let (head, rest) = doc.split_once(start).expect("file start marker");
            let (_, tail) = rest.split_once(end).expect("file end marker");
            std::fs::write(path, format!("{head}{start}{example}{end}{tail}")).unwrap();
            return;
        }
        assert!(
            doc.contains(&format!("{start}{example}{end}")),
            "docs/config.md is stale: run `UPDATE_DOCS=1 cargo test -p courier docs_config_md`"
        );
    }

    #[test]
    fn oidc_providers_parse_from_flags_and_env_and_hide_their_secret() {
        let config = ServeConfig::parse_from([
            "serve",
            "--oidc",
            "id=kc,name=Key Cloak,issuer=https://id.example/realms/x,client-id=courier,client-secret=hunter2,scopes=email groups",
            "--oidc",
            "id=b,issuer=http://127.0.0.1:9/,client-id=c,client-secret=s",
        ]);
        assert_eq!(config.oidc.len(), 2);
        let kc = &config.oidc[0];
        assert_eq!((kc.id.as_str(), kc.name.as_str()), ("kc", "Key Cloak"));
        assert_eq!(kc.scopes, ["email", "groups"]);
        assert_eq!(config.oidc[1].name, "b");
        assert!(!format!("{config:?}").contains("hunter2"));
        for bad in [
            "issuer=https://x,client-id=c,client-secret=s",
            "id=Bad Id,issuer=https://x,client-id=c,client-secret=s",
            "id=a,issuer=ftp://x,client-id=c,client-secret=s",
            "id=a,issuer=https://x,client-id=c",
            "id=a,issuer=https://x,client-id=c,client-secret=s,colour=blue",
        ] {
            assert!(bad.parse::<OidcProvider>().is_err(), "{bad}");
        }
    }

    #[test]
    fn workers_default_to_the_runtime_s_choice_and_zero_stops_start_up() {
        assert_eq!(ServeConfig::parse_from(["serve"]).workers, None);
        let one = ServeConfig::parse_from(["serve", "--workers", "1"]);
        assert_eq!(one.workers, Some(1));
        for bad in ["0", "-1", "many"] {
            let parsed = ServeConfig::try_parse_from(["serve", "--workers", bad]);
            assert!(parsed.is_err(), "--workers {bad} was accepted");
        }
    }

    #[test]
    fn signup_and_durability_are_enums_and_a_typo_stops_start_up() {
        let config = ServeConfig::parse_from(["serve"]);
        assert_eq!(config.signup, SignupMode::Invite);
        assert_eq!(config.sqlite_synchronous, SqliteSynchronous::Full);
        let config = ServeConfig::parse_from([
            "serve",
            "--signup",
            "open",
            "--sqlite-synchronous",
            "normal",
        ]);
        assert_eq!(config.signup, SignupMode::Open);
        assert_eq!(config.sqlite_synchronous, SqliteSynchronous::Normal);
        for typo in [["--signup", "opne"], ["--sqlite-synchronous", "ful"]] {
            let parsed = ServeConfig::try_parse_from(["serve", typo[0], typo[1]]);
            assert!(parsed.is_err(), "{typo:?} was accepted");
        }
    }

    #[test]
    fn a_password_link_lives_at_most_an_hour_or_start_up_stops() {
        let config = ServeConfig::parse_from(["serve"]);
        assert_eq!(config.password_link_lifetime, Duration::from_secs(3600));
        let config = ServeConfig::parse_from(["serve", "--password-link-lifetime", "15m"]);
        assert_eq!(config.password_link_lifetime, Duration::from_secs(900));
        for too_long in ["61m", "2h", "7days", "0s"] {
            let parsed =
                ServeConfig::try_parse_from(["serve", "--password-link-lifetime", too_long]);
            assert!(parsed.is_err(), "{too_long} was accepted");
        }
    }

    #[test]
    fn max_connections_is_a_number_or_auto_from_the_open_files_limit() {
        let parse = |s: &str| s.parse::<MaxConnections>();
        assert_eq!(parse("auto"), Ok(MaxConnections::Auto));
        assert_eq!(parse("5000"), Ok(MaxConnections::Limit(5000)));
        assert!(parse("lots").is_err() && parse("-1").is_err());
        assert_eq!(MaxConnections::Limit(0).resolve(Some(20_000)), None);
        assert_eq!(MaxConnections::Limit(7).resolve(Some(20_000)), Some(7));
        assert_eq!(MaxConnections::Auto.resolve(Some(2_000)), Some(1_800));
        assert_eq!(
            MaxConnections::Auto.resolve(Some(20_000)),
            Some(19_488),
            "512 at most"
        );
        assert_eq!(
            MaxConnections::Auto.resolve(Some(256)),
            Some(192),
            "64 at least"
        );
        assert_eq!(MaxConnections::Auto.resolve(None), Some(922));
        assert_eq!(MaxConnections::Auto.resolve(Some(10)), Some(1));
        assert_eq!(
            ServeConfig::for_data_dir("/tmp/x").max_connections,
            MaxConnections::Auto
        );
    }

    #[test]
    fn dev_login_defaults_to_loopback_only() {
        let mut config = ServeConfig::for_data_dir("/tmp/x");
        assert!(config.dev_login_enabled());
        config.listen = "0.0.0.0:3000".parse().unwrap();
        assert!(!config.dev_login_enabled());
        config.dev_login = Some(true);
        assert!(config.dev_login_enabled());
    }

    #[test]
    fn dev_login_defaults_off_behind_an_https_public_url_even_on_loopback() {
        let mut config = ServeConfig::for_data_dir("/tmp/x");
        config.public_url = Some("HTTPS://chat.example.org".into());
        assert!(!config.dev_login_enabled());
        config.dev_login = Some(true);
        assert!(config.dev_login_enabled(), "asked for explicitly");
    }
}

/// `--edit-window`: `None` lets authors edit for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditWindow(pub Option<Duration>);

fn parse_edit_window(raw: &str) -> Result<EditWindow, String> {
    match raw.trim() {
        "unlimited" => Ok(EditWindow(None)),
        "0" => Ok(EditWindow(Some(Duration::ZERO))),
        other => humantime::parse_duration(other)
            .map(|d| EditWindow(Some(d)))
            .map_err(|e| format!("{e} (a duration such as 15m, 0, or unlimited)")),
    }
}
