//! Property tests of the transport's parsers: the request-head parser, the
//! chunk-size line, and the chunked body decoder as it runs on a real
//! loopback connection (it reads from the socket, so it is driven through
//! one). For any input: no panic, no allocation beyond a bound set by the
//! input's length, and what the server's own chunked encoder writes, or a
//! head rendered from parts, parses back to the same thing. Cases per
//! property: 256, or `PROPTEST_CASES` (docs/RELIABILITY.md).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;

use super::parse::{parse_chunk_size, parse_head, Framing, Parsed};
use super::write::{write_response, Options};
use super::{Body, Handler, Request, Response, Server, ServerConfig, TransportError};
use crate::test_alloc::peak_during;

const MAX_HEADERS: usize = 64;
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

/// What `parse_head` may allocate beyond its input: the header slots
/// (`max_headers` of them) and owned copies of what it read, where a lossy
/// UTF-8 conversion can turn one byte into three.
fn head_budget(input_len: usize) -> usize {
    MAX_HEADERS * 64 + 8 * input_len.min(MAX_HEAD_BYTES) + 4096
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A header value as a client sends it: visible ASCII and inner spaces.
fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,30}[!-~])?"
}

fn target() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9/._~%!$&'()*+,;=:@?-]{0,60}"
}

/// Bytes that look like a head often enough to reach deep into the parser.
fn head_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /v1/messages HTTP/1.0\r\n".to_vec()),
        Just(b"Host: h\r\n".to_vec()),
        Just(b"Content-Length: ".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: keep-alive, close\r\n".to_vec()),
        Just(b"Expect: 100-continue\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b": ".to_vec()),
        "[0-9]{1,25}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

#[derive(Debug, Clone)]
enum BodyHeader {
    None,
    Length(u64),
    Chunked,
}

fn body_header() -> impl Strategy<Value = BodyHeader> {
    prop_oneof![
        Just(BodyHeader::None),
        any::<u64>().prop_map(BodyHeader::Length),
        (0u64..100).prop_map(BodyHeader::Length),
        Just(BodyHeader::Chunked),
    ]
}

proptest! {
    #[test]
    fn head_parser_never_panics_and_stays_bounded(
        bytes in prop_oneof![head_like_bytes(), proptest::collection::vec(any::<u8>(), 0..20_000)],
    ) {
        let (parsed, peak) = peak_during(|| parse_head(&bytes, MAX_HEADERS, MAX_HEAD_BYTES));
        prop_assert!(peak <= head_budget(bytes.len()), "allocated {peak} for {} bytes", bytes.len());
        if let Ok(Parsed::Complete(head, used)) = parsed {
            prop_assert!(used <= bytes.len() && used <= MAX_HEAD_BYTES);
            prop_assert!(head.headers.len() <= MAX_HEADERS);
            if let Framing::Length(n) = head.framing {
                prop_assert!(n > 0);
            }
        }
    }

    #[test]
    fn a_rendered_head_parses_back_and_every_prefix_is_partial(
        method in token(),
        target in target(),
        http10 in any::<bool>(),
        extra in proptest::collection::vec((token(), header_value()), 0..10),
        body in body_header(),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let reserved = ["host", "content-length", "transfer-encoding", "connection", "expect"];
        let mut headers: Vec<(String, String)> = vec![("Host".into(), "example.test".into())];
        headers.extend(extra.into_iter().filter(|(n, _)| !reserved.contains(&n.to_ascii_lowercase().as_str())));
        match body {
            BodyHeader::None => {}
            BodyHeader::Length(n) => headers.push(("Content-Length".into(), n.to_string())),
            BodyHeader::Chunked => headers.push(("Transfer-Encoding".into(), "chunked".into())),
        }
        let mut text = format!("{method} {target} HTTP/1.{}\r\n", if http10 { 0 } else { 1 });
        for (name, value) in &headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let mut bytes = text.clone().into_bytes();
        bytes.extend_from_slice(&tail);

        let Ok(Parsed::Complete(head, used)) = parse_head(&bytes, MAX_HEADERS, MAX_HEAD_BYTES) else {
            return Err(TestCaseError::fail(format!("not parsed: {text:?}")));
        };
        prop_assert_eq!(used, text.len());
        prop_assert_eq!(&head.method, &method);
        prop_assert_eq!(&head.target, &target);
        prop_assert_eq!(head.http10, http10);
        prop_assert_eq!(&head.headers, &headers);
        let expected = match body {
            BodyHeader::None | BodyHeader::Length(0) => Framing::Empty,
            BodyHeader::Length(n) => Framing::Length(n),
            BodyHeader::Chunked => Framing::Chunked,
        };
        prop_assert_eq!(head.framing, expected);
        prop_assert_eq!(head.keep_alive, !http10);

        // Read in pieces, a head is never complete, nor an error, before
        // its last byte has arrived.
        for cut in 0..text.len() {
            let partial = parse_head(&bytes[..cut], MAX_HEADERS, MAX_HEAD_BYTES);
            prop_assert!(matches!(partial, Ok(Parsed::Partial)), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn chunk_size_lines(n in any::<u64>(), upper in any::<bool>(), zeros in 0usize..3, ext in "(;[a-z]{1,5}(=[a-z0-9]{0,5})?)?") {
        let digits = if upper { format!("{n:X}") } else { format!("{n:x}") };
        let line = format!("{}{digits}{ext}", "0".repeat(zeros));
        let expected = (zeros + digits.len() <= 16).then_some(n);
        prop_assert_eq!(parse_chunk_size(line.as_bytes()), expected);
    }

    #[test]
    fn chunk_size_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Some(n) = parse_chunk_size(&line) {
            let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            prop_assert!(size.len() <= 16 && size.iter().all(u8::is_ascii_hexdigit));
            prop_assert_eq!(u64::from_str_radix(std::str::from_utf8(size).unwrap(), 16).ok(), Some(n));
        }
    }
}

/// Answers every request with its body (200), 413 for a body over the
/// limit, and the transport's refusals with their status.
struct Echo;

impl Handler for Echo {
    fn handle(&self, req: Request) -> Response {
        let (status, body) = match req.body {
            Ok(body) => (200, body),
            Err(_) => (413, Vec::new()),
        };
        Response { status, headers: Vec::new(), body: Body::Full(body), close: false }
    }

    fn transport_error(&self, err: TransportError) -> Response {
        let status = match err {
            TransportError::BadRequest(_) => 400,
            TransportError::HeadersTooLarge => 431,
            TransportError::Internal => 500,
        };
        Response { status, headers: Vec::new(), body: Body::Full(Vec::new()), close: true }
    }

    fn overloaded(&self) -> Response {
        Response { status: 503, headers: Vec::new(), body: Body::Full(Vec::new()), close: true }
    }
}

/// One echo server for every case (a server per case would add a thread
/// start and a shutdown to each).
fn echo_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_echo_server)
}

fn start_echo_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ServerConfig {
        max_body_bytes: MAX_BODY,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    Server::start(listener, config, Arc::new(Echo)).unwrap()
}

/// Sends `request`, half-closes, and reads until the server closes:
/// `None` when it closed without answering, else status and body.
fn exchange(server: &Server, request: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and stop reading) before all of it is sent.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        return None;
    }
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let status = std::str::from_utf8(&answer[9..12]).unwrap().parse().unwrap();
    Some((status, answer[end + 4..].to_vec()))
}

const CHUNKED_HEAD: &[u8] =
    b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/// The body as the server's own streaming writer encodes it.
fn encode_with_our_writer(chunks: &[Vec<u8>]) -> Vec<u8> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for chunk in chunks {
        tx.send(chunk.clone()).unwrap();
    }
    drop(tx);
    let (_stop_tx, stop) = crossbeam_channel::bounded(0);
    let response = Response { status: 200, headers: Vec::new(), body: Body::Stream(rx), close: false };
    let mut out = Vec::new();
    write_response(&mut out, response, Options { head_only: false, http10: false, close: false }, &stop)
        .unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    out.split_off(end + 4)
}

/// The same body the way other clients may write it: sizes with leading
/// zeros and either case, chunk extensions, bare LF line ends, trailers.
fn encode_by_hand(chunks: &[Vec<u8>], style: &ChunkStyle) -> Vec<u8> {
    let eol: &[u8] = if style.bare_lf { b"\n" } else { b"\r\n" };
    let mut out = Vec::new();
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        let size = if style.upper { format!("{:X}", chunk.len()) } else { format!("{:x}", chunk.len()) };
        out.extend_from_slice(format!("{}{size}{}", "0".repeat(style.zeros), style.ext).as_bytes());
        out.extend_from_slice(eol);
        out.extend_from_slice(chunk);
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(format!("0{}", style.ext).as_bytes());
    out.extend_from_slice(eol);
    for (name, value) in &style.trailers {
        out.extend_from_slice(format!("{name}: {value}").as_bytes());
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(eol);
    out
}

#[derive(Debug, Clone)]
struct ChunkStyle {
    upper: bool,
    zeros: usize,
    ext: String,
    bare_lf: bool,
    trailers: Vec<(String, String)>,
}

fn chunk_style() -> impl Strategy<Value = ChunkStyle> {
    (
        any::<bool>(),
        0usize..4,
        "(;[a-z]{1,6}(=[a-z0-9\"]{0,8})?){0,2}",
        any::<bool>(),
        proptest::collection::vec((token(), header_value()), 0..3),
    )
        .prop_map(|(upper, zeros, ext, bare_lf, trailers)| ChunkStyle {
            upper,
            zeros,
            ext,
            bare_lf,
            trailers,
        })
}

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..12)
}

/// Chunked-looking garbage: size lines, extensions, data and line ends in
/// any order.
fn chunked_garbage() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        "[0-9a-fA-F]{1,20}".prop_map(String::into_bytes),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b";x=y".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        Just(b"ffffffffffffffff\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases_on_sockets(), ..ProptestConfig::default() })]

    #[test]
    fn our_chunked_encoding_decodes_to_the_same_body(chunks in chunks()) {
        let server = echo_server();
        let mut request = CHUNKED_HEAD.to_vec();
        request.extend(encode_with_our_writer(&chunks));
        prop_assert_eq!(exchange(server, &request), Some((200, chunks.concat())));
    }

    #[test]
    fn chunked_bodies_of_any_style_decode(chunks in chunks(), style in chunk_style()) {
        let server = echo_server();
        let mut request = CHUNKED_HEAD.to_vec();
        request.extend(encode_by_hand(&chunks, &style));
        prop_assert_eq!(exchange(server, &request), Some((200, chunks.concat())));
    }

    #[test]
    fn chunked_garbage_is_refused_or_decoded_never_more(garbage in chunked_garbage()) {
        let server = echo_server();
        let mut request = CHUNKED_HEAD.to_vec();
        request.extend(&garbage);
        match exchange(server, &request) {
            None | Some((400, _)) | Some((413, _)) => {}
            Some((200, body)) => prop_assert!(body.len() <= garbage.len() && body.len() <= MAX_BODY),
            Some(other) => return Err(TestCaseError::fail(format!("unexpected answer {other:?}"))),
        }
        // The server is still there for the next client.
        let ok = exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        prop_assert_eq!(ok, Some((200, Vec::new())));
    }

    #[test]
    fn a_claimed_size_over_the_limit_is_refused_unread(
        size in (MAX_BODY as u64 + 1)..=u64::MAX,
        chunked in any::<bool>(),
    ) {
        let server = echo_server();
        let request = if chunked {
            let mut r = CHUNKED_HEAD.to_vec();
            r.extend(format!("{size:x}\r\nabc").as_bytes());
            r
        } else {
            format!("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\nabc").into_bytes()
        };
        // The test process would abort if the server reserved `size` bytes.
        prop_assert_eq!(exchange(server, &request).map(|a| a.0), Some(413));
    }
}

/// Each socket case costs a connection and a thread: a quarter of the
/// configured cases (64 by default) keeps the default run within seconds.
fn cases_on_sockets() -> u32 {
    (ProptestConfig::default().cases / 4).max(1)
}
