//! smtpd's DATA reader: the first byte picks a chunk size, the rest is what the client sends
//! after 354. Whatever the chunking, the outcome is the same; the data only ends at CRLF.CRLF
//! (or at ".\r\n" as the very first line); nothing is kept past the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::data::DataReader;

fn read(input: &[u8], chunk: usize) -> (Vec<u8>, Option<smtpd::data::DataError>, Option<usize>, u64) {
    let mut r = DataReader::new(4096);
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = (at + chunk).min(input.len());
        let (n, done) = r.feed(&input[at..end], &mut out);
        assert!(n <= end - at);
        at += n;
        if done {
            return (out, r.error(), Some(at), r.size());
        }
    }
    (out, r.error(), None, r.size())
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let whole = read(input, input.len().max(1));
    let pieces = read(input, usize::from(chunk).max(1));
    assert_eq!(whole, pieces, "chunking changed the outcome");
    let (out, error, end, _) = whole;
    if let Some(end) = end {
        let consumed = &input[..end];
        assert!(consumed.ends_with(b"\r\n.\r\n") || consumed == b".\r\n", "{consumed:?}");
    }
    if error.is_none() {
        assert!(out.len() <= 4096);
        // Clean output has only CRLF line ends.
        for (i, b) in out.iter().enumerate() {
            if *b == b'\n' {
                assert!(i > 0 && out[i - 1] == b'\r');
            }
        }
    }
});
