//! CONNECT: version and heart-beat negotiation, authentication, and the
//! in-band token refresh (a SEND to `/session/token`).

use std::time::SystemTime;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::debug;

use super::{HeartBeat, Session, State, bad_frame, heartbeat, negotiate_version};
use crate::{
    auth::{AuthError, Principal, token},
    disconnect::Disconnect,
    stomp::{Command, Frame, Version},
};

/// Destination of the token refresh SEND. The body (or an `Authorization:
/// Bearer` header) carries a new token for the session's user.
pub const TOKEN_DESTINATION: &str = "/session/token";

impl Session {
    pub(super) fn connect(
        &mut self,
        frame: &Frame,
        now: Instant,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Disconnect> {
        let version = negotiate_version(frame.get("accept-version"))?;
        let offer = self.settings.heart_beat;
        let heart_beat = if version == Version::V1_0 {
            HeartBeat::disabled(now)
        } else {
            HeartBeat::negotiate(frame.get("heart-beat"), &offer, now)
                .map_err(|_| bad_frame("invalid heart-beat header".into()))?
        };
        let principal = self.authenticate(frame)?;

        self.heart_beat = heart_beat;
        self.decoder.set_version(version);
        self.state = State::Connected { version };
        self.set_principal(principal);
        self.bridge.metrics.sessions.inc();

        let mut connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", concat!("stompbridge/", env!("CARGO_PKG_VERSION")))
            .header("session", self.id.to_string());
        if version > Version::V1_0 {
            connected = connected.header("heart-beat", heartbeat::offer_header(&offer));
        }
        if let Some(principal) = &self.principal {
            connected = connected.header("user-name", principal.user.as_ref());
        }
        debug!(
            session.id = self.id,
            version = version.as_str(),
            authenticated = self.principal.is_some(),
            "session connected"
        );
        self.emit(&connected, version, out);
        Ok(())
    }

    /// Checks the CONNECT frame's token. Failures are counted and logged
    /// without the token.
    fn authenticate(&self, frame: &Frame) -> Result<Option<Principal>, Disconnect> {
        match self.bridge.authenticator().connect(frame) {
            Ok((principal, set_aside)) => {
                if let Some(reason) = set_aside {
                    self.bridge.metrics.auth_failure(reason);
                    debug!(
                        session.id = self.id,
                        reason = reason.label(),
                        "token rejected, session is anonymous"
                    );
                }
                Ok(principal)
            }
            Err(reason) => {
                self.bridge.metrics.auth_failure(reason);
                debug!(
                    session.id = self.id,
                    reason = reason.label(),
                    "token rejected, CONNECT refused"
                );
                Err(Disconnect::AuthFailed(reason))
            }
        }
    }

    fn set_principal(&mut self, principal: Option<Principal>) {
        // An expiry too far ahead for the clock means no expiry.
        self.expires_at = principal
            .as_ref()
            .and_then(|p| p.expires_at)
            .and_then(|at| match at.duration_since(SystemTime::now()) {
                Ok(left) => Instant::now().checked_add(left),
                Err(_) => Some(Instant::now()),
            });
        self.principal = principal;
    }

    /// Replaces the session's token with a newer one for the same user, which
    /// moves its expiry.
    pub(super) fn refresh_token(&mut self, frame: &Frame) -> Result<(), Disconnect> {
        let Some(current) = &self.principal else {
            return Err(bad_frame(
                "an anonymous session cannot take a token; reconnect with one in CONNECT".into(),
            ));
        };
        let body = std::str::from_utf8(&frame.body).unwrap_or_default().trim();
        let presented = token(frame).or((!body.is_empty()).then_some(body));
        let Some(presented) = presented else {
            return Err(bad_frame(format!(
                "SEND to {TOKEN_DESTINATION} needs a token in its body"
            )));
        };
        let principal = self
            .bridge
            .authenticator()
            .validate(presented)
            .map_err(|reason| {
                self.bridge.metrics.auth_failure(reason);
                Disconnect::AuthFailed(reason)
            })?;
        if principal.user != current.user {
            self.bridge.metrics.auth_failure(AuthError::MissingUser);
            return Err(bad_frame("the new token is for another user".into()));
        }
        debug!(session.id = self.id, "token refreshed");
        self.set_principal(Some(principal));
        Ok(())
    }
}
