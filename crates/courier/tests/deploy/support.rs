//! What the deploy tests stand up: the reverse-proxy configs exactly as docs/deploy.md prints
//! them (only ports, certificate paths, the server name and the read timeout substituted), the
//! real `nginx` and `caddy` binaries running them, a CA and certificate for `localhost`, a TCP
//! relay that can cut one node off from PostgreSQL or NATS, and an SSE reader that also sees
//! comments (heartbeats).

use futures::StreamExt;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fenced block that follows `<!-- deploy-test: NAME ... -->` in docs/deploy.md.
pub fn docs_block(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md");
    let docs = std::fs::read_to_string(&path).expect("docs/deploy.md");
    let marker = format!("<!-- deploy-test: {name} ");
    let mut lines = docs
        .lines()
        .skip_while(|line| !line.starts_with(&marker))
        .skip(1);
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "docs/deploy.md: a code block must follow the `{marker}` marker"
    );
    let block: Vec<&str> = lines.take_while(|line| !line.starts_with("```")).collect();
    block.join("\n") + "\n"
}

/// Replaces each `from` with `to`; a `from` the block no longer contains fails the test, so a
/// docs edit cannot silently turn a substitution into a no-op.
pub fn substitute(block: &str, pairs: &[(&str, String)]) -> String {
    let mut out = block.to_owned();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "the documented config no longer contains `{from}`:\n{block}"
        );
        out = out.replace(from, to);
    }
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on PATH or in the sbin directories (nginx lives in /usr/sbin).
pub fn binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A throwaway CA and a certificate for `localhost` signed by it (webpki refuses a
/// self-signed CA certificate used directly as the server's).
fn localhost_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name).display().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let ca = [&["req", "-x509", "-nodes", "-days", "2"][..], &ec];
    let ca_args = [&ca.concat()[..], &["-subj", "/CN=deploy test CA"]].concat();
    let ca_files = [
        "-keyout".to_owned(),
        p("ca.key"),
        "-out".to_owned(),
        p("ca.pem"),
    ];
    run(
        "openssl",
        &ca_args
            .iter()
            .copied()
            .chain(ca_files.iter().map(String::as_str))
            .collect::<Vec<_>>(),
    );
    let csr = [&["req", "-nodes", "-subj", "/CN=localhost"][..], &ec].concat();
    let csr_files = [
        "-keyout".to_owned(),
        p("key.pem"),
        "-out".to_owned(),
        p("cert.csr"),
    ];
    run(
        "openssl",
        &csr.iter()
            .copied()
            .chain(csr_files.iter().map(String::as_str))
            .collect::<Vec<_>>(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &p("cert.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &p("san.ext"),
            "-out",
            &p("cert.pem"),
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

/// One proxy process in front of three upstream ports, answering `https://localhost:<port>`.
pub struct Proxy {
    pub kind: Kind,
    pub port: u16,
    /// The CA the client trusts (ours for nginx, Caddy's own for `tls internal`).
    ca: Vec<u8>,
    child: Child,
    _dir: tempfile::TempDir,
}

fn quiet(command: &mut Command) -> &mut Command {
    command.stdin(Stdio::null()).stdout(Stdio::null());
    if std::env::var_os("TEST_LOG").is_some() {
        command.stderr(Stdio::inherit())
    } else {
        command.stderr(Stdio::null())
    }
}

impl Proxy {
    pub fn start(kind: Kind, upstreams: [u16; 3], read_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // nginx's workers drop to `nobody` and must reach their temp directories.
        run("chmod", &["755", &dir.path().display().to_string()]);
        let port = free_port();
        let timeout = format!("{}ms", read_timeout.as_millis());
        let nodes = [3001, 3002, 3003]
            .into_iter()
            .zip(upstreams)
            .map(|(documented, actual)| (documented, format!("127.0.0.1:{actual}")));
        let mut pairs: Vec<(String, String)> = nodes
            .map(|(documented, actual)| (format!("127.0.0.1:{documented}"), actual))
            .collect();
        let (child, ca) = match kind {
            Kind::Nginx => {
                let (ca, cert, key) = localhost_certificate(dir.path());
                pairs.extend([
                    ("listen 443 ".into(), format!("listen {port} ")),
                    (
                        "/etc/letsencrypt/live/chat.example.org/fullchain.pem".into(),
                        cert.display().to_string(),
                    ),
                    (
                        "/etc/letsencrypt/live/chat.example.org/privkey.pem".into(),
                        key.display().to_string(),
                    ),
                    (
                        "server_name chat.example.org".into(),
                        "server_name localhost".into(),
                    ),
                    (
                        "proxy_read_timeout 1h".into(),
                        format!("proxy_read_timeout {timeout}"),
                    ),
                ]);
                let site = substitute_owned(&docs_block("nginx"), &pairs);
                // The docs give what goes in `http { }`; the rest is what Debian's
                // /etc/nginx/nginx.conf would hold, pointed at the temp dir.
                let d = dir.path().display();
                let conf = format!(
                    "daemon off;\npid {d}/nginx.pid;\nerror_log stderr warn;\nworker_processes 1;\n\
                     events {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  \
                     client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
                     fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
                     scgi_temp_path {d}/scgi;\n{site}}}\n"
                );
                let file = dir.path().join("nginx.conf");
                std::fs::write(&file, conf).unwrap();
                let nginx = binary("nginx").expect("nginx");
                let file = file.display().to_string();
                let prefix = format!("{d}/");
                let check = Command::new(&nginx)
                    .args(["-t", "-q", "-e", "stderr", "-p", &prefix, "-c", &file])
                    .output()
                    .expect("nginx -t");
                assert!(
                    check.status.success(),
                    "nginx -t refuses the documented config: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
                let child =
                    quiet(Command::new(&nginx).args(["-e", "stderr", "-p", &prefix, "-c", &file]))
                        .spawn()
                        .expect("nginx starts");
                (child, std::fs::read(ca).unwrap())
            }
            Kind::Caddy => {
                pairs.extend([
                    ("chat.example.org {".into(), format!("localhost:{port} {{")),
                    ("read_timeout 1h".into(), format!("read_timeout {timeout}")),
                ]);
                let site = substitute_owned(&docs_block("caddy"), &pairs);
                // Global options for the test run only: no admin port, no system trust store,
                // free ports, state in the temp dir. `localhost` gets Caddy's internal CA.
                let d = dir.path().display();
                let http_port = free_port();
                let conf = format!(
                    "{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\t\
                     https_port {port}\n\tstorage file_system {d}/data\n}}\n\n{site}"
                );
                let file = dir.path().join("Caddyfile");
                std::fs::write(&file, conf).unwrap();
                let caddy = binary("caddy").expect("caddy");
                let file = file.display().to_string();
                let child = quiet(
                    Command::new(caddy)
                        .args(["run", "--adapter", "caddyfile", "--config", &file])
                        .env("HOME", dir.path())
                        .env("XDG_DATA_HOME", dir.path())
                        .env("XDG_CONFIG_HOME", dir.path()),
                )
                .spawn()
                .expect("caddy starts");
                let root = dir.path().join("data/pki/authorities/local/root.crt");
                let deadline = Instant::now() + Duration::from_secs(20);
                while !root.is_file() {
                    assert!(Instant::now() < deadline, "caddy made no local CA");
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Written and then renamed into place? Read until it parses as PEM.
                let ca = loop {
                    let pem = std::fs::read(&root).unwrap_or_default();
                    if pem.ends_with(b"-----END CERTIFICATE-----\n") {
                        break pem;
                    }
                    assert!(Instant::now() < deadline, "caddy's root is incomplete");
                    std::thread::sleep(Duration::from_millis(20));
                };
                (child, ca)
            }
        };
        Self {
            kind,
            port,
            ca,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A browser-like client: trusts only the proxy's CA, offers h2 and http/1.1 by ALPN,
    /// and connects from `local` (another loopback address stands for another machine).
    pub fn client(&self, local: Option<IpAddr>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca).expect("CA PEM");
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], self.port)))
            .connect_timeout(Duration::from_secs(5));
        if let Some(local) = local {
            builder = builder.local_address(local);
        }
        builder.build().expect("client")
    }

    /// Polls until the proxy answers `GET /` (certificate issued, upstreams reachable).
    pub async fn wait_until_up(&self) {
        let client = self.client(None);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = client.get(self.url("/")).send().await;
            if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not come up: {answer:?}",
                self.kind
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn substitute_owned(block: &str, pairs: &[(String, String)]) -> String {
    let pairs: Vec<(&str, String)> = pairs
        .iter()
        .map(|(from, to)| (from.as_str(), to.clone()))
        .collect();
    substitute(block, &pairs)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master then stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder between one node and a service; `cut` closes it and every connection
/// through it (the node sees the service vanish), `restore` listens again on the same port.
pub struct Relay {
    pub port: u16,
    target: String,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    pub async fn start(target: &str) -> Self {
        let relay = Self {
            port: free_port(),
            target: target.to_owned(),
            task: std::sync::Mutex::new(None),
        };
        relay.restore().await;
        relay
    }

    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("relay port");
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            // Dropping this set (when the task is aborted) aborts every connection's copy.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    pub async fn cut(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// One frame of an event stream.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A frame with fields (`id:`, `event:`, `data:`); comments in it are dropped.
    Event {
        id: Option<String>,
        event: Option<String>,
        data: Option<String>,
    },
    /// A frame of comments only (`: heartbeat`).
    Comment(String),
}

/// `GET /api/messages` read frame by frame.
pub struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    pub version: reqwest::Version,
}

impl Sse {
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, String> {
        let mut request = client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        if !response.status().is_success() {
            return Err(format!("stream: {}", response.status()));
        }
        Ok(Self {
            version: response.version(),
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        })
    }

    /// The next frame; `None` once the stream ended or broke.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block).into_owned();
                let (mut id, mut event, mut data, mut comment) = (None, None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix(':') {
                        comment = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_owned());
                    }
                }
                return Some(match (&id, &event, &data) {
                    (None, None, None) => Frame::Comment(comment.unwrap_or_default()),
                    _ => Frame::Event { id, event, data },
                });
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}
