//! The append event is valid JSON for any event id and any payload, and reads back exactly.
#![no_main]

use _audio::codec::{b64_decode, b64_encode_into};
use _audio::frame::{append_event_len, write_append_event};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|input: (Option<String>, Vec<u8>)| {
    let (event_id, payload) = input;
    let mut event = vec![0; append_event_len(event_id.as_deref(), payload.len())];
    write_append_event(&mut event, event_id.as_deref(), payload.len(), |text| {
        b64_encode_into(&payload, text).unwrap();
    })
    .unwrap();
    let value: Value = serde_json::from_slice(&event).expect("the event is JSON");
    assert_eq!(value["type"], "input_audio_buffer.append");
    assert_eq!(value.get("event_id").and_then(Value::as_str), event_id.as_deref());
    let audio = value["audio"].as_str().expect("audio is a string");
    assert_eq!(b64_decode(audio.as_bytes()).unwrap(), payload);
});
