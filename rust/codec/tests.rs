#[cfg(target_arch = "x86_64")]
use super::x86;
use super::base64::*;
use super::g711::*;
use crate::simd;

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
