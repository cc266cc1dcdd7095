//! Receipt codes: unique, short, not sequential, and checkable by eye.
//!
//! # Shape
//!
//! A code is `PREFIX-BODY-C`, for example `TR-F6Z87JCP-4` (transfer 1):
//!
//! - `PREFIX` names what the receipt is for: [`WORKER_PREFIX`] (`SW`, a successful binding-worker
//!   iteration) or [`TRANSFER_PREFIX`] (`TR`, a transfer). A prefix is 1 to 16 characters from
//!   `0-9A-Z`.
//! - `BODY` is the issuing row's id, scrambled (see below) and written in base 36 (`0-9A-Z`) with a
//!   fixed width: 8 characters for every id below 36^8 ≈ 2.8·10^12 (far beyond 2^40 ≈ 1.1·10^12),
//!   13 characters for the (in practice unreachable) larger ids, so every `u64` has a code.
//! - `C` is one check character from `0-9A-Z`.
//!
//! Only upper case is accepted: a code is an identifier compared byte for byte (it is stored on
//! the row and is the journal's `external_ref`), so it has exactly one spelling, and
//! [`parse`] refuses lower case as [`ReceiptError::Malformed`]. A caller that takes codes typed by
//! people may upper-case them first (`s.trim().to_ascii_uppercase()`).
//!
//! # Unique but not sequential
//!
//! The id is not written as it is (that would give away how many receipts exist and make the next
//! one guessable). It goes through a keyed Feistel permutation of the numbers `0 .. 36^8` (or
//! `0 .. 36^13` for the long body): the number is split into a high and a low half of 4 base-36
//! digits each (6 and 7 for the long body) and, round after round, one half is replaced by (that
//! half + a round function of the other half) modulo the half's size, the halves taking turns.
//! Each round can be undone (subtract the same amount), so the whole is a bijection: two ids
//! never share a code, with no database retry, and [`id_of`] recovers the id from a code under the
//! same key.
//!
//! The [`Key`] is the database's own secret, 256 random bits made when the database is first
//! created and kept in it: the round function is HMAC-SHA256 under it (over the prefix, the
//! width, the round and the half), for 12 rounds. Without the key, codes are indistinguishable
//! from random distinct codes: any number of them tells nothing about other codes, about the ids
//! behind them or about how many there are, and two databases' codes are unrelated. The engine
//! never makes or stores a key; it is given one.
//!
//! [`Key::legacy`] is the scheme of the releases before keys: a round function (murmur3's
//! finaliser) over 8 round constants written in this file, which hides the order only from
//! people without the source. A database that issued codes under it keeps it, so its codes keep
//! naming the same rows and new codes never collide with old ones. The legacy constants and the
//! keyed construction must never change.
//!
//! # The check character
//!
//! The check is computed over every character of the prefix and of the body, so a mistyped
//! prefix is caught too. Like ISO 7064 it chooses the check character so that a weighted sum of
//! all the characters, the check included, is zero. The arithmetic is in a set of exactly 36
//! values where every weight can be undone: each character stands for a pair (an element of the
//! 4-element field GF(4), an element of the 9-element field GF(9)); the sum is built Horner-style,
//! `t = A·t + x` for each character `x`, with `A = (ω, 1 + i)`, and the check `c` is the one that
//! makes the final `t` zero. Because `A`, `A − 1`, `A + 1`, `A² − 1` and `A² + 1` all have inverses,
//! the code is rejected after any one of these mistakes, wherever it is (prefix, body or check):
//!
//! - one character replaced by another (`x → y`),
//! - two neighbouring characters swapped (`xy → yx`), the check character included,
//! - two characters one apart swapped (`xzy → yzx`, and so across a `-`, e.g. `TR-3…` → `T3-R…`),
//! - a doubled character mistyped as another doubled one (`xx → yy`, `xzx → yzy`).
//!
//! Any other change is caught with probability 35/36. ISO 7064 MOD 37,36 itself is not used:
//! its hybrid recurrence lets about one neighbour swap in 600 through (`IJ…` and `JI…` have the
//! same MOD 37,36 check), and section 7 of the contract asks for all of them to be caught.
//!
//! [`parse`] tells a code that is not shaped like one ([`ReceiptError::Malformed`]) from a
//! well-shaped code whose check character does not match, i.e. a mistyped one
//! ([`ReceiptError::CheckFailed`]).

/// The prefix of a successful binding-worker iteration's receipt.
pub const WORKER_PREFIX: &str = "SW";
/// The prefix of a transfer's receipt.
pub const TRANSFER_PREFIX: &str = "TR";

/// The longest prefix [`parse`] accepts.
pub const MAX_PREFIX_LEN: usize = 16;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// How a body splits into a high and a low half, in base-36 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Width {
    high: u32,
    low: u32,
}

impl Width {
    const fn len(self) -> usize {
        (self.high + self.low) as usize
    }
    const fn high_size(self) -> u64 {
        36u64.pow(self.high)
    }
    const fn low_size(self) -> u64 {
        36u64.pow(self.low)
    }
}

/// The body of every id below 36^8.
const SHORT: Width = Width { high: 4, low: 4 };
/// The body of the ids from 36^8 on (36^13 > 2^64).
const LONG: Width = Width { high: 6, low: 7 };
/// The first id that needs the long body.
const SHORT_LIMIT: u64 = 36u64.pow(8);

/// The rounds of the legacy scheme ([`Key::legacy`]).
const LEGACY_ROUNDS: usize = 8;
/// The legacy round keys: written in this file, so they hide the order from
/// people without the source only. Fixed forever: the databases that issued
/// codes under them keep using them ([`Key::legacy`]).
const LEGACY_KEYS: [u64; LEGACY_ROUNDS] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
    0x4528_21E6_38D0_1377,
    0xBE54_66CF_34E9_0C6C,
    0xC0AC_29B7_C97C_50DD,
    0x3F84_D5B5_B547_0917,
];
/// The rounds of the keyed scheme: a Feistel network over a pseudo-random
/// function is indistinguishable from a random permutation with a margin that
/// grows with the rounds; 12 is well past what small domains need (FF1 uses 10).
const KEYED_ROUNDS: usize = 12;

/// The length of a secret key, in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// What scrambles ids into code bodies: a database's own secret (HMAC-SHA256
/// as the round function), or the legacy constants of databases that issued
/// codes before they had a secret. Never printed: its `Debug` says which kind
/// it is, not the secret.
#[derive(Clone)]
pub struct Key(Scheme);

#[derive(Clone)]
enum Scheme {
    Legacy,
    /// The HMAC already keyed (the padded key absorbed), cloned per round.
    Keyed(Box<Hmac<Sha256>>),
}

/// A key that is not 64 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a receipt key is 64 hexadecimal digits")]
pub struct KeyError;

impl Key {
    /// The legacy scheme: the constants above, 8 rounds. For databases that
    /// issued codes under it (their codes must keep meaning the same ids).
    pub fn legacy() -> Key {
        Key(Scheme::Legacy)
    }

    /// The keyed scheme under `secret`.
    pub fn new(secret: &[u8; KEY_LEN]) -> Key {
        // Any key length is valid for HMAC.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Key(Scheme::Keyed(Box::new(mac)))
    }

    /// The keyed scheme under the secret written as 64 hexadecimal digits.
    pub fn from_hex(secret: &str) -> Result<Key, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(secret, &mut bytes).map_err(|_| KeyError)?;
        Ok(Key::new(&bytes))
    }

    /// Whether this is the legacy scheme.
    pub fn is_legacy(&self) -> bool {
        matches!(self.0, Scheme::Legacy)
    }

    fn rounds(&self) -> usize {
        match self.0 {
            Scheme::Legacy => LEGACY_ROUNDS,
            Scheme::Keyed(_) => KEYED_ROUNDS,
        }
    }

    /// The round function: any function of the other half keeps the round a
    /// bijection. Keyed: the first 64 bits of HMAC-SHA256 over the prefix, the
    /// width, the round and the half (so each prefix and width has its own
    /// permutation). Legacy: murmur3's 64-bit finaliser over the half and the
    /// round's constant.
    fn round_fn(&self, prefix: &[u8], w: Width, round: usize, half: u64) -> u64 {
        match &self.0 {
            Scheme::Legacy => {
                let mut x = half ^ LEGACY_KEYS[round];
                x ^= x >> 33;
                x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
                x ^= x >> 33;
                x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
                x ^ (x >> 33)
            }
            Scheme::Keyed(mac) => {
                let mut mac = (**mac).clone();
                // The prefix is at most 16 characters (one byte of length).
                mac.update(&[prefix.len() as u8]);
                mac.update(prefix);
                mac.update(&[w.high as u8, w.low as u8, round as u8]);
                mac.update(&half.to_be_bytes());
                let out = mac.finalize().into_bytes();
                let mut first = [0u8; 8];
                first.copy_from_slice(&out[..8]);
                u64::from_be_bytes(first)
            }
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_legacy() { "Key(legacy)" } else { "Key(secret)" })
    }
}

/// The Feistel permutation of `(high, low)`, with `high < 36^w.high` and `low < 36^w.low`.
fn permute(key: &Key, prefix: &[u8], w: Width, mut high: u64, mut low: u64) -> (u64, u64) {
    let (hs, ls) = (w.high_size(), w.low_size());
    for round in 0..key.rounds() {
        if round % 2 == 0 {
            high = (high + key.round_fn(prefix, w, round, low) % hs) % hs;
        } else {
            low = (low + key.round_fn(prefix, w, round, high) % ls) % ls;
        }
    }
    (high, low)
}

/// The inverse of [`permute`]: the rounds undone in reverse order.
fn unpermute(key: &Key, prefix: &[u8], w: Width, mut high: u64, mut low: u64) -> (u64, u64) {
    let (hs, ls) = (w.high_size(), w.low_size());
    for round in (0..key.rounds()).rev() {
        if round % 2 == 0 {
            high = (high + hs - key.round_fn(prefix, w, round, low) % hs) % hs;
        } else {
            low = (low + ls - key.round_fn(prefix, w, round, high) % ls) % ls;
        }
    }
    (high, low)
}

/// Appends `n` (< 36^digits) in base 36 with exactly `digits` characters.
fn push_base36(out: &mut Vec<u8>, mut n: u64, digits: u32) {
    let start = out.len();
    for _ in 0..digits {
        out.push(ALPHABET[(n % 36) as usize]);
        n /= 36;
    }
    out[start..].reverse();
}

/// The value (0..36) of a character of the alphabet.
fn value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'Z' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads base-36 digits (already known to be in the alphabet).
fn read_base36(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |n, &b| n * 36 + u64::from(value(b).unwrap_or(0)))
}

/// The check arithmetic. A value `v` in 0..36 stands for the pair (`v / 9` in GF(4), `v % 9` in
/// GF(9)). GF(4) = {0, 1, ω, ω+1} with ω² = ω + 1, `b1·ω + b0` encoded as the bits `b1 b0`;
/// GF(9) = GF(3)[i] with i² = −1, `h1·i + h0` encoded as `3·h1 + h0`.
mod ring {
    fn split(v: u8) -> (u8, u8, u8) {
        let h = v % 9;
        (v / 9, h / 3, h % 3)
    }
    fn join(g: u8, h1: u8, h0: u8) -> u8 {
        g * 9 + h1 * 3 + h0
    }

    /// `a + b` in the ring: the GF(4) parts XOR, the GF(9) digits add mod 3.
    pub(super) fn add(a: u8, b: u8) -> u8 {
        let (ag, a1, a0) = split(a);
        let (bg, b1, b0) = split(b);
        join(ag ^ bg, (a1 + b1) % 3, (a0 + b0) % 3)
    }

    /// `−a`.
    pub(super) fn neg(a: u8) -> u8 {
        let (g, h1, h0) = split(a);
        join(g, (3 - h1) % 3, (3 - h0) % 3)
    }

    /// `A·a` with `A = (ω, 1 + i)`.
    pub(super) fn mul_a(a: u8) -> u8 {
        let (g, h1, h0) = split(a);
        // ω·(b1·ω + b0) = b1·ω² + b0·ω = (b1 + b0)·ω + b1.
        let (b1, b0) = (g >> 1, g & 1);
        let g = ((b1 ^ b0) << 1) | b1;
        // (1 + i)·(h1·i + h0) = (h0 + h1)·i + (h0 − h1).
        join(g, (h0 + h1) % 3, (h0 + 3 - h1) % 3)
    }

    /// One Horner step: `A·t + x`.
    pub(super) fn step(t: u8, x: u8) -> u8 {
        add(mul_a(t), x)
    }
}

/// The Horner sum over the alphabet characters of `bytes` (others are skipped).
fn check_sum<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u8 {
    parts.into_iter().flatten().filter_map(|&b| value(b)).fold(0, ring::step)
}

/// The check character that makes the sum over `parts` and the check zero.
fn check_char<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u8 {
    ALPHABET[ring::neg(ring::mul_a(check_sum(parts))) as usize]
}

fn is_prefix(p: &[u8]) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&p.len()) && p.iter().all(|&b| value(b).is_some())
}

/// The receipt code for the row with database id `id`, under `prefix` ([`WORKER_PREFIX`] or
/// [`TRANSFER_PREFIX`]; a prefix is 1 to 16 characters from `0-9A-Z`) and the database's `key`.
/// Different ids give different codes, always, and consecutive ids give unrelated-looking codes.
pub fn code(key: &Key, prefix: &str, id: u64) -> String {
    debug_assert!(is_prefix(prefix.as_bytes()), "bad receipt prefix {prefix:?}");
    let w = if id < SHORT_LIMIT { SHORT } else { LONG };
    let (high, low) = permute(key, prefix.as_bytes(), w, id / w.low_size(), id % w.low_size());
    let mut body = Vec::with_capacity(w.len());
    push_base36(&mut body, high, w.high);
    push_base36(&mut body, low, w.low);
    let check = check_char([prefix.as_bytes(), &body]);
    let mut out = String::with_capacity(prefix.len() + w.len() + 3);
    out.push_str(prefix);
    out.push('-');
    body.iter().for_each(|&b| out.push(char::from(b)));
    out.push('-');
    out.push(char::from(check));
    out
}

/// Why a string is not a receipt code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not shaped like a code: not `PREFIX-BODY-C`, a prefix that is not 1 to 16 characters, a
    /// body that is not 8 or 13 characters, or a character outside `0-9A-Z` (lower case
    /// included).
    #[error("not a receipt code (expected PREFIX-XXXXXXXX-C, upper case)")]
    Malformed,
    /// Shaped like a code, but the check character does not match: a mistyped code.
    #[error("receipt code check failed (mistyped code?)")]
    CheckFailed,
}

/// A well-formed receipt code whose check character matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// E.g. `TR`.
    pub prefix: String,
    /// The scrambled id, 8 (or 13) base-36 characters.
    pub body: String,
    /// One of `0-9A-Z`; catches any single mistyped character and any swap of two neighbours.
    pub check: char,
}

impl Parsed {
    /// The id this code was made from under `key`, or `None` for a long body that [`code`] never
    /// makes (one that decodes to an id below 36^8, which gets a short body, or above `u64::MAX`).
    /// Under another key a code reads as some other id: the caller looks the id up.
    pub fn id(&self, key: &Key) -> Option<u64> {
        let body = self.body.as_bytes();
        let w = if body.len() == SHORT.len() { SHORT } else { LONG };
        let split = w.high as usize;
        let high = read_base36(body.get(..split)?);
        let low = read_base36(body.get(split..)?);
        let (high, low) = unpermute(key, self.prefix.as_bytes(), w, high, low);
        let id = u128::from(high) * u128::from(w.low_size()) + u128::from(low);
        let id = u64::try_from(id).ok()?;
        (w == SHORT || id >= SHORT_LIMIT).then_some(id)
    }
}

/// Reads a receipt code: [`ReceiptError::Malformed`] if it is not shaped like one,
/// [`ReceiptError::CheckFailed`] if the check character does not match (a mistyped code).
pub fn parse(code: &str) -> Result<Parsed, ReceiptError> {
    let mut parts = code.as_bytes().split(|&b| b == b'-');
    let (Some(prefix), Some(body), Some(check), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ReceiptError::Malformed);
    };
    let well_formed = is_prefix(prefix)
        && (body.len() == SHORT.len() || body.len() == LONG.len())
        && body.iter().all(|&b| value(b).is_some())
        && check.len() == 1
        && check.iter().all(|&b| value(b).is_some());
    if !well_formed {
        return Err(ReceiptError::Malformed);
    }
    if check_sum([prefix, body, check]) != 0 {
        return Err(ReceiptError::CheckFailed);
    }
    // All ASCII by now.
    let text = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
    Ok(Parsed { prefix: text(prefix), body: text(body), check: char::from(check[0]) })
}

/// Whether `code` is well formed with a matching check character.
pub fn is_valid(code: &str) -> bool {
    parse(code).is_ok()
}

/// The id a valid code was made from under `key` (the inverse of [`code`], whatever the prefix),
/// or `None` if `code` does not parse or is not one [`code`] makes.
pub fn id_of(key: &Key, code: &str) -> Option<u64> {
    parse(code).ok()?.id(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A deterministic generator of test ids (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    /// A secret key for the tests (a database's is random).
    fn secret() -> Key {
        Key::new(&[0x5A; KEY_LEN])
    }

    /// Both schemes: every rule holds under either.
    fn keys() -> [Key; 2] {
        [Key::legacy(), secret()]
    }

    fn body(code: &str) -> &str {
        code.split('-').nth(1).unwrap()
    }

    /// Interesting ids: the edges of the short and long bodies, and a spread of the rest.
    fn sample_ids(n: usize) -> Vec<u64> {
        let mut ids = vec![
            0,
            1,
            2,
            35,
            36,
            100,
            123_456,
            (1 << 40) - 1,
            1 << 40,
            SHORT_LIMIT - 1,
            SHORT_LIMIT,
            SHORT_LIMIT + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut rng = Rng(7);
        while ids.len() < n {
            ids.push(match ids.len() % 3 {
                0 => rng.next() % 1_000_000,
                1 => rng.next() % (1 << 40),
                _ => rng.next(),
            });
        }
        ids
    }

    /// Codes under both prefixes, and a longer one with digits, under both schemes.
    fn sample_codes(n: usize) -> Vec<String> {
        let keys = keys();
        sample_ids(n)
            .into_iter()
            .enumerate()
            .map(|(i, id)| code(&keys[i % 2], ["SW", "TR", "X9Q"][i % 3], id))
            .collect()
    }

    #[test]
    fn shape_and_pinned_values() {
        for key in keys() {
            let c = code(&key, "TR", 1);
            assert_eq!(c.len(), "TR-XXXXXXXX-C".len(), "{c}");
            assert_eq!(code(&key, "SW", SHORT_LIMIT - 1).len(), "SW-XXXXXXXX-C".len());
            assert_eq!(code(&key, "SW", SHORT_LIMIT).len(), "SW-XXXXXXXXXXXXX-C".len());
            assert_eq!(code(&key, "SW", u64::MAX).len(), "SW-XXXXXXXXXXXXX-C".len());
        }
        // Codes are stored: the schemes must never change. These pin them.
        let legacy = Key::legacy();
        assert_eq!(code(&legacy, "TR", 1), "TR-F6Z87JCP-4");
        assert_eq!(code(&legacy, "SW", 100), "SW-XJWKW94K-N");
        assert_eq!(code(&legacy, "TR", 1 << 40), "TR-QRVGYOAX-W");
        assert_eq!(code(&legacy, "SW", u64::MAX), "SW-I9LT68YJG4GHB-R");
        let secret = secret();
        assert_eq!(code(&secret, "TR", 1), "TR-C97VVIY9-M");
        assert_eq!(code(&secret, "SW", 100), "SW-HGO2JQNW-5");
        assert_eq!(code(&secret, "TR", 1 << 40), "TR-S9PXQAQQ-M");
        assert_eq!(code(&secret, "SW", u64::MAX), "SW-UHHADEUIMOXDU-N");
    }

    #[test]
    fn codes_under_different_keys_are_unrelated() {
        // Two databases' first codes: no id has the same code under both, and
        // knowing one database's codes says nothing about the other's.
        let (a, b) = (Key::new(&[1; KEY_LEN]), Key::new(&[2; KEY_LEN]));
        let n = 20_000u64;
        let under_a: HashSet<String> = (1..=n).map(|id| body(&code(&a, "TR", id)).to_string()).collect();
        let same_id = (1..=n).filter(|&id| body(&code(&a, "TR", id)) == body(&code(&b, "TR", id))).count();
        let shared = (1..=n).filter(|&id| under_a.contains(body(&code(&b, "TR", id)))).count();
        assert_eq!((same_id, shared), (0, 0));
        // Neither is the legacy scheme, and each prefix has its own permutation.
        assert_ne!(code(&a, "TR", 1), code(&Key::legacy(), "TR", 1));
        assert_ne!(body(&code(&a, "TR", 1)), body(&code(&a, "SW", 1)));
        // A code names another id under another key.
        assert_ne!(id_of(&b, &code(&a, "TR", 77)), Some(77));
    }

    #[test]
    fn a_key_is_read_from_hex_and_never_printed() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key = Key::from_hex(hex).unwrap();
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(hex, &mut bytes).unwrap();
        assert_eq!(code(&key, "TR", 5), code(&Key::new(&bytes), "TR", 5));
        assert_eq!(format!("{key:?}"), "Key(secret)");
        assert_eq!(format!("{:?}", Key::legacy()), "Key(legacy)");
        assert!(!key.is_legacy() && Key::legacy().is_legacy());
        for bad in ["", "00", &hex[1..], &format!("{hex}00"), &hex.replace('a', "g")] {
            assert_eq!(Key::from_hex(bad).map(|_| ()), Err(KeyError), "{bad:?}");
        }
    }

    #[test]
    fn the_permutation_is_a_bijection_on_small_widths() {
        // The same code as the real widths, with domains small enough to enumerate.
        for key in keys() {
            for w in [
                Width { high: 1, low: 1 },
                Width { high: 1, low: 2 },
                Width { high: 2, low: 1 },
                Width { high: 2, low: 2 },
            ] {
                let (hs, ls) = (w.high_size(), w.low_size());
                let mut seen = HashSet::new();
                for x in 0..hs * ls {
                    let (h, l) = permute(&key, b"TR", w, x / ls, x % ls);
                    assert!(h < hs && l < ls);
                    assert!(seen.insert((h, l)), "{w:?}: {x} collides");
                    assert_eq!(unpermute(&key, b"TR", w, h, l), (x / ls, x % ls));
                }
                assert_eq!(seen.len() as u64, hs * ls);
            }
        }
    }

    #[test]
    fn codes_are_unique_and_valid_over_a_large_range() {
        // The keyed scheme costs 12 HMACs a way: fewer ids.
        for (key, n) in [(Key::legacy(), 1_000_000u64), (secret(), 200_000)] {
            let mut seen = HashSet::new();
            for id in 0..n {
                let c = code(&key, "SW", id);
                assert_eq!(parse(&c).map(|p| p.id(&key)), Ok(Some(id)), "{c}");
                assert!(seen.insert(c));
            }
        }
    }

    #[test]
    fn codes_are_unique_at_random_ids() {
        for (key, n) in [(Key::legacy(), 300_000), (secret(), 100_000)] {
            let mut rng = Rng(42);
            let mut seen = HashSet::new();
            let mut ids = HashSet::new();
            for i in 0..n {
                let id = match i % 3 {
                    0 => rng.next() % (1 << 40),
                    1 => rng.next() % SHORT_LIMIT,
                    _ => rng.next(),
                };
                let c = code(&key, "TR", id);
                assert_eq!(id_of(&key, &c), Some(id), "{c}");
                assert_eq!(seen.insert(c), ids.insert(id));
            }
        }
    }

    #[test]
    fn id_of_round_trips() {
        for key in keys() {
            for id in sample_ids(20_000) {
                for prefix in ["SW", "TR"] {
                    let c = code(&key, prefix, id);
                    assert_eq!(id_of(&key, &c), Some(id), "{c}");
                    let p = parse(&c).unwrap();
                    assert_eq!(p.prefix, prefix);
                    assert_eq!(format!("{}-{}-{}", p.prefix, p.body, p.check), c);
                }
            }
            assert_eq!(id_of(&key, "TR-XYZ"), None);
            let mut bad = code(&key, "TR", 5).into_bytes();
            bad[3] = if bad[3] == b'0' { b'1' } else { b'0' };
            assert_eq!(id_of(&key, std::str::from_utf8(&bad).unwrap()), None);
        }
    }

    #[test]
    fn a_long_body_that_code_never_makes_has_no_id() {
        for key in keys() {
            // A long body standing for a short id: well formed, check right, but not ours.
            let (high, low) = permute(&key, b"TR", LONG, 0, 12_345);
            let mut b = Vec::new();
            push_base36(&mut b, high, LONG.high);
            push_base36(&mut b, low, LONG.low);
            let check = char::from(check_char([b"TR".as_slice(), &b]));
            let c = format!("TR-{}-{check}", std::str::from_utf8(&b).unwrap());
            assert!(is_valid(&c));
            assert_eq!(id_of(&key, &c), None);
            // And one that decodes to more than u64::MAX.
            let (high, low) = permute(&key, b"SW", LONG, LONG.high_size() - 1, 0);
            let mut b = Vec::new();
            push_base36(&mut b, high, LONG.high);
            push_base36(&mut b, low, LONG.low);
            let check = char::from(check_char([b"SW".as_slice(), &b]));
            let c = format!("SW-{}-{check}", std::str::from_utf8(&b).unwrap());
            assert!(is_valid(&c));
            assert_eq!(id_of(&key, &c), None);
        }
    }

    #[test]
    fn consecutive_ids_give_unordered_unrelated_codes() {
        for key in keys() {
            consecutive_ids_under(&key);
        }
    }

    fn consecutive_ids_under(key: &Key) {
        let n = 200_000u64;
        let (mut ordered, mut share2, mut share3, mut near, mut run, mut longest_run) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut prev = code(key, "TR", 0);
        for id in 1..=n {
            let c = code(key, "TR", id);
            let (a, b) = (body(&prev), body(&c));
            if b > a {
                ordered += 1;
                run += 1;
                longest_run = longest_run.max(run);
            } else {
                run = 0;
            }
            let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            share2 += u64::from(common >= 2);
            share3 += u64::from(common >= 3);
            let (x, y) = (read_base36(a.as_bytes()), read_base36(b.as_bytes()));
            near += u64::from(x.abs_diff(y) < SHORT_LIMIT / 1000);
            prev = c;
        }
        // A random order: about half the pairs go up, runs are short, neighbours are far apart.
        let pct = |k: u64| k as f64 * 100.0 / n as f64;
        println!(
            "{key:?}: {}% in order, longest run {longest_run}, {}% share 2, {}% share 3, {}% near",
            pct(ordered),
            pct(share2),
            pct(share3),
            pct(near)
        );
        assert!((45.0..55.0).contains(&pct(ordered)), "{}% in order", pct(ordered));
        assert!(longest_run < 25, "a run of {longest_run} increasing codes");
        assert!(pct(share2) < 1.0, "{}% share 2 leading characters", pct(share2));
        assert!(pct(share3) < 0.05, "{}% share 3 leading characters", pct(share3));
        assert!(pct(near) < 1.0, "{}% are within 0.1% of each other", pct(near));
    }

    #[test]
    fn the_check_algebra_catches_every_single_error_and_swap() {
        use ring::*;
        for x in 0..36u8 {
            // Every step is a bijection of the running sum, so a difference is never undone.
            let images: HashSet<u8> = (0..36).map(|t| step(t, x)).collect();
            assert_eq!(images.len(), 36);
            assert_eq!(add(x, neg(x)), 0);
        }
        for t in 0..36u8 {
            for x in 0..36u8 {
                for y in (0..36u8).filter(|&y| y != x) {
                    assert_ne!(step(t, x), step(t, y), "substitution");
                    assert_ne!(step(step(t, x), y), step(step(t, y), x), "neighbour swap");
                    assert_ne!(step(step(t, x), x), step(step(t, y), y), "twin");
                    for z in 0..36u8 {
                        let s = |a, b, c| step(step(step(t, a), b), c);
                        assert_ne!(s(x, z, y), s(y, z, x), "jump swap");
                        assert_ne!(s(x, z, x), s(y, z, y), "jump twin");
                    }
                }
            }
        }
    }

    /// The alternatives tried at every position: the alphabet, lower case, punctuation, spaces
    /// and a few non-ASCII look-alikes.
    fn alternatives() -> Vec<char> {
        let mut v: Vec<char> = (0x20u8..0x7F).map(char::from).collect();
        v.extend(['\t', '\n', '\0', 'é', 'ß', 'Ø', '٣', 'Ａ', '０', '–', '\u{200B}']);
        v
    }

    #[test]
    fn every_single_character_substitution_is_rejected() {
        let alts = alternatives();
        let mut cases = 0;
        for c in sample_codes(600) {
            let chars: Vec<char> = c.chars().collect();
            for i in 0..chars.len() {
                for &alt in alts.iter().filter(|&&a| a != chars[i]) {
                    let mut typo = chars.clone();
                    typo[i] = alt;
                    let typo: String = typo.into_iter().collect();
                    let want = if chars[i] != '-' && value(alt as u8).is_some() && alt.is_ascii() {
                        ReceiptError::CheckFailed
                    } else {
                        ReceiptError::Malformed
                    };
                    assert_eq!(parse(&typo), Err(want), "{c} -> {typo}");
                    cases += 1;
                }
            }
        }
        assert!(cases > 500_000, "{cases}");
    }

    #[test]
    fn every_swap_of_neighbours_is_rejected() {
        for c in sample_codes(20_000) {
            let b = c.as_bytes();
            // Neighbours, and characters one apart (so also across a '-').
            for gap in [1, 2] {
                for i in 0..b.len() - gap {
                    if b[i] == b[i + gap] {
                        continue;
                    }
                    let mut s = b.to_vec();
                    s.swap(i, i + gap);
                    let s = String::from_utf8(s).unwrap();
                    let want = if b[i] == b'-' || b[i + gap] == b'-' {
                        ReceiptError::Malformed
                    } else {
                        ReceiptError::CheckFailed
                    };
                    assert_eq!(parse(&s), Err(want), "{c} -> {s}");
                }
            }
        }
    }

    #[test]
    fn parse_tells_malformed_from_check_failed() {
        use ReceiptError::*;
        let good = code(&secret(), "TR", 123_456);
        assert!(is_valid(&good));
        let (prefix_body, check) = good.rsplit_once('-').unwrap();
        let wrong = ALPHABET.iter().map(|&b| char::from(b)).find(|&ch| ch.to_string() != check).unwrap();
        let mistyped = format!("{prefix_body}-{wrong}");
        assert_eq!(parse(&mistyped), Err(CheckFailed));
        assert!(!is_valid(&mistyped));
        for bad in [
            "",
            "-",
            "--",
            "TR",
            "TR-",
            "TR--",
            "TR-XYZ",
            "nonsense",
            "TR-ABCDEFGH",
            "TR-ABCDEFGH-",
            "TR-ABCDEFGH-12",
            "TR-ABCDEFG-1",
            "TR-ABCDEFGHI-1",
            "TR-ABCDEFGHIJKL-1",
            "TR-ABCDEFGHIJKLMN-1",
            "-ABCDEFGH-1",
            "TR-ABCD-EFGH-1",
            "TR-ABCDEFGH-1-",
            "TOOLONGPREFIX1234-ABCDEFGH-1",
            "SW-00002S-Y", // the old format
        ] {
            assert_eq!(parse(bad), Err(Malformed), "{bad:?}");
            assert_eq!(id_of(&secret(), bad), None);
        }
        // Lower case, spaces and other decorations are refused, not fixed up.
        for bad in [
            good.to_ascii_lowercase(),
            format!(" {good}"),
            format!("{good}\n"),
            good.replacen('-', "_", 1),
            good.replacen('-', "–", 1),
        ] {
            assert_eq!(parse(&bad), Err(Malformed), "{bad:?}");
        }
        // A well-formed code that was never issued still checks (the API's 404, not 400).
        let unissued = format!("TR-ZZZZZZZZ-{}", char::from(check_char([b"TR".as_slice(), b"ZZZZZZZZ"])));
        assert!(parse(&unissued).is_ok());
        assert_eq!(Malformed.to_string(), "not a receipt code (expected PREFIX-XXXXXXXX-C, upper case)");
    }

    #[test]
    fn the_prefix_is_covered_by_the_check() {
        for key in keys() {
            let sw = code(&key, "SW", 77);
            let as_tr = sw.replacen("SW", "TR", 1);
            assert_eq!(parse(&as_tr), Err(ReceiptError::CheckFailed));
            // Same id, different prefixes: different codes.
            assert_ne!(code(&key, "SW", 77), code(&key, "TR", 77));
        }
        // The same body under the legacy scheme; the keyed one permutes each prefix its own way.
        let legacy = Key::legacy();
        assert_eq!(body(&code(&legacy, "SW", 77)), body(&code(&legacy, "TR", 77)));
        assert_ne!(body(&code(&secret(), "SW", 77)), body(&code(&secret(), "TR", 77)));
    }

    /// Why not ISO 7064 MOD 37,36 as such: its hybrid recurrence lets some neighbour swaps
    /// through, which section 7 of the contract forbids.
    #[test]
    fn iso_7064_mod_37_36_misses_some_neighbour_swaps() {
        /// ISO 7064 hybrid MOD (m+1),m over values, giving the check value.
        fn hybrid(m: u32, s: &[u8]) -> u32 {
            let p = s.iter().fold(m, |p, &v| {
                let s = (p + u32::from(v)) % m;
                (if s == 0 { m } else { s }) * 2 % (m + 1)
            });
            (m + 1 - p) % m
        }
        let values = |s: &[u8]| s.iter().map(|&b| value(b).unwrap_or(0)).collect::<Vec<u8>>();
        // Sanity: ISO 7064's MOD 11,10 example, 0794 -> check 5.
        assert_eq!(hybrid(10, &[0, 7, 9, 4]), 5);
        assert_eq!(hybrid(36, &values(b"IJ000000")), hybrid(36, &values(b"JI000000")));
        // Ours does not.
        assert_ne!(check_char([b"IJ000000".as_slice()]), check_char([b"JI000000".as_slice()]));
    }
}
