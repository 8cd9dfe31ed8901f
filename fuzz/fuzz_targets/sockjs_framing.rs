//! Fuzzes the SockJS framing: client payloads must never panic the parser, and
//! every string the server quotes must decode back to itself as JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stompbridge::transport::sockjs::{parse_client, quote};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_client(text);

    let mut quoted = String::new();
    quote(text, &mut quoted);
    let decoded: String = serde_json::from_str(&quoted).expect("quoted text is a JSON string");
    assert_eq!(decoded, text);
    assert!(
        !quoted.contains('\u{2028}') && !quoted.contains('\u{2029}'),
        "line separators must be escaped"
    );
});
