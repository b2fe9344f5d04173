//! G.711 mu-law and A-law: the encode tables built from `audioop`'s segment rules, the
//! decode tables, and the functions over them. The AVX-512 decode is in `x86.rs`.

#[cfg(target_arch = "x86_64")]
use super::{x86, VBMI};
#[cfg(target_arch = "x86_64")]
use crate::simd;
use crate::AudioError;

/// `audioop`'s mu-law encoder on a 14-bit sample (the int16 shifted right by 2).
pub(super) const fn ulaw_from_14bit(sample: i16) -> u8 {
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
pub(super) const fn alaw_from_13bit(sample: i16) -> u8 {
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

pub(super) const fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let mut magnitude = (((code & 0x0F) as i16) << 3) + 0x84;
    magnitude <<= (code & 0x70) >> 4;
    if code & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }
}

pub(super) const fn alaw_to_linear(code: u8) -> i16 {
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
pub(super) static ULAW_ENCODE: [u8; 1 << 14] = {
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
pub(super) static ALAW_ENCODE: [u8; 1 << 13] = {
    let mut table = [0u8; 1 << 13];
    let mut i = 0;
    while i < 1 << 13 {
        table[i] = alaw_from_13bit(((i << 3) as u16 as i16) >> 3);
        i += 1;
    }
    table
};

pub(super) static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_to_linear(i as u8);
        i += 1;
    }
    table
};

pub(super) static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_to_linear(i as u8);
        i += 1;
    }
    table
};

pub(super) fn check_lengths(input: usize, output: usize) -> Result<(), AudioError> {
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

pub(super) fn encode_ulaw(samples: &[i16], output: &mut [u8]) {
    for (out, &sample) in output.iter_mut().zip(samples) {
        *out = ULAW_ENCODE[usize::from(sample as u16 >> 2)];
    }
}

pub(super) fn encode_alaw(samples: &[i16], output: &mut [u8]) {
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
pub(super) struct SplitTable {
    pub(super) low: [u8; 256],
    pub(super) high: [u8; 256],
}

pub(super) const fn split(table: &[i16; 256]) -> SplitTable {
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

pub(super) static ULAW_DECODE_SPLIT: SplitTable = split(&ULAW_DECODE);
pub(super) static ALAW_DECODE_SPLIT: SplitTable = split(&ALAW_DECODE);

pub(super) fn decode_g711(
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
pub(super) fn decode_g711_unchecked(table: &[i16; 256], split: &SplitTable, codes: &[u8], output: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(VBMI) {
        // SAFETY: the CPU has the features the function was compiled for.
        unsafe { x86::decode_g711_vbmi(split, codes, output) };
        return;
    }
    let _ = split;
    decode_g711_scalar(table, codes, output);
}

pub(super) fn decode_g711_scalar(table: &[i16; 256], codes: &[u8], output: &mut [i16]) {
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
