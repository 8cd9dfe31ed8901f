//! JWT validation: the token's `alg` must be one of `auth.jwt.algorithms`, the
//! key is picked by algorithm family (the HMAC secret, the PEM public key, or
//! the JWKS entry named by `kid`), and `exp`, `nbf`, `iss` and `aud` are checked
//! with the configured leeway.
//!
//! Algorithm confusion is ruled out because a key is only ever used with its
//! own family: an HS256 token is checked against the HMAC secret and never
//! against an RSA public key, and `alg: none` is not an algorithm at all.

use std::{collections::HashMap, time::SystemTime};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde_json::Value;

use super::{AuthError, Principal};
use crate::config::JwtConfig;

/// Keys and rules for validating tokens.
#[derive(Clone)]
pub struct Jwt {
    algorithms: Vec<Algorithm>,
    hmac: Option<DecodingKey>,
    public: Option<DecodingKey>,
    /// JWKS keys by `kid`.
    jwks: HashMap<String, DecodingKey>,
    issuer: Option<Vec<String>>,
    audience: Option<Vec<String>>,
    leeway: u64,
    user_claim: String,
    roles_claim: String,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.algorithms)
            .field("jwks_keys", &self.jwks.len())
            .finish_non_exhaustive()
    }
}

// === impl Jwt ===

impl Jwt {
    /// Builds the validator from a loaded configuration.
    ///
    /// # Errors
    ///
    /// A message naming the setting that cannot be used: an unknown algorithm,
    /// a missing or unreadable key, or a key of the wrong kind.
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let algorithm = name.parse::<Algorithm>().map_err(|_| {
                format!(
                    "unknown algorithm {name:?}; use HS256/384/512, RS*, PS*, ES256/384 or EdDSA"
                )
            })?;
            algorithms.push(algorithm);
        }
        if algorithms.is_empty() {
            return Err("algorithms must name at least one algorithm".into());
        }
        let needs_hmac = algorithms
            .iter()
            .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac);
        let needs_public = algorithms
            .iter()
            .any(|a| a.family() != jsonwebtoken::AlgorithmFamily::Hmac);

        let hmac = match (&config.keys.secret, needs_hmac) {
            (Some(secret), true) => Some(
                DecodingKey::from_secret(&secret.0)
                    .map_err(|e| format!("invalid HMAC secret: {e}"))?,
            ),
            (None, true) => return Err("HS* algorithms need secret_env or secret_file".into()),
            (_, false) => None,
        };
        let public = match &config.keys.public_key_pem {
            Some(pem) => Some(public_key(&pem.0, &algorithms)?),
            None => None,
        };
        let jwks = match &config.keys.jwks_json {
            Some(json) => jwks_keys(&json.0)?,
            None => HashMap::new(),
        };
        if needs_public && public.is_none() && jwks.is_empty() {
            return Err(
                "RS*, PS*, ES* and EdDSA algorithms need public_key_file or jwks_file".into(),
            );
        }
        Ok(Self {
            algorithms,
            hmac,
            public,
            jwks,
            issuer: config.issuer.as_ref().map(|i| i.0.clone()),
            audience: config.audience.as_ref().map(|a| a.0.clone()),
            leeway: config.leeway.as_secs(),
            user_claim: config.user_claim.clone(),
            roles_claim: config.roles_claim.clone(),
        })
    }

    /// Validates `token` and returns who it names.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] naming why the token is not accepted.
    pub fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            // `alg` values the library does not know, `none` included.
            ErrorKind::Json(_) => AuthError::AlgorithmNotAllowed,
            _ => AuthError::Malformed,
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let key = self.key_for(header.alg, header.kid.as_deref())?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.required_spec_claims.clear();
        match &self.audience {
            Some(audience) => {
                validation.set_audience(audience);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(issuer);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation)
            .map_err(|error| classify(error.kind()))?;
        self.principal(&data.claims)
    }

    fn key_for(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, AuthError> {
        if algorithm.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return self.hmac.as_ref().ok_or(AuthError::AlgorithmNotAllowed);
        }
        let from_jwks = kid.and_then(|kid| self.jwks.get(kid));
        let key = from_jwks
            .or(self.public.as_ref())
            .ok_or(AuthError::UnknownKey)?;
        // A key is only used with algorithms of its own family.
        if key.family() != algorithm.family() {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        Ok(key)
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal, AuthError> {
        let user = match claims.get(&self.user_claim) {
            Some(Value::String(user)) if !user.is_empty() => user.clone(),
            Some(Value::Number(user)) => user.to_string(),
            _ => return Err(AuthError::MissingUser),
        };
        let roles = match claims.get(&self.roles_claim) {
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(roles)) => roles.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        // An `exp` beyond what the clock can represent never expires.
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .and_then(|exp| exp.checked_add(self.leeway))
            .and_then(|at| SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(at)));
        Ok(Principal {
            user: user.into(),
            roles,
            expires_at,
        })
    }
}

/// Reads a PEM public key of the family of the first asymmetric algorithm.
fn public_key(pem: &[u8], algorithms: &[Algorithm]) -> Result<DecodingKey, String> {
    use jsonwebtoken::AlgorithmFamily as Family;
    let family = algorithms
        .iter()
        .map(|a| a.family())
        .find(|f| *f != Family::Hmac)
        .ok_or("public_key_file is set but no RS*, PS*, ES* or EdDSA algorithm is listed")?;
    let key = match family {
        Family::Rsa => DecodingKey::from_rsa_pem(pem),
        Family::Ec => DecodingKey::from_ec_pem(pem),
        Family::Ed | Family::Hmac => DecodingKey::from_ed_pem(pem),
    };
    key.map_err(|error| format!("public_key_file is not a PEM public key for {family:?}: {error}"))
}

/// Reads every supported key with a `kid` from a JWKS document.
fn jwks_keys(json: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet = serde_json::from_slice(json)
        .map_err(|error| format!("jwks_file is not a JWKS document: {error}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            // Shared secrets do not belong in a public key set.
            continue;
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|error| format!("jwks_file key {kid:?}: {error}"))?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err("jwks_file holds no public key with a kid".into());
    }
    Ok(keys)
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        _ => AuthError::Malformed,
    }
}
