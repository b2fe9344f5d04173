//! Base64 (RFC 4648 standard alphabet, with padding) and G.711 mu-law / A-law.
//!
//! Base64 output is byte-identical to Python's `base64.b64encode`. Decoding is strict: the text
//! must be a whole number of 4-character groups, padding (`=`, at most two) may only end the
//! last group, and anything outside the alphabet is refused with the offset of the first bad
//! character. That accepts exactly the canonical encodings, on which it agrees with
//! `base64.b64decode(text, validate=True)`. (Like Python, it ignores the unused low bits of a
//! padded final group.)
//!
//! The hot loops use AVX-512 VBMI when the CPU has it (48 bytes <-> 64 characters per step,
//! after Muła and Lemire) and a table-driven scalar loop otherwise.
//!
//! G.711 is bit-exact with the `audioop` module of `CPython` (`lin2ulaw`, `ulaw2lin`, `lin2alaw`,
//! `alaw2lin` at width 2). Encoding looks up a table indexed by the sample's top 14 (mu-law)
//! or 13 (A-law) bits, which is all `audioop` looks at; decoding is a 256-entry table.
//!
//! One file per codec (`base64.rs`, `g711.rs`), their x86-64 kernels in `x86.rs`, the tests in
//! `tests.rs`.

mod base64;
mod g711;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use base64::{
    b64_decode, b64_decode_into, b64_decoded_len, b64_encode, b64_encode_append, b64_encode_into,
    b64_encode_raw, b64_encoded_len,
};
pub use g711::{
    alaw_decode, alaw_decode_into, alaw_encode, alaw_encode_into, ulaw_decode, ulaw_decode_into,
    ulaw_encode, ulaw_encode_into,
};

/// What the AVX-512 kernels (`x86.rs`) are compiled for; both codecs ask `rust/simd.rs` for it.
#[cfg(target_arch = "x86_64")]
const VBMI: &[crate::simd::Feature] =
    &[crate::simd::Feature::Avx512F, crate::simd::Feature::Avx512Bw, crate::simd::Feature::Avx512Vbmi];
