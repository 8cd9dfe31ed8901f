//! Authentication and access: who a session belongs to, and what it may do.
//!
//! A CONNECT carries a JWT in its `Authorization: Bearer …` header, or in
//! `passcode` for clients that cannot set headers. The header name is matched
//! case-insensitively and, as STOMP says for repeated headers, the first one
//! wins. With `auth.anonymous: allow` a missing or invalid token gives an
//! anonymous session; with `deny` it gives an ERROR naming the reason. Tokens
//! are never logged.

pub mod access;
pub mod jwt;

use std::{sync::Arc, time::SystemTime};

use crate::{
    config::{AnonymousPolicy, AuthConfig},
    stomp::Frame,
};
pub use access::{AccessRules, Action};

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: Arc<str>,
    pub roles: Vec<String>,
    /// When the token stops being valid (its `exp` plus the leeway).
    pub expires_at: Option<SystemTime>,
}

/// Why a token was not accepted. Closed set: the `reason` label of
/// `stompbridge_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("no key for the token's kid")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("token has no user id claim")]
    MissingUser,
}

/// Checks CONNECT frames against the configured policy and keys.
#[derive(Clone, Debug)]
pub struct Authenticator {
    anonymous: AnonymousPolicy,
    jwt: Option<jwt::Jwt>,
}

// === impl AuthError ===

impl AuthError {
    pub const ALL: [AuthError; 10] = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::AlgorithmNotAllowed,
        AuthError::UnknownKey,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::MissingUser,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::MissingUser => "missing_user",
        }
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// Builds the authenticator of a loaded configuration.
    ///
    /// # Errors
    ///
    /// A message naming the JWT setting that cannot be used.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let jwt = config.jwt.as_ref().map(jwt::Jwt::new).transpose()?;
        Ok(Self {
            anonymous: config.anonymous,
            jwt,
        })
    }

    /// Decides who a CONNECT frame belongs to: the principal, or `None` for an
    /// anonymous session, with the reason an invalid token was set aside (for
    /// the failure metric). Without `auth.jwt` every session is anonymous.
    ///
    /// # Errors
    ///
    /// The reason the session is refused under `anonymous: deny`.
    pub fn connect(
        &self,
        frame: &Frame,
    ) -> Result<(Option<Principal>, Option<AuthError>), AuthError> {
        let Some(jwt) = &self.jwt else {
            return Ok((None, None));
        };
        let result = match token(frame) {
            Some(token) => jwt.validate(token),
            None => Err(AuthError::Missing),
        };
        match (result, self.anonymous) {
            (Ok(principal), _) => Ok((Some(principal), None)),
            (Err(AuthError::Missing), AnonymousPolicy::Allow) => Ok((None, None)),
            (Err(error), AnonymousPolicy::Allow) => Ok((None, Some(error))),
            (Err(error), AnonymousPolicy::Deny) => Err(error),
        }
    }

    /// Validates a token presented later in the session (token refresh).
    ///
    /// # Errors
    ///
    /// Why the token is not accepted.
    pub fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        match &self.jwt {
            Some(jwt) => jwt.validate(token),
            None => Err(AuthError::AlgorithmNotAllowed),
        }
    }
}

/// The token of a CONNECT frame: the first `Authorization` header (any case)
/// with the `Bearer` scheme, else `passcode`.
pub fn token(frame: &Frame) -> Option<&str> {
    let authorization = frame
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim());
    if let Some(value) = authorization {
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Some(rest);
        }
    }
    frame
        .get("passcode")
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests;
