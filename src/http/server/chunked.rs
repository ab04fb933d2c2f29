//! Chunked transfer coding of a request body (RFC 9112 §7.1): chunk-size
//! lines, data, the CRLF after each chunk, and trailer fields, which are
//! read and dropped. The decoder stops as soon as the body would exceed its
//! limit, and every line it reads is bounded, so a client can neither grow
//! memory past the limits nor hold the thread past the deadline. It reads
//! through [`Input`], which the connection implements over its buffer and
//! socket.

use std::time::Instant;

use super::parse;

/// Longest chunk-size line accepted (extensions included).
const MAX_CHUNK_LINE: usize = 4096;

/// Outcome of reading a request body.
pub(super) enum BodyRead {
    Done(Vec<u8>),
    TooLarge,
    Invalid(String),
    /// The peer vanished or was too slow; close without answering.
    Gone,
}

/// What the decoder reads from: bytes already buffered, and more on demand.
pub(super) trait Input {
    /// The bytes read and not yet consumed.
    fn buffered(&mut self) -> &mut Vec<u8>;
    /// Reads more into the buffer, waiting at most until `deadline`; `want`
    /// is how many bytes are known to be coming. False when nothing more
    /// will come (end of stream, timeout, error).
    fn fill(&mut self, deadline: Instant, want: usize) -> bool;
}

/// Decodes a chunked body, stopping as soon as it would exceed `max`
/// bytes; the trailer section may hold at most `max_trailers` bytes.
pub(super) fn read(input: &mut impl Input, deadline: Instant, max: usize, max_trailers: usize) -> BodyRead {
    let mut body = Vec::new();
    loop {
        let line = match take_line(input, deadline, MAX_CHUNK_LINE) {
            Ok(line) => line,
            Err(read) => return read,
        };
        let Some(size) = parse::parse_chunk_size(&line) else {
            return BodyRead::Invalid("invalid chunk size".to_string());
        };
        if size == 0 {
            return match skip_trailers(input, deadline, max_trailers) {
                Ok(()) => BodyRead::Done(body),
                Err(read) => read,
            };
        }
        let total = usize::try_from(size).ok().and_then(|s| s.checked_add(body.len()));
        let Some(size) = total.filter(|&t| t <= max).map(|t| t - body.len()) else {
            return BodyRead::TooLarge;
        };
        if let Err(read) = take_chunk_data(input, deadline, size, &mut body) {
            return read;
        }
    }
}

/// Moves `size` data bytes into `body` and consumes the CRLF after them.
fn take_chunk_data(
    input: &mut impl Input,
    deadline: Instant,
    size: usize,
    body: &mut Vec<u8>,
) -> Result<(), BodyRead> {
    while input.buffered().len() < size {
        let missing = size - input.buffered().len();
        if !input.fill(deadline, missing) {
            return Err(BodyRead::Gone);
        }
    }
    let buf = input.buffered();
    body.extend_from_slice(&buf[..size]);
    buf.drain(..size);
    let end = take_line(input, deadline, 2)?;
    if !end.is_empty() {
        return Err(BodyRead::Invalid("chunk data longer than its size".to_string()));
    }
    Ok(())
}

/// Reads and ignores trailer fields up to the empty line.
fn skip_trailers(input: &mut impl Input, deadline: Instant, mut budget: usize) -> Result<(), BodyRead> {
    loop {
        let line = take_line(input, deadline, budget)?;
        if line.is_empty() {
            return Ok(());
        }
        budget = budget.saturating_sub(line.len() + 2);
    }
}

/// Takes one line (without its CRLF or bare LF) from the buffer, reading
/// more as needed; lines longer than `max` are invalid.
fn take_line(input: &mut impl Input, deadline: Instant, max: usize) -> Result<Vec<u8>, BodyRead> {
    loop {
        let buf = input.buffered();
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if buf.len() > max {
            return Err(BodyRead::Invalid("chunked framing line too long".to_string()));
        }
        if !input.fill(deadline, 0) {
            return Err(BodyRead::Gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that arrive `step` at a time, then the end of the stream.
    struct Arriving {
        buf: Vec<u8>,
        rest: Vec<u8>,
        step: usize,
    }

    impl Input for Arriving {
        fn buffered(&mut self) -> &mut Vec<u8> {
            &mut self.buf
        }

        fn fill(&mut self, _: Instant, _: usize) -> bool {
            let n = self.step.min(self.rest.len());
            self.buf.extend(self.rest.drain(..n));
            n > 0
        }
    }

    fn decode(wire: &str, step: usize, max: usize) -> (BodyRead, Vec<u8>) {
        let mut input = Arriving { buf: Vec::new(), rest: wire.as_bytes().to_vec(), step };
        let read = read(&mut input, Instant::now(), max, 64);
        (read, input.buf)
    }

    #[test]
    fn chunks_trailers_and_what_follows() {
        for step in [1, 3, 1000] {
            let (read, left) = decode("3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nGET", step, 100);
            assert!(matches!(read, BodyRead::Done(ref b) if b == b"abcde"), "step {step}");
            // What follows the body stays buffered for the next request
            // (all of it when it arrived in one read).
            assert!(b"GET".starts_with(&left), "step {step}: {left:?}");
        }
    }

    #[test]
    fn limits_and_broken_framing() {
        assert!(matches!(decode("5\r\nabcde\r\n0\r\n\r\n", 100, 4).0, BodyRead::TooLarge));
        assert!(matches!(decode("zz\r\n", 100, 4).0, BodyRead::Invalid(_)));
        assert!(matches!(decode("1\r\nab\r\n", 100, 4).0, BodyRead::Invalid(_)));
        assert!(matches!(decode("3\r\nab", 100, 4).0, BodyRead::Gone));
        // A line is bounded while it arrives: past the limit without its
        // end, the framing is refused rather than buffered further.
        let long_line = format!("1;{}\r\n", "x".repeat(2 * MAX_CHUNK_LINE));
        assert!(matches!(decode(&long_line, 64, 4).0, BodyRead::Invalid(_)));
        let long_trailer = format!("0\r\n{}\r\n\r\n", "t".repeat(100));
        assert!(matches!(decode(&long_trailer, 10, 4).0, BodyRead::Invalid(_)));
    }
}
