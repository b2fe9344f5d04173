//! Whatever the bytes, the scanner must not panic, and every answer it gives (`Delta` or
//! `Other`) must agree with a strict JSON parser; only `Fallback` may be said of anything.
//!
//! The oracle is serde_json, which refuses lone surrogate escapes (`"\ud800"`) that Python's
//! `json` (the parser the scanner stands in for) accepts; such escapes are replaced by a plain
//! one before serde_json sees the text, and serde_json keeps numbers as written
//! (`arbitrary_precision`), since Python reads `1e500` as infinity where serde_json refuses it.
#![no_main]

use _audio::frame::{scan_audio_delta, Scan};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DELTA_TYPE: &str = "response.output_audio.delta";

fn is_hex4(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes.get(..4)?).ok()?;
    if text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(text, 16).ok()
    } else {
        None
    }
}

/// `message` with every lone surrogate escape replaced by `\u0041`.
fn without_lone_surrogates(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    while at < message.len() {
        if message[at] != b'\\' {
            out.push(message[at]);
            at += 1;
            continue;
        }
        let unit = if message.get(at + 1) == Some(&b'u') { is_hex4(&message[at + 2..]) } else { None };
        match unit {
            Some(0xd800..=0xdbff) => {
                let low = if message.get(at + 6..at + 8) == Some(b"\\u") { is_hex4(&message[at + 8..]) } else { None };
                if matches!(low, Some(0xdc00..=0xdfff)) {
                    out.extend_from_slice(&message[at..at + 12]);
                    at += 12;
                } else {
                    out.extend_from_slice(b"\\u0041");
                    at += 6;
                }
            }
            Some(0xdc00..=0xdfff) => {
                out.extend_from_slice(b"\\u0041");
                at += 6;
            }
            _ => {
                // Any other escape: copy the backslash and the byte it escapes.
                out.extend_from_slice(&message[at..(at + 2).min(message.len())]);
                at += 2;
            }
        }
    }
    out
}

fuzz_target!(|message: &[u8]| {
    let answer = scan_audio_delta(message, DELTA_TYPE, false);
    if std::str::from_utf8(message).is_ok() {
        assert_eq!(answer, scan_audio_delta(message, DELTA_TYPE, true));
    }
    let parsed = || serde_json::from_slice::<Value>(&without_lone_surrogates(message));
    match answer {
        Scan::Fallback => {}
        Scan::Other => {
            let value = parsed().expect("Other was said of text that is not JSON");
            let object = value.as_object().expect("Other was said of a JSON value that is not an object");
            assert_ne!(object.get("type").and_then(Value::as_str), Some(DELTA_TYPE));
        }
        Scan::Delta(fields) => {
            let value = parsed().expect("Delta was said of text that is not JSON");
            let object = value.as_object().expect("Delta was said of a JSON value that is not an object");
            assert_eq!(object["type"], DELTA_TYPE);
            assert_eq!(object["response_id"].as_str(), Some(&*fields.response_id));
            assert_eq!(object["item_id"].as_str(), Some(&*fields.item_id));
            assert_eq!(object["output_index"].as_i64(), Some(fields.output_index));
            assert_eq!(object["content_index"].as_i64(), Some(fields.content_index));
            assert_eq!(object["delta"].as_str().map(str::as_bytes), Some(fields.delta));
        }
    }
});
