//! The DATA reader (RFC 5321 §4.1.1.4, §4.5.2): message bytes until the line holding a single
//! dot, with dot-stuffing undone. SMTP-smuggling safe: only CRLF "." CRLF ends the data; a bare
//! CR or LF anywhere is an error (the message is refused once its real end has arrived), and a
//! bare LF never starts a line, so "\n.\n", "\n.\r\n" and "\r\n.\n" end nothing. No I/O.

/// The longest text line, CRLF excluded (RFC 5322 §2.1.1).
pub const MAX_LINE: usize = 998;

/// Why a message is refused after its end arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    BareLf,
    BareCr,
    LineTooLong,
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Dot,
    DotCr,
    Middle,
    Cr,
}

/// Reads one message's DATA.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    line: usize,
    size: u64,
    max_size: u64,
    error: Option<DataError>,
}

impl DataReader {
    pub fn new(max_size: u64) -> DataReader {
        DataReader {
            state: State::LineStart,
            line: 0,
            size: 0,
            max_size,
            error: None,
        }
    }

    /// The first error seen, if any.
    pub fn error(&self) -> Option<DataError> {
        self.error
    }

    /// Message octets so far (after dot-unstuffing), counted also past the size limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Consumes `input` up to the end of the data, appending message bytes to `out` (nothing
    /// more once the message is refused). Returns the bytes consumed and whether the end was
    /// reached; bytes after the end (pipelined commands) are left to the caller.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            // Fast path: a run of ordinary bytes inside a line (or starting one, but for a
            // dot) is taken at once, up to the next CR or LF.
            if matches!(self.state, State::Middle) || (self.state == State::LineStart && b != b'.')
            {
                let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                // At once only while no limit is crossed; the byte that crosses one and the
                // rest of the run go the byte-by-byte way (same outcome, whatever the chunks).
                let room =
                    (self.max_size.saturating_sub(self.size)).min(usize::MAX as u64) as usize;
                let fast = run.min(MAX_LINE.saturating_sub(self.line)).min(room);
                if fast > 0 {
                    self.state = State::Middle;
                    self.line += fast;
                    self.emit(&input[i..i + fast], out);
                    i += fast;
                    continue;
                }
            }
            i += 1;
            match self.state {
                State::LineStart if b == b'.' => self.state = State::Dot,
                State::LineStart | State::Middle => self.middle(b, out),
                State::Dot if b == b'\r' => self.state = State::DotCr,
                // A stuffed dot: drop it, the byte is content.
                State::Dot => self.middle(b, out),
                State::DotCr if b == b'\n' => {
                    self.state = State::LineStart;
                    return (i, true);
                }
                State::DotCr => {
                    self.fail(DataError::BareCr);
                    self.emit(b".\r", out);
                    self.middle(b, out);
                }
                State::Cr if b == b'\n' => {
                    self.emit(b"\r\n", out);
                    self.state = State::LineStart;
                    self.line = 0;
                }
                State::Cr => {
                    self.fail(DataError::BareCr);
                    self.emit(b"\r", out);
                    self.middle(b, out);
                }
            }
        }
        (input.len(), false)
    }

    fn middle(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                // Never a line end: only CRLF is.
                self.fail(DataError::BareLf);
                self.state = State::Middle;
                self.emit(b"\n", out);
            }
            _ => {
                self.state = State::Middle;
                self.line += 1;
                if self.line > MAX_LINE {
                    self.fail(DataError::LineTooLong);
                }
                self.emit(&[b], out);
            }
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.fail(DataError::TooLarge);
        }
        if self.error.is_none() {
            out.extend_from_slice(bytes);
        }
    }

    fn fail(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; returns message, error, consumed.
    fn read(input: &[u8], chunk: usize) -> (Vec<u8>, Option<DataError>, Option<usize>) {
        let mut r = DataReader::new(1 << 20);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + chunk).min(input.len());
            let (n, done) = r.feed(&input[at..end], &mut out);
            at += n;
            if done {
                return (out, r.error(), Some(at));
            }
        }
        (out, r.error(), None)
    }

    /// Pseudo-random inputs over the bytes that matter: the run-at-once path and byte-by-byte
    /// reading (chunks of one) agree on message, error and end, also past the size and line
    /// limits.
    #[test]
    fn runs_taken_at_once_equal_byte_by_byte() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for case in 0..3000 {
            let len = next() % 3000;
            let mut input: Vec<u8> = (0..len)
                .map(|_| match next() % 40 {
                    0 => b'.',
                    1 | 2 => b'\r',
                    3 | 4 => b'\n',
                    _ => b'x',
                })
                .collect();
            if case % 3 == 0 {
                // A long line now and then.
                input.splice(len / 2..len / 2, std::iter::repeat_n(b'y', 1200));
            }
            input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
            let whole = {
                let mut r = DataReader::new(2000);
                let mut out = Vec::new();
                let (n, done) = r.feed(&input, &mut out);
                (out, r.error(), n, done, r.size())
            };
            let bytewise = {
                let mut r = DataReader::new(2000);
                let mut out = Vec::new();
                let mut at = 0;
                let mut done = false;
                while at < input.len() && !done {
                    let (n, d) = r.feed(&input[at..at + 1], &mut out);
                    at += n;
                    done = d;
                }
                (out, r.error(), at, done, r.size())
            };
            // After an error the kept bytes do not matter (the message is refused).
            if whole.1.is_some() {
                assert_eq!(whole.1, bytewise.1, "case {case}");
                assert_eq!(
                    (whole.2, whole.3, whole.4),
                    (bytewise.2, bytewise.3, bytewise.4),
                    "case {case}"
                );
            } else {
                assert_eq!(whole, bytewise, "case {case}");
            }
        }
    }

    #[test]
    fn reads_until_crlf_dot_crlf_in_any_chunking() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        for chunk in [1, 2, 3, 7, 100] {
            let (msg, err, end) = read(input, chunk);
            assert_eq!(msg, b"Subject: x\r\n\r\n.leading dot\r\n", "chunk {chunk}");
            assert_eq!((err, end), (None, Some(input.len() - 6)), "chunk {chunk}");
        }
        assert_eq!(read(b".\r\n", 1), (vec![], None, Some(3)));
        assert_eq!(read(b"a\r\n.b\r\n.\r\n", 4).0, b"a\r\nb\r\n");
    }

    #[test]
    fn smuggling_attempts_end_nothing_and_fail_the_message() {
        let table: &[(&[u8], DataError)] = &[
            (b"a\n.\nMAIL FROM:<x@evil>\r\n.\r\n", DataError::BareLf),
            (b"a\n.\r\nMAIL FROM:<x@evil>\r\n.\r\n", DataError::BareLf),
            (b"a\r\n.\nMAIL FROM:<x@evil>\r\n.\r\n", DataError::BareLf),
            (b"a\r.\rMAIL FROM:<x@evil>\r\n.\r\n", DataError::BareCr),
            (b"a\r\n.\r.\r\n.\r\n", DataError::BareCr),
            (b"bare\rcr\r\n.\r\n", DataError::BareCr),
        ];
        for (input, want) in table {
            for chunk in [1, 5, 1000] {
                let (_, err, end) = read(input, chunk);
                assert_eq!(err, Some(*want), "{:?}", String::from_utf8_lossy(input));
                assert_eq!(
                    end,
                    Some(input.len()),
                    "only the final CRLF.CRLF ends: {input:?}"
                );
            }
        }
        let (_, _, end) = read(b"a\n.\n", 1);
        assert_eq!(end, None, "LF.LF is not an end");
    }

    #[test]
    fn enforces_line_length_and_size() {
        let ok = [vec![b'x'; MAX_LINE], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(read(&ok, 64).1, None);
        let long = [vec![b'x'; MAX_LINE + 1], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(read(&long, 64).1, Some(DataError::LineTooLong));
        let mut r = DataReader::new(10);
        let mut out = Vec::new();
        let (n, done) = r.feed(b"0123456789abc\r\n.\r\n", &mut out);
        assert!(done && n == 18);
        assert_eq!(r.error(), Some(DataError::TooLarge));
        assert!(out.len() <= 10, "nothing buffered past the limit");
        assert_eq!(r.size(), 15);
    }
}
