//! `[storage]`: the free-space floor under which storaged and queued refuse new mail, and the
//! bytes of open deliveries one peer may hold. One section for both roles: their directories
//! lie side by side under `server.data_dir`, usually on one file system, and mail should stop
//! being taken at the same point in both.

use ipc::config::{MinFree, StorageSettings};
use serde::Deserialize;
use toml::Spanned;

/// `[storage]` as written; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `"1G"`, `"500M"`, a number of bytes, or `"5%"` of the file system; `0` turns the floor
    /// off. Default: 1 GiB or 5 %, whichever is smaller.
    pub min_free: Option<Spanned<Quantity>>,
    /// Bytes of open deliveries one role may hold at storaged and at queued (`"512M"`).
    pub max_open_per_peer: Option<Spanned<Quantity>>,
}

/// A size as TOML allows it to be written: a bare number of bytes or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Bytes(u64),
    Text(String),
}

/// Largest percentage `min_free` may ask for: more would stop mail on a half-empty disk.
const MAX_PERCENT: u64 = 50;
/// Smallest `max_open_per_peer`: one message of the largest size must fit.
const MIN_OPEN_PER_PEER: u64 = 100 * 1024 * 1024;

impl Storage {
    /// The validated settings, or the span and text of the first bad value.
    pub fn settings(
        &self,
        max_message_size: u64,
    ) -> Result<StorageSettings, (std::ops::Range<usize>, String)> {
        let d = StorageSettings::default();
        let min_free = match &self.min_free {
            None => d.min_free,
            Some(q) => parse_min_free(q.get_ref()).map_err(|why| {
                let message = format!("storage.min_free: {why}");
                (q.span(), message)
            })?,
        };
        let floor = MIN_OPEN_PER_PEER.max(max_message_size);
        let max_open_bytes_per_peer = match &self.max_open_per_peer {
            None => d.max_open_bytes_per_peer,
            Some(q) => match parse_size(q.get_ref()) {
                Ok(n) if n >= floor => n,
                Ok(n) => {
                    return Err((
                        q.span(),
                        format!(
                            "storage.max_open_per_peer is {n} bytes: at least {floor} (one message of the largest size, 100 MiB) must fit"
                        ),
                    ));
                }
                Err(why) => return Err((q.span(), format!("storage.max_open_per_peer: {why}"))),
            },
        };
        Ok(StorageSettings {
            min_free,
            max_open_bytes_per_peer,
        })
    }
}

/// `"5%"` → a percentage (0 to 50), else a size.
fn parse_min_free(q: &Quantity) -> Result<MinFree, String> {
    if let Quantity::Text(t) = q
        && let Some(p) = t.trim().strip_suffix('%')
    {
        let p: u64 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{t}` is not a whole percentage such as \"5%\""))?;
        if p > MAX_PERCENT {
            return Err(format!("{p}% is more than {MAX_PERCENT}%"));
        }
        // invariant: p ≤ 50 fits a u8.
        return Ok(MinFree::Percent(p as u8));
    }
    parse_size(q).map(MinFree::Bytes)
}

/// A number of bytes with an optional binary unit: `1048576`, `"512K"`, `"100M"`, `"1GiB"`,
/// `"2 T"` (K, M, G, T are powers of 1024; `B` and `iB` after them are allowed).
pub fn parse_size(q: &Quantity) -> Result<u64, String> {
    let text = match q {
        Quantity::Bytes(n) => return Ok(*n),
        Quantity::Text(t) => t.trim(),
    };
    let bad = || format!("`{text}` is not a size such as \"1G\", \"500M\" or a number of bytes");
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let shift = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Quantity {
        Quantity::Text(s.into())
    }

    #[test]
    fn sizes_take_binary_units() {
        for (input, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("512K", 512 << 10),
            ("100M", 100 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2 gb", 2 << 30),
            ("3T", 3 << 40),
        ] {
            assert_eq!(parse_size(&text(input)), Ok(bytes), "{input}");
        }
        assert_eq!(parse_size(&Quantity::Bytes(77)), Ok(77));
        for bad in ["", "G", "1X", "1.5G", "-1", "99999999999T"] {
            assert!(parse_size(&text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn min_free_is_a_size_or_a_percentage_up_to_half() {
        assert_eq!(parse_min_free(&text("5%")), Ok(MinFree::Percent(5)));
        assert_eq!(parse_min_free(&text("0%")), Ok(MinFree::Percent(0)));
        assert_eq!(parse_min_free(&text("2G")), Ok(MinFree::Bytes(2 << 30)));
        assert_eq!(parse_min_free(&Quantity::Bytes(0)), Ok(MinFree::Bytes(0)));
        assert!(
            parse_min_free(&text("51%"))
                .unwrap_err()
                .contains("more than 50%")
        );
        assert!(parse_min_free(&text("x%")).is_err());
    }
}
