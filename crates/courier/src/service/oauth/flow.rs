//! The flow in progress: its state (state, PKCE verifier, nonce, where to return), sealed
//! into the flow cookie with AES-256-GCM, and the same-origin check on the return path.

use super::OAuthError;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2_next::Sha256;
use std::time::Duration;

/// How long a started sign-in may take before its flow state expires.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// A flow in progress, as kept in the sealed cookie. Short keys keep the cookie small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Random, unique per flow: spent in the store when the callback is handled.
    #[serde(rename = "i", default)]
    pub id: String,
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "s")]
    pub state: String,
    /// The PKCE verifier whose S256 challenge went to the provider.
    #[serde(rename = "v", default)]
    pub verifier: String,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(rename = "r")]
    pub return_to: String,
    /// Set when a signed-in person links this provider to their account (their user id):
    /// the callback adds the identity to it instead of signing anyone in.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub link: Option<i64>,
    /// Unix seconds after which the flow is refused.
    #[serde(rename = "e")]
    pub expires: i64,
}

impl FlowState {
    /// A fresh flow id: 128 random bits, base64url.
    pub fn new_id() -> String {
        B64.encode(rand::random::<[u8; 16]>())
    }
}

/// Encrypts flow states with a key derived from the token secret, so every node that shares
/// the secret can open what another sealed, and nobody else can read or change them.
pub struct FlowSeal {
    cipher: Aes256Gcm,
}

/// Bytes of the random AES-GCM nonce put in front of every sealed state.
const SEAL_NONCE: usize = 12;

impl FlowSeal {
    pub fn new(secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"courier oauth flow"), secret)
            .expand(b"courier oauth flow state v2 aes-256-gcm", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            cipher: Aes256Gcm::new_from_slice(&key).expect("32-byte key"),
        }
    }

    /// `base64url(nonce ‖ AES-256-GCM(key, nonce, json))`, with a fresh random 96-bit nonce.
    pub fn seal(&self, flow: &FlowState) -> String {
        let json = serde_json::to_vec(flow).expect("flow state serialises");
        let nonce: [u8; SEAL_NONCE] = rand::random();
        let sealed = self
            .cipher
            .encrypt(&nonce.into(), json.as_slice())
            .expect("AES-GCM encrypts a small message");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The flow state in a sealed value, if it decrypts (so was sealed with this key and not
    /// changed) and has not expired. Whether it was spent already is the caller's check.
    pub fn open(&self, sealed: &str) -> Result<FlowState, OAuthError> {
        let forged = || OAuthError::InvalidFlow("the sign-in state is not valid; start again");
        let raw = B64.decode(sealed).map_err(|_| forged())?;
        if raw.len() < SEAL_NONCE {
            return Err(forged());
        }
        let (nonce, body) = raw.split_at(SEAL_NONCE);
        let nonce: [u8; SEAL_NONCE] = nonce.try_into().expect("split at the nonce length");
        let json = self
            .cipher
            .decrypt(&nonce.into(), body)
            .map_err(|_| forged())?;
        let flow: FlowState = serde_json::from_slice(&json).map_err(|_| forged())?;
        if flow.expires < chrono::Utc::now().timestamp() {
            return Err(OAuthError::InvalidFlow(
                "this sign-in took too long; start again",
            ));
        }
        Ok(flow)
    }
}

/// A same-origin path to land on after sign-in: `/…` but never `//…` or `/\…` (which a
/// browser reads as another host), printable ASCII only, and not an API route. Dot segments,
/// plain or percent-encoded (`/./api/…`, `/%2e%2e/api/…`), are resolved first, as the
/// browser will resolve them, so they cannot smuggle an API route past the check.
pub fn safe_return_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/')
        || raw.len() > 512
        || !raw.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
    {
        return None;
    }
    let (path, rest) = raw.split_at(raw.find(['?', '#']).unwrap_or(raw.len()));
    let path = path.replace("%2e", ".").replace("%2E", ".");
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
        if last && matches!(*segment, "." | "..") {
            kept.push("");
        }
    }
    let normalized = format!("/{}{rest}", kept.join("/"));
    let ok = !normalized.starts_with("//")
        && normalized != "/api"
        && !normalized.starts_with("/api/")
        && !normalized.starts_with("/api?")
        && !normalized.starts_with("/api#");
    ok.then_some(normalized)
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::PkceCodeChallenge;

    fn flow() -> FlowState {
        FlowState {
            id: "flow-id".into(),
            provider: "github".into(),
            state: "st".into(),
            verifier: "v".into(),
            nonce: None,
            return_to: "/".into(),
            link: None,
            expires: chrono::Utc::now().timestamp() + 60,
        }
    }

    #[test]
    fn a_sealed_flow_opens_with_its_key_only() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let sealed = seal.seal(&flow());
        assert_eq!(seal.open(&sealed).unwrap(), flow());
        let other = FlowSeal::new(b"secret-two-secret-two-secret-two");
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn a_tampered_or_expired_flow_is_refused() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let sealed = seal.seal(&flow());
        let raw = B64.decode(&sealed).unwrap();
        // Any one bit flipped anywhere (nonce, ciphertext or tag) breaks it.
        for i in 0..raw.len() {
            let mut changed = raw.clone();
            changed[i] ^= 0x01;
            assert!(seal.open(&B64.encode(&changed)).is_err(), "byte {i}");
        }
        assert!(seal.open(&B64.encode(&raw[..raw.len() - 1])).is_err());
        assert!(seal.open(&B64.encode(&raw[..SEAL_NONCE])).is_err());
        assert!(seal.open(&format!("{sealed}.x")).is_err());
        assert!(seal.open("").is_err());
        // The old signed-JSON format is not accepted either.
        let plain = B64.encode(serde_json::to_vec(&flow()).unwrap());
        assert!(seal.open(&plain).is_err());
        let expired = FlowState {
            expires: chrono::Utc::now().timestamp() - 1,
            ..flow()
        };
        assert!(seal.open(&seal.seal(&expired)).is_err());
    }

    #[test]
    fn a_sealed_flow_shows_none_of_its_secrets() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let (_, verifier) = PkceCodeChallenge::new_random_sha256();
        let secret = FlowState {
            verifier: verifier.secret().clone(),
            state: "state-4b1d0c2e9f7a".into(),
            nonce: Some("nonce-77e0a1f3c5d9".into()),
            ..flow()
        };
        let sealed = seal.seal(&secret);
        let raw = B64.decode(&sealed).unwrap();
        // Neither the cookie itself nor any decoding of it (whole, or after the nonce, in
        // any base64 alphabet) shows the verifier, state or nonce.
        let mut views: Vec<Vec<u8>> = vec![sealed.clone().into_bytes(), raw.clone()];
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            views.push(engine.encode(&raw).into_bytes());
        }
        for skip in 0..=SEAL_NONCE {
            views.push(raw[skip..].to_vec());
            views.push(
                String::from_utf8_lossy(&raw[skip..])
                    .into_owned()
                    .into_bytes(),
            );
        }
        for view in &views {
            for needle in [
                secret.verifier.as_bytes(),
                &secret.verifier.as_bytes()[..16],
                b"state-4b1d0c2e9f7a",
                b"nonce-77e0a1f3c5d9",
            ] {
                assert!(
                    !view.windows(needle.len()).any(|w| w == needle),
                    "a secret shows in the sealed cookie"
                );
            }
        }
        // Two seals of the same state differ (fresh nonce), and both open.
        let again = seal.seal(&secret);
        assert_ne!(sealed, again);
        assert_eq!(seal.open(&again).unwrap(), secret);
        assert_eq!(seal.open(&sealed).unwrap(), secret);
    }

    #[test]
    fn flow_ids_are_random() {
        let a = FlowState::new_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, FlowState::new_id());
    }

    #[test]
    fn only_same_origin_paths_are_return_paths() {
        for ok in ["/", "/c/12", "/c/12?x=1#y"] {
            assert_eq!(safe_return_path(ok).as_deref(), Some(ok));
        }
        assert_eq!(safe_return_path("/c/./12").as_deref(), Some("/c/12"));
        assert_eq!(safe_return_path("/c/x/../12").as_deref(), Some("/c/12"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a b",
            "/api/logout",
            "/x\\y",
            "",
            "/./api/logout",
            "/%2e/api/logout",
            "/%2E%2e/api/logout",
            "/c/../api/sessions",
            "/c/%2e%2e/api",
            "/.//evil.example",
            "/%2e//evil.example",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad}");
        }
    }
}
