use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn decoder(version: Option<Version>) -> Decoder {
    let mut decoder = Decoder::new(Limits::default());
    if let Some(version) = version {
        decoder.set_version(version);
    }
    decoder
}

fn decode_all(decoder: &mut Decoder, input: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    let mut buf = BytesMut::from(input);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        frames.push(frame);
    }
    Ok(frames)
}

fn decode_one(version: Option<Version>, input: &[u8]) -> Result<Frame, DecodeError> {
    let mut frames = decode_all(&mut decoder(version), input)?;
    assert_eq!(frames.len(), 1, "expected exactly one frame");
    Ok(frames.remove(0))
}

#[test]
fn decodes_every_command() {
    for command in Command::ALL {
        let input = format!("{command}\nfoo:bar\n\n\0");
        let frame = decode_one(Some(Version::V1_2), input.as_bytes()).unwrap();
        assert_eq!(frame.command, command);
        assert_eq!(frame.get("foo"), Some("bar"));
        assert!(frame.body.is_empty());
    }
}

#[test]
fn unknown_command_is_rejected() {
    let err = decode_one(Some(Version::V1_2), b"FROB\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::UnknownCommand("FROB".into()));
    let err = decode_one(Some(Version::V1_2), b"send\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::UnknownCommand("send".into()));
}

#[test]
fn header_escaping_v1_2() {
    let frame = decode_one(Some(Version::V1_2), b"SEND\na\\cb:c\\nd\\re\\\\f\n\n\0").unwrap();
    assert_eq!(frame.headers, vec![("a:b".into(), "c\nd\re\\f".into())]);
}

#[test]
fn header_escaping_v1_1_has_no_carriage_return() {
    let frame = decode_one(Some(Version::V1_1), b"SEND\nk:a\\cb\\nc\\\\\n\n\0").unwrap();
    assert_eq!(frame.get("k"), Some("a:b\nc\\"));
    let err = decode_one(Some(Version::V1_1), b"SEND\nk:a\\rb\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::InvalidEscape('r'));
}

#[test]
fn header_escaping_v1_0_is_literal() {
    let frame = decode_one(Some(Version::V1_0), b"SEND\nk:a\\nb:c\n\n\0").unwrap();
    assert_eq!(frame.get("k"), Some("a\\nb:c"));
}

#[test]
fn undefined_escape_is_fatal() {
    let err = decode_one(Some(Version::V1_2), b"SEND\nk:a\\tb\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::InvalidEscape('t'));
    let err = decode_one(Some(Version::V1_2), b"SEND\nk:ab\\\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::InvalidEscape(' '));
}

#[test]
fn connect_headers_are_never_unescaped() {
    let frame = decode_one(Some(Version::V1_2), b"CONNECT\nlogin:a\\cb\n\n\0").unwrap();
    assert_eq!(frame.get("login"), Some("a\\cb"));
    let frame = decode_one(None, b"STOMP\npasscode:x\\ty\n\n\0").unwrap();
    assert_eq!(frame.get("passcode"), Some("x\\ty"));
}

#[test]
fn encode_escapes_per_version() {
    let frame = Frame::new(Command::Message).header("k:1", "a\nb\r\\");
    let v12 = encode_to_bytes(&frame, Version::V1_2);
    assert_eq!(&v12[..], b"MESSAGE\nk\\c1:a\\nb\\r\\\\\n\n\0");
    let v11 = encode_to_bytes(&frame, Version::V1_1);
    assert_eq!(&v11[..], b"MESSAGE\nk\\c1:a\\nb\r\\\\\n\n\0");
    let v10 = encode_to_bytes(&frame, Version::V1_0);
    assert_eq!(&v10[..], b"MESSAGE\nk:1:a\nb\r\\\n\n\0");
}

#[test]
fn encode_never_escapes_connected() {
    let frame = Frame::new(Command::Connected).header("server", "a:b");
    let bytes = encode_to_bytes(&frame, Version::V1_2);
    assert_eq!(&bytes[..], b"CONNECTED\nserver:a:b\n\n\0");
}

#[test]
fn content_length_allows_nul_in_body() {
    let frame = decode_one(Some(Version::V1_2), b"SEND\ncontent-length:5\n\na\0b\0c\0").unwrap();
    assert_eq!(&frame.body[..], b"a\0b\0c");
}

#[test]
fn content_length_without_trailing_nul_is_rejected() {
    let err = decode_one(Some(Version::V1_2), b"SEND\ncontent-length:2\n\nabc\0").unwrap_err();
    assert_eq!(err, DecodeError::MissingNul);
}

#[test]
fn invalid_content_length_is_rejected() {
    for value in ["-1", "abc", "1.5", ""] {
        let input = format!("SEND\ncontent-length:{value}\n\nx\0");
        let err = decode_one(Some(Version::V1_2), input.as_bytes()).unwrap_err();
        assert_eq!(err, DecodeError::InvalidContentLength(value.into()));
    }
}

#[test]
fn body_without_content_length_ends_at_nul() {
    let frame = decode_one(Some(Version::V1_2), b"SEND\ndestination:/a\n\nhello\0").unwrap();
    assert_eq!(&frame.body[..], b"hello");
}

#[test]
fn crlf_line_endings_are_accepted() {
    let frame = decode_one(
        Some(Version::V1_2),
        b"SUBSCRIBE\r\nid:0\r\ndestination:/topic/a\r\n\r\n\0",
    )
    .unwrap();
    assert_eq!(frame.command, Command::Subscribe);
    assert_eq!(frame.get("id"), Some("0"));
    assert_eq!(frame.get("destination"), Some("/topic/a"));
}

#[test]
fn several_frames_and_heart_beats_in_one_message() {
    let input = b"\n\r\nSEND\nk:1\n\na\0\n\nSEND\nk:2\n\nb\0\r\nSEND\nk:3\ncontent-length:1\n\nc\0";
    let frames = decode_all(&mut decoder(Some(Version::V1_2)), input).unwrap();
    let keys: Vec<_> = frames.iter().map(|f| f.get("k").unwrap()).collect();
    let bodies: Vec<_> = frames.iter().map(|f| f.body.clone()).collect();
    assert_eq!(keys, ["1", "2", "3"]);
    assert_eq!(bodies, [&b"a"[..], b"b", b"c"]);
}

#[test]
fn frame_split_at_every_byte() {
    let inputs: [&[u8]; 3] = [
        b"SEND\r\ndestination:/app/x\r\nk:a\\cb\r\n\r\nbody\0",
        b"SEND\ncontent-length:4\n\nb\0dy\0",
        b"\nSUBSCRIBE\nid:1\ndestination:/topic/x\n\n\0\n",
    ];
    for input in inputs {
        let whole = decode_all(&mut decoder(Some(Version::V1_2)), input).unwrap();
        for split in 0..=input.len() {
            let mut decoder = decoder(Some(Version::V1_2));
            let mut buf = BytesMut::from(&input[..split]);
            let mut frames = Vec::new();
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            buf.extend_from_slice(&input[split..]);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            assert_eq!(frames, whole, "split at byte {split}");
        }
    }
}

#[test]
fn frame_fed_one_byte_at_a_time() {
    let input = b"SEND\ndestination:/app/x\ncontent-length:3\n\nabc\0SEND\n\nxyz\0";
    let mut decoder = decoder(Some(Version::V1_2));
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for &byte in input {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[0].body[..], b"abc");
    assert_eq!(&frames[1].body[..], b"xyz");
}

fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 64,
        max_headers: 3,
        max_header_line_bytes: 32,
    }
}

fn decode_small(input: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = Decoder::new(small_limits());
    decoder.set_version(Version::V1_2);
    decode_all(&mut decoder, input)
}

#[test]
fn oversize_body_without_content_length_is_rejected() {
    let mut input = b"SEND\n\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 100));
    let err = decode_small(&input).unwrap_err();
    assert_eq!(err, DecodeError::FrameTooLarge { max: 64 });
}

#[test]
fn oversize_content_length_is_rejected_before_the_body() {
    let err = decode_small(b"SEND\ncontent-length:1000\n\n").unwrap_err();
    assert_eq!(err, DecodeError::FrameTooLarge { max: 64 });
}

#[test]
fn huge_content_length_is_rejected_without_overflow() {
    // Found by the fuzzer: usize::MAX as content-length overflowed the size check.
    let input = format!("NACK\ncontent-length:{}\n\nz", usize::MAX);
    assert_eq!(
        decode_one(Some(Version::V1_2), input.as_bytes()).unwrap_err(),
        DecodeError::FrameTooLarge {
            max: DEFAULT_MAX_FRAME_BYTES
        }
    );
    let too_big = b"NACK\ncontent-length:00001844674407370955161500\n\nz\0";
    assert_eq!(
        decode_one(Some(Version::V1_2), too_big).unwrap_err(),
        DecodeError::InvalidContentLength("00001844674407370955161500".into())
    );
}

#[test]
fn frame_at_exactly_the_limit_is_accepted() {
    // 6 bytes of head, 57 of body and the NUL make 64.
    let mut input = b"SEND\n\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 57));
    input.push(0);
    assert_eq!(decode_small(&input).unwrap().len(), 1);
    input.insert(6, b'x');
    assert_eq!(
        decode_small(&input).unwrap_err(),
        DecodeError::FrameTooLarge { max: 64 }
    );
}

#[test]
fn too_many_headers_are_rejected() {
    let err = decode_small(b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::TooManyHeaders { max: 3 });
}

#[test]
fn long_header_line_is_rejected_even_unfinished() {
    let line = "k:".to_string() + &"v".repeat(40);
    let err = decode_small(format!("SEND\n{line}").as_bytes()).unwrap_err();
    assert_eq!(err, DecodeError::HeaderLineTooLong { max: 32 });
    let err = decode_small(format!("SEND\n{line}\n\n\0").as_bytes()).unwrap_err();
    assert_eq!(err, DecodeError::HeaderLineTooLong { max: 32 });
}

#[test]
fn header_without_colon_is_rejected() {
    let err = decode_one(Some(Version::V1_2), b"SEND\nnocolon\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::MalformedHeader("nocolon".into()));
}

#[test]
fn header_that_is_not_utf8_is_rejected() {
    let err = decode_one(Some(Version::V1_2), b"SEND\nk:\xff\xfe\n\n\0").unwrap_err();
    assert_eq!(err, DecodeError::HeaderNotUtf8);
}

#[test]
fn body_may_be_binary() {
    let frame = decode_one(
        Some(Version::V1_2),
        b"SEND\ncontent-length:3\n\n\xff\x00\xfe\0",
    )
    .unwrap();
    assert_eq!(&frame.body[..], b"\xff\x00\xfe");
}

#[test]
fn header_value_may_contain_colons_in_v1_0() {
    let frame = decode_one(Some(Version::V1_0), b"SEND\nurl:http://x:1/\n\n\0").unwrap();
    assert_eq!(frame.get("url"), Some("http://x:1/"));
}

fn text(with_cr: bool) -> impl Strategy<Value = String> {
    let chars = if with_cr {
        "[a-z0-9:\\\\\n\r ]{0,12}"
    } else {
        "[a-z0-9:\\\\\n ]{0,12}"
    };
    proptest::string::string_regex(chars).unwrap()
}

fn frame(with_cr: bool) -> impl Strategy<Value = Frame> {
    let commands = Command::ALL
        .into_iter()
        .filter(|c| c.escapes_headers())
        .collect::<Vec<_>>();
    (
        proptest::sample::select(commands),
        proptest::collection::vec((text(with_cr), text(with_cr)), 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(command, headers, body)| {
            let mut frame = Frame::new(command);
            // content-length is set by `body`, so generated names must not clash.
            frame.headers = headers
                .into_iter()
                .filter(|(name, _)| name != "content-length")
                .collect();
            frame.body(Bytes::from(body))
        })
}

fn round_trip(frame: &Frame, version: Version) -> Frame {
    let bytes = encode_to_bytes(frame, version);
    let mut decoder = Decoder::new(Limits {
        max_frame_bytes: 1 << 20,
        ..Limits::default()
    });
    decoder.set_version(version);
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = decoder.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "bytes left over after one frame");
    decoded
}

proptest! {
    #[test]
    fn encode_then_decode_v1_2(frame in frame(true)) {
        prop_assert_eq!(round_trip(&frame, Version::V1_2), frame);
    }

    #[test]
    fn encode_then_decode_v1_1(frame in frame(false)) {
        prop_assert_eq!(round_trip(&frame, Version::V1_1), frame);
    }

    #[test]
    fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut decoder = decoder(Some(Version::V1_2));
        let _ = decode_all(&mut decoder, &input);
    }
}
