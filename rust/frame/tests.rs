use super::*;
use crate::simd;

fn parse_append(event: &[u8]) -> (Option<String>, String) {
    // The writer's own output read back by the scanner's string decoder.
    let text = std::str::from_utf8(event).unwrap();
    let body = text.strip_prefix(r#"{"type":"input_audio_buffer.append","#).unwrap();
    let (event_id, rest) = match body.strip_prefix(r#""event_id":""#) {
        Some(rest) => {
            let (id, end) = scan::decode_string_prefix(rest.as_bytes()).unwrap();
            (Some(id), rest[end..].strip_prefix(',').unwrap())
        }
        None => (None, body),
    };
    let audio = rest.strip_prefix(r#""audio":""#).unwrap().strip_suffix(r#""}"#).unwrap();
    (event_id, audio.to_owned())
}

#[test]
fn append_event_escapes_the_event_id() {
    for id in ["", "event_123", "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}", "\u{e9}\u{1f600}"] {
        let len = append_event_len(Some(id), 4);
        let mut out = vec![0; len];
        write_append_event(&mut out, Some(id), 4, |b64| b64.copy_from_slice(b"AAECAw==")).unwrap();
        assert_eq!(parse_append(&out), (Some(id.to_owned()), "AAECAw==".to_owned()));
        assert!(!out[..out.len() - 1].contains(&0x1f), "control characters are escaped");
    }
    let mut out = vec![0; append_event_len(None, 0)];
    write_append_event(&mut out, None, 0, |b64| assert!(b64.is_empty())).unwrap();
    assert_eq!(out, br#"{"type":"input_audio_buffer.append","audio":""}"#);
    assert!(write_append_event(&mut [0; 3], None, 0, |_| ()).is_err());
}

#[test]
fn format_and_protocol_names() {
    for format in [WireFormat::Pcm16, WireFormat::G711Ulaw, WireFormat::G711Alaw] {
        assert_eq!(WireFormat::parse(format.name()), Ok(format));
    }
    assert_eq!(WireFormat::Pcm16.wire_rate(), 24_000);
    assert_eq!(WireFormat::G711Alaw.wire_rate(), 8_000);
    assert!(WireFormat::parse("opus").is_err());
    assert_eq!(Protocol::parse("beta").map(Protocol::audio_delta_type), Ok("response.audio.delta"));
    assert!(Protocol::parse("v2").is_err());
}

fn audio_of(event: &[u8]) -> Vec<u8> {
    let (_, audio) = parse_append(event);
    crate::codec::b64_decode(audio.as_bytes()).unwrap()
}

#[test]
fn uplink_at_the_wire_rate_writes_the_samples_themselves() {
    let samples: Vec<i16> = (0..480).map(|i| (i * 137 - 30_000) as i16).collect();
    let mut uplink = Uplink::new(24_000, WireFormat::Pcm16, 1, Quality::High).unwrap();
    let mut event = Vec::new();
    uplink.encode_i16(&samples, Some("e1"), &mut event).unwrap();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(audio_of(&event), bytes);
    assert_eq!(uplink.appended_samples(), 480);

    let floats: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32767.0).collect();
    let mut event = Vec::new();
    uplink.encode_f32(&floats, None, &mut event).unwrap();
    assert_eq!(audio_of(&event), bytes);
    assert_eq!(uplink.appended_samples(), 960);
}

#[test]
fn uplink_g711_writes_the_codecs_codes_at_8khz() {
    let samples: Vec<i16> = (0..160).map(|i| (i * 409 - 32_768) as i16).collect();
    for (format, encode) in [
        (WireFormat::G711Ulaw, crate::codec::ulaw_encode as fn(&[i16]) -> Vec<u8>),
        (WireFormat::G711Alaw, crate::codec::alaw_encode),
    ] {
        let mut uplink = Uplink::new(8_000, format, 1, Quality::High).unwrap();
        let mut event = Vec::new();
        uplink.encode_i16(&samples, None, &mut event).unwrap();
        assert_eq!(audio_of(&event), encode(&samples));
    }
}

#[test]
fn uplink_downmixes_pcm16_to_the_rounded_mean() {
    let stereo = [1i16, 2, -1, -2, 3, 4, 32_767, 32_767, -32_768, -32_768, 5, 6, -3, -4];
    let mut mono = Vec::new();
    downmix_i16(&stereo, 2, &mut mono);
    // 1.5 -> 2, -1.5 -> -2, 3.5 -> 4, 5.5 -> 6, -3.5 -> -4 (half to even)
    assert_eq!(mono, [2, -2, 4, 32_767, -32_768, 6, -4]);
    let mut mono = Vec::new();
    downmix_i16(&[1, 1, 0, -1, -1, 1], 3, &mut mono);
    assert_eq!(mono, [1, 0]); // 2/3 -> 1, -1/3 -> 0
    let mut uplink = Uplink::new(24_000, WireFormat::Pcm16, 2, Quality::High).unwrap();
    assert!(uplink.stage_i16(&[1, 2, 3]).is_err(), "half a frame");
    assert!(Uplink::new(24_000, WireFormat::Pcm16, 0, Quality::High).is_err());
}

#[test]
fn uplink_resamples_with_state_carried_like_the_resampler() {
    let signal: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let mut uplink = Uplink::new(48_000, WireFormat::Pcm16, 1, Quality::High).unwrap();
    let mut reference = Resampler::new(48_000, 24_000, 1, Quality::High).unwrap();
    let mut expected = Vec::new();
    reference.process_into(&signal, &mut expected).unwrap();
    let mut got = Vec::new();
    for chunk in signal.chunks(333) {
        let mut event = Vec::new();
        uplink.encode_f32(chunk, None, &mut event).unwrap();
        got.extend(audio_of(&event));
    }
    let expected: Vec<u8> =
        crate::pcm::f32_to_pcm16(&expected).iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(got, expected);
    assert_eq!(uplink.appended_samples() as usize, expected.len() / 2);
}

/// Both fused paths at every level this CPU has against the portable code (`simd`), at the
/// wire rate (no resampling, so every kernel on the way promises the same bits): PCM
/// conversion, base64 both ways, G.711 both ways and the JSON scanner.
#[test]
fn every_simd_level_matches_the_scalar_path() {
    let samples: Vec<f32> = (0..4801).map(|i| ((i * 7919) % 20_011) as f32 / 10_000.0 - 1.0).collect();
    for format in [WireFormat::Pcm16, WireFormat::G711Ulaw, WireFormat::G711Alaw] {
        let rate = format.wire_rate();
        let event = || {
            let mut uplink = Uplink::new(rate, format, 1, Quality::High).unwrap();
            let mut event = Vec::new();
            uplink.encode_f32(&samples, Some("evt_1"), &mut event).unwrap();
            event
        };
        simd::assert_every_level_matches_scalar(&format!("{} uplink", format.name()), event);
        let (_, audio) = parse_append(&event());
        let message = delta_message(&audio);
        simd::assert_every_level_matches_scalar(&format!("{} downlink", format.name()), || {
            let mut downlink = Downlink::new(rate, format, Protocol::Ga, Quality::High).unwrap();
            let Scan::Delta(fields) = downlink.scan(message.as_bytes(), true) else { panic!("not a delta") };
            let (mut floats, mut pcm) = (Vec::new(), Vec::new());
            downlink.decode_f32(fields.delta, &mut floats).unwrap();
            downlink.decode_i16(fields.delta, &mut pcm).unwrap();
            (floats.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), pcm)
        });
    }
}

fn delta_message(audio: &str) -> String {
    format!(r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":1,"delta":"{audio}","obfuscation":"xyz"}}"#)
}

#[test]
fn downlink_decodes_pcm16_and_g711_at_the_wire_rate() {
    let samples: Vec<i16> = (0..480).map(|i| (i * 131 - 31_000) as i16).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut downlink = Downlink::new(24_000, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
    let message = delta_message(&crate::codec::b64_encode(&bytes));
    let Scan::Delta(fields) = downlink.scan(message.as_bytes(), true) else { panic!() };
    let mut out = Vec::new();
    downlink.decode_i16(fields.delta, &mut out).unwrap();
    assert_eq!(out, samples);
    let mut floats = Vec::new();
    downlink.decode_f32(fields.delta, &mut floats).unwrap();
    assert_eq!(floats, crate::pcm::pcm16_to_f32(&samples));

    let codes: Vec<u8> = (0..=255).collect();
    let mut ulaw = Downlink::new(8_000, WireFormat::G711Ulaw, Protocol::Ga, Quality::High).unwrap();
    let mut out = Vec::new();
    ulaw.decode_i16(crate::codec::b64_encode(&codes).as_bytes(), &mut out).unwrap();
    assert_eq!(out, crate::codec::ulaw_decode(&codes));
}

#[test]
fn downlink_refuses_bad_audio_without_touching_the_stream() {
    let mut downlink = Downlink::new(48_000, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
    let mut out = Vec::new();
    assert!(downlink.decode_f32(b"AA==", &mut out).is_err(), "odd byte count");
    assert!(downlink.decode_f32(b"AA!A", &mut out).is_err(), "bad character");
    assert!(downlink.decode_f32(b"AAA", &mut out).is_err(), "truncated");
    assert!(out.is_empty());
}

#[test]
fn downlink_decodes_into_a_slice_of_exactly_the_delta_length() {
    let samples: Vec<i16> = (0..480).map(|i| (i * 67 - 16_000) as i16).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let audio = crate::codec::b64_encode(&bytes);
    for out_rate in [24_000, 48_000] {
        let mut reference = Downlink::new(out_rate, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
        let mut sliced = Downlink::new(out_rate, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
        for _ in 0..2 {
            let (mut floats, mut pcm) = (Vec::new(), Vec::new());
            reference.decode_f32(audio.as_bytes(), &mut floats).unwrap();
            let len = sliced.output_len(audio.as_bytes()).unwrap();
            assert_eq!(len, floats.len());
            // A slice of the wrong size is refused before the stream moves.
            for wrong in [len - 1, len + 1] {
                assert!(sliced.decode_f32_into(audio.as_bytes(), &mut vec![0.0; wrong]).is_err());
                assert!(sliced.decode_i16_into(audio.as_bytes(), &mut vec![0; wrong]).is_err());
            }
            let mut out = vec![f32::NAN; len];
            sliced.decode_f32_into(audio.as_bytes(), &mut out).unwrap();
            assert_eq!(out, floats);
            // The int16 path runs on its own stream: compare it with a fresh pair.
            let mut fresh = Downlink::new(out_rate, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
            fresh.decode_i16(audio.as_bytes(), &mut pcm).unwrap();
            let mut other = Downlink::new(out_rate, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
            let mut out = vec![0; other.output_len(audio.as_bytes()).unwrap()];
            other.decode_i16_into(audio.as_bytes(), &mut out).unwrap();
            assert_eq!(out, pcm);
        }
    }
}

#[test]
fn downlink_pushes_into_a_playback_buffer_at_its_rate() {
    let samples: Vec<i16> = (0..480).map(|i| i as i16).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let audio = crate::codec::b64_encode(&bytes);
    let mut downlink = Downlink::new(24_000, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
    let mut playback = PlaybackBuffer::new(24_000, 1000).unwrap();
    assert_eq!(downlink.decode_into_playback("i", 0, audio.as_bytes(), &mut playback), Ok((480, 480)));
    assert_eq!(playback.pull(480).unwrap(), samples);
    let mut wrong_rate = PlaybackBuffer::new(48_000, 1000).unwrap();
    assert!(downlink.decode_into_playback("i", 0, audio.as_bytes(), &mut wrong_rate).is_err());
    assert!(downlink.decode_into_playback("i", -1, audio.as_bytes(), &mut playback).is_err());
    let mut small = PlaybackBuffer::new(24_000, 10).unwrap();
    assert_eq!(downlink.decode_into_playback("i", 0, audio.as_bytes(), &mut small), Ok((480, 240)));
}
