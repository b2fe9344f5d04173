//! The x86-64 kernels of both codecs (AVX2 and AVX-512 VBMI base64, AVX-512 G.711 decode);
//! `rust/simd.rs` decides at run time whether they run.
#![allow(clippy::wildcard_imports)] // the intrinsics, by the dozen

use super::base64::{decode_groups_scalar, encode_scalar, encode_tail, ALPHABET};
use super::g711::SplitTable;
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
