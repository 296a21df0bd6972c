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
        for (i, &b) in input.iter().enumerate() {
            match self.state {
                State::LineStart if b == b'.' => self.state = State::Dot,
                State::LineStart | State::Middle => self.middle(b, out),
                State::Dot if b == b'\r' => self.state = State::DotCr,
                // A stuffed dot: drop it, the byte is content.
                State::Dot => self.middle(b, out),
                State::DotCr if b == b'\n' => {
                    self.state = State::LineStart;
                    return (i + 1, true);
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
