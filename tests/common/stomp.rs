//! A small STOMP client over WebSocket for tests, built on the crate's codec,
//! speaking raw STOMP or SockJS framing.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use stompbridge::stomp::{Command, Decoder, Frame, Limits, Version, codec};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

/// How long a test waits for one frame before failing.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Raw,
    SockJs,
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub framing: Framing,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    decoder: Decoder,
    input: BytesMut,
    pending: std::collections::VecDeque<Frame>,
}

/// What [`Client::next`] returns.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// A STOMP heart-beat (a lone EOL).
    HeartBeat,
    /// The server closed the connection, with the WebSocket close code if any.
    Closed(Option<u16>),
}

impl Client {
    /// Opens a WebSocket, offering `protocols` as subprotocols.
    pub async fn open(url: &str, protocols: &[&str], framing: Framing) -> Client {
        let mut request = url.into_client_request().expect("valid URL");
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).expect("valid header"),
            );
        }
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|err| panic!("WebSocket handshake with {url} failed: {err}"));
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let mut client = Client {
            ws,
            framing,
            protocol,
            decoder: Decoder::new(Limits {
                max_frame_bytes: 16 << 20,
                ..Limits::default()
            }),
            input: BytesMut::new(),
            pending: Default::default(),
        };
        client.decoder.set_version(Version::V1_2);
        if framing == Framing::SockJs {
            let open = client.recv_text().await;
            assert_eq!(open, "o", "SockJS session must start with an open frame");
        }
        client
    }

    /// Opens a raw WebSocket connection and completes CONNECT with STOMP 1.2.
    pub async fn connect(url: &str) -> Client {
        let mut client = Client::open(url, &["v12.stomp"], Framing::Raw).await;
        client.handshake("heart-beat:0,0").await;
        client
    }

    /// Sends CONNECT with `headers` (lines of `name:value`) and waits for CONNECTED.
    pub async fn handshake(&mut self, headers: &str) -> Frame {
        let mut text = String::from("CONNECT\naccept-version:1.2\nhost:localhost\n");
        for line in headers.lines().filter(|l| !l.is_empty()) {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("\n\0");
        self.send_text(&text).await;
        let frame = self.frame().await;
        assert_eq!(
            frame.command,
            Command::Connected,
            "expected CONNECTED, got {frame:?}"
        );
        frame
    }

    /// Sends raw STOMP text in one WebSocket message.
    pub async fn send_text(&mut self, text: &str) {
        let message = match self.framing {
            Framing::Raw => Message::text(text),
            Framing::SockJs => Message::text(serde_json::to_string(&[text]).expect("JSON")),
        };
        self.ws.send(message).await.expect("send");
    }

    /// Sends a frame encoded for STOMP 1.2.
    pub async fn send_frame(&mut self, frame: &Frame) {
        let bytes = codec::encode_to_bytes(frame, Version::V1_2);
        self.send_text(std::str::from_utf8(&bytes).expect("UTF-8 frame"))
            .await;
    }

    /// Subscribes and waits for the receipt, so no message published afterwards
    /// can be missed.
    pub async fn subscribe(&mut self, id: &str, destination: &str) {
        let receipt = format!("sub-{id}");
        self.send_text(&format!(
            "SUBSCRIBE\nid:{id}\ndestination:{destination}\nreceipt:{receipt}\n\n\0"
        ))
        .await;
        let frame = self.frame().await;
        assert_eq!(
            frame.command,
            Command::Receipt,
            "expected RECEIPT, got {frame:?}"
        );
        assert_eq!(frame.get("receipt-id"), Some(receipt.as_str()));
    }

    /// Returns the next frame, skipping heart-beats. Fails the test on close or timeout.
    pub async fn frame(&mut self) -> Frame {
        loop {
            match self.next().await {
                Event::Frame(frame) => return frame,
                Event::HeartBeat => continue,
                Event::Closed(code) => {
                    panic!("connection closed (code {code:?}) while waiting for a frame")
                }
            }
        }
    }

    /// Returns the next event. Fails the test after [`RECEIVE_TIMEOUT`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(RECEIVE_TIMEOUT, self.next_event())
            .await
            .expect("no frame within the receive timeout")
    }

    async fn next_event(&mut self) -> Event {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Event::Frame(frame);
            }
            let message = match self.ws.next().await {
                Some(Ok(message)) => message,
                Some(Err(_)) | None => return Event::Closed(None),
            };
            let payloads: Vec<Vec<u8>> = match (message, self.framing) {
                (Message::Close(frame), _) => return Event::Closed(frame.map(|f| f.code.into())),
                (Message::Text(text), Framing::Raw) => vec![text.as_bytes().to_vec()],
                (Message::Binary(data), Framing::Raw) => vec![data.to_vec()],
                (Message::Text(text), Framing::SockJs) => match sockjs_payloads(&text) {
                    SockJsFrame::Messages(messages) => messages,
                    SockJsFrame::Heartbeat => continue,
                    SockJsFrame::Close(code) => return Event::Closed(Some(code)),
                },
                _ => continue,
            };
            for payload in payloads {
                if payload == b"\n" || payload == b"\r\n" {
                    return Event::HeartBeat;
                }
                self.input.extend_from_slice(&payload);
                while let Some(frame) = self
                    .decoder
                    .decode(&mut self.input)
                    .expect("valid frame from server")
                {
                    self.pending.push_back(frame);
                }
            }
        }
    }

    async fn recv_text(&mut self) -> String {
        let message = tokio::time::timeout(RECEIVE_TIMEOUT, self.ws.next())
            .await
            .expect("no message within the receive timeout")
            .expect("connection open")
            .expect("valid message");
        message.into_text().expect("text message").to_string()
    }

    /// Waits for the server to close the connection and returns the ERROR frame
    /// it sent before, if any, with the close code.
    pub async fn closed(&mut self) -> (Option<Frame>, Option<u16>) {
        let mut error = None;
        loop {
            match self.next().await {
                Event::Frame(frame) if frame.command == Command::Error => error = Some(frame),
                Event::Frame(_) | Event::HeartBeat => {}
                Event::Closed(code) => return (error, code),
            }
        }
    }
}

enum SockJsFrame {
    Messages(Vec<Vec<u8>>),
    Heartbeat,
    Close(u16),
}

fn sockjs_payloads(text: &str) -> SockJsFrame {
    match text.as_bytes().first() {
        Some(b'h') => SockJsFrame::Heartbeat,
        Some(b'a') => {
            let messages: Vec<String> = serde_json::from_str(&text[1..]).expect("SockJS a-frame");
            SockJsFrame::Messages(messages.into_iter().map(String::into_bytes).collect())
        }
        Some(b'c') => {
            let (code, _): (u16, String) =
                serde_json::from_str(&text[1..]).expect("SockJS c-frame");
            SockJsFrame::Close(code)
        }
        _ => panic!("unexpected SockJS frame {text:?}"),
    }
}
