//! `auth` and `access`: who a client is, and what it may subscribe to or send.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, de};

use super::Secret;

/// Environment variable the example configuration reads the HS256 secret from.
pub const JWT_SECRET_ENV: &str = "STOMPBRIDGE_JWT_SECRET";

/// `auth`: JWT authentication on CONNECT.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether a CONNECT without a valid token is accepted as anonymous.
    pub anonymous: AnonymousPolicy,
    /// Token validation; without it every session is anonymous.
    pub jwt: Option<JwtConfig>,
}

/// What happens to a CONNECT without a valid token.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousPolicy {
    /// The session is anonymous: `/topic/**` works, `/user/**` and `/app/**` do not.
    #[default]
    Allow,
    /// The CONNECT gets an ERROR naming the reason.
    Deny,
}

/// `auth.jwt`: how tokens are checked.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted `alg` values, e.g. `[HS256]` or `[RS256, ES256]`. `none` is
    /// never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Environment variable holding the HMAC secret (HS256/384/512).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the HMAC secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// PEM file with the public key for RS*, PS*, ES* or EdDSA tokens.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// JWKS file; a token's `kid` picks the key.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` values; a token with another issuer is rejected.
    #[serde(default)]
    pub issuer: Option<OneOrMany>,
    /// Required `aud` values; a token for another audience is rejected.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Claim holding the user id (a string or a number).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Claim holding the roles (a list of strings, or one space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Key material read when the file is loaded.
    #[serde(skip)]
    pub keys: JwtKeys,
}

/// Key material named by [`JwtConfig`], read at load time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtKeys {
    pub secret: Option<Secret>,
    pub public_key_pem: Option<Secret>,
    pub jwks_json: Option<Secret>,
}

/// One string or a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

/// One entry of `access`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Destination pattern: `*` matches one segment, `**` any number.
    pub destination: String,
    /// Who may SUBSCRIBE to matching destinations; unset denies.
    #[serde(default)]
    pub subscribe: Option<Permission>,
    /// Who may SEND to matching destinations; unset denies.
    #[serde(default)]
    pub send: Option<Permission>,
}

/// Who a rule lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    Anyone,
    Authenticated,
    Nobody,
    /// Authenticated users with at least one of these roles.
    Roles(Vec<String>),
}

fn default_algorithms() -> Vec<String> {
    vec!["HS256".into()]
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

// === impl OneOrMany ===

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![value.to_owned()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<String>()? {
                    values.push(value);
                }
                Ok(OneOrMany(values))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

// === impl Permission ===

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Permission;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anyone, authenticated, nobody, or {roles: [...]}")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                match value {
                    "anyone" => Ok(Permission::Anyone),
                    "authenticated" => Ok(Permission::Authenticated),
                    "nobody" => Ok(Permission::Nobody),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut roles = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "roles" {
                        return Err(de::Error::unknown_field(&key, &["roles"]));
                    }
                    roles = Some(map.next_value::<OneOrMany>()?.0);
                }
                roles
                    .map(Permission::Roles)
                    .ok_or_else(|| de::Error::missing_field("roles"))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Anyone => f.write_str("anyone"),
            Permission::Authenticated => f.write_str("authenticated"),
            Permission::Nobody => f.write_str("nobody"),
            Permission::Roles(roles) => write!(f, "roles {}", roles.join(", ")),
        }
    }
}

/// The rules that follow the configured ones: `/topic/**` anyone may
/// subscribe to, `/user/**` authenticated users may subscribe to, `/app/**`
/// authenticated users may send to. Everything else is denied.
pub fn default_access_rules() -> Vec<AccessRule> {
    vec![
        AccessRule {
            destination: "/topic/**".into(),
            subscribe: Some(Permission::Anyone),
            send: None,
        },
        AccessRule {
            destination: "/user/**".into(),
            subscribe: Some(Permission::Authenticated),
            send: None,
        },
        AccessRule {
            destination: "/app/**".into(),
            subscribe: None,
            send: Some(Permission::Authenticated),
        },
    ]
}
