//! Signed bearer tokens (HS256 JWT). They expire after a fixed lifetime, 14 days by default.

use crate::model::UserId;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The user id, as a string like every id on the wire.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The session this token belongs to; revoking the session ends the token.
    pub sid: String,
    /// A random id so two tokens issued in the same second still differ.
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid or expired token")]
    Invalid,
    #[error("token signing failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

pub struct Tokens {
    /// A key derived from the secret for CSRF tokens (never the signing key itself).
    csrf_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], lifetime: Duration) -> Result<Self, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        let csrf_key = {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                .expect("HMAC takes any key length");
            mac.update(b"courier csrf v1");
            mac.finalize().into_bytes().into()
        };
        Ok(Self {
            csrf_key,
            encoding: EncodingKey::from_secret(secret).map_err(TokenError::Signing)?,
            decoding: DecodingKey::from_secret(secret).map_err(TokenError::Signing)?,
            validation,
            lifetime,
        })
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The CSRF token of `session`: an HMAC of its id, so a token set for one session (say
    /// by a sibling subdomain planting a cookie) is worthless for any other.
    pub fn csrf_token(&self, session: &str) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.csrf_key)
            .expect("HMAC takes any key length");
        mac.update(session.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `sent` is the CSRF token of `session`, in constant time; empty never is.
    pub fn verify_csrf(&self, session: &str, sent: &str) -> bool {
        use hmac::Mac;
        let Ok(sent) = hex::decode(sent) else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.csrf_key)
            .expect("HMAC takes any key length");
        mac.update(session.as_bytes());
        !sent.is_empty() && mac.verify_slice(&sent).is_ok()
    }

    /// A token for `session` of `user` that expires at `expires_at`.
    pub fn issue(
        &self,
        user: UserId,
        session: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let now = Utc::now();
        let claims = Claims {
            sub: user.to_string(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            sid: session.to_owned(),
            jti: hex::encode(rand::random::<[u8; 8]>()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(TokenError::Signing)
    }

    /// Checks signature and expiry; returns the user and session the token names.
    pub fn verify(&self, token: &str) -> Result<(UserId, String), TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let user = UserId::parse(&data.claims.sub).ok_or(TokenError::Invalid)?;
        Ok((user, data.claims.sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_its_secret_only() {
        let tokens =
            Tokens::new(b"secret-one-secret-one-secret-one", Duration::from_secs(60)).unwrap();
        let expires = Utc::now() + Duration::from_secs(60);
        let token = tokens.issue(UserId(7), "s1", expires).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), (UserId(7), "s1".to_owned()));
        let other =
            Tokens::new(b"secret-two-secret-two-secret-two", Duration::from_secs(60)).unwrap();
        assert!(other.verify(&token).is_err());
        assert!(tokens.verify("not.a.token").is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let tokens =
            Tokens::new(b"secret-one-secret-one-secret-one", Duration::from_secs(0)).unwrap();
        let token = tokens.issue(UserId(7), "s1", Utc::now()).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(tokens.verify(&token).is_err());
    }
}
