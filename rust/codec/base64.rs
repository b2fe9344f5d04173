//! Base64: the public encode/decode functions, the scalar loops and their tables, and the
//! error that names the first bad character. The AVX2/AVX-512 loops are in `x86.rs`.

#[cfg(target_arch = "x86_64")]
use super::{x86, VBMI};
use crate::{simd, AudioError};

pub(super) const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub(super) const PAD: u8 = b'=';

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


/// 12 bits -> the two characters that encode them.
pub(super) static ENCODE_PAIRS: [[u8; 2]; 4096] = {
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
pub(super) unsafe fn encode_scalar(input: &[u8], output: *mut u8) {
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
pub(super) unsafe fn encode_tail(rest: &[u8], output: *mut u8) {
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

pub(super) const INVALID: u32 = 1 << 24;

/// `DECODE[k][c]`: the 6 bits of character `c` placed for position `k` of a group, or
/// `INVALID` (a bit no valid group sets).
pub(super) static DECODE: [[u32; 256]; 4] = {
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
pub(super) fn decode_groups_scalar(text: &[u8], output: &mut [u8]) -> bool {
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
pub(super) fn decode_last_group(group: &[u8], output: &mut [u8]) -> bool {
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

pub(super) fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Finds the first problem in `text` (the slow path, only taken for invalid input).
pub(super) fn describe_error(text: &[u8]) -> AudioError {
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
