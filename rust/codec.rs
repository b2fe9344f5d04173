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
//! G.711 is bit-exact with CPython's `audioop` (`lin2ulaw`, `ulaw2lin`, `lin2alaw`,
//! `alaw2lin` at width 2). Encoding looks up a table indexed by the sample's top 14 (mu-law)
//! or 13 (A-law) bits, which is all `audioop` looks at; decoding is a 256-entry table.

use crate::AudioError;

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
    let output = &mut output[..needed];
    #[cfg(target_arch = "x86_64")]
    if has_avx512_vbmi() {
        // SAFETY: the CPU has the features the function was compiled for; `output` has the
        // exact encoded length.
        unsafe { x86::encode_vbmi(input, output) };
        return Ok(needed);
    }
    encode_scalar(input, output);
    Ok(needed)
}

/// Appends the base64 encoding of `input` to `output` (one reservation, no intermediate).
pub fn b64_encode_append(input: &[u8], output: &mut Vec<u8>) {
    let start = output.len();
    let needed = b64_encoded_len(input.len());
    output.resize(start + needed, 0);
    b64_encode_into(input, &mut output[start..]).expect("the buffer was sized for the output");
}

/// Encodes `input` as a new base64 string.
pub fn b64_encode(input: &[u8]) -> String {
    let mut output = Vec::with_capacity(b64_encoded_len(input.len()));
    b64_encode_append(input, &mut output);
    // The alphabet and the padding are ASCII.
    String::from_utf8(output).expect("base64 is ASCII")
}

/// Number of bytes `text` decodes to, after checking its length and trailing padding (the
/// characters themselves are checked while decoding).
pub fn b64_decoded_len(text: &[u8]) -> Result<usize, AudioError> {
    let n = text.len();
    if n % 4 != 0 {
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
    let body_ok = if has_avx512_vbmi() {
        // SAFETY: the CPU has the features; `body` is whole groups and `body_output` holds
        // exactly three bytes per group.
        unsafe { x86::decode_vbmi(body, body_output) }
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

#[cfg(target_arch = "x86_64")]
fn has_avx512_vbmi() -> bool {
    std::arch::is_x86_feature_detected!("avx512vbmi")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

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

fn encode_scalar(input: &[u8], output: &mut [u8]) {
    let whole = input.len() / 3;
    for (triple, quad) in input.chunks_exact(3).zip(output.chunks_exact_mut(4)) {
        let bits =
            (u32::from(triple[0]) << 16) | (u32::from(triple[1]) << 8) | u32::from(triple[2]);
        quad[..2].copy_from_slice(&ENCODE_PAIRS[(bits >> 12) as usize]);
        quad[2..].copy_from_slice(&ENCODE_PAIRS[(bits & 0xfff) as usize]);
    }
    encode_tail(&input[3 * whole..], &mut output[4 * whole..]);
}

/// Encodes the final 1 or 2 bytes (if any) with padding.
fn encode_tail(rest: &[u8], output: &mut [u8]) {
    match *rest {
        [a] => {
            let bits = u32::from(a) << 16;
            output[..4].copy_from_slice(&[
                ALPHABET[(bits >> 18) as usize],
                ALPHABET[(bits >> 12 & 63) as usize],
                PAD,
                PAD,
            ]);
        }
        [a, b] => {
            let bits = (u32::from(a) << 16) | (u32::from(b) << 8);
            output[..4].copy_from_slice(&[
                ALPHABET[(bits >> 18) as usize],
                ALPHABET[(bits >> 12 & 63) as usize],
                ALPHABET[(bits >> 6 & 63) as usize],
                PAD,
            ]);
        }
        _ => {}
    }
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
    output.copy_from_slice(&bits.to_be_bytes()[1..1 + output.len()]);
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
    for (out, &sample) in output.iter_mut().zip(samples) {
        *out = ULAW_ENCODE[usize::from(sample as u16 >> 2)];
    }
    Ok(())
}

/// Encodes PCM16 samples to G.711 A-law codes into `output` (same length).
pub fn alaw_encode_into(samples: &[i16], output: &mut [u8]) -> Result<(), AudioError> {
    check_lengths(samples.len(), output.len())?;
    for (out, &sample) in output.iter_mut().zip(samples) {
        *out = ALAW_ENCODE[usize::from(sample as u16 >> 3)];
    }
    Ok(())
}

/// Decodes G.711 mu-law codes to PCM16 samples into `output` (same length).
pub fn ulaw_decode_into(codes: &[u8], output: &mut [i16]) -> Result<(), AudioError> {
    check_lengths(codes.len(), output.len())?;
    for (out, &code) in output.iter_mut().zip(codes) {
        *out = ULAW_DECODE[usize::from(code)];
    }
    Ok(())
}

/// Decodes G.711 A-law codes to PCM16 samples into `output` (same length).
pub fn alaw_decode_into(codes: &[u8], output: &mut [i16]) -> Result<(), AudioError> {
    check_lengths(codes.len(), output.len())?;
    for (out, &code) in output.iter_mut().zip(codes) {
        *out = ALAW_DECODE[usize::from(code)];
    }
    Ok(())
}

/// Encodes PCM16 samples to a new vector of mu-law codes.
pub fn ulaw_encode(samples: &[i16]) -> Vec<u8> {
    let mut output = vec![0; samples.len()];
    ulaw_encode_into(samples, &mut output).expect("lengths match by construction");
    output
}

/// Encodes PCM16 samples to a new vector of A-law codes.
pub fn alaw_encode(samples: &[i16]) -> Vec<u8> {
    let mut output = vec![0; samples.len()];
    alaw_encode_into(samples, &mut output).expect("lengths match by construction");
    output
}

/// Decodes mu-law codes to a new vector of PCM16 samples.
pub fn ulaw_decode(codes: &[u8]) -> Vec<i16> {
    let mut output = vec![0; codes.len()];
    ulaw_decode_into(codes, &mut output).expect("lengths match by construction");
    output
}

/// Decodes A-law codes to a new vector of PCM16 samples.
pub fn alaw_decode(codes: &[u8]) -> Vec<i16> {
    let mut output = vec![0; codes.len()];
    alaw_decode_into(codes, &mut output).expect("lengths match by construction");
    output
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{encode_tail, ALPHABET};
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

    static ENCODE_SHUFFLE: [u8; 64] = encode_shuffle();
    static DECODE_PACK: [u8; 64] = decode_pack();
    static DECODE_LOOKUP: [u8; 128] = decode_lookup();

    fn low_bits(n: usize) -> u64 {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn encode_block(input: __m512i, shuffle: __m512i, alphabet: __m512i) -> __m512i {
        let spread = _mm512_permutexvar_epi8(shuffle, input);
        // Per 64 bits, pick the 6-bit fields at these bit offsets (two lanes of four).
        let fields = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x3036_242a_1016_040a), spread);
        _mm512_permutexvar_epi8(fields, alphabet)
    }

    /// `output.len()` must be the exact encoded length of `input`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn encode_vbmi(input: &[u8], output: &mut [u8]) {
        debug_assert_eq!(output.len(), super::b64_encoded_len(input.len()));
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
                _mm512_storeu_si512(output.as_mut_ptr().add(written).cast(), chars);
                read += 48;
                written += 64;
            }
            // Fewer than 64 bytes left: at most two more (masked) blocks of whole triples.
            while input.len() - read >= 3 {
                let triples = ((input.len() - read) / 3).min(16);
                let block =
                    _mm512_maskz_loadu_epi8(low_bits(3 * triples), input.as_ptr().add(read).cast());
                let chars = encode_block(block, shuffle, alphabet);
                _mm512_mask_storeu_epi8(
                    output.as_mut_ptr().add(written).cast(),
                    low_bits(4 * triples),
                    chars,
                );
                read += 3 * triples;
                written += 4 * triples;
            }
            encode_tail(&input[read..], &mut output[written..]);
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
            encode_scalar(&raw, &mut scalar);
            assert_eq!(scalar, text);
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
