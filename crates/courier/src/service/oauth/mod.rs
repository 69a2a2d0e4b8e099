//! Sign-in through an identity provider: the OAuth 2.0 authorization-code flow with `state`
//! and PKCE (S256), plus OpenID Connect's `nonce` and ID token checks. GitHub is a preset (it
//! speaks OAuth 2.0 but not OIDC); any number of OIDC providers come from discovery.
//!
//! The flow's secrets (state, PKCE verifier, nonce) travel in a short-lived cookie encrypted
//! (AES-256-GCM) with a key derived from the token secret, so any node of a cluster can finish
//! a flow another node started. Each flow has a random id that the callback spends in the
//! store, so a flow finishes at most once, whichever node its callback reaches.
//!
//! The rooms: `flow` (the flow state, its sealed cookie, the return path), `providers` (their
//! settings, the GitHub preset, the OIDC identity checks) and `discovery` (OIDC metadata).

mod discovery;
mod flow;
mod providers;

pub use flow::{FLOW_LIFETIME, FlowSeal, FlowState, safe_return_path};
pub use providers::{ProviderKind, ProviderSettings};

use super::{Accounts, ServiceError, SignedIn};
use flow::constant_time_eq;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};
use providers::{Provider, error_code, github_client, scopes};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Where this server is reached, e.g. `https://chat.example.org`; redirect URIs hang off it.
    pub public_url: String,
    pub providers: Vec<ProviderSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("no such sign-in provider")]
    UnknownProvider,
    /// The flow state is missing, forged, expired, or does not match this callback.
    #[error("{0}")]
    InvalidFlow(&'static str),
    /// The provider answered with `?error=…` (for example the person said no).
    #[error("the provider refused the sign-in: {0}")]
    Denied(String),
    /// The provider or its answer failed a check (code exchange, ID token, user info).
    #[error("the sign-in could not be verified")]
    Rejected,
    #[error("the provider could not be reached; try again later")]
    Unavailable,
    #[error(transparent)]
    Account(#[from] ServiceError),
}

/// What the browser needs to start a sign-in.
pub struct Started {
    /// The provider's authorization URL to redirect to.
    pub redirect: String,
    /// The sealed flow state, for the flow cookie.
    pub flow: String,
}

/// The query of a callback, as the provider sent it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the issuer that sent this response, when the provider says so.
    pub iss: Option<String>,
}

pub struct Finished {
    /// `None` when the flow linked a provider to the account already signed in.
    pub signed_in: Option<SignedIn>,
    /// The same-origin path saved when the flow started.
    pub return_to: String,
}

pub struct OAuth {
    providers: Vec<Arc<Provider>>,
    seal: FlowSeal,
    http: reqwest::Client,
    accounts: Arc<Accounts>,
}

impl OAuth {
    /// `secret` is the token signing secret; the flow cookie's key is derived from it.
    pub fn new(
        settings: OAuthSettings,
        secret: &[u8],
        accounts: Arc<Accounts>,
    ) -> Result<Self, String> {
        let base = settings.public_url.trim_end_matches('/');
        let mut providers = Vec::new();
        for p in settings.providers {
            if providers
                .iter()
                .any(|q: &Arc<Provider>| q.settings.id == p.id)
            {
                return Err(format!("two sign-in providers use the id {:?}", p.id));
            }
            let redirect = RedirectUrl::new(format!("{base}/api/oauth/{}/callback", p.id))
                .map_err(|e| format!("public URL {base:?}: {e}"))?;
            match &p.kind {
                ProviderKind::GitHub {
                    auth_url,
                    token_url,
                    api_url,
                } => {
                    for url in [auth_url, token_url, api_url] {
                        oauth2::url::Url::parse(url)
                            .map_err(|e| format!("GitHub URL {url:?}: {e}"))?;
                    }
                }
                ProviderKind::Oidc { issuer } => {
                    IssuerUrl::new(issuer.clone())
                        .map_err(|e| format!("issuer of {:?}: {e}", p.id))?;
                }
            }
            providers.push(Arc::new(Provider {
                settings: p,
                redirect,
                discovery: Default::default(),
            }));
        }
        let http = reqwest::Client::builder()
            // Redirects are not followed: a provider's endpoints are exact (and SSRF stays shut).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("courier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            providers,
            seal: FlowSeal::new(secret),
            http,
            accounts,
        })
    }

    /// `(id, display name)` of every configured provider, in configuration order.
    pub fn providers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.providers
            .iter()
            .map(|p| (p.settings.id.as_str(), p.settings.name.as_str()))
    }

    /// Fetches every OIDC discovery document in the background. A provider that is down is
    /// only logged: it is tried again when someone signs in through it.
    pub fn warm_up(self: &Arc<Self>) {
        for provider in &self.providers {
            if let ProviderKind::Oidc { issuer } = &provider.settings.kind {
                let (this, provider, issuer) = (self.clone(), provider.clone(), issuer.clone());
                tokio::spawn(async move {
                    match this.metadata(&provider).await {
                        Ok(_) => {
                            tracing::info!(provider = %provider.settings.id, %issuer, "OpenID provider discovered")
                        }
                        Err(_) => {
                            tracing::warn!(provider = %provider.settings.id, %issuer, "OpenID provider not reachable yet; will retry on first sign-in")
                        }
                    }
                });
            }
        }
    }

    /// Begins a sign-in: the provider's authorization URL and the flow state to keep.
    #[tracing::instrument(skip_all, fields(provider = provider_id))]
    pub async fn start(
        &self,
        provider_id: &str,
        return_to: Option<&str>,
        link: Option<crate::model::UserId>,
    ) -> Result<Started, OAuthError> {
        let provider = self.provider(provider_id)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let return_to = return_to
            .and_then(safe_return_path)
            .unwrap_or_else(|| "/".to_owned());
        let (url, state, nonce) = match &provider.settings.kind {
            ProviderKind::GitHub { .. } => {
                let client = github_client(provider)?;
                let (url, state) = client
                    .authorize_url(CsrfToken::new_random)
                    .add_scope(oauth2::Scope::new("read:user".into()))
                    .add_scopes(scopes(&provider.settings.scopes))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, None)
            }
            ProviderKind::Oidc { .. } => {
                let client = self.oidc_client(provider).await?;
                let (url, state, nonce) = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        CsrfToken::new_random,
                        Nonce::new_random,
                    )
                    .add_scope(Scope::new("profile".into()))
                    .add_scopes(scopes(&provider.settings.scopes))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, Some(nonce.secret().clone()))
            }
        };
        let flow = FlowState {
            id: FlowState::new_id(),
            provider: provider.settings.id.clone(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce,
            return_to,
            link: link.map(|u| u.0),
            expires: chrono::Utc::now().timestamp() + FLOW_LIFETIME.as_secs() as i64,
        };
        Ok(Started {
            redirect: url.to_string(),
            flow: self.seal(&flow),
        })
    }

    /// Finishes a sign-in: checks the flow state against the callback, exchanges the code
    /// (with the PKCE verifier), verifies who the provider vouches for, and opens a session.
    #[tracing::instrument(skip_all, fields(provider = provider_id))]
    pub async fn finish(
        &self,
        provider_id: &str,
        flow: Option<&str>,
        params: &CallbackParams,
        device: &str,
    ) -> Result<Finished, OAuthError> {
        let provider = self.provider(provider_id)?;
        let flow = self.open(flow.ok_or(OAuthError::InvalidFlow(
            "this sign-in has no state here (expired, or cookies are off); start again",
        ))?)?;
        if flow.provider != provider.settings.id {
            return Err(OAuthError::InvalidFlow(
                "this sign-in was started with another provider; start again",
            ));
        }
        let state_matches = params
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), flow.state.as_bytes()));
        if !state_matches {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state does not match; start again",
            ));
        }
        // Spent before anything else is done with it: a replayed callback (the same cookie,
        // state and code, on this node or another) is refused like an expired flow.
        if flow.id.is_empty() {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state is not valid; start again",
            ));
        }
        let expires =
            chrono::DateTime::from_timestamp(flow.expires, 0).unwrap_or_else(chrono::Utc::now);
        if !self.accounts.spend_oauth_flow(&flow.id, expires).await? {
            tracing::warn!("a sign-in flow was replayed");
            return Err(OAuthError::InvalidFlow(
                "this sign-in was already used; start again",
            ));
        }
        if let Some(error) = &params.error {
            return Err(OAuthError::Denied(error_code(error)));
        }
        if flow.verifier.is_empty() {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state has no PKCE verifier; start again",
            ));
        }
        let code = match params.code.as_deref() {
            Some(code) if !code.is_empty() => AuthorizationCode::new(code.to_owned()),
            _ => return Err(OAuthError::InvalidFlow("the provider sent no code")),
        };
        let verifier = PkceCodeVerifier::new(flow.verifier.clone());
        let identity = match &provider.settings.kind {
            ProviderKind::GitHub { api_url, .. } => {
                self.github_identity(provider, api_url, code, verifier)
                    .await?
            }
            ProviderKind::Oidc { issuer } => {
                // RFC 9207: a response that names another issuer is a mix-up attack.
                if params.iss.as_deref().is_some_and(|iss| iss != issuer) {
                    tracing::warn!("callback names another issuer");
                    return Err(OAuthError::Rejected);
                }
                let nonce = flow.nonce.clone().ok_or(OAuthError::InvalidFlow(
                    "the sign-in state has no nonce; start again",
                ))?;
                self.oidc_identity(provider, code, verifier, Nonce::new(nonce))
                    .await?
            }
        };
        if let Some(user) = flow.link {
            self.accounts
                .link_identity(
                    crate::model::UserId(user),
                    &provider.settings.id,
                    &identity.subject,
                )
                .await?;
            return Ok(Finished {
                signed_in: None,
                return_to: flow.return_to,
            });
        }
        let signed_in = self
            .accounts
            .sign_in_external(
                &provider.settings.id,
                &identity.subject,
                &identity.username,
                identity.avatar_url.as_deref(),
                device,
            )
            .await?;
        Ok(Finished {
            signed_in: Some(signed_in),
            return_to: flow.return_to,
        })
    }

    /// Seals a flow state for the cookie (public so tests can forge well-sealed states).
    pub fn seal(&self, flow: &FlowState) -> String {
        self.seal.seal(flow)
    }

    pub fn open(&self, sealed: &str) -> Result<FlowState, OAuthError> {
        self.seal.open(sealed)
    }

    fn provider(&self, id: &str) -> Result<&Arc<Provider>, OAuthError> {
        self.providers
            .iter()
            .find(|p| p.settings.id == id)
            .ok_or(OAuthError::UnknownProvider)
    }
}
