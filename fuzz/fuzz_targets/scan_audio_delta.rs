//! Whatever the bytes, the scanner must not panic, and every answer it gives (`Delta` or
//! `Other`) must agree with a strict JSON parser; only `Fallback` may be said of anything.
#![no_main]

use _audio::frame::{scan_audio_delta, Scan};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DELTA_TYPE: &str = "response.output_audio.delta";

fuzz_target!(|message: &[u8]| {
    let answer = scan_audio_delta(message, DELTA_TYPE, false);
    if std::str::from_utf8(message).is_ok() {
        assert_eq!(answer, scan_audio_delta(message, DELTA_TYPE, true));
    }
    let parsed = serde_json::from_slice::<Value>(message);
    match answer {
        Scan::Fallback => {}
        Scan::Other => {
            let value = parsed.expect("Other was said of text that is not JSON");
            let object = value.as_object().expect("Other was said of a JSON value that is not an object");
            assert_ne!(object.get("type").and_then(Value::as_str), Some(DELTA_TYPE));
        }
        Scan::Delta(fields) => {
            let value = parsed.expect("Delta was said of text that is not JSON");
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
