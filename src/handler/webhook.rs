//! The `webhook` handler: POSTs the message's envelope to `webhook.url`.
//!
//! The body is signed with HMAC-SHA256 over the exact bytes sent, in the header
//! `webhook.signature_header` as `sha256=<hex>`, when a secret is configured.
//! A 2xx status is success. 5xx, 408, 429, timeouts and connection errors are
//! transient, so the consumer retries them with backoff; any other status is a
//! permanent failure. Redirects are not followed, because a redirected POST
//! would silently become a GET.

use hmac::{Hmac, Mac};
use reqwest::{Client, StatusCode, header};
use sha2::Sha256;

use super::{Failure, FailureReason, Incoming, Outcome};
use crate::{
    config::WebhookOptions,
    envelope::{Envelope, Payload},
};

#[derive(Debug)]
pub struct Webhook {
    options: WebhookOptions,
    client: Client,
}

impl Webhook {
    pub(super) fn new(options: WebhookOptions) -> Result<Self, String> {
        crate::install_tls_provider();
        let client = Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stompbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the webhook HTTP client: {error}"))?;
        Ok(Self { options, client })
    }

    pub(super) async fn handle(&self, message: &Incoming<'_>) -> Result<Outcome, Failure> {
        let payload = Payload::from_body(message.body);
        let body = Envelope {
            queue_name: message.queue,
            handler_type: "webhook",
            routing_key: message.routing_key,
            timestamp: message.timestamp,
            payload: &payload.json,
        }
        .render();

        let mut request = self
            .client
            .post(&self.options.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Stompbridge-Queue", message.queue);
        if let Some(id) = message.properties.message_id() {
            request = request.header("X-Stompbridge-Message-Id", id.as_str());
        }
        if let Some(secret) = &self.options.secret {
            request = request.header(
                self.options.signature_header.as_str(),
                sign(&secret.0, &body),
            );
        }
        let response = request.body(body).send().await.map_err(classify_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(Outcome::Publish {
                payload,
                extra: Vec::new(),
            });
        }
        let reason = if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            FailureReason::WebhookUnavailable
        } else {
            FailureReason::WebhookRejected
        };
        Err(Failure::new(
            reason,
            format!("the webhook answered {status}"),
        ))
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn classify_error(error: reqwest::Error) -> Failure {
    let reason = if error.is_timeout() {
        FailureReason::WebhookTimeout
    } else {
        FailureReason::WebhookUnreachable
    };
    let detail = crate::error_chain::ErrorChain(&error).to_string();
    Failure::new(reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231, test case 2.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
