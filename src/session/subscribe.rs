//! SUBSCRIBE and UNSUBSCRIBE, with the access rules and user destinations.
//!
//! A subscription to `/user/queue/x` by user U is routed under the key
//! `user:U:/queue/x`, which no client can name (client destinations start with
//! `/`), so a session only ever receives its own user's messages.

use bytes::{BufMut, BytesMut};
use tracing::debug;

use super::{AckMode, Session, Subscription, bad_frame, required};
use crate::{
    auth::Action,
    disconnect::Disconnect,
    metrics::Limit,
    router::Subscriber,
    stomp::{Frame, Version, codec},
};

/// Prefix of destinations resolved to the session's user.
pub const USER_PREFIX: &str = "/user";

/// Returns the router key of `destination` (such as `/queue/notifications`) for `user`.
pub fn user_route(user: &str, destination: &str) -> String {
    format!("user:{}:{user}{destination}", user.len())
}

impl Session {
    pub(super) fn subscribe(&mut self, frame: &Frame, version: Version) -> Result<(), Disconnect> {
        let destination = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id,
            // STOMP 1.0 makes the id optional; the destination then names it.
            None if version == Version::V1_0 => destination,
            None => return Err(bad_frame("SUBSCRIBE requires an id header".into())),
        };
        if !destination.starts_with('/') {
            return Err(bad_frame(format!(
                "invalid destination {destination:?}: must start with '/'"
            )));
        }
        let ack = match frame.get("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => return Err(bad_frame(format!("invalid ack mode {other:?}"))),
        };
        if self.ids.contains_key(id) {
            return Err(bad_frame(format!(
                "subscription id {id:?} is already in use"
            )));
        }
        if self.subscriptions.len() >= self.settings.max_subscriptions {
            self.bridge.metrics.limit_exceeded(Limit::Subscriptions);
            return Err(Disconnect::TooManySubscriptions(
                self.settings.max_subscriptions,
            ));
        }
        self.check_access(Action::Subscribe, destination)?;
        let route = self.route(destination)?;

        let key = self.next_key;
        self.next_key += 1;
        let mut head = BytesMut::with_capacity(48 + id.len());
        head.put_slice(b"MESSAGE\nsubscription:");
        codec::escape_header_text(id, version, &mut head);
        head.put_slice(b"\nmessage-id:");
        self.ids.insert(id.to_owned(), key);
        self.bridge.router.subscribe(
            &route,
            Subscriber {
                session: self.id,
                key,
                outbox: self.outbox.clone(),
            },
        );
        self.subscriptions.insert(
            key,
            Subscription {
                route,
                head: head.freeze(),
                ack: ack != AckMode::Auto,
            },
        );
        self.bridge.metrics.subscriptions.inc();
        debug!(
            session.id = self.id,
            subscription.id = id,
            destination,
            "subscribed"
        );
        Ok(())
    }

    pub(super) fn unsubscribe(
        &mut self,
        frame: &Frame,
        version: Version,
    ) -> Result<(), Disconnect> {
        let id = match (frame.get("id"), version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(bad_frame("UNSUBSCRIBE requires an id header".into())),
        };
        // An unknown id is a no-op, still answered with its RECEIPT.
        if let Some(key) = self.ids.remove(id) {
            self.remove_subscription(key);
            debug!(session.id = self.id, subscription.id = id, "unsubscribed");
        }
        Ok(())
    }

    pub(super) fn remove_subscription(&mut self, key: u64) {
        if let Some(subscription) = self.subscriptions.remove(&key) {
            self.bridge
                .router
                .unsubscribe(&subscription.route, self.id, key);
            self.bridge.metrics.subscriptions.dec();
        }
    }

    /// Applies the access rules in force now.
    pub(super) fn check_access(&self, action: Action, destination: &str) -> Result<(), Disconnect> {
        if self
            .bridge
            .access()
            .allows(action, destination, self.principal.as_ref())
        {
            return Ok(());
        }
        self.bridge.metrics.access_denied(action);
        debug!(
            session.id = self.id,
            destination,
            action = action.as_str(),
            "access denied"
        );
        Err(Disconnect::AccessDenied(action, destination.to_owned()))
    }

    /// The router key for `destination`: itself, or the per-user key of a
    /// `/user/...` destination.
    fn route(&self, destination: &str) -> Result<String, Disconnect> {
        let Some(rest) = destination
            .strip_prefix(USER_PREFIX)
            .filter(|rest| rest.starts_with('/'))
        else {
            return Ok(destination.to_owned());
        };
        match &self.principal {
            Some(principal) => Ok(user_route(&principal.user, rest)),
            None => Err(Disconnect::AccessDenied(
                Action::Subscribe,
                destination.to_owned(),
            )),
        }
    }
}
