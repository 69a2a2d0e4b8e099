//! The providers: their settings, the GitHub preset (OAuth 2.0, then `GET /user`) and the
//! OpenID Connect identity checks (ID token signature, issuer, audience, nonce, `at_hash`,
//! userinfo).

use super::discovery::Discovery;
use super::{OAuth, OAuthError};
use openidconnect::core::CoreUserInfoClaims;
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet, Nonce,
    OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;

#[derive(Clone)]
pub struct ProviderSettings {
    /// The route segment (`/api/oauth/{id}`) and the name identities are linked under.
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes beyond the preset's (`read:user` for GitHub, `openid profile` for OIDC).
    pub scopes: Vec<String>,
    pub kind: ProviderKind,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("kind", &self.kind)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// GitHub's OAuth apps: `{auth_url}`, `{token_url}`, then `GET {api_url}/user`.
    GitHub {
        auth_url: String,
        token_url: String,
        api_url: String,
    },
    /// Any OpenID Connect provider, found through `{issuer}/.well-known/openid-configuration`.
    Oidc { issuer: String },
}

pub(super) struct Provider {
    pub(super) settings: ProviderSettings,
    pub(super) redirect: RedirectUrl,
    /// OIDC only: the discovered metadata and when it was fetched (or last failed).
    pub(super) discovery: tokio::sync::Mutex<Discovery>,
}

/// Who the provider vouches for.
pub(super) struct Identity {
    pub(super) subject: String,
    pub(super) username: String,
    pub(super) avatar_url: Option<String>,
}

impl OAuth {
    pub(super) async fn github_identity(
        &self,
        provider: &Provider,
        api_url: &str,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
    ) -> Result<Identity, OAuthError> {
        let token = github_client(provider)?
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            // Display only: the Debug form of a parse error holds the response body.
            .map_err(|e| rejected("code exchange", &e))?;
        let user: GitHubUser = self
            .http
            .get(format!("{}/user", api_url.trim_end_matches('/')))
            .bearer_auth(token.access_token().secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unreachable_or_rejected("GitHub user", &e))?
            .json()
            .await
            .map_err(|e| rejected("GitHub user", &e))?;
        Ok(Identity {
            subject: user.id.to_string(),
            username: user.login,
            avatar_url: user.avatar_url.filter(|u| u.starts_with("https://")),
        })
    }

    pub(super) async fn oidc_identity(
        &self,
        provider: &Provider,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        nonce: Nonce,
    ) -> Result<Identity, OAuthError> {
        let client = self.oidc_client(provider).await?;
        let response = client
            .exchange_code(code)
            .map_err(|e| rejected("token endpoint", &e))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| rejected("code exchange", &e))?;
        let id_token = response.id_token().ok_or_else(|| {
            tracing::warn!("the token response has no ID token");
            OAuthError::Rejected
        })?;
        // Signature (keys from discovery), issuer, audience, expiry and nonce.
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|e| rejected("ID token", &e))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| rejected("ID token", &e))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| rejected("ID token", &e))?;
            let actual =
                openidconnect::AccessTokenHash::from_token(response.access_token(), alg, key)
                    .map_err(|e| rejected("ID token", &e))?;
            if actual != *expected {
                tracing::warn!("the ID token's at_hash does not match the access token");
                return Err(OAuthError::Rejected);
            }
        }
        let subject = claims.subject().clone();
        let mut username = claims.preferred_username().map(|u| u.to_string());
        let mut avatar = claims
            .picture()
            .and_then(|p| p.get(None))
            .map(|p| p.to_string());
        // Many providers keep profile claims out of the ID token: ask the userinfo endpoint.
        if username.is_none() && client.user_info_url().is_some() {
            let info: CoreUserInfoClaims = client
                .user_info(
                    AccessToken::new(response.access_token().secret().clone()),
                    Some(subject.clone()),
                )
                .map_err(|e| rejected("userinfo", &e))?
                .request_async(&self.http)
                .await
                .map_err(|e| rejected("userinfo", &e))?;
            username = info.preferred_username().map(|u| u.to_string());
            avatar = avatar.or_else(|| {
                info.picture()
                    .and_then(|p| p.get(None))
                    .map(|p| p.to_string())
            });
            if username.is_none() {
                username = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
            }
        }
        let username = username
            .or_else(|| {
                claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.to_string())
            })
            .or_else(|| {
                claims
                    .email()
                    .map(|e| e.split('@').next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| "user".to_owned());
        Ok(Identity {
            subject: subject.to_string(),
            username,
            avatar_url: avatar.filter(|u| u.starts_with("https://")),
        })
    }
}

#[derive(Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
    avatar_url: Option<String>,
}

type GitHubClient = oauth2::basic::BasicClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

pub(super) fn github_client(provider: &Provider) -> Result<GitHubClient, OAuthError> {
    let ProviderKind::GitHub {
        auth_url,
        token_url,
        ..
    } = &provider.settings.kind
    else {
        return Err(OAuthError::UnknownProvider);
    };
    // Checked in `OAuth::new`, so these parse.
    let auth = oauth2::AuthUrl::new(auth_url.clone()).map_err(|_| OAuthError::UnknownProvider)?;
    let token =
        oauth2::TokenUrl::new(token_url.clone()).map_err(|_| OAuthError::UnknownProvider)?;
    Ok(
        oauth2::basic::BasicClient::new(ClientId::new(provider.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(provider.settings.client_secret.clone()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_redirect_uri(provider.redirect.clone())
            // GitHub documents the client credentials in the form body.
            .set_auth_type(oauth2::AuthType::RequestBody),
    )
}

pub(super) fn scopes(extra: &[String]) -> impl Iterator<Item = Scope> + '_ {
    extra.iter().map(|s| Scope::new(s.clone()))
}

/// Logs why a provider's answer was refused. Only the error's own message is logged, never
/// its Debug form or source chain: those can hold response bodies, and so tokens.
fn rejected(what: &str, error: &dyn std::fmt::Display) -> OAuthError {
    tracing::warn!(%error, "{what} refused");
    OAuthError::Rejected
}

fn unreachable_or_rejected(what: &str, error: &reqwest::Error) -> OAuthError {
    if error.is_connect() || error.is_timeout() {
        tracing::warn!(%error, "{what}: provider unreachable");
        OAuthError::Unavailable
    } else {
        rejected(what, error)
    }
}

/// The provider's `error` value, reduced to the characters RFC 6749 allows in an error code.
pub(super) fn error_code(raw: &str) -> String {
    let code: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        "error".to_owned()
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_codes_are_reduced_to_safe_characters() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>"), "script");
        assert_eq!(error_code("%%"), "error");
    }
}
