//! Fused frame paths: a microphone frame to the JSON text of an `input_audio_buffer.append`
//! event, and the JSON text of an audio delta to samples at the speaker's rate, each in one pass.
//!
//! The only module of the core that knows the wire protocol, and only the two JSON shapes it
//! writes and scans. The scanner is deliberately narrow: it answers for a message only when it
//! is sure to give what a full JSON parse would give, and otherwise says [`Scan::Fallback`] so
//! that the caller parses the message in full. It never guesses.

use std::borrow::Cow;

use crate::AudioError;

/// The audio format of the session on the wire, and with it the wire's sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// 24 kHz mono PCM16, little-endian.
    Pcm16,
    /// 8 kHz G.711 mu-law.
    G711Ulaw,
    /// 8 kHz G.711 A-law.
    G711Alaw,
}

impl WireFormat {
    /// The session's name of the format: `"pcm16"`, `"g711_ulaw"` or `"g711_alaw"`.
    pub fn parse(name: &str) -> Result<Self, AudioError> {
        match name {
            "pcm16" => Ok(Self::Pcm16),
            "g711_ulaw" => Ok(Self::G711Ulaw),
            "g711_alaw" => Ok(Self::G711Alaw),
            _ => Err(AudioError::invalid(format!(
                "unknown audio format {name:?}: expected \"pcm16\", \"g711_ulaw\" or \"g711_alaw\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pcm16 => "pcm16",
            Self::G711Ulaw => "g711_ulaw",
            Self::G711Alaw => "g711_alaw",
        }
    }

    /// Samples per second on the wire.
    pub fn wire_rate(self) -> u32 {
        match self {
            Self::Pcm16 => 24_000,
            Self::G711Ulaw | Self::G711Alaw => 8_000,
        }
    }

    /// Bytes one sample takes on the wire (before base64).
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Self::Pcm16 => 2,
            Self::G711Ulaw | Self::G711Alaw => 1,
        }
    }
}

/// Which version of the Realtime protocol names the audio delta event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `response.output_audio.delta`
    Ga,
    /// `response.audio.delta`
    Beta,
}

impl Protocol {
    /// `"ga"` or `"beta"`.
    pub fn parse(name: &str) -> Result<Self, AudioError> {
        match name {
            "ga" => Ok(Self::Ga),
            "beta" => Ok(Self::Beta),
            _ => Err(AudioError::invalid(format!(
                "unknown protocol {name:?}: expected \"ga\" or \"beta\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ga => "ga",
            Self::Beta => "beta",
        }
    }

    /// The `type` of a server audio delta in this protocol version.
    pub fn audio_delta_type(self) -> &'static str {
        match self {
            Self::Ga => "response.output_audio.delta",
            Self::Beta => "response.audio.delta",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The uplink's JSON writer
// ---------------------------------------------------------------------------------------------

const APPEND_TYPE: &[u8] = br#"{"type":"input_audio_buffer.append","#;
const EVENT_ID_KEY: &[u8] = br#""event_id":"#;
const AUDIO_KEY: &[u8] = br#""audio":""#;
const EVENT_END: &[u8] = br#""}"#;

/// The length of `text` written as a JSON string, quotes included.
pub fn json_string_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Writes `text` as a JSON string (quotes included) at the start of `out`, which must hold
/// exactly [`json_string_len`] bytes or more; returns the bytes written. Non-ASCII text is
/// written as UTF-8, which JSON allows; only quotes, backslashes and control characters are
/// escaped.
fn write_json_string(out: &mut [u8], text: &str) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"\"");
    for byte in text.bytes() {
        match byte {
            b'"' => put(b"\\\""),
            b'\\' => put(b"\\\\"),
            b'\n' => put(b"\\n"),
            b'\r' => put(b"\\r"),
            b'\t' => put(b"\\t"),
            0x08 => put(b"\\b"),
            0x0c => put(b"\\f"),
            0..=0x1f => put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => put(&[byte]),
        }
    }
    put(b"\"");
    at
}

/// The length of the base64 text (standard alphabet, padded) of `payload_len` bytes.
pub fn base64_len(payload_len: usize) -> usize {
    payload_len.div_ceil(3) * 4
}

/// The exact length of the `input_audio_buffer.append` event that [`write_append_event`] writes.
pub fn append_event_len(event_id: Option<&str>, payload_len: usize) -> usize {
    APPEND_TYPE.len()
        + event_id.map_or(0, |id| EVENT_ID_KEY.len() + json_string_len(id) + 1)
        + AUDIO_KEY.len()
        + base64_len(payload_len)
        + EVENT_END.len()
}

/// Writes `{"type":"input_audio_buffer.append","event_id":…,"audio":"…"}` into `out`, which
/// must be exactly [`append_event_len`] bytes long. `encode_base64` writes the base64 text of
/// the payload into the slice it is given (exactly [`base64_len`] bytes), so the audio goes
/// straight into the event's buffer with no intermediate copy.
pub fn write_append_event(
    out: &mut [u8],
    event_id: Option<&str>,
    payload_len: usize,
    encode_base64: impl FnOnce(&mut [u8]),
) -> Result<(), AudioError> {
    if out.len() != append_event_len(event_id, payload_len) {
        return Err(AudioError::invalid(format!(
            "append event buffer holds {} bytes, the event needs {}",
            out.len(),
            append_event_len(event_id, payload_len)
        )));
    }
    let mut at = 0;
    out[..APPEND_TYPE.len()].copy_from_slice(APPEND_TYPE);
    at += APPEND_TYPE.len();
    if let Some(id) = event_id {
        out[at..at + EVENT_ID_KEY.len()].copy_from_slice(EVENT_ID_KEY);
        at += EVENT_ID_KEY.len();
        at += write_json_string(&mut out[at..], id);
        out[at] = b',';
        at += 1;
    }
    out[at..at + AUDIO_KEY.len()].copy_from_slice(AUDIO_KEY);
    at += AUDIO_KEY.len();
    let audio_len = base64_len(payload_len);
    encode_base64(&mut out[at..at + audio_len]);
    at += audio_len;
    out[at..].copy_from_slice(EVENT_END);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The downlink's JSON scanner
// ---------------------------------------------------------------------------------------------

/// The fields of an audio delta event, borrowed from the message where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDeltaRef<'a> {
    pub response_id: Cow<'a, str>,
    pub item_id: Cow<'a, str>,
    pub output_index: i64,
    pub content_index: i64,
    /// The base64 text of the audio, exactly as in the message (it has no escapes).
    pub delta: &'a [u8],
}

/// What the scanner can say about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A well-formed audio delta of the protocol asked for, with every field it needs.
    Delta(AudioDeltaRef<'a>),
    /// A well-formed JSON object that is not an audio delta of the protocol asked for.
    Other,
    /// The scanner cannot be sure (malformed or unusual JSON, escaped keys, duplicate fields,
    /// missing or mistyped fields, ...): the caller must parse the message in full.
    Fallback,
}

/// Python's `json` refuses integers longer than this (`sys.get_int_max_str_digits`).
const MAX_INT_DIGITS: usize = 4300;
/// Deeper nesting is left to the full parser (which has its own recursion limit).
const MAX_DEPTH: usize = 128;

/// Scans `message` (UTF-8 JSON text) for an audio delta whose `type` is `delta_type`.
///
/// `known_utf8` says the caller already knows the bytes are valid UTF-8 (they come from a
/// `str`); otherwise non-ASCII text is checked. The answer is [`Scan::Delta`] or [`Scan::Other`]
/// only if a strict JSON parser (Python's `json.loads`) would give the same answer; everything
/// else is [`Scan::Fallback`].
pub fn scan_audio_delta<'a>(message: &'a [u8], delta_type: &str, known_utf8: bool) -> Scan<'a> {
    Scanner { bytes: message, at: 0, non_ascii: false }
        .scan_event(delta_type, known_utf8)
        .unwrap_or(Scan::Fallback)
}

/// A string as it appears between its quotes.
#[derive(Debug, Clone, Copy)]
struct RawString<'a> {
    raw: &'a [u8],
    escaped: bool,
}

/// One field the scanner looks for: absent, seen once with a usable value, or unusable (seen
/// twice, or of an unexpected JSON type), which matters only if the message is a delta.
#[derive(Debug, Clone, Copy)]
enum Field<T> {
    Absent,
    Found(T),
    Unusual,
}

impl<T> Field<T> {
    fn set(&mut self, value: Option<T>) {
        *self = match (&*self, value) {
            (Self::Absent, Some(value)) => Self::Found(value),
            _ => Self::Unusual,
        };
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    non_ascii: bool,
}

/// Bytes that end the plain run inside a JSON string: a quote, a backslash, a control
/// character or a non-ASCII byte.
fn is_string_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20 || byte >= 0x80
}

/// The index of the first special byte (see [`is_string_special`]) at or after `from`.
/// Eight bytes at a time: base64 audio makes up most of every message the scanner sees.
fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each test is exact (borrows only run upwards), so the lowest
    // flagged byte of their union is the first special byte.
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = from;
    while at + 8 <= bytes.len() {
        let chunk: [u8; 8] = bytes[at..at + 8].try_into().ok()?;
        let word = u64::from_le_bytes(chunk);
        let special = has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | (word & HIGHS);
        if special != 0 {
            return Some(at + (special.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..].iter().position(|&byte| is_string_special(byte)).map(|offset| at + offset)
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn scan_event(&mut self, delta_type: &str, known_utf8: bool) -> Option<Scan<'a>> {
        let mut event_type = Field::Absent;
        let mut response_id = Field::Absent;
        let mut item_id = Field::Absent;
        let mut output_index = Field::Absent;
        let mut content_index = Field::Absent;
        let mut delta = Field::Absent;

        self.skip_whitespace();
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                self.expect(b'"')?;
                let key = self.scan_string()?;
                if key.escaped {
                    return None; // an escaped key might spell one of ours
                }
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
                match key.raw {
                    b"type" => event_type.set(self.string_value()?),
                    b"response_id" => response_id.set(self.string_value()?),
                    b"item_id" => item_id.set(self.string_value()?),
                    b"delta" => delta.set(self.string_value()?),
                    b"output_index" => output_index.set(self.integer_value()?),
                    b"content_index" => content_index.set(self.integer_value()?),
                    _ => self.skip_value(1)?,
                }
                self.skip_whitespace();
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        self.skip_whitespace();
                    }
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.skip_whitespace();
        if self.at != self.bytes.len() {
            return None; // trailing data
        }
        if self.non_ascii && !known_utf8 && std::str::from_utf8(self.bytes).is_err() {
            return None;
        }

        let event_type = match event_type {
            Field::Absent => return Some(Scan::Other),
            Field::Found(raw) => decode_string(raw)?,
            Field::Unusual => return None,
        };
        if event_type != delta_type {
            return Some(Scan::Other);
        }
        let (
            Field::Found(response_id),
            Field::Found(item_id),
            Field::Found(output_index),
            Field::Found(content_index),
            Field::Found(delta),
        ) = (response_id, item_id, output_index, content_index, delta)
        else {
            return None;
        };
        if delta.escaped {
            return None;
        }
        Some(Scan::Delta(AudioDeltaRef {
            response_id: decode_string(response_id)?,
            item_id: decode_string(item_id)?,
            output_index,
            content_index,
            delta: delta.raw,
        }))
    }

    /// A string value, or `Some(None)` (skipped) if the value is of another JSON type.
    fn string_value(&mut self) -> Option<Option<RawString<'a>>> {
        if self.peek()? == b'"' {
            self.at += 1;
            Some(Some(self.scan_string()?))
        } else {
            self.skip_value(1)?;
            Some(None)
        }
    }

    /// An integer that fits `i64`, or `Some(None)` (skipped) for any other value.
    fn integer_value(&mut self) -> Option<Option<i64>> {
        let start = self.at;
        match self.peek()? {
            b'-' | b'0'..=b'9' => {
                let is_integer = self.scan_number()?;
                let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
                Some(if is_integer { text.parse().ok() } else { None })
            }
            _ => {
                self.skip_value(1)?;
                Some(None)
            }
        }
    }

    /// Scans a string whose opening quote is behind `self.at`, through its closing quote.
    fn scan_string(&mut self) -> Option<RawString<'a>> {
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at = find_string_special(self.bytes, self.at)?;
            match self.bytes[self.at] {
                b'"' => {
                    let raw = &self.bytes[start..self.at];
                    self.at += 1;
                    return Some(RawString { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    match *self.bytes.get(self.at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 2..self.at + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 6;
                        }
                        _ => return None,
                    }
                }
                0x80.. => {
                    self.non_ascii = true;
                    self.at += 1;
                }
                _ => return None, // a raw control character
            }
        }
    }

    /// Scans a number; says whether it is an integer (no fraction, no exponent).
    fn scan_number(&mut self) -> Option<bool> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.skip_digits(),
            _ => return None, // includes -Infinity, which only Python's json accepts
        }
        let integer_digits = self.at - start;
        let mut is_integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.require_digits()?;
            is_integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.require_digits()?;
            is_integer = false;
        }
        if is_integer && integer_digits > MAX_INT_DIGITS {
            return None;
        }
        Some(is_integer)
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn require_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.skip_digits();
        (self.at > start).then_some(())
    }

    fn skip_literal(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.at + literal.len();
        (self.bytes.get(self.at..end)? == literal).then(|| self.at = end)
    }

    /// Skips (and checks) any JSON value starting at `self.at`.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.scan_string().map(|_| ())
            }
            b'{' => self.skip_container(depth, b'}', true),
            b'[' => self.skip_container(depth, b']', false),
            b't' => self.skip_literal(b"true"),
            b'f' => self.skip_literal(b"false"),
            b'n' => self.skip_literal(b"null"),
            b'-' | b'0'..=b'9' => self.scan_number().map(|_| ()),
            _ => None,
        }
    }

    fn skip_container(&mut self, depth: usize, close: u8, keyed: bool) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            if keyed {
                self.expect(b'"')?;
                self.scan_string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
            }
            self.skip_value(depth + 1)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_whitespace();
                }
                byte if byte == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The text of a scanned string: borrowed when it has no escapes, decoded otherwise. `None`
/// for text a Rust string cannot hold (a lone surrogate escape), which the caller leaves to
/// the full parser.
fn decode_string(string: RawString<'_>) -> Option<Cow<'_, str>> {
    if !string.escaped {
        return std::str::from_utf8(string.raw).ok().map(Cow::Borrowed);
    }
    let raw = string.raw;
    let mut text = String::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        let plain_end = raw[at..].iter().position(|&b| b == b'\\').map_or(raw.len(), |i| at + i);
        text.push_str(std::str::from_utf8(&raw[at..plain_end]).ok()?);
        at = plain_end;
        if at == raw.len() {
            break;
        }
        let escape = *raw.get(at + 1)?;
        at += 2;
        let unescaped = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex_unit(raw.get(at..at + 4)?)?;
                at += 4;
                if (0xd800..0xdc00).contains(&unit) {
                    let low = match raw.get(at..at + 2) {
                        Some(b"\\u") => hex_unit(raw.get(at + 2..at + 6)?)?,
                        _ => return None,
                    };
                    if !(0xdc00..0xe000).contains(&low) {
                        return None;
                    }
                    at += 6;
                    char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))?
                } else {
                    char::from_u32(unit)? // a lone low surrogate gives None
                }
            }
            _ => return None,
        };
        text.push(unescaped);
    }
    Some(Cow::Owned(text))
}

fn hex_unit(hex: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GA: &str = "response.output_audio.delta";

    fn delta<'a>(response_id: &'a str, item_id: &'a str, delta: &'a str) -> Scan<'a> {
        Scan::Delta(AudioDeltaRef {
            response_id: Cow::Borrowed(response_id),
            item_id: Cow::Borrowed(item_id),
            output_index: 0,
            content_index: 0,
            delta: delta.as_bytes(),
        })
    }

    fn scan(message: &str) -> Scan<'_> {
        let answer = scan_audio_delta(message.as_bytes(), GA, false);
        assert_eq!(answer, scan_audio_delta(message.as_bytes(), GA, true), "{message}");
        answer
    }

    #[test]
    fn reads_the_documented_ga_delta() {
        let message = r#"{"event_id":"event_4950","type":"response.output_audio.delta","response_id":"resp_001","item_id":"msg_008","output_index":0,"content_index":0,"delta":"Base64EncodedAudioDelta"}"#;
        assert_eq!(scan(message), delta("resp_001", "msg_008", "Base64EncodedAudioDelta"));
    }

    #[test]
    fn any_key_order_whitespace_and_extra_keys() {
        let message = " \n{ \"delta\" :\t\"QUJD\" , \"obfuscation\":\"aLxx0jTEciOGe\",\"content_index\": 3,\r\n\"output_index\":12,\"extra\":{\"a\":[1,2.5e-3,true,false,null,{\"b\":\"}\\\"\"}]},\"item_id\":\"item_X\",\"response_id\":\"resp_Y\",\"type\":\"response.output_audio.delta\",\"event_id\":\"event_1\"}\n ";
        let Scan::Delta(found) = scan(message) else { panic!("not read: {message}") };
        assert_eq!(found.delta, b"QUJD");
        assert_eq!((found.output_index, found.content_index), (12, 3));
        assert_eq!((&*found.response_id, &*found.item_id), ("resp_Y", "item_X"));
    }

    #[test]
    fn the_other_protocols_name_and_other_events_are_other() {
        let beta = r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":""}"#;
        assert_eq!(scan(beta), Scan::Other);
        assert_eq!(
            scan_audio_delta(beta.as_bytes(), "response.audio.delta", false),
            delta("r", "i", "")
        );
        assert_eq!(scan(r#"{"type":"response.output_audio_transcript.delta","delta":"hi"}"#), Scan::Other);
        assert_eq!(scan(r#"{"event_id":"e"}"#), Scan::Other);
        assert_eq!(scan("{}"), Scan::Other);
        assert_eq!(scan(r#"{"type":"response.done","response":{"output":[{"a":"\u00e9"}]}}"#), Scan::Other);
    }

    #[test]
    fn escaped_ids_are_decoded() {
        let message = r#"{"type":"response.output_audio.delta","response_id":"r\"\\\/\b\f\n\r\t","item_id":"\u00e9\ud83d\ude00x","output_index":0,"content_index":0,"delta":""}"#;
        let Scan::Delta(found) = scan(message) else { panic!() };
        assert_eq!(found.response_id, "r\"\\/\u{8}\u{c}\n\r\t");
        assert_eq!(found.item_id, "\u{e9}\u{1f600}x");
        let escaped_type = r#"{"type":"response.output_audio\u005fdelta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":""}"#;
        assert!(matches!(scan(escaped_type), Scan::Other), "\\u005f is '_', not '.'");
        let escaped_type = r#"{"type":"response.output_audio\u002edelta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":""}"#;
        assert!(matches!(scan(escaped_type), Scan::Delta(_)));
    }

    #[test]
    fn unusual_messages_fall_back() {
        let good = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}"#;
        assert!(matches!(scan(good), Scan::Delta(_)));
        let unusual = [
            // duplicate fields, escaped keys and escaped audio
            r#"{"type":"response.output_audio.delta","type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","item_id":"j","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","\u0069tem_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QU\/D"}"#,
            // missing or mistyped fields
            r#"{"type":"response.output_audio.delta","response_id":"r","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0.0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":1e0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":99999999999999999999,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":null,"output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":["QUJD"]}"#,
            r#"{"type":5}"#,
            // ids a Rust string cannot hold
            r#"{"type":"response.output_audio.delta","response_id":"\ud800","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"\udc00","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}"#,
            // not a JSON object, or not JSON
            "[]",
            "\"text\"",
            "",
            "   ",
            "\u{feff}{}",
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"} x"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD",}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"QUJD"}}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":00,"content_index":0,"delta":"QUJD"}"#,
            r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":-0,"content_index":+1,"delta":"QUJD"}"#,
            r#"{"x":NaN}"#,
            r#"{"x":-Infinity}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":"\x"}"#,
            r#"{"x":"\u12g4"}"#,
            "{\"x\":\"a\tb\"}",
            r#"{'type':'x'}"#,
            r#"{"x":tru}"#,
            r#"{"x":1.}"#,
            r#"{"x":1e}"#,
            r#"{"x":.5}"#,
        ];
        for message in unusual {
            assert_eq!(scan(message), Scan::Fallback, "{message}");
        }
    }

    #[test]
    fn every_truncation_of_a_delta_falls_back() {
        let message = r#"{"event_id":"e","type":"response.output_audio.delta","response_id":"r\u00e9","item_id":"i","output_index":10,"content_index":0,"delta":"QUJDRA==","obfuscation":"x"}"#;
        assert!(matches!(scan(message), Scan::Delta(_)));
        for end in 0..message.len() {
            assert_eq!(scan_audio_delta(&message.as_bytes()[..end], GA, false), Scan::Fallback);
        }
    }

    #[test]
    fn invalid_utf8_falls_back_unless_the_caller_vouches_for_it() {
        let message = b"{\"x\":\"\xff\",\"type\":\"response.output_audio.delta\",\"response_id\":\"r\",\"item_id\":\"i\",\"output_index\":0,\"content_index\":0,\"delta\":\"\"}";
        assert_eq!(scan_audio_delta(message, GA, false), Scan::Fallback);
        let message = "{\"x\":\"\u{e9}\u{1f600}\",\"type\":\"response.output_audio.delta\",\"response_id\":\"r\",\"item_id\":\"\u{e9}\",\"output_index\":0,\"content_index\":0,\"delta\":\"\"}";
        let Scan::Delta(found) = scan(message) else { panic!() };
        assert_eq!(found.item_id, "\u{e9}");
    }

    #[test]
    fn negative_and_large_indices_are_read_exactly() {
        let message = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":-7,"content_index":9223372036854775807,"delta":""}"#;
        let Scan::Delta(found) = scan(message) else { panic!() };
        assert_eq!((found.output_index, found.content_index), (-7, i64::MAX));
    }

    #[test]
    fn deep_nesting_falls_back_without_overflowing_the_stack() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(scan(&deep), Scan::Fallback);
        let fine = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(scan(&fine), Scan::Other);
    }

    #[test]
    fn special_byte_search_agrees_with_a_plain_search() {
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
        for start in 0..bytes.len() {
            for special in [b'"', b'\\', 0x1f, 0x00, 0x80, 0xff] {
                let mut probe = b"plain text, long enough to cross a few words of eight".to_vec();
                let place = start % probe.len();
                probe[place] = special;
                assert_eq!(find_string_special(&probe, 0), Some(place));
            }
            let expected = bytes[start..].iter().position(|&b| is_string_special(b));
            assert_eq!(find_string_special(&bytes, start), expected.map(|i| start + i));
        }
    }

    fn parse_append(event: &[u8]) -> (Option<String>, String) {
        // The writer's own output read back by the scanner's string decoder.
        let text = std::str::from_utf8(event).unwrap();
        let body = text.strip_prefix(r#"{"type":"input_audio_buffer.append","#).unwrap();
        let (event_id, rest) = match body.strip_prefix(r#""event_id":""#) {
            Some(rest) => {
                let mut scanner = Scanner { bytes: rest.as_bytes(), at: 0, non_ascii: false };
                let raw = scanner.scan_string().unwrap();
                let id = decode_string(raw).unwrap().into_owned();
                (Some(id), rest[scanner.at..].strip_prefix(',').unwrap())
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
}
