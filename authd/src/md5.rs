//! MD5 (RFC 1321) with a resumable chaining state, for CRAM-MD5 only.
//!
//! CRAM-MD5 credentials are stored as Dovecot stores them: the MD5 chaining state after
//! absorbing `key XOR ipad` and `key XOR opad` (one 64-byte block each), so that the password
//! itself is not on disk. That needs a hasher that can be *started* from a saved state. The
//! `md-5` 0.10 crate keeps `Md5Core::state` private and digest 0.10 has no state serialization
//! (that arrives with digest 0.11, which would put a second RustCrypto generation in the tree),
//! so this module implements the compression function itself (about 60 lines), checked against
//! the RFC 1321 test suite and, through HMAC, the RFC 2202 vectors. MD5 is used here for nothing
//! but CRAM-MD5 compatibility.

/// MD5's initial chaining state (RFC 1321 §3.3).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-round left-rotation amounts (RFC 1321 §3.4).
const SHIFT: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// `floor(abs(sin(i + 1)) * 2^32)` (RFC 1321 §3.4); a unit test recomputes the table.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// MD5's block size in bytes.
pub(crate) const BLOCK_LEN: usize = 64;

/// An MD5 computation that can start from a saved chaining state.
#[derive(Clone, Debug)]
pub(crate) struct Md5 {
    state: [u32; 4],
    pending: Vec<u8>,
    total_len: u64,
}

impl Md5 {
    /// A fresh MD5 computation.
    pub(crate) fn new() -> Self {
        Self::resume(INIT, 0)
    }

    /// Continues from `state`, reached after `blocks` whole 64-byte blocks.
    pub(crate) fn resume(state: [u32; 4], blocks: u64) -> Self {
        Md5 {
            state,
            pending: Vec::with_capacity(BLOCK_LEN),
            total_len: blocks.wrapping_mul(BLOCK_LEN as u64),
        }
    }

    /// The chaining state after compressing exactly one block from the initial state.
    pub(crate) fn state_after_block(block: &[u8; BLOCK_LEN]) -> [u32; 4] {
        let mut state = INIT;
        compress(&mut state, block);
        state
    }

    /// Absorbs `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.total_len = self.total_len.wrapping_add(data.len() as u64);
        self.pending.extend_from_slice(data);
        let whole = self.pending.len() - self.pending.len() % BLOCK_LEN;
        for block in self.pending[..whole].chunks_exact(BLOCK_LEN) {
            let mut buf = [0u8; BLOCK_LEN];
            buf.copy_from_slice(block);
            compress(&mut self.state, &buf);
        }
        self.pending.drain(..whole);
    }

    /// Pads (RFC 1321 §3.1–3.2) and returns the 16-byte digest.
    pub(crate) fn finalize(mut self) -> [u8; 16] {
        let bit_len = self.total_len.wrapping_mul(8);
        let mut tail = vec![0x80u8];
        let used = (self.pending.len() + 1) % BLOCK_LEN;
        let zeros = (BLOCK_LEN + 56 - used) % BLOCK_LEN;
        tail.resize(1 + zeros, 0);
        tail.extend_from_slice(&bit_len.to_le_bytes());
        let total = self.total_len;
        self.update(&tail);
        self.total_len = total;
        let mut out = [0u8; 16];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// Computes MD5 of `data` in one call.
pub(crate) fn digest(data: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(data);
    md5.finalize()
}

/// The MD5 compression function (RFC 1321 §3.4), applied to one block.
fn compress(state: &mut [u32; 4], block: &[u8; BLOCK_LEN]) {
    let mut m = [0u32; 16];
    for (word, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let f = f.wrapping_add(a).wrapping_add(K[i]).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(f.rotate_left(SHIFT[i]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn matches_the_rfc_1321_test_suite() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&digest(input.as_bytes())), want, "MD5({input:?})");
        }
    }

    #[test]
    fn gives_the_same_digest_for_any_split_of_the_input() {
        let data: Vec<u8> = (0..200u8).collect();
        let whole = digest(&data);
        for split in [0, 1, 55, 56, 63, 64, 65, 128, 199, 200] {
            let mut md5 = Md5::new();
            md5.update(&data[..split]);
            md5.update(&data[split..]);
            assert_eq!(md5.finalize(), whole, "split at {split}");
        }
    }

    #[test]
    fn resumes_from_a_saved_state() {
        let block = [0x36u8; BLOCK_LEN];
        let mut resumed = Md5::resume(Md5::state_after_block(&block), 1);
        resumed.update(b"challenge");
        let mut straight = Md5::new();
        straight.update(&block);
        straight.update(b"challenge");
        assert_eq!(resumed.finalize(), straight.finalize());
    }

    #[test]
    fn sine_table_matches_its_definition() {
        for (i, k) in K.iter().enumerate() {
            let want = ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0).floor() as u32;
            assert_eq!(*k, want, "K[{i}]");
        }
    }
}
