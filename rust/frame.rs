//! Fused frame paths: a microphone frame to the JSON text of an `input_audio_buffer.append`
//! event, and the JSON text of an audio delta to samples at the speaker's rate, each in one pass.
//!
//! The only module of the core that knows the wire protocol, and only the two JSON shapes it
//! writes and scans. The scanner is deliberately narrow: it answers for a message only when it
//! is sure to give what a full JSON parse would give, and otherwise says [`Scan::Fallback`] so
//! that the caller parses the message in full. It never guesses.

use std::borrow::Cow;

use crate::codec::{
    alaw_decode_into, alaw_encode_into, b64_decode_into, b64_decoded_len, b64_encode_into, b64_encoded_len,
    ulaw_decode_into, ulaw_encode_into,
};
use crate::pcm::{f32_to_pcm16_into, pcm16_to_f32_into};
use crate::resample::{Quality, Resampler};
use crate::ring::PlaybackBuffer;
use crate::{memory, simd, AudioError};

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

/// The exact length of the `input_audio_buffer.append` event that [`write_append_event`] writes.
pub fn append_event_len(event_id: Option<&str>, payload_len: usize) -> usize {
    APPEND_TYPE.len()
        + event_id.map_or(0, |id| EVENT_ID_KEY.len() + json_string_len(id) + 1)
        + AUDIO_KEY.len()
        + b64_encoded_len(payload_len)
        + EVENT_END.len()
}

/// Writes `{"type":"input_audio_buffer.append","event_id":…,"audio":"…"}` into `out`, which
/// must be exactly [`append_event_len`] bytes long. `encode_base64` writes the base64 text of
/// the payload into the slice it is given (exactly [`b64_encoded_len`] bytes), so the audio goes
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
    let audio_len = b64_encoded_len(payload_len);
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
const MAX_DEPTH: usize = 100;

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

/// A value of a field the scanner looks for: of the expected JSON type, or of another one.
enum Value<T> {
    Expected(T),
    OtherType,
}

impl<T> Value<T> {
    fn expected(self) -> Option<T> {
        match self {
            Self::Expected(value) => Some(value),
            Self::OtherType => None,
        }
    }
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
    fn set(&mut self, value: Value<T>) {
        *self = match (&*self, value.expected()) {
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
    byte == b'"' || byte == b'\\' || !(0x20..0x80).contains(&byte)
}

/// The index of the first special byte (see [`is_string_special`]) at or after `from`.
/// Base64 audio makes up most of every message the scanner sees, so this runs 16 or 32 bytes
/// at a time where the CPU allows.
fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(&[simd::Feature::Sse2]) {
        return x86::find_string_special(bytes, from);
    }
    find_string_special_swar(bytes, from)
}

/// [`find_string_special`] eight bytes at a time, in plain integer arithmetic (the portable
/// path). Kept out of line on x86, where it runs only under `REALTALK_SIMD=scalar`, so that the
/// dispatching function stays small enough to inline into the scanner.
#[cfg_attr(target_arch = "x86_64", inline(never))]
fn find_string_special_swar(bytes: &[u8], from: usize) -> Option<usize> {
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

#[cfg(target_arch = "x86_64")]
#[allow(clippy::wildcard_imports)] // the intrinsics, by the dozen
mod x86 {
    //! The special-byte search in SSE2 (the x86-64 baseline) and AVX2. A byte is special if it
    //! equals `"` or `\`, or if it is below 0x20 as a signed byte: control characters and
    //! every non-ASCII byte (0x80 and up are negative).

    use std::arch::x86_64::*;

    /// Runs longer than this go to the AVX2 loop (when the CPU has it): most strings (keys,
    /// ids, event types) end within the first 16 bytes, the audio goes on for a kilobyte.
    const LONG_RUN: usize = 64;

    #[inline]
    pub(super) fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
        let len = bytes.len();
        if from >= len {
            return None;
        }
        if len < 16 {
            return super::find_string_special_swar(bytes, from);
        }
        let mut at = from;
        if at + 16 <= len {
            // SAFETY: `at + 16 <= len`.
            let mask = unsafe { special_mask_16(bytes.as_ptr().add(at)) };
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
            if len - at >= LONG_RUN && crate::simd::enabled(&[crate::simd::Feature::Avx2]) {
                // SAFETY: the CPU supports AVX2.
                at = unsafe { skip_plain_avx2(bytes, at) };
            }
            while at + 16 <= len {
                // SAFETY: `at + 16 <= len`.
                let mask = unsafe { special_mask_16(bytes.as_ptr().add(at)) };
                if mask != 0 {
                    return Some(at + mask.trailing_zeros() as usize);
                }
                at += 16;
            }
        }
        if at == len {
            return None;
        }
        // The tail: the last 16 bytes, of which the first `skip` were checked already.
        let skip = at - (len - 16);
        // SAFETY: `len >= 16`.
        let mask = unsafe { special_mask_16(bytes.as_ptr().add(len - 16)) } >> skip;
        (mask != 0).then(|| at + mask.trailing_zeros() as usize)
    }

    /// Bit `i` set if byte `i` of the 16 at `at` is special.
    ///
    /// # Safety
    /// `at` must point to 16 readable bytes.
    #[inline]
    #[target_feature(enable = "sse2")]
    unsafe fn special_mask_16(at: *const u8) -> u32 {
        // SAFETY: the caller vouches for 16 readable bytes; the load is unaligned.
        let chunk = unsafe { _mm_loadu_si128(at.cast()) };
        let special = _mm_or_si128(
            _mm_or_si128(
                _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'\\' as i8)),
            ),
            _mm_cmplt_epi8(chunk, _mm_set1_epi8(0x20)),
        );
        _mm_movemask_epi8(special) as u32
    }

    /// Skips whole 32-byte blocks with no special byte from `at`; returns where the first
    /// block that has one starts (or where fewer than 32 bytes are left).
    #[target_feature(enable = "avx2")]
    unsafe fn skip_plain_avx2(bytes: &[u8], mut at: usize) -> usize {
        let quote = _mm256_set1_epi8(b'"' as i8);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let space = _mm256_set1_epi8(0x20);
        while at + 32 <= bytes.len() {
            // SAFETY: `at + 32 <= bytes.len()`; the load is unaligned.
            let chunk = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(at).cast()) };
            let special = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8(chunk, quote), _mm256_cmpeq_epi8(chunk, backslash)),
                _mm256_cmpgt_epi8(space, chunk),
            );
            if _mm256_movemask_epi8(special) != 0 {
                break;
            }
            at += 32;
        }
        at
    }
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
            Field::Found(raw) => self.text(raw)?,
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
            response_id: self.text(response_id)?,
            item_id: self.text(item_id)?,
            output_index,
            content_index,
            delta: delta.raw,
        }))
    }

    /// The text of a string of the scanned message (see [`decode_string`]).
    fn text(&self, string: RawString<'a>) -> Option<Cow<'a, str>> {
        if !string.escaped && !self.non_ascii {
            // SAFETY: the scan flags every byte from 0x80 up, inside strings (the only place
            // they are allowed), and it saw none: the bytes are ASCII, which is UTF-8.
            return Some(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(string.raw) }));
        }
        decode_string(string)
    }

    /// A string value (any other value is skipped).
    fn string_value(&mut self) -> Option<Value<RawString<'a>>> {
        if self.peek()? == b'"' {
            self.at += 1;
            Some(Value::Expected(self.scan_string()?))
        } else {
            self.skip_value(1)?;
            Some(Value::OtherType)
        }
    }

    /// An integer that fits `i64` (any other value is skipped).
    fn integer_value(&mut self) -> Option<Value<i64>> {
        let start = self.at;
        if let b'-' | b'0'..=b'9' = self.peek()? {
            let is_integer = self.scan_number()?;
            Some(match is_integer.then(|| parse_i64(&self.bytes[start..self.at])).flatten() {
                Some(value) => Value::Expected(value),
                None => Value::OtherType,
            })
        } else {
            self.skip_value(1)?;
            Some(Value::OtherType)
        }
    }

    /// Scans a string whose opening quote is behind `self.at`, through its closing quote.
    #[inline]
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

/// The value of a JSON integer that [`Scanner::scan_number`] accepted (an optional minus sign,
/// then digits), or `None` if it does not fit `i64`.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    // Accumulated on the sign's side of zero, so that i64::MIN is reached exactly.
    digits.iter().try_fold(0i64, |value, &digit| {
        let digit = i64::from(digit - b'0');
        let value = value.checked_mul(10)?;
        if negative { value.checked_sub(digit) } else { value.checked_add(digit) }
    })
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

// ---------------------------------------------------------------------------------------------
// The fused paths
// ---------------------------------------------------------------------------------------------

/// Most interleaved channels an uplink frame may have.
pub const MAX_CHANNELS: usize = 64;

/// Reads `samples` as little-endian PCM16 bytes without copying them.
fn pcm16_le_bytes(samples: &[i16]) -> Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: i16 has no padding and u8 has alignment 1; the view covers exactly the
        // samples' memory, which on a little-endian target is their wire encoding.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(samples.as_ptr().cast::<u8>(), std::mem::size_of_val(samples))
        })
    }
    #[cfg(not(target_endian = "little"))]
    {
        Cow::Owned(samples.iter().flat_map(|sample| sample.to_le_bytes()).collect())
    }
}

/// Down-mixes interleaved frames to their mean, summed channel by channel in order (as
/// `x[:, 0] + x[:, 1] + ...` in float32), then divided by the channel count.
fn downmix_f32(samples: &[f32], channels: usize, out: &mut Vec<f32>) {
    let divisor = channels as f32;
    out.extend(samples.chunks_exact(channels).map(|frame| {
        let sum = frame[1..].iter().fold(frame[0], |sum, &x| sum + x);
        sum / divisor
    }));
}

/// Down-mixes interleaved PCM16 frames to their exact mean, rounded half to even.
fn downmix_i16(samples: &[i16], channels: usize, out: &mut Vec<i16>) {
    let count = channels as i32;
    out.extend(samples.chunks_exact(channels).map(|frame| {
        let sum: i32 = frame.iter().map(|&x| i32::from(x)).sum();
        let (quotient, twice_remainder) = (sum.div_euclid(count), 2 * sum.rem_euclid(count));
        let round_up = twice_remainder > count || (twice_remainder == count && quotient % 2 != 0);
        (quotient + i32::from(round_up)) as i16
    }));
}

/// Copies `from` into `to`, which must be just as long.
fn copy_exact<T: Copy>(from: &[T], to: &mut [T]) -> Result<(), AudioError> {
    if from.len() != to.len() {
        return Err(AudioError::invalid(format!("{} samples do not fit {} places", from.len(), to.len())));
    }
    to.copy_from_slice(from);
    Ok(())
}

/// A microphone (or any source) to `input_audio_buffer.append` events: down-mix, resample to
/// the wire rate with state carried from frame to frame, convert to the wire format, base64,
/// JSON, in one pass and without allocating once its buffers have grown to the frame size.
///
/// A frame is first staged ([`Uplink::stage_f32`] / [`Uplink::stage_i16`]), which advances the
/// stream; the event is then written into a buffer of exactly [`Uplink::event_len`] bytes by
/// [`Uplink::write_event`]. [`Uplink::encode_f32`] / [`Uplink::encode_i16`] do both.
#[derive(Debug)]
pub struct Uplink {
    in_rate: u32,
    channels: usize,
    format: WireFormat,
    /// `None` when the input is already at the wire rate.
    resampler: Option<Resampler>,
    mono_f32: Vec<f32>,
    mono_i16: Vec<i16>,
    wire_f32: Vec<f32>,
    wire_i16: Vec<i16>,
    codes: Vec<u8>,
    appended: u64,
}

impl Uplink {
    pub fn new(in_rate: u32, format: WireFormat, channels: usize, quality: Quality) -> Result<Self, AudioError> {
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(AudioError::invalid(format!(
                "channels must be from 1 to {MAX_CHANNELS}, got {channels}"
            )));
        }
        let resampler = if in_rate == format.wire_rate() {
            None
        } else {
            Some(Resampler::new(in_rate, format.wire_rate(), 1, quality)?)
        };
        Ok(Self {
            in_rate,
            channels,
            format,
            resampler,
            mono_f32: Vec::new(),
            mono_i16: Vec::new(),
            wire_f32: Vec::new(),
            wire_i16: Vec::new(),
            codes: Vec::new(),
            appended: 0,
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Samples at the wire rate staged so far (the audio clock of the input buffer).
    pub fn appended_samples(&self) -> u64 {
        self.appended
    }

    /// How far the wire lags behind the input, in wire samples (0 without resampling).
    pub fn delay(&self) -> f64 {
        self.resampler.as_ref().map_or(0.0, Resampler::delay)
    }

    /// Forgets the resampler's history and the audio clock: the next frame starts a new stream.
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.appended = 0;
    }

    fn frames(&self, samples: usize) -> Result<usize, AudioError> {
        if samples.is_multiple_of(self.channels) {
            Ok(samples / self.channels)
        } else {
            Err(AudioError::invalid(format!(
                "{samples} samples do not make whole frames of {} channels",
                self.channels
            )))
        }
    }

    /// Stages one float frame (interleaved, `channels` per frame, at `in_rate`); returns the
    /// number of wire samples it produced.
    pub fn stage_f32(&mut self, samples: &[f32]) -> Result<usize, AudioError> {
        self.frames(samples.len())?;
        let mono: &[f32] = if self.channels == 1 {
            samples
        } else {
            self.mono_f32.clear();
            downmix_f32(samples, self.channels, &mut self.mono_f32);
            &self.mono_f32
        };
        let wire: &[f32] = match &mut self.resampler {
            Some(resampler) => {
                self.wire_f32.clear();
                resampler.process_into(mono, &mut self.wire_f32)?;
                &self.wire_f32
            }
            None => mono,
        };
        memory::resize(&mut self.wire_i16, wire.len(), 0, "the wire samples")?;
        f32_to_pcm16_into(wire, &mut self.wire_i16)?;
        self.finish_stage()
    }

    /// Stages one PCM16 frame; see [`Uplink::stage_f32`].
    pub fn stage_i16(&mut self, samples: &[i16]) -> Result<usize, AudioError> {
        self.frames(samples.len())?;
        let mono: &[i16] = if self.channels == 1 {
            samples
        } else {
            self.mono_i16.clear();
            downmix_i16(samples, self.channels, &mut self.mono_i16);
            &self.mono_i16
        };
        self.wire_i16.clear();
        if let Some(resampler) = &mut self.resampler {
            resampler.process_i16_into(mono, &mut self.wire_i16)?;
        } else {
            self.wire_i16.extend_from_slice(mono);
        }
        self.finish_stage()
    }

    /// Stages the tail the resampler still holds (as if the input went on with silence), so
    /// that the wire has received `round(frames_in * wire_rate / in_rate)` samples, and starts
    /// a new stream; without resampling the tail is empty. The audio clock keeps counting.
    pub fn stage_flush(&mut self) -> Result<usize, AudioError> {
        self.wire_i16.clear();
        if let Some(resampler) = &mut self.resampler {
            self.wire_f32.clear();
            resampler.flush_into(&mut self.wire_f32);
            memory::resize(&mut self.wire_i16, self.wire_f32.len(), 0, "the wire samples")?;
            f32_to_pcm16_into(&self.wire_f32, &mut self.wire_i16)?;
        }
        self.finish_stage()
    }

    fn finish_stage(&mut self) -> Result<usize, AudioError> {
        match self.format {
            WireFormat::Pcm16 => {}
            WireFormat::G711Ulaw => {
                memory::resize(&mut self.codes, self.wire_i16.len(), 0, "the G.711 codes")?;
                ulaw_encode_into(&self.wire_i16, &mut self.codes)?;
            }
            WireFormat::G711Alaw => {
                memory::resize(&mut self.codes, self.wire_i16.len(), 0, "the G.711 codes")?;
                alaw_encode_into(&self.wire_i16, &mut self.codes)?;
            }
        }
        self.appended += self.wire_i16.len() as u64;
        Ok(self.wire_i16.len())
    }

    /// Bytes of the staged frame on the wire, before base64.
    fn payload(&self) -> Cow<'_, [u8]> {
        match self.format {
            WireFormat::Pcm16 => pcm16_le_bytes(&self.wire_i16),
            WireFormat::G711Ulaw | WireFormat::G711Alaw => Cow::Borrowed(&self.codes),
        }
    }

    /// The exact length of the event for the staged frame.
    pub fn event_len(&self, event_id: Option<&str>) -> usize {
        append_event_len(event_id, self.wire_i16.len() * self.format.bytes_per_sample())
    }

    /// Writes the `input_audio_buffer.append` event of the staged frame into `out`, which must
    /// be exactly [`Uplink::event_len`] bytes long.
    pub fn write_event(&self, event_id: Option<&str>, out: &mut [u8]) -> Result<(), AudioError> {
        let payload = self.payload();
        let mut encoded = Ok(0);
        write_append_event(out, event_id, payload.len(), |text| {
            encoded = b64_encode_into(&payload, text);
        })?;
        encoded.map(|_| ())
    }

    fn write_event_to_vec(&self, event_id: Option<&str>, out: &mut Vec<u8>) -> Result<(), AudioError> {
        let start = out.len();
        memory::resize(out, start + self.event_len(event_id), 0, "the event")?;
        self.write_event(event_id, &mut out[start..])
    }

    /// Stages a float frame and appends its event to `out`.
    pub fn encode_f32(&mut self, samples: &[f32], event_id: Option<&str>, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.stage_f32(samples)?;
        self.write_event_to_vec(event_id, out)
    }

    /// Stages a PCM16 frame and appends its event to `out`.
    pub fn encode_i16(&mut self, samples: &[i16], event_id: Option<&str>, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.stage_i16(samples)?;
        self.write_event_to_vec(event_id, out)
    }
}

/// Audio delta events to speaker samples: scan the JSON, base64-decode the audio, decode
/// G.711 if needed, resample from the wire rate to `out_rate` with state carried from delta to
/// delta. Messages the scanner is unsure of are left to the caller (see [`Scan::Fallback`]),
/// whose full parse then hands the audio text to [`Downlink::decode_f32`] and friends.
#[derive(Debug)]
pub struct Downlink {
    out_rate: u32,
    format: WireFormat,
    protocol: Protocol,
    /// `None` when the output is at the wire rate.
    resampler: Option<Resampler>,
    wire_bytes: Vec<u8>,
    wire_i16: Vec<i16>,
    wire_f32: Vec<f32>,
    /// The resampler's output, before it is copied to the caller's slice.
    out_f32: Vec<f32>,
    out_i16: Vec<i16>,
}

impl Downlink {
    pub fn new(out_rate: u32, format: WireFormat, protocol: Protocol, quality: Quality) -> Result<Self, AudioError> {
        let resampler = if out_rate == format.wire_rate() {
            None
        } else {
            Some(Resampler::new(format.wire_rate(), out_rate, 1, quality)?)
        };
        Ok(Self {
            out_rate,
            format,
            protocol,
            resampler,
            wire_bytes: Vec::new(),
            wire_i16: Vec::new(),
            wire_f32: Vec::new(),
            out_f32: Vec::new(),
            out_i16: Vec::new(),
        })
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// How far the output lags behind the wire, in output samples (0 without resampling).
    pub fn delay(&self) -> f64 {
        self.resampler.as_ref().map_or(0.0, Resampler::delay)
    }

    /// Forgets the resampler's history: the next delta starts a new stream.
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
    }

    /// Scans a message for an audio delta of this downlink's protocol.
    pub fn scan<'m>(&self, message: &'m [u8], known_utf8: bool) -> Scan<'m> {
        scan_audio_delta(message, self.protocol.audio_delta_type(), known_utf8)
    }

    /// Decodes the base64 audio of one delta to PCM16 at the wire rate (in `self.wire_i16`).
    fn decode_wire(&mut self, audio: &[u8]) -> Result<(), AudioError> {
        let byte_len = b64_decoded_len(audio)?;
        match self.format {
            WireFormat::Pcm16 => {
                if byte_len % 2 != 0 {
                    return Err(AudioError::invalid(format!(
                        "pcm16 audio must be a whole number of 2-byte samples, got {byte_len} bytes"
                    )));
                }
                memory::resize(&mut self.wire_i16, byte_len / 2, 0, "the wire samples")?;
                #[cfg(target_endian = "little")]
                {
                    // SAFETY: every bit pattern is a valid i16, u8 has alignment 1, and the
                    // view covers exactly the samples' memory; on a little-endian target the
                    // wire bytes land as the samples they encode.
                    let bytes = unsafe {
                        std::slice::from_raw_parts_mut(self.wire_i16.as_mut_ptr().cast::<u8>(), byte_len)
                    };
                    b64_decode_into(audio, bytes)?;
                }
                #[cfg(not(target_endian = "little"))]
                {
                    memory::resize(&mut self.wire_bytes, byte_len, 0, "the wire bytes")?;
                    b64_decode_into(audio, &mut self.wire_bytes)?;
                    for (sample, pair) in self.wire_i16.iter_mut().zip(self.wire_bytes.chunks_exact(2)) {
                        *sample = i16::from_le_bytes([pair[0], pair[1]]);
                    }
                }
            }
            WireFormat::G711Ulaw | WireFormat::G711Alaw => {
                memory::resize(&mut self.wire_bytes, byte_len, 0, "the wire bytes")?;
                b64_decode_into(audio, &mut self.wire_bytes)?;
                memory::resize(&mut self.wire_i16, byte_len, 0, "the wire samples")?;
                if self.format == WireFormat::G711Ulaw {
                    ulaw_decode_into(&self.wire_bytes, &mut self.wire_i16)?;
                } else {
                    alaw_decode_into(&self.wire_bytes, &mut self.wire_i16)?;
                }
            }
        }
        Ok(())
    }

    /// Output samples the next delta of `wire_samples` samples will produce.
    fn output_len_for(&self, wire_samples: usize) -> usize {
        self.resampler.as_ref().map_or(wire_samples, |r| r.output_len_for(wire_samples))
    }

    /// Wire samples in `audio` (base64 text), or an error for text of an impossible length.
    pub fn wire_samples(&self, audio: &[u8]) -> Result<usize, AudioError> {
        Ok(b64_decoded_len(audio)? / self.format.bytes_per_sample())
    }

    /// Upper bound of the output samples for `audio` (exact unless the text is invalid).
    pub fn output_len(&self, audio: &[u8]) -> Result<usize, AudioError> {
        Ok(self.output_len_for(self.wire_samples(audio)?))
    }

    /// Decodes one delta's base64 audio into `out`, which must hold exactly
    /// [`Downlink::output_len`] samples: float samples at `out_rate`. On error the stream is
    /// unchanged.
    pub fn decode_f32_into(&mut self, audio: &[u8], out: &mut [f32]) -> Result<(), AudioError> {
        self.decode_wire(audio)?;
        Self::check_output_len(self.output_len_for(self.wire_i16.len()), out.len())?;
        if let Some(resampler) = &mut self.resampler {
            memory::resize(&mut self.wire_f32, self.wire_i16.len(), 0.0, "the wire samples")?;
            pcm16_to_f32_into(&self.wire_i16, &mut self.wire_f32)?;
            self.out_f32.clear();
            resampler.process_into(&self.wire_f32, &mut self.out_f32)?;
            copy_exact(&self.out_f32, out)
        } else {
            pcm16_to_f32_into(&self.wire_i16, out)
        }
    }

    /// [`Downlink::decode_f32_into`] for PCM16 samples.
    pub fn decode_i16_into(&mut self, audio: &[u8], out: &mut [i16]) -> Result<(), AudioError> {
        let len = out.len();
        let staged = self.decode_i16_staged(audio, |expected| Self::check_output_len(expected, len))?;
        copy_exact(staged, out)
    }

    /// Decodes one delta to PCM16 samples at `out_rate`, left in the downlink's own buffers
    /// (no copy when they go on to a playback buffer). `fits` sees how many samples the delta
    /// gives before the resampler's state moves, and may refuse them.
    fn decode_i16_staged(
        &mut self,
        audio: &[u8],
        fits: impl FnOnce(usize) -> Result<(), AudioError>,
    ) -> Result<&[i16], AudioError> {
        self.decode_wire(audio)?;
        fits(self.output_len_for(self.wire_i16.len()))?;
        match &mut self.resampler {
            Some(resampler) => {
                self.out_i16.clear();
                resampler.process_i16_into(&self.wire_i16, &mut self.out_i16)?;
                Ok(&self.out_i16)
            }
            None => Ok(&self.wire_i16),
        }
    }

    /// Refuses an output slice that is not exactly what the delta gives.
    fn check_output_len(expected: usize, len: usize) -> Result<(), AudioError> {
        if len == expected {
            Ok(())
        } else {
            Err(AudioError::invalid(format!("the delta decodes to {expected} samples, the output holds {len}")))
        }
    }

    /// Decodes one delta's base64 audio and appends its float samples at `out_rate` to `out`.
    /// On error nothing is appended and the stream is unchanged.
    pub fn decode_f32(&mut self, audio: &[u8], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let start = out.len();
        memory::resize(out, start + self.output_len(audio)?, 0.0, "the decoded samples")?;
        let decoded = self.decode_f32_into(audio, &mut out[start..]);
        if decoded.is_err() {
            out.truncate(start);
        }
        decoded
    }

    /// Decodes one delta's base64 audio and appends its PCM16 samples at `out_rate` to `out`.
    pub fn decode_i16(&mut self, audio: &[u8], out: &mut Vec<i16>) -> Result<(), AudioError> {
        let start = out.len();
        memory::resize(out, start + self.output_len(audio)?, 0, "the decoded samples")?;
        let decoded = self.decode_i16_into(audio, &mut out[start..]);
        if decoded.is_err() {
            out.truncate(start);
        }
        decoded
    }

    /// Appends the tail the resampler still holds (as if the wire went on with silence) and
    /// starts a new stream; without resampling the tail is empty.
    pub fn flush_f32(&mut self, out: &mut Vec<f32>) {
        if let Some(resampler) = &mut self.resampler {
            resampler.flush_into(out);
        }
    }

    /// [`Downlink::flush_f32`] for PCM16.
    pub fn flush_i16(&mut self, out: &mut Vec<i16>) {
        if let Some(resampler) = &mut self.resampler {
            resampler.flush_i16_into(out);
        }
    }

    /// Decodes one delta straight into `playback` (which must run at `out_rate`), tagged with
    /// its item and content part. Returns `(produced, queued)`: the samples the delta gave and
    /// how many of them fit in the buffer (the rest was not queued).
    pub fn decode_into_playback(
        &mut self,
        item_id: &str,
        content_index: i64,
        audio: &[u8],
        playback: &mut PlaybackBuffer,
    ) -> Result<(usize, usize), AudioError> {
        if playback.sample_rate() != self.out_rate {
            return Err(AudioError::invalid(format!(
                "the playback buffer runs at {} Hz but this downlink decodes to {} Hz",
                playback.sample_rate(),
                self.out_rate
            )));
        }
        let content_index = u32::try_from(content_index).map_err(|_| {
            AudioError::invalid(format!("content_index {content_index} is out of range"))
        })?;
        let staged = self.decode_i16_staged(audio, |_| Ok(()))?;
        Ok((staged.len(), playback.push(item_id, content_index, staged)))
    }
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
            r"{'type':'x'}",
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
        for (text, value) in [("-9223372036854775808", Some(i64::MIN)), ("-0", Some(0)), ("0", Some(0)), ("120", Some(120))]
            .into_iter()
            .chain([("9223372036854775808", None), ("-9223372036854775809", None), ("100000000000000000000", None)])
        {
            let message = format!(r#"{{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":{text},"content_index":0,"delta":""}}"#);
            assert_eq!(parse_i64(text.as_bytes()), value, "{text}");
            match scan(&message) {
                Scan::Delta(found) => assert_eq!(Some(found.output_index), value, "{text}"),
                other => assert_eq!((other, value), (Scan::Fallback, None), "{text}"),
            }
        }
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
        type Search = fn(&[u8], usize) -> Option<usize>;
        let plain_search = |bytes: &[u8], from: usize| {
            bytes.get(from..)?.iter().position(|&b| is_string_special(b)).map(|i| from + i)
        };
        // The dispatched search at every level this CPU has (`simd`), and the portable one.
        let searches = simd::levels()
            .map(|level| (level, find_string_special as Search))
            .chain([(simd::Level::Scalar, find_string_special_swar as Search)]);
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
        for (level, search) in searches {
            simd::with_cap(level, || {
                for start in 0..=bytes.len() {
                    assert_eq!(search(&bytes, start), plain_search(&bytes, start), "from {start}");
                }
                // Every length up to well past the 16- and 32-byte blocks, every start, and a
                // special byte at every place (or none).
                let plain: Vec<u8> = (0..200).map(|i| b"QUJDRA+/09az"[i % 12]).collect();
                for len in 0..plain.len() {
                    for start in (0..=len).step_by(7) {
                        assert_eq!(search(&plain[..len], start), None, "{len} {start}");
                        for place in start..len {
                            for special in [b'"', b'\\', 0x1f, 0x00, 0x80, 0xff] {
                                let mut probe = plain[..len].to_vec();
                                probe[place] = special;
                                if place + 1 < len {
                                    probe[len - 1] = b'"'; // a later special byte changes nothing
                                }
                                assert_eq!(search(&probe, start), Some(place), "{len} {start} {place}");
                            }
                        }
                    }
                }
            });
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
}
