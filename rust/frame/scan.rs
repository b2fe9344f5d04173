//! The downlink's JSON scanner: finds the fields of an audio delta in one pass, or says it
//! cannot be sure ([`Scan::Fallback`]) so that the caller parses the message in full.

use std::borrow::Cow;

use crate::simd;

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

/// Test support for the writer's tests: decodes the JSON string that starts `text` (its opening
/// quote already consumed) and says where it ends (after its closing quote).
#[cfg(test)]
pub(super) fn decode_string_prefix(text: &[u8]) -> Option<(String, usize)> {
    let mut scanner = Scanner { bytes: text, at: 0, non_ascii: false };
    let raw = scanner.scan_string()?;
    Some((decode_string(raw)?.into_owned(), scanner.at))
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
}
