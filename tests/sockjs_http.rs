//! The SockJS HTTP transports on their own, with echo and close services:
//! framing, preludes, the response limit, timeouts, cookies and errors.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ws::WebSocket, http::HeaderMap, response::Response};
use futures_util::future::BoxFuture;
use stompbridge::{
    metrics::Transport,
    transport::sockjs::{Options, Service, SockJs, Ticket, mount, session::Session},
};
use tokio_util::sync::CancellationToken;

struct Echo;
struct Close;

impl Service for Echo {
    fn admit(&self, _: &HeaderMap) -> Result<Ticket, Box<Response>> {
        Ok(Ticket(Box::new(())))
    }

    fn serve(&self, mut session: Session, _: Transport, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            while let Some(messages) = session.recv().await {
                if session.send(messages).is_err() {
                    break;
                }
            }
        })
    }

    fn serve_raw(&self, _: WebSocket, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl Service for Close {
    fn admit(&self, _: &HeaderMap) -> Result<Ticket, Box<Response>> {
        Ok(Ticket(Box::new(())))
    }

    fn serve(&self, session: Session, _: Transport, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async move { session.close(3000, "Go away!") })
    }

    fn serve_raw(&self, _: WebSocket, _: Ticket) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server(options: Options) -> Server {
    stompbridge::install_tls_provider();
    let stop = CancellationToken::new();
    let make = |options: Options, service: Arc<dyn Service>| {
        let server = SockJs::new(options, service, None);
        tokio::spawn(server.clone().reap(stop.clone()));
        server
    };
    let app = mount(vec![
        ("/echo".into(), make(options.clone(), Arc::new(Echo))),
        (
            "/cookie".into(),
            make(
                Options {
                    cookie_needed: true,
                    ..options.clone()
                },
                Arc::new(Echo),
            ),
        ),
        ("/close".into(), make(options, Arc::new(Close))),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve_stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(serve_stop.cancelled_owned())
            .await
    });
    Server {
        addr,
        client: reqwest::Client::new(),
        stop,
    }
}

fn test_options() -> Options {
    Options {
        response_limit: 4096,
        heartbeat: Duration::from_millis(400),
        disconnect_delay: Duration::from_millis(800),
        ..Options::default()
    }
}

fn session_url(server: &Server, service: &str) -> String {
    format!(
        "http://{}/{service}/000/{:016x}",
        server.addr,
        rand::random::<u64>()
    )
}

async fn post(server: &Server, url: &str, body: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = server
        .client
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn get(server: &Server, url: &str) -> (u16, String) {
    let response = server.client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Reads the next chunk of a streaming response as text.
async fn chunk(response: &mut reqwest::Response) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("a chunk within 5 s")
        .unwrap()
        .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn xhr_polling_opens_sends_and_receives() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let (status, headers, body) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!((status, body.as_str()), (200, "o\n"));
    assert_eq!(
        headers["content-type"],
        "application/javascript; charset=UTF-8"
    );
    assert_eq!(
        headers["cache-control"],
        "no-store, no-cache, no-transform, must-revalidate, max-age=0"
    );

    let (status, headers, body) = post(&server, &format!("{url}/xhr_send"), r#"["x","y"]"#).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(headers["content-type"], "text/plain; charset=UTF-8");
    let (_, _, body) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!(body, "a[\"x\",\"y\"]\n");
}

#[tokio::test]
async fn xhr_send_errors() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let (status, _, _) = post(&server, &format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(status, 404, "sending to an unknown session");
    post(&server, &format!("{url}/xhr"), "").await;
    let (status, _, body) = post(&server, &format!("{url}/xhr_send"), r#"["x"#).await;
    assert_eq!((status, body.as_str()), (500, "Broken JSON encoding."));
    let (status, _, body) = post(&server, &format!("{url}/xhr_send"), "").await;
    assert_eq!((status, body.as_str()), (500, "Payload expected."));
    let (status, _, _) = post(&server, &format!("{url}/xhr_send"), "[]").await;
    assert_eq!(status, 204, "an empty frame is allowed");
    let oversized = format!("[\"{}\"]", "x".repeat(200_000));
    let (status, _, _) = post(&server, &format!("{url}/xhr_send"), &oversized).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn second_receiver_gets_another_connection_close() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    post(&server, &format!("{url}/xhr"), "").await;
    let first = server.client.post(format!("{url}/xhr")).send();
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "c[2010,\"Another connection still open\"]\n")
    );
    // The first poll still gets a heartbeat when nothing arrives.
    let first = first.await.unwrap().unwrap().text().await.unwrap();
    assert_eq!(first, "h\n");
}

#[tokio::test]
async fn xhr_streaming_prelude_frames_and_limit() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let mut stream = server
        .client
        .post(format!("{url}/xhr_streaming"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(chunk(&mut stream).await.unwrap(), "h".repeat(2048) + "\n");
    assert_eq!(chunk(&mut stream).await.unwrap(), "o\n");

    let message = format!("\"{}\"", "x".repeat(128));
    for _ in 0..31 {
        let (status, _, _) =
            post(&server, &format!("{url}/xhr_send"), &format!("[{message}]")).await;
        assert_eq!(status, 204);
        assert_eq!(chunk(&mut stream).await.unwrap(), format!("a[{message}]\n"));
    }
    // Past 4096 bytes the response ends, so the client opens a new one.
    assert_eq!(chunk(&mut stream).await, None);
}

#[tokio::test]
async fn eventsource_and_htmlfile_framing() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let mut events = server
        .client
        .get(format!("{url}/eventsource"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    assert_eq!(chunk(&mut events).await.unwrap(), "\r\n");
    assert_eq!(chunk(&mut events).await.unwrap(), "data: o\r\n\r\n");
    post(&server, &format!("{url}/xhr_send"), r#"["  \u0000\n\r "]"#).await;
    assert_eq!(
        chunk(&mut events).await.unwrap(),
        "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n"
    );
    drop(events);

    let url = session_url(&server, "echo");
    let mut page = server
        .client
        .get(format!("{url}/htmlfile?c=%63allback"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=UTF-8");
    let prelude = chunk(&mut page).await.unwrap();
    assert!(prelude.len() > 1024, "the prelude is padded past 1 KiB");
    assert!(prelude.contains("var c = parent.callback;"));
    assert_eq!(
        chunk(&mut page).await.unwrap(),
        "<script>\np(\"o\");\n</script>\r\n"
    );
    post(&server, &format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(
        chunk(&mut page).await.unwrap(),
        "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n"
    );
}

#[tokio::test]
async fn callbacks_are_required_and_checked() {
    let server = server(test_options()).await;
    for transport in ["htmlfile", "jsonp"] {
        let base = format!("http://{}/echo/a/a/{transport}", server.addr);
        let (status, body) = get(&server, &base).await;
        assert_eq!(
            (status, body.as_str()),
            (500, "\"callback\" parameter required")
        );
        for callback in ["%20", "*", "abc(", "abc%28"] {
            let (status, body) = get(&server, &format!("{base}?c={callback}")).await;
            assert_eq!(
                (status, body.as_str()),
                (500, "invalid \"callback\" parameter")
            );
        }
    }
}

#[tokio::test]
async fn jsonp_polling_and_sending() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let (status, body) = get(&server, &format!("{url}/jsonp?c=cb")).await;
    assert_eq!((status, body.as_str()), (200, "/**/cb(\"o\");\r\n"));
    let form = server
        .client
        .post(format!("{url}/jsonp_send"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("d=%5B%22x%22%5D")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(form.text().await.unwrap(), "ok");
    let (_, _, body) = post(&server, &format!("{url}/jsonp_send"), r#"["%61bc"]"#).await;
    assert_eq!(body, "ok");
    let (_, body) = get(&server, &format!("{url}/jsonp?c=cb")).await;
    assert_eq!(body, "/**/cb(\"a[\\\"x\\\",\\\"%61bc\\\"]\");\r\n");
    for empty in ["", "d=", "p=p"] {
        let response = server
            .client
            .post(format!("{url}/jsonp_send"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(empty)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.text().await.unwrap(), "Payload expected.");
    }
}

#[tokio::test]
async fn closed_session_answers_with_its_close_frame() {
    let server = server(test_options()).await;
    let url = session_url(&server, "close");
    let (_, _, body) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!(body, "o\n");
    for _ in 0..2 {
        let (_, _, body) = post(&server, &format!("{url}/xhr"), "").await;
        assert_eq!(body, "c[3000,\"Go away!\"]\n");
    }
}

#[tokio::test]
async fn session_without_receiver_is_reclaimed() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    post(&server, &format!("{url}/xhr"), "").await;
    post(&server, &format!("{url}/xhr_send"), r#"["lost"]"#).await;
    // Past the disconnect delay (800 ms) plus a reaper tick, the session is gone.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, _) = post(&server, &format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(status, 404);
    let (_, _, body) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!(body, "o\n", "a new session starts under the same id");
}

#[tokio::test]
async fn aborted_streaming_request_interrupts_the_session() {
    let server = server(test_options()).await;
    let url = session_url(&server, "echo");
    let mut first = server
        .client
        .post(format!("{url}/xhr_streaming"))
        .send()
        .await
        .unwrap();
    chunk(&mut first).await;
    assert_eq!(chunk(&mut first).await.unwrap(), "o\n");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = server
        .client
        .post(format!("{url}/xhr_streaming"))
        .send()
        .await
        .unwrap();
    chunk(&mut second).await;
    let next = chunk(&mut second).await.unwrap();
    assert!(
        next == "o\n" || next == "c[1002,\"Connection interrupted\"]\n",
        "after an abort: {next:?}"
    );
}

#[tokio::test]
async fn cookie_needed_sets_jsessionid() {
    let server = server(test_options()).await;
    let url = session_url(&server, "cookie");
    let (_, headers, _) = post(&server, &format!("{url}/xhr"), "").await;
    assert_eq!(headers["set-cookie"], "JSESSIONID=dummy; path=/");
    let url = session_url(&server, "cookie");
    let response = server
        .client
        .post(format!("{url}/xhr"))
        .header("Cookie", "JSESSIONID=abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["set-cookie"],
        "JSESSIONID=abcdef; path=/"
    );
    let (status, body) = get(&server, &format!("http://{}/cookie/info", server.addr)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"cookie_needed\":true"), "{body}");
}

#[tokio::test]
async fn preflight_and_iframe_are_cacheable() {
    let server = server(test_options()).await;
    let response = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/echo/abc/abc/xhr", server.addr),
        )
        .header("Origin", "null")
        .header("Access-Control-Request-Headers", "a, b, c")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "null");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-headers"], "a, b, c");
    assert_eq!(headers["access-control-allow-methods"], "OPTIONS, POST");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    assert!(headers.contains_key("expires"));

    let page = server
        .client
        .get(format!("http://{}/echo/iframe-0.1.2.html", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let etag = page.headers()["etag"].clone();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("SockJS.bootstrap_iframe();")
    );
    let again = server
        .client
        .get(format!("http://{}/echo/iframe.html", server.addr))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let (status, _) = get(&server, &format!("http://{}/echo/iframe.htm", server.addr)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn session_limit_refuses_new_sessions() {
    let server = server(Options {
        max_sessions: 1,
        ..test_options()
    })
    .await;
    let (status, _, _) = post(
        &server,
        &format!("{}/xhr", session_url(&server, "echo")),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = post(
        &server,
        &format!("{}/xhr", session_url(&server, "echo")),
        "",
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn websocket_versions_other_than_13_get_426() {
    let server = server(test_options()).await;
    let response = server
        .client
        .get(format!("http://{}/echo/000/abc/websocket", server.addr))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "8")
        .header("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}
