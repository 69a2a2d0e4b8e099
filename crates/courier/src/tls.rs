//! TLS for serving browsers directly: rustls with ALPN `h2` and `http/1.1`, so a browser gets
//! HTTP/2 (every tab's requests and the event stream share one connection), and a certificate
//! that can be replaced while serving.
//!
//! - **Reload.** `CertResolver` hands each new handshake the current certificate. It is
//!   re-read on SIGHUP and whenever the files' modification times change (checked every
//!   `reload_every`), so a renewal by certbot or an ACME client is picked up without a
//!   restart. Open connections keep the certificate they were made with; nothing is dropped.
//!   A renewal that fails to parse is logged and the old certificate stays.
//! - **ACME.** With `--acme-domain`, rustls-acme obtains the certificate and renews it before
//!   it expires, answering TLS-ALPN-01 challenges on the same port (so no port 80 is needed),
//!   and caches account and certificate in the data directory. A challenge connection is
//!   closed right after its handshake; it never reaches HTTP.
//! - **Accepting.** Handshakes run in each connection's own task (`app::serve`), under the
//!   header-read deadline, so one slow or silent client never holds up the accept loop.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Reads a PEM certificate chain and its private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).context("the key does not match the certificate")
}

/// The certificate every new handshake gets; replaced in place by `reload`.
#[derive(Debug)]
pub struct CertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl CertResolver {
    pub fn open(cert_path: PathBuf, key_path: PathBuf) -> anyhow::Result<Arc<Self>> {
        let key = load_certified_key(&cert_path, &key_path)?;
        let stamps = (modified(&cert_path), modified(&key_path));
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(key)),
            stamps: RwLock::new(stamps),
        }))
    }

    /// Re-reads the files; on failure the old certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = load_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) =
            (modified(&self.cert_path), modified(&self.key_path));
        tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }

    fn changed(&self) -> bool {
        let now = (modified(&self.cert_path), modified(&self.key_path));
        *self.stamps.read().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reloads on SIGHUP and when the files change, until `shutdown`.
    pub fn watch(self: &Arc<Self>, reload_every: Duration, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut ticks = tokio::time::interval(reload_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                let forced = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = hup => true,
                    _ = ticks.tick() => false,
                };
                if (forced || this.changed())
                    && let Err(e) = this.reload()
                {
                    tracing::error!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the old one");
                }
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// rustls settings: the resolver's certificate, HTTP/2 preferred over HTTP/1.1, and the ACME
/// challenge protocol when `acme` is set.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    acme: bool,
) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

const ACME_TLS_ALPN: &[u8] = rustls_acme::acme::ACME_TLS_ALPN_NAME;

/// Where and how to get certificates by ACME.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub directory: String,
    pub contact: Vec<String>,
    /// Trust only this root for the directory's own HTTPS (a private CA or a test server).
    pub ca_root: Option<PathBuf>,
    pub cache_dir: PathBuf,
}

/// Starts obtaining (and later renewing) the certificate; the returned resolver serves it, and
/// the challenge certificates meanwhile.
pub fn acme(
    settings: &AcmeSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn ResolvesServerCert>> {
    use futures::StreamExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config =
        rustls_acme::AcmeConfig::new_with_provider(&settings.domains, provider.clone());
    if let Some(root) = &settings.ca_root {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(root)
            .with_context(|| format!("reading {}", root.display()))?
        {
            roots
                .add(cert.with_context(|| format!("parsing {}", root.display()))?)
                .context("adding the ACME CA root")?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config = config.client_tls_config(Arc::new(client));
    }
    let mut state = config
        .directory(&settings.directory)
        .contact(&settings.contact)
        .cache(rustls_acme::caches::DirCache::new(
            settings.cache_dir.clone(),
        ))
        .state();
    let resolver: Arc<dyn ResolvesServerCert> = state.resolver();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = state.next() => event,
            };
            match event {
                Some(Ok(ok)) => tracing::info!(event = ?ok, "ACME"),
                Some(Err(e)) => tracing::error!(error = %e, "ACME; will retry"),
                None => return,
            }
        }
    });
    Ok(resolver)
}

/// A connection that only came to complete an ACME TLS-ALPN-01 challenge.
pub fn is_acme_validation(connection: &rustls::ServerConnection) -> bool {
    connection.alpn_protocol() == Some(ACME_TLS_ALPN)
}
