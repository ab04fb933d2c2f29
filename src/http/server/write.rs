//! Response serialization: status line, application headers, the framing
//! headers the transport owns (`Content-Length`, `Transfer-Encoding`,
//! `Connection`), and the body — in one `write_all` for full bodies because
//! latency matters, chunk by chunk with a flush each for streams, which
//! server-sent events rely on, or a file in pieces, never read whole. Every
//! write goes to a [`Sink`] whose stall deadline starts afresh per response
//! and per streamed chunk (`pace.rs`).

use std::io::{self, IoSlice, Read, Write};

use crossbeam_channel::{Receiver, TryRecvError};

use super::pace::{Sink, PROGRESS_BYTES};
use super::{Body, Response};

/// The terminating chunk of a chunked body (no trailers).
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Chunks still flushed from a stream once shutdown began, so a producer that
/// already finished is not cut off, while an endless one cannot hold us.
const SHUTDOWN_DRAIN_CHUNKS: usize = 64;

/// Facts about the request the response answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    /// The request was HEAD: announce the length but send no body.
    pub head_only: bool,
    /// The client speaks HTTP/1.0: no chunked coding, explicit keep-alive.
    pub http10: bool,
    /// The transport already decided to close after this response.
    pub close: bool,
}

/// How the body is delimited in the response head.
enum Framing {
    Length(usize),
    Chunked,
    /// HTTP/1.0 streams end when the connection closes.
    UntilClose,
    /// 1xx, 204 and 304 responses never carry a body.
    Bodyless,
}

/// Writes the response; returns whether the connection must close now.
pub(super) fn write_response<W: Sink>(
    out: &mut W,
    response: Response,
    mut options: Options,
    stop: &Receiver<()>,
) -> io::Result<bool> {
    out.fresh_deadline();
    let status = valid_status(response.status);
    options.close |= response.close || asks_close(&response.headers);
    // HEAD and the statuses that never carry a body send none.
    let send_body = status_has_body(status) && !options.head_only;
    let bodyless = !status_has_body(status);
    match response.body {
        Body::File(file, len) => {
            let framing = if bodyless { Framing::Bodyless } else { Framing::Length(len as usize) };
            out.write_all(&encode_head(status, &response.headers, &framing, &options))?;
            if send_body {
                copy_file(out, file, len)?;
            }
        }
        Body::Full(bytes) => {
            let framing = if bodyless { Framing::Bodyless } else { Framing::Length(bytes.len()) };
            let mut buf = encode_head(status, &response.headers, &framing, &options);
            if send_body {
                buf.extend_from_slice(&bytes);
            }
            out.write_all(&buf)?;
        }
        Body::Parts(parts) => {
            let len = parts.iter().map(|p| p.bytes().len()).sum();
            let framing = if bodyless { Framing::Bodyless } else { Framing::Length(len) };
            let head = encode_head(status, &response.headers, &framing, &options);
            let mut slices = vec![IoSlice::new(&head)];
            if send_body {
                slices.extend(parts.iter().map(|p| IoSlice::new(p.bytes())));
            }
            write_all_vectored(out, &mut slices)?;
        }
        Body::Stream(rx) => return write_stream(out, status, &response.headers, &rx, options, stop),
    }
    out.flush()?;
    Ok(options.close)
}

/// A streamed body: chunked, or until close for HTTP/1.0; returns whether
/// the connection must close now (always, if the stream did not finish).
fn write_stream<W: Sink>(
    out: &mut W,
    status: u16,
    headers: &[(String, String)],
    rx: &Receiver<Vec<u8>>,
    mut options: Options,
    stop: &Receiver<()>,
) -> io::Result<bool> {
    let no_body = !status_has_body(status);
    let framing = match () {
        _ if no_body => Framing::Bodyless,
        _ if options.http10 => Framing::UntilClose,
        _ => Framing::Chunked,
    };
    if matches!(framing, Framing::UntilClose) {
        options.close = true;
    }
    let head = encode_head(status, headers, &framing, &options);
    out.write_all(&head)?;
    out.flush()?;
    if no_body || options.head_only {
        return Ok(options.close);
    }
    let chunked = matches!(framing, Framing::Chunked);
    let finished = pump(out, rx, chunked, stop)?;
    // An unfinished chunked body can only be signalled by closing.
    Ok(options.close || !finished)
}

/// Sends `len` bytes of `file` in pieces, so a large artifact never sits in
/// memory whole. A file that shrank meanwhile is an error: the body would
/// fall short of its `Content-Length`, and only closing says so.
fn copy_file<W: Write>(out: &mut W, mut file: std::fs::File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; PROGRESS_BYTES];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while sent")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..got])?;
        left -= got as u64;
    }
    Ok(())
}

/// Relays stream chunks until the sender is dropped (true) or shutdown cut
/// the stream short (false).
fn pump<W: Sink>(
    out: &mut W,
    rx: &Receiver<Vec<u8>>,
    chunked: bool,
    stop: &Receiver<()>,
) -> io::Result<bool> {
    loop {
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(data) => {
                    // Waiting for the producer is not the client's stall.
                    out.fresh_deadline();
                    write_chunk(out, &data, chunked)?
                }
                Err(_) => return finish(out, chunked),
            },
            recv(stop) -> _ => return drain(out, rx, chunked),
        }
    }
}

/// After shutdown began: flushes what is already queued and finishes the body
/// only if the producer is done too; otherwise the stream is abandoned
/// without a terminating chunk, so the client can tell it was truncated.
fn drain<W: Sink>(out: &mut W, rx: &Receiver<Vec<u8>>, chunked: bool) -> io::Result<bool> {
    for _ in 0..SHUTDOWN_DRAIN_CHUNKS {
        match rx.try_recv() {
            Ok(data) => write_chunk(out, &data, chunked)?,
            Err(TryRecvError::Disconnected) => return finish(out, chunked),
            Err(TryRecvError::Empty) => break,
        }
    }
    Ok(false)
}

fn finish<W: Write>(out: &mut W, chunked: bool) -> io::Result<bool> {
    if chunked {
        out.write_all(LAST_CHUNK)?;
        out.flush()?;
    }
    Ok(true)
}

/// Writes one chunk in one write. Empty data is skipped: as a chunk it would
/// end the body.
fn write_chunk<W: Write>(out: &mut W, data: &[u8], chunked: bool) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if !chunked {
        out.write_all(data)?;
        return out.flush();
    }
    let mut frame = Vec::with_capacity(data.len() + 20);
    frame.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\r\n");
    out.write_all(&frame)?;
    out.flush()
}

fn encode_head(status: u16, headers: &[(String, String)], framing: &Framing, options: &Options) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        if is_managed(name) {
            continue;
        }
        if !valid_header(name, value) {
            log::warn!("http: dropping invalid response header {name:?}");
            continue;
        }
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            buf.extend_from_slice(part);
        }
    }
    match framing {
        Framing::Length(n) => buf.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::UntilClose | Framing::Bodyless => {}
    }
    if options.close {
        buf.extend_from_slice(b"Connection: close\r\n");
    } else if options.http10 {
        buf.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    buf
}

/// `write_all` for several buffers: one `writev` per attempt, resumed
/// where a partial write stopped.
fn write_all_vectored<W: Write>(out: &mut W, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The bytes of a refusal sent by the accept loop: a full body only (the
/// accept loop cannot relay a stream) and always `Connection: close`.
pub(super) fn encode_refusal(response: Response) -> Vec<u8> {
    let status = valid_status(response.status);
    let body = match response.body {
        Body::Full(bytes) if status_has_body(status) => bytes,
        Body::Parts(parts) if status_has_body(status) => {
            parts.iter().flat_map(|p| p.bytes().iter().copied()).collect()
        }
        // Refusals are built by the handler's `overloaded`, never a file.
        _ => Vec::new(),
    };
    let options = Options { head_only: false, http10: false, close: true };
    let framing = if status_has_body(status) { Framing::Length(body.len()) } else { Framing::Bodyless };
    let mut buf = encode_head(status, &response.headers, &framing, &options);
    buf.extend_from_slice(&body);
    buf
}

/// A minimal plain-text response used when the handler itself panicked while
/// rendering an error.
pub(super) fn fallback(status: u16) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".to_string(), "text/plain; charset=utf-8".to_string())],
        body: Body::Full(format!("{status} {}\n", reason(status)).into_bytes()),
        close: true,
    }
}

/// These headers describe the connection and framing, which only the
/// transport knows; copies from the handler would contradict ours.
fn is_managed(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"].iter().any(|m| name.eq_ignore_ascii_case(m))
}

/// A `Connection: close` from the handler is honoured like `close: true`.
fn asks_close(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

/// Rejects names that are not tokens and values with control characters, so
/// a handler echoing input cannot split the response.
fn valid_header(name: &str, value: &str) -> bool {
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    name_ok && value_ok
}

fn valid_status(status: u16) -> u16 {
    if (100..=999).contains(&status) {
        status
    } else {
        log::error!("http: handler returned invalid status {status}; sending 500");
        500
    }
}

fn status_has_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

/// Reason phrases for common codes; others get an empty phrase, which the
/// grammar allows.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(response: Response, options: Options) -> (String, bool) {
        let (_tx, stop) = crossbeam_channel::bounded(0);
        let mut out = Vec::new();
        let close = write_response(&mut out, response, options, &stop).unwrap();
        (String::from_utf8(out).unwrap(), close)
    }

    const KEEP: Options = Options { head_only: false, http10: false, close: false };

    #[test]
    fn full_body_with_length_and_filtered_headers() {
        let response = Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/plain".into()),
                ("Content-Length".into(), "99".into()),
                ("X-Bad".into(), "a\r\nInjected: yes".into()),
            ],
            body: Body::Full(b"hello".to_vec()),
            close: false,
        };
        let (text, close) = render(response, KEEP);
        assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
        assert!(!close);
    }

    #[test]
    fn head_and_bodyless_statuses() {
        let response =
            Response { status: 200, headers: vec![], body: Body::Full(b"hello".to_vec()), close: true };
        let (text, close) = render(response, Options { head_only: true, ..KEEP });
        assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
        assert!(close);
        let response =
            Response { status: 204, headers: vec![], body: Body::Full(b"x".to_vec()), close: false };
        assert_eq!(render(response, KEEP).0, "HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn stream_is_chunked() {
        let (tx, rx) = crossbeam_channel::unbounded();
        for part in ["ab", "", "cde"] {
            tx.send(part.as_bytes().to_vec()).unwrap();
        }
        drop(tx);
        let response = Response { status: 200, headers: vec![], body: Body::Stream(rx), close: false };
        let (text, close) = render(response, KEEP);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        );
        assert!(!close);
    }

    /// Accepts at most 7 bytes per call, so every vectored write is partial.
    struct Trickle(Vec<u8>);

    impl Sink for Trickle {}

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_body_in_parts_is_sent_whole_with_its_length_even_in_small_writes() {
        let parts = || {
            Body::Parts(vec![
                super::super::Part::Owned(b"{\"data\":".to_vec()),
                super::super::Part::Shared(std::sync::Arc::from("[1,2,3]")),
                super::super::Part::Owned(b"}".to_vec()),
            ])
        };
        let (_tx, stop) = crossbeam_channel::bounded(0);
        let mut out = Trickle(Vec::new());
        let response = Response { status: 200, headers: Vec::new(), body: parts(), close: false };
        write_response(&mut out, response, Options { head_only: false, http10: false, close: false }, &stop)
            .unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 16\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"data\":[1,2,3]}"), "{text}");

        let mut head = Trickle(Vec::new());
        let response = Response { status: 200, headers: Vec::new(), body: parts(), close: false };
        write_response(&mut head, response, Options { head_only: true, http10: false, close: false }, &stop)
            .unwrap();
        let text = String::from_utf8(head.0).unwrap();
        assert!(text.contains("Content-Length: 16\r\n") && text.ends_with("\r\n\r\n"), "{text}");
    }
}
