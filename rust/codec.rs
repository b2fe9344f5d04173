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

use crate::{simd, AudioError};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD: u8 = b'=';

/// Number of base64 characters that encode `bytes` bytes (with padding).
pub const fn b64_encoded_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// Encodes `input` into the front of `output`, which must hold at least
/// [`b64_encoded_len`]`(input.len())` bytes; returns how many bytes were written.
pub fn b64_encode_into(input: &[u8], output: &mut [u8]) -> Result<usize, AudioError> {
    let needed = b64_encoded_len(input.len());
    if output.len() < needed {
        return Err(AudioError::invalid(format!(
            "base64 of {} bytes needs {needed} bytes of output, got {}",
            input.len(),
            output.len()
        )));
    }
    // SAFETY: `output` holds at least `needed` bytes.
    unsafe { b64_encode_raw(input, output.as_mut_ptr()) };
    Ok(needed)
}

/// Encodes `input` to `output`, which may be uninitialised memory (a `Vec`'s spare capacity,
/// a freshly allocated Python string): only writes, never reads, `output`.
///
/// # Safety
/// `output` must be valid for writes of [`b64_encoded_len`]`(input.len())` bytes and must not
/// overlap `input`.
pub unsafe fn b64_encode_raw(input: &[u8], output: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(VBMI) {
        // SAFETY: the CPU has the features the function was compiled for; the caller
        // guarantees the output length.
        unsafe { x86::encode_vbmi(input, output) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(&[simd::Feature::Avx2]) {
        // SAFETY: as above.
        unsafe { x86::encode_avx2(input, output) };
        return;
    }
    // SAFETY: as above.
    unsafe { encode_scalar(input, output) };
}

/// Appends the base64 encoding of `input` to `output` (one reservation, no intermediate, no
/// zero-filling).
pub fn b64_encode_append(input: &[u8], output: &mut Vec<u8>) {
    let start = output.len();
    let needed = b64_encoded_len(input.len());
    output.reserve(needed);
    // SAFETY: `reserve` made room for `needed` bytes after `start`; all of them are written
    // before the length covers them.
    unsafe {
        b64_encode_raw(input, output.as_mut_ptr().add(start));
        output.set_len(start + needed);
    }
}

/// Encodes `input` as a new base64 string.
pub fn b64_encode(input: &[u8]) -> String {
    let mut output = Vec::with_capacity(b64_encoded_len(input.len()));
    b64_encode_append(input, &mut output);
    // SAFETY: the alphabet and the padding are ASCII.
    unsafe { String::from_utf8_unchecked(output) }
}

/// Number of bytes `text` decodes to, after checking its length and trailing padding (the
/// characters themselves are checked while decoding).
pub fn b64_decoded_len(text: &[u8]) -> Result<usize, AudioError> {
    let n = text.len();
    if !n.is_multiple_of(4) {
        return Err(describe_error(text));
    }
    if n == 0 {
        return Ok(0);
    }
    let pads = usize::from(text[n - 1] == PAD) + usize::from(text[n - 2] == PAD);
    if pads == 1 && text[n - 2] == PAD {
        // "x=" followed by a data character: padding in the middle of the group.
        return Err(describe_error(text));
    }
    Ok(n / 4 * 3 - pads)
}

/// Decodes `text` into the front of `output`, which must hold at least
/// [`b64_decoded_len`]`(text)` bytes; returns how many bytes were written. Nothing is
/// promised about `output`'s contents when decoding fails.
pub fn b64_decode_into(text: &[u8], output: &mut [u8]) -> Result<usize, AudioError> {
    let decoded = b64_decoded_len(text)?;
    if output.len() < decoded {
        return Err(AudioError::invalid(format!(
            "{} base64 characters decode to {decoded} bytes, but the output holds {}",
            text.len(),
            output.len()
        )));
    }
    if text.is_empty() {
        return Ok(0);
    }
    let (body, last) = text.split_at(text.len() - 4);
    let body_out = body.len() / 4 * 3;
    let (body_output, last_output) = output[..decoded].split_at_mut(body_out);
    #[cfg(target_arch = "x86_64")]
    let body_ok = if simd::enabled(VBMI) {
        // SAFETY: the CPU has the features; `body` is whole groups and `body_output` holds
        // exactly three bytes per group.
        unsafe { x86::decode_vbmi(body, body_output) }
    } else if simd::enabled(&[simd::Feature::Avx2]) {
        // SAFETY: as above.
        unsafe { x86::decode_avx2(body, body_output) }
    } else {
        decode_groups_scalar(body, body_output)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let body_ok = decode_groups_scalar(body, body_output);
    if !body_ok || !decode_last_group(last, last_output) {
        return Err(describe_error(text));
    }
    Ok(decoded)
}

/// Decodes `text` into a new vector.
pub fn b64_decode(text: &[u8]) -> Result<Vec<u8>, AudioError> {
    let mut output = vec![0; b64_decoded_len(text)?];
    b64_decode_into(text, &mut output)?;
    Ok(output)
}

/// What the AVX-512 kernels are compiled for.
#[cfg(target_arch = "x86_64")]
const VBMI: &[simd::Feature] = &[simd::Feature::Avx512F, simd::Feature::Avx512Bw, simd::Feature::Avx512Vbmi];

/// 12 bits -> the two characters that encode them.
static ENCODE_PAIRS: [[u8; 2]; 4096] = {
    let mut table = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        table[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    table
};

/// # Safety
/// `output` must be valid for writes of `b64_encoded_len(input.len())` bytes.
unsafe fn encode_scalar(input: &[u8], output: *mut u8) {
    let whole = input.len() / 3;
    for (k, triple) in input.chunks_exact(3).enumerate() {
        let bits =
            (u32::from(triple[0]) << 16) | (u32::from(triple[1]) << 8) | u32::from(triple[2]);
        let quad = [
            ENCODE_PAIRS[(bits >> 12) as usize],
            ENCODE_PAIRS[(bits & 0xfff) as usize],
        ];
        // SAFETY: group `k < whole` ends at `4 * k + 4 <= 4 * whole` bytes.
        unsafe {
            output
                .add(4 * k)
                .cast::<[[u8; 2]; 2]>()
                .write_unaligned(quad);
        };
    }
    // SAFETY: the tail group, if any, is the last 4 bytes of the output.
    unsafe { encode_tail(&input[3 * whole..], output.add(4 * whole)) };
}

/// Encodes the final 1 or 2 bytes (if any) with padding.
///
/// # Safety
/// `output` must be valid for 4 bytes of writes when `rest` is not empty.
unsafe fn encode_tail(rest: &[u8], output: *mut u8) {
    let group = match *rest {
        [a] => {
            let bits = u32::from(a) << 16;
            [
                ALPHABET[(bits >> 18) as usize],
                ALPHABET[(bits >> 12 & 63) as usize],
                PAD,
                PAD,
            ]
        }
        [a, b] => {
            let bits = (u32::from(a) << 16) | (u32::from(b) << 8);
            [
                ALPHABET[(bits >> 18) as usize],
                ALPHABET[(bits >> 12 & 63) as usize],
                ALPHABET[(bits >> 6 & 63) as usize],
                PAD,
            ]
        }
        _ => return,
    };
    // SAFETY: guaranteed by the caller.
    unsafe { output.cast::<[u8; 4]>().write_unaligned(group) };
}

const INVALID: u32 = 1 << 24;

/// `DECODE[k][c]`: the 6 bits of character `c` placed for position `k` of a group, or
/// `INVALID` (a bit no valid group sets).
static DECODE: [[u32; 256]; 4] = {
    let mut table = [[INVALID; 256]; 4];
    let mut i = 0;
    while i < 64 {
        let c = ALPHABET[i] as usize;
        let v = i as u32;
        table[0][c] = v << 18;
        table[1][c] = v << 12;
        table[2][c] = v << 6;
        table[3][c] = v;
        i += 1;
    }
    table
};

/// Decodes whole 4-character groups without padding; false if any character is invalid.
fn decode_groups_scalar(text: &[u8], output: &mut [u8]) -> bool {
    let mut invalid = 0;
    for (group, out) in text.chunks_exact(4).zip(output.chunks_exact_mut(3)) {
        let bits = DECODE[0][usize::from(group[0])]
            | DECODE[1][usize::from(group[1])]
            | DECODE[2][usize::from(group[2])]
            | DECODE[3][usize::from(group[3])];
        invalid |= bits;
        out.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    invalid & INVALID == 0
}

/// Decodes the final group, which may end in one or two `=`; `output` has the decoded length.
fn decode_last_group(group: &[u8], output: &mut [u8]) -> bool {
    // 3, 2 or 1 output bytes come from 4, 3 or 2 data characters.
    let data = output.len() + 1;
    let mut bits = 0;
    for (k, &c) in group[..data].iter().enumerate() {
        bits |= DECODE[k][usize::from(c)];
    }
    if bits & INVALID != 0 || group[data..].iter().any(|&c| c != PAD) {
        return false;
    }
    output.copy_from_slice(&bits.to_be_bytes()[1..=output.len()]);
    true
}

fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Finds the first problem in `text` (the slow path, only taken for invalid input).
fn describe_error(text: &[u8]) -> AudioError {
    let mut padding_started = false;
    for (offset, &c) in text.iter().enumerate() {
        let position = offset % 4;
        if is_base64_char(c) {
            if padding_started {
                return AudioError::invalid(format!(
                    "invalid base64: data character {:?} after padding at offset {offset}",
                    char::from(c)
                ));
            }
        } else if c == PAD {
            if position < 2 || (padding_started && position == 0) {
                return AudioError::invalid(format!(
                    "invalid base64: misplaced padding '=' at offset {offset}"
                ));
            }
            padding_started = true;
        } else {
            let shown = if c.is_ascii() {
                format!("{:?}", char::from(c))
            } else {
                format!("non-ASCII byte 0x{c:02x}")
            };
            return AudioError::invalid(format!(
                "invalid base64: character {shown} at offset {offset}"
            ));
        }
    }
    let n = text.len();
    AudioError::invalid(format!(
        "invalid base64: length {n} is not a multiple of 4 (incomplete group at offset {})",
        n - n % 4
    ))
}

// ---- G.711 ----

/// `audioop`'s mu-law encoder on a 14-bit sample (the int16 shifted right by 2).
const fn ulaw_from_14bit(sample: i16) -> u8 {
    const SEGMENT_ENDS: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let (mut magnitude, mask) = if sample < 0 {
        (-sample, 0x7F)
    } else {
        (sample, 0xFF)
    };
    if magnitude > 8159 {
        magnitude = 8159;
    }
    magnitude += 0x84 >> 2;
    let mut segment = 0;
    while segment < 8 && magnitude > SEGMENT_ENDS[segment] {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    (((segment as i16) << 4) | ((magnitude >> (segment + 1)) & 0xF)) as u8 ^ mask
}

/// `audioop`'s A-law encoder on a 13-bit sample (the int16 shifted right by 3).
const fn alaw_from_13bit(sample: i16) -> u8 {
    const SEGMENT_ENDS: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let (magnitude, mask) = if sample >= 0 {
        (sample, 0xD5)
    } else {
        (-sample - 1, 0x55)
    };
    let mut segment = 0;
    while segment < 8 && magnitude > SEGMENT_ENDS[segment] {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let quantised = if segment < 2 {
        (magnitude >> 1) & 0xF
    } else {
        (magnitude >> segment) & 0xF
    };
    (((segment as i16) << 4) | quantised) as u8 ^ mask
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let mut magnitude = (((code & 0x0F) as i16) << 3) + 0x84;
    magnitude <<= (code & 0x70) >> 4;
    if code & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mut magnitude = ((code & 0x0F) as i16) << 4;
    let segment = (code & 0x70) >> 4;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => {
            magnitude += 0x108;
            magnitude <<= segment - 1;
        }
    }
    if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// Indexed by the sample's top 14 bits read as unsigned (`sample as u16 >> 2`).
static ULAW_ENCODE: [u8; 1 << 14] = {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < 1 << 14 {
        // Sign-extend the 14-bit index back to the arithmetic shift `audioop` does.
        table[i] = ulaw_from_14bit(((i << 2) as u16 as i16) >> 2);
        i += 1;
    }
    table
};

/// Indexed by the sample's top 13 bits read as unsigned (`sample as u16 >> 3`).
static ALAW_ENCODE: [u8; 1 << 13] = {
    let mut table = [0u8; 1 << 13];
    let mut i = 0;
    while i < 1 << 13 {
        table[i] = alaw_from_13bit(((i << 3) as u16 as i16) >> 3);
        i += 1;
    }
    table
};

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    table
};

fn check_lengths(input: usize, output: usize) -> Result<(), AudioError> {
    if input == output {
        Ok(())
    } else {
        Err(AudioError::invalid(format!(
            "output holds {output} elements but the input has {input}"
        )))
    }
}

/// Encodes PCM16 samples to G.711 mu-law codes into `output` (same length).
pub fn ulaw_encode_into(samples: &[i16], output: &mut [u8]) -> Result<(), AudioError> {
    check_lengths(samples.len(), output.len())?;
    encode_ulaw(samples, output);
    Ok(())
}

/// Encodes PCM16 samples to G.711 A-law codes into `output` (same length).
pub fn alaw_encode_into(samples: &[i16], output: &mut [u8]) -> Result<(), AudioError> {
    check_lengths(samples.len(), output.len())?;
    encode_alaw(samples, output);
    Ok(())
}

fn encode_ulaw(samples: &[i16], output: &mut [u8]) {
    for (out, &sample) in output.iter_mut().zip(samples) {
        *out = ULAW_ENCODE[usize::from(sample as u16 >> 2)];
    }
}

fn encode_alaw(samples: &[i16], output: &mut [u8]) {
    for (out, &sample) in output.iter_mut().zip(samples) {
        *out = ALAW_ENCODE[usize::from(sample as u16 >> 3)];
    }
}

/// Decodes G.711 mu-law codes to PCM16 samples into `output` (same length).
pub fn ulaw_decode_into(codes: &[u8], output: &mut [i16]) -> Result<(), AudioError> {
    decode_g711(&ULAW_DECODE, &ULAW_DECODE_SPLIT, codes, output)
}

/// Decodes G.711 A-law codes to PCM16 samples into `output` (same length).
pub fn alaw_decode_into(codes: &[u8], output: &mut [i16]) -> Result<(), AudioError> {
    decode_g711(&ALAW_DECODE, &ALAW_DECODE_SPLIT, codes, output)
}

/// A decode table split into its little-endian low and high bytes, for byte shuffles.
struct SplitTable {
    low: [u8; 256],
    high: [u8; 256],
}

const fn split(table: &[i16; 256]) -> SplitTable {
    let mut low = [0u8; 256];
    let mut high = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let bytes = table[i].to_le_bytes();
        low[i] = bytes[0];
        high[i] = bytes[1];
        i += 1;
    }
    SplitTable { low, high }
}

static ULAW_DECODE_SPLIT: SplitTable = split(&ULAW_DECODE);
static ALAW_DECODE_SPLIT: SplitTable = split(&ALAW_DECODE);

fn decode_g711(
    table: &[i16; 256],
    split: &SplitTable,
    codes: &[u8],
    output: &mut [i16],
) -> Result<(), AudioError> {
    check_lengths(codes.len(), output.len())?;
    decode_g711_unchecked(table, split, codes, output);
    Ok(())
}

/// Decodes `min(codes.len(), output.len())` codes.
fn decode_g711_unchecked(table: &[i16; 256], split: &SplitTable, codes: &[u8], output: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(VBMI) {
        // SAFETY: the CPU has the features the function was compiled for.
        unsafe { x86::decode_g711_vbmi(split, codes, output) };
        return;
    }
    let _ = split;
    decode_g711_scalar(table, codes, output);
}

fn decode_g711_scalar(table: &[i16; 256], codes: &[u8], output: &mut [i16]) {
    for (out, &code) in output.iter_mut().zip(codes) {
        *out = table[usize::from(code)];
    }
}

/// Encodes PCM16 samples to a new vector of mu-law codes.
pub fn ulaw_encode(samples: &[i16]) -> Vec<u8> {
    let mut output = vec![0; samples.len()];
    encode_ulaw(samples, &mut output);
    output
}

/// Encodes PCM16 samples to a new vector of A-law codes.
pub fn alaw_encode(samples: &[i16]) -> Vec<u8> {
    let mut output = vec![0; samples.len()];
    encode_alaw(samples, &mut output);
    output
}

/// Decodes mu-law codes to a new vector of PCM16 samples.
pub fn ulaw_decode(codes: &[u8]) -> Vec<i16> {
    let mut output = vec![0; codes.len()];
    decode_g711_unchecked(&ULAW_DECODE, &ULAW_DECODE_SPLIT, codes, &mut output);
    output
}

/// Decodes A-law codes to a new vector of PCM16 samples.
pub fn alaw_decode(codes: &[u8]) -> Vec<i16> {
    let mut output = vec![0; codes.len()];
    decode_g711_unchecked(&ALAW_DECODE, &ALAW_DECODE_SPLIT, codes, &mut output);
    output
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::wildcard_imports)] // the intrinsics, by the dozen
mod x86 {
    use super::{decode_groups_scalar, encode_scalar, encode_tail, SplitTable, ALPHABET};
    use std::arch::x86_64::*;

    const fn encode_shuffle() -> [u8; 64] {
        // Lane i (32 bits) gets input bytes [3i+1, 3i, 3i+2, 3i+1]: its low half is then the
        // big-endian pair (3i, 3i+1) and its high half the pair (3i+1, 3i+2).
        let mut table = [0u8; 64];
        let mut lane = 0;
        while lane < 16 {
            let base = (3 * lane) as u8;
            table[4 * lane] = base + 1;
            table[4 * lane + 1] = base;
            table[4 * lane + 2] = base + 2;
            table[4 * lane + 3] = base + 1;
            lane += 1;
        }
        table
    }

    const fn decode_pack() -> [u8; 64] {
        // Each 32-bit lane holds 24 decoded bits, little-endian: emit its bytes 2, 1, 0.
        let mut table = [0u8; 64];
        let mut j = 0;
        while j < 48 {
            table[j] = (4 * (j / 3) + 2 - j % 3) as u8;
            j += 1;
        }
        table
    }

    const fn decode_lookup() -> [u8; 128] {
        let mut table = [0x80u8; 128];
        let mut i = 0;
        while i < 64 {
            table[ALPHABET[i] as usize] = i as u8;
            i += 1;
        }
        table
    }

    const fn interleave(first: u8) -> [u8; 64] {
        // Bytes k of two vectors a, b (indices k and 64 + k of `permutex2var`) side by side:
        // the low and high bytes of 32 little-endian i16, starting at element `first`.
        let mut table = [0u8; 64];
        let mut k = 0;
        while k < 32 {
            table[2 * k] = first + k as u8;
            table[2 * k + 1] = 64 + first + k as u8;
            k += 1;
        }
        table
    }

    static ENCODE_SHUFFLE: [u8; 64] = encode_shuffle();
    static INTERLEAVE_LOW: [u8; 64] = interleave(0);
    static INTERLEAVE_HIGH: [u8; 64] = interleave(32);
    static DECODE_PACK: [u8; 64] = decode_pack();
    static DECODE_LOOKUP: [u8; 128] = decode_lookup();

    fn low_bits(n: usize) -> u64 {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn encode_block(input: __m512i, shuffle: __m512i, alphabet: __m512i) -> __m512i {
        let spread = _mm512_permutexvar_epi8(shuffle, input);
        // Per 64 bits, pick the 6-bit fields at these bit offsets (two lanes of four).
        let fields = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x3036_242a_1016_040a), spread);
        _mm512_permutexvar_epi8(fields, alphabet)
    }

    /// `output.len()` must be the exact encoded length of `input`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    /// `output` must be valid for writes of the encoded length of `input`.
    pub(super) unsafe fn encode_vbmi(input: &[u8], output: *mut u8) {
        // SAFETY (whole function): every load reads below `input.len()` (full loads need 64
        // bytes left, masked loads touch only the masked bytes) and every store writes within
        // `output`, which holds 4 characters per started 3-byte group.
        unsafe {
            let shuffle = _mm512_loadu_si512(ENCODE_SHUFFLE.as_ptr().cast());
            let alphabet = _mm512_loadu_si512(ALPHABET.as_ptr().cast());
            let (mut read, mut written) = (0, 0);
            while input.len() - read >= 64 {
                let block = _mm512_loadu_si512(input.as_ptr().add(read).cast());
                let chars = encode_block(block, shuffle, alphabet);
                _mm512_storeu_si512(output.add(written).cast(), chars);
                read += 48;
                written += 64;
            }
            // Fewer than 64 bytes left: at most two more (masked) blocks of whole triples.
            while input.len() - read >= 3 {
                let triples = ((input.len() - read) / 3).min(16);
                let block =
                    _mm512_maskz_loadu_epi8(low_bits(3 * triples), input.as_ptr().add(read).cast());
                let chars = encode_block(block, shuffle, alphabet);
                _mm512_mask_storeu_epi8(output.add(written).cast(), low_bits(4 * triples), chars);
                read += 3 * triples;
                written += 4 * triples;
            }
            encode_tail(&input[read..], output.add(written));
        }
    }

    /// Maps 6-bit values to the alphabet: a per-range offset picked by a nibble shuffle.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn alphabet_avx2(indices: __m256i) -> __m256i {
        // 0..=25 -> 13, 26..=51 -> 0, 52..=61 -> 1..=10, 62 -> 11, 63 -> 12.
        let reduced = _mm256_subs_epu8(indices, _mm256_set1_epi8(51));
        let upper_case = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), indices);
        let range = _mm256_or_si256(reduced, _mm256_and_si256(upper_case, _mm256_set1_epi8(13)));
        let offsets = _mm256_setr_epi8(
            71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0, //
            71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0,
        );
        _mm256_add_epi8(indices, _mm256_shuffle_epi8(offsets, range))
    }

    /// AVX2 encoder (Muła's multiply-shift): 24 bytes to 32 characters per step.
    ///
    /// `output` must be valid for writes of the encoded length of `input`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn encode_avx2(input: &[u8], output: *mut u8) {
        // Per 128-bit lane, 12 input bytes as [b, a, c, b] per 3-byte group.
        let spread = _mm256_setr_epi8(
            1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, //
            1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
        );
        let (mut read, mut written) = (0, 0);
        // SAFETY (whole loop): the two 16-byte loads end at `read + 28 <= input.len()`; the
        // 32-byte store covers the 8 groups these 24 bytes encode.
        unsafe {
            while input.len() - read >= 28 {
                let low = _mm_loadu_si128(input.as_ptr().add(read).cast());
                let high = _mm_loadu_si128(input.as_ptr().add(read + 12).cast());
                let bytes = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(low), high);
                let bytes = _mm256_shuffle_epi8(bytes, spread);
                // In each 32-bit lane, 16-bit words "ab" and "bc": move each 6-bit field to
                // the bottom of its own byte with one high and one low multiply.
                let first_third = _mm256_mulhi_epu16(
                    _mm256_and_si256(bytes, _mm256_set1_epi32(0x0fc0_fc00)),
                    _mm256_set1_epi32(0x0400_0040),
                );
                let second_fourth = _mm256_mullo_epi16(
                    _mm256_and_si256(bytes, _mm256_set1_epi32(0x003f_03f0)),
                    _mm256_set1_epi32(0x0100_0010),
                );
                let chars = alphabet_avx2(_mm256_or_si256(first_third, second_fourth));
                _mm256_storeu_si256(output.add(written).cast(), chars);
                read += 24;
                written += 32;
            }
            encode_scalar(&input[read..], output.add(written));
        }
    }

    /// AVX2 decoder (Muła and Lemire's nibble lookups): 32 characters to 24 bytes per step,
    /// whole groups only, no padding. Returns false if any character is outside the alphabet.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn decode_avx2(text: &[u8], output: &mut [u8]) -> bool {
        // Each table entry is a set of character classes; a character is valid when the
        // classes of its low and high nibble do not intersect.
        let low_classes = _mm256_setr_epi8(
            0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B,
            0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A,
            0x1B, 0x1B, 0x1B, 0x1A,
        );
        let high_classes = _mm256_setr_epi8(
            0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10,
        );
        // What to add to a character, by high nibble ('/' shares '+'s nibble: index 1).
        let offsets = _mm256_setr_epi8(
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, //
            0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
        );
        let mask_2f = _mm256_set1_epi8(0x2f);
        let pack_lanes = _mm256_setr_epi8(
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, //
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        );
        let pack_words = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
        let (mut read, mut written) = (0, 0);
        // SAFETY (whole loop): the 32-byte load ends at `read + 32 <= text.len()`; the 16- and
        // 8-byte stores end at `written + 24`, the 3 bytes per group of those 32 characters.
        unsafe {
            while text.len() - read >= 32 {
                let chars = _mm256_loadu_si256(text.as_ptr().add(read).cast());
                let high_nibbles = _mm256_and_si256(_mm256_srli_epi32::<4>(chars), mask_2f);
                let low_nibbles = _mm256_and_si256(chars, mask_2f);
                let low = _mm256_shuffle_epi8(low_classes, low_nibbles);
                let high = _mm256_shuffle_epi8(high_classes, high_nibbles);
                if _mm256_testz_si256(low, high) == 0 {
                    return false;
                }
                let is_slash = _mm256_cmpeq_epi8(chars, mask_2f);
                let offset = _mm256_shuffle_epi8(offsets, _mm256_add_epi8(is_slash, high_nibbles));
                let values = _mm256_add_epi8(chars, offset);
                let merged = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(values, _mm256_set1_epi32(0x0140_0140)),
                    _mm256_set1_epi32(0x0001_1000),
                );
                let packed = _mm256_permutevar8x32_epi32(
                    _mm256_shuffle_epi8(merged, pack_lanes),
                    pack_words,
                );
                let out = output.as_mut_ptr().add(written);
                _mm_storeu_si128(out.cast(), _mm256_castsi256_si128(packed));
                _mm_storel_epi64(out.add(16).cast(), _mm256_extracti128_si256::<1>(packed));
                read += 32;
                written += 24;
            }
        }
        decode_groups_scalar(&text[read..], &mut output[written..])
    }

    /// Looks up 64 codes at a time in the 256-entry table held in registers: its low and high
    /// bytes as two 256-byte tables, each two 128-byte `permutex2var` lookups blended on the
    /// code's top bit.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn decode_g711_vbmi(table: &SplitTable, codes: &[u8], output: &mut [i16]) {
        let n = codes.len().min(output.len());
        let (low, high) = (&table.low, &table.high);
        // SAFETY (whole block): table loads read inside the 256-byte arrays; code loads and
        // sample stores are full only with 64 elements left, masked to what exists otherwise.
        unsafe {
            let load =
                |bytes: &[u8; 256], at: usize| _mm512_loadu_si512(bytes.as_ptr().add(at).cast());
            let (low0, low1, low2, low3) =
                (load(low, 0), load(low, 64), load(low, 128), load(low, 192));
            let (high0, high1, high2, high3) = (
                load(high, 0),
                load(high, 64),
                load(high, 128),
                load(high, 192),
            );
            let first_half = _mm512_loadu_si512(INTERLEAVE_LOW.as_ptr().cast());
            let second_half = _mm512_loadu_si512(INTERLEAVE_HIGH.as_ptr().cast());
            let lookup = |codes: __m512i| {
                let upper = _mm512_movepi8_mask(codes);
                let low_bytes = _mm512_mask_blend_epi8(
                    upper,
                    _mm512_permutex2var_epi8(low0, codes, low1),
                    _mm512_permutex2var_epi8(low2, codes, low3),
                );
                let high_bytes = _mm512_mask_blend_epi8(
                    upper,
                    _mm512_permutex2var_epi8(high0, codes, high1),
                    _mm512_permutex2var_epi8(high2, codes, high3),
                );
                (
                    _mm512_permutex2var_epi8(low_bytes, first_half, high_bytes),
                    _mm512_permutex2var_epi8(low_bytes, second_half, high_bytes),
                )
            };
            let mut at = 0;
            while n - at >= 64 {
                let (first, second) = lookup(_mm512_loadu_si512(codes.as_ptr().add(at).cast()));
                _mm512_storeu_si512(output.as_mut_ptr().add(at).cast(), first);
                _mm512_storeu_si512(output.as_mut_ptr().add(at + 32).cast(), second);
                at += 64;
            }
            let left = n - at;
            if left > 0 {
                let (first, second) = lookup(_mm512_maskz_loadu_epi8(
                    low_bits(left),
                    codes.as_ptr().add(at).cast(),
                ));
                let first_mask = low_bits(left.min(32)) as u32;
                let second_mask = low_bits(left.saturating_sub(32)) as u32;
                _mm512_mask_storeu_epi16(output.as_mut_ptr().add(at), first_mask, first);
                _mm512_mask_storeu_epi16(output.as_mut_ptr().add(at + 32), second_mask, second);
            }
        }
    }

    /// Decodes whole groups (no padding allowed); `output` holds 3 bytes per group. Returns
    /// false if any character is outside the alphabet.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn decode_vbmi(text: &[u8], output: &mut [u8]) -> bool {
        debug_assert_eq!(text.len() % 4, 0);
        debug_assert_eq!(output.len(), text.len() / 4 * 3);
        // SAFETY (whole function): loads are full only with 64 characters left, masked
        // otherwise; stores are masked to the 3 bytes per group that `output` holds.
        unsafe {
            let lookup_low = _mm512_loadu_si512(DECODE_LOOKUP.as_ptr().cast());
            let lookup_high = _mm512_loadu_si512(DECODE_LOOKUP.as_ptr().add(64).cast());
            let pack = _mm512_loadu_si512(DECODE_PACK.as_ptr().cast());
            let pairs = _mm512_set1_epi32(0x0140_0140);
            let quads = _mm512_set1_epi32(0x0001_1000);
            let decode = |chars: __m512i| {
                let values = _mm512_permutex2var_epi8(lookup_low, chars, lookup_high);
                // Invalid: a non-ASCII character or one the table marks with 0x80.
                let invalid = _mm512_movepi8_mask(_mm512_or_si512(values, chars));
                let merged = _mm512_madd_epi16(_mm512_maddubs_epi16(values, pairs), quads);
                (invalid, _mm512_permutexvar_epi8(pack, merged))
            };
            let (mut read, mut written) = (0, 0);
            let mut invalid = 0u64;
            while text.len() - read >= 64 {
                let (bad, bytes) = decode(_mm512_loadu_si512(text.as_ptr().add(read).cast()));
                invalid |= bad;
                _mm512_mask_storeu_epi8(
                    output.as_mut_ptr().add(written).cast(),
                    low_bits(48),
                    bytes,
                );
                read += 64;
                written += 48;
            }
            let left = text.len() - read;
            if left > 0 {
                let mask = low_bits(left);
                let (bad, bytes) = decode(_mm512_maskz_loadu_epi8(
                    mask,
                    text.as_ptr().add(read).cast(),
                ));
                invalid |= bad & mask;
                _mm512_mask_storeu_epi8(
                    output.as_mut_ptr().add(written).cast(),
                    low_bits(left / 4 * 3),
                    bytes,
                );
            }
            invalid == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately naive encoder, independent of the tables above.
    fn naive_encode(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in input.chunks(3) {
            let mut bits = 0u32;
            for (k, &b) in chunk.iter().enumerate() {
                bits |= u32::from(b) << (16 - 8 * k);
            }
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(ALPHABET[(bits >> (18 - 6 * k) & 63) as usize]);
                } else {
                    out.push(b'=');
                }
            }
        }
        out
    }

    fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, text) in cases {
            assert_eq!(b64_encode(raw), text);
            assert_eq!(b64_decode(text.as_bytes()).unwrap(), raw);
        }
    }

    #[test]
    fn encode_and_decode_agree_with_naive_encoder_at_every_length() {
        for len in 0..400 {
            let raw = pseudo_random_bytes(len, len as u64);
            let text = naive_encode(&raw);
            assert_eq!(b64_encode(&raw).as_bytes(), text, "length {len}");
            assert_eq!(b64_decode(&text).unwrap(), raw, "length {len}");
            let mut scalar = vec![0; text.len()];
            unsafe { encode_scalar(&raw, scalar.as_mut_ptr()) };
            assert_eq!(scalar, text);
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_paths_match_scalar() {
        if !simd::enabled(&[simd::Feature::Avx2]) {
            return;
        }
        for len in (0..200).chain([480, 960, 4800]) {
            let raw = pseudo_random_bytes(len, len as u64 + 1);
            let text = naive_encode(&raw);
            let mut encoded = vec![0; text.len()];
            unsafe { x86::encode_avx2(&raw, encoded.as_mut_ptr()) };
            assert_eq!(encoded, text, "length {len}");
            let whole =
                &text[..text.len() / 4 * 4 - if raw.len().is_multiple_of(3) { 0 } else { 4 }];
            let mut decoded = vec![0; whole.len() / 4 * 3];
            assert!(unsafe { x86::decode_avx2(whole, &mut decoded) });
            assert_eq!(decoded, raw[..decoded.len()]);
        }
        // Every byte value in every position of a 32-character block and the scalar tail.
        let valid = naive_encode(&pseudo_random_bytes(48, 3));
        for position in [0, 1, 7, 15, 16, 17, 30, 31, 32, 33, 63] {
            for byte in 0..=255u8 {
                let mut text = valid.clone();
                text[position] = byte;
                let mut want = vec![0; 48];
                let mut got = vec![0; 48];
                let ok_scalar = decode_groups_scalar(&text, &mut want);
                let ok_avx2 = unsafe { x86::decode_avx2(&text, &mut got) };
                assert_eq!(ok_avx2, ok_scalar, "byte {byte:#x} at {position}");
                if ok_scalar {
                    assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn append_and_into_forms_respect_existing_content() {
        let mut buffer = b"{\"audio\":\"".to_vec();
        b64_encode_append(b"foobar", &mut buffer);
        assert_eq!(buffer, b"{\"audio\":\"Zm9vYmFy");
        let mut small = [0u8; 3];
        assert!(b64_encode_into(b"foo", &mut small).is_err());
        let mut out = [0xAAu8; 8];
        assert_eq!(b64_decode_into(b"Zm9vYg==", &mut out).unwrap(), 4);
        assert_eq!(&out[..4], b"foob");
        assert_eq!(&out[4..], [0xAA; 4]);
        assert!(b64_decode_into(b"Zm9vYg==", &mut small).is_err());
    }

    fn error_of(text: &[u8]) -> String {
        b64_decode(text).unwrap_err().to_string()
    }

    #[test]
    fn every_invalid_character_is_reported_at_its_offset() {
        let valid = naive_encode(&pseudo_random_bytes(300, 7));
        for offset in [
            0,
            1,
            5,
            63,
            64,
            65,
            127,
            200,
            valid.len() - 5,
            valid.len() - 1,
        ] {
            for bad in [b'!', b'-', b'_', b' ', b'\n', 0x80, 0xFF, 0] {
                let mut text = valid.clone();
                text[offset] = bad;
                let message = error_of(&text);
                assert!(message.contains(&format!("offset {offset}")), "{message}");
            }
        }
    }

    #[test]
    fn padding_rules() {
        assert!(error_of(b"Zg=").contains("not a multiple of 4"));
        assert!(error_of(b"Zg").contains("not a multiple of 4"));
        assert!(error_of(b"Z===").contains("offset 1"));
        assert!(error_of(b"====").contains("offset 0"));
        assert!(error_of(b"Zg=a").contains("offset 3"));
        assert!(error_of(b"Zg==Zm9v").contains("offset 4"));
        assert!(error_of(b"Zm9vYmFy=").contains("offset 8"));
        // The unused bits of a padded group are ignored, as Python does.
        assert_eq!(b64_decode(b"Zh==").unwrap(), b"f");
    }

    #[test]
    fn g711_tables_match_known_points() {
        // Values printed by CPython 3.11 audioop for these inputs.
        assert_eq!(
            ulaw_decode(&[0x00, 0x7F, 0x80, 0xFF]),
            [-32124, 0, 32124, 0]
        );
        assert_eq!(
            alaw_decode(&[0x55, 0xD5, 0x2A, 0xAA]),
            [-8, 8, -32256, 32256]
        );
        assert_eq!(
            ulaw_encode(&[0, -1, i16::MAX, i16::MIN]),
            [0xFF, 0x7E, 0x80, 0x00]
        );
        assert_eq!(
            alaw_encode(&[0, -1, i16::MAX, i16::MIN]),
            [0xD5, 0x55, 0xAA, 0x2A]
        );
    }

    #[test]
    fn g711_simd_decode_matches_the_table_at_every_length() {
        let codes: Vec<u8> = (0..300).map(|i| (i * 97 + 13) as u8).collect();
        for (table, split) in [
            (&ULAW_DECODE, &ULAW_DECODE_SPLIT),
            (&ALAW_DECODE, &ALAW_DECODE_SPLIT),
        ] {
            for len in (0..=200).chain([255, 256, 299, 300]) {
                let mut want = vec![0; len];
                decode_g711_scalar(table, &codes[..len], &mut want);
                let mut got = vec![7; len];
                decode_g711(table, split, &codes[..len], &mut got).unwrap();
                assert_eq!(got, want, "length {len}");
            }
        }
    }

    /// Every kernel at every level this CPU has, against the portable code (`simd`): encode
    /// and decode at every length around the vector widths, decode of text with a bad byte
    /// anywhere in a block (the reported offset included), and G.711 decode of every code.
    #[test]
    fn every_simd_level_matches_the_scalar_path() {
        for len in (0..200).chain([255, 256, 480, 960, 4800]) {
            let raw = pseudo_random_bytes(len, len as u64 + 11);
            simd::assert_every_level_matches_scalar(&format!("b64 encode of {len} bytes"), || b64_encode(&raw));
            let text = naive_encode(&raw);
            simd::assert_every_level_matches_scalar(&format!("b64 decode of {len} bytes"), || b64_decode(&text));
        }
        let valid = naive_encode(&pseudo_random_bytes(96, 5));
        for position in (0..valid.len()).step_by(3).chain([31, 32, 63, 64, 127]) {
            for bad in [b'!', b'=', b'-', 0x80, 0xFF, 0, b'\n'] {
                let mut text = valid.clone();
                text[position] = bad;
                simd::assert_every_level_matches_scalar("b64 decode of bad text", || b64_decode(&text));
            }
        }
        let codes: Vec<u8> = (0..=255).cycle().take(4099).collect();
        simd::assert_every_level_matches_scalar("ulaw decode", || ulaw_decode(&codes));
        simd::assert_every_level_matches_scalar("alaw decode", || alaw_decode(&codes));
        // The encoders are table lookups with no vector path; checked all the same.
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        simd::assert_every_level_matches_scalar("ulaw encode", || ulaw_encode(&samples));
        simd::assert_every_level_matches_scalar("alaw encode", || alaw_encode(&samples));
    }

    #[test]
    fn g711_decode_then_encode_is_identity_on_codes() {
        let codes: Vec<u8> = (0..=255).collect();
        // 0x7F and 0xFF both decode to 0 in mu-law; 0 encodes as 0xFF.
        let ulaw_back = ulaw_encode(&ulaw_decode(&codes));
        for (&code, &back) in codes.iter().zip(&ulaw_back) {
            assert!(
                back == code || (code == 0x7F && back == 0xFF),
                "{code:#x} -> {back:#x}"
            );
        }
        assert_eq!(alaw_encode(&alaw_decode(&codes)), codes);
    }
}
