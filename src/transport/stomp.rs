//! The STOMP bridge as a SockJS [`Service`]: every SockJS session, on any
//! transport, and every raw WebSocket under a SockJS prefix, runs one STOMP
//! session. Admission applies the origin check and `limits.max_sessions`.

use std::sync::Arc;

use axum::{
    extract::ws::WebSocket,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;

use super::{
    Endpoints,
    connection::{self, SockJsLink, WsLink},
    sockjs::{Service, Ticket, session::Session},
};
use crate::metrics::Transport;

/// STOMP over SockJS.
#[derive(Debug)]
pub(crate) struct StompService {
    pub endpoints: Arc<Endpoints>,
}

impl Service for StompService {
    fn admit(&self, headers: &HeaderMap) -> Result<Ticket, Box<Response>> {
        self.endpoints
            .admit(headers)
            .map(|permit| Ticket(Box::new(permit)))
            .map_err(|refusal| Box::new(refusal.into_response()))
    }

    fn serve(
        &self,
        session: Session,
        transport: Transport,
        ticket: Ticket,
    ) -> BoxFuture<'static, ()> {
        let bridge = self.endpoints.bridge.clone();
        Box::pin(connection::serve(
            SockJsLink { session, transport },
            bridge,
            ticket,
        ))
    }

    fn serve_raw(&self, socket: WebSocket, ticket: Ticket) -> BoxFuture<'static, ()> {
        let bridge = self.endpoints.bridge.clone();
        Box::pin(connection::serve(WsLink { socket }, bridge, ticket))
    }
}
