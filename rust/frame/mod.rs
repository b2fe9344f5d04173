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
use crate::{memory, AudioError};

mod scan;
#[cfg(test)]
mod tests;

pub use scan::{scan_audio_delta, AudioDeltaRef, Scan};

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
