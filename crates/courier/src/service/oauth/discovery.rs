//! OpenID Connect discovery: each provider's metadata (and the signing keys it names),
//! fetched at most once per `DISCOVERY_TTL`, shared by concurrent sign-ins, and kept while
//! the provider is briefly down.

use super::providers::{Provider, ProviderKind};
use super::{OAuth, OAuthError};
use openidconnect::core::{CoreClient, CoreClientAuthMethod, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
};
use std::time::{Duration, Instant};

/// Discovery documents (and the signing keys they name) are fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

pub(super) type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Default)]
pub(super) struct Discovery {
    metadata: Option<(CoreProviderMetadata, Instant)>,
}

impl OAuth {
    pub(super) async fn oidc_client(&self, provider: &Provider) -> Result<OidcClient, OAuthError> {
        let metadata = self.metadata(provider).await?;
        // HTTP Basic is the default (and what a provider that names no method supports); use
        // the form body only for a provider that offers that and not Basic.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.settings.client_id.clone()),
            Some(ClientSecret::new(provider.settings.client_secret.clone())),
        )
        .set_redirect_uri(provider.redirect.clone());
        Ok(if post_only {
            client.set_auth_type(oauth2::AuthType::RequestBody)
        } else {
            client
        })
    }

    /// The discovery document, fetched at most once per `DISCOVERY_TTL`; after a failure the
    /// next sign-in tries again. The lock makes concurrent sign-ins share one fetch.
    pub(super) async fn metadata(
        &self,
        provider: &Provider,
    ) -> Result<CoreProviderMetadata, OAuthError> {
        let ProviderKind::Oidc { issuer } = &provider.settings.kind else {
            return Err(OAuthError::UnknownProvider);
        };
        let mut discovery = provider.discovery.lock().await;
        if let Some((metadata, at)) = &discovery.metadata
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(issuer.clone()).map_err(|_| OAuthError::UnknownProvider)?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                discovery.metadata = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            Err(e) => {
                // Discovery carries no secret, so its whole cause chain may be logged.
                let mut cause = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    cause.push_str(&format!(": {inner}"));
                    source = inner.source();
                }
                tracing::warn!(provider = %provider.settings.id, error = %cause, "OpenID discovery failed");
                stale_or_unavailable(&discovery)
            }
        }
    }
}

/// A provider that is briefly down keeps working with the document it last served.
fn stale_or_unavailable(discovery: &Discovery) -> Result<CoreProviderMetadata, OAuthError> {
    discovery
        .metadata
        .as_ref()
        .map(|(m, _)| m.clone())
        .ok_or(OAuthError::Unavailable)
}
