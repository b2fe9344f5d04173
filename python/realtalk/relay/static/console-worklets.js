// The realtalk console's two AudioWorklet processors. Both convert between the audio
// context's own rate (`sampleRate`, often 48 kHz) and the wire's 24 kHz pcm16 with linear
// interpolation, so the page never depends on the browser honouring a 24 kHz context.
"use strict";

const WIRE_RATE = 24000;

// Microphone -> 24 kHz pcm16 chunks of `chunkMs`, posted to the page as transferred buffers.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunkMs = (options.processorOptions && options.processorOptions.chunkMs) || 20;
    this.chunkSamples = Math.round((WIRE_RATE * chunkMs) / 1000);
    this.chunk = new Int16Array(this.chunkSamples);
    this.filled = 0;
    this.step = sampleRate / WIRE_RATE; // input samples per wire sample
    // Where the next wire sample falls, in input samples; index -1 is the previous block's
    // last sample (kept in `previous`), so interpolation runs across block edges.
    this.position = 0;
    this.previous = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true; // the microphone is not connected yet
    const n = input.length;
    let t = this.position;
    while (t < n - 1) {
      const i = Math.floor(t);
      const a = i < 0 ? this.previous : input[i];
      const b = input[i + 1];
      const value = a + (b - a) * (t - i);
      const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
      this.chunk[this.filled++] = clamped < 0 ? clamped * 32768 : clamped * 32767;
      if (this.filled === this.chunkSamples) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.chunkSamples);
        this.filled = 0;
      }
      t += this.step;
    }
    this.position = t - n;
    this.previous = input[n - 1];
    return true;
  }
}

// Reply audio: a ring buffer of 24 kHz samples played at the context's rate. It counts the
// wire samples really rendered (`played`) and where it stands in the stream it was given
// (`position`: played plus whatever a clear dropped), and reports both, so the page's
// truncate says what the listener heard, not what arrived.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const seconds = (options.processorOptions && options.processorOptions.seconds) || 300;
    this.ring = new Float32Array(WIRE_RATE * seconds);
    this.written = 0; // wire samples ever enqueued
    this.position = 0; // wire samples consumed (played or cleared)
    this.played = 0; // wire samples rendered to the output
    this.fraction = 0;
    this.step = WIRE_RATE / sampleRate; // wire samples per output frame
    this.playing = false;
    this.overflowed = 0;
    this.sinceReport = 0;
    this.reportEvery = Math.round(sampleRate / 50); // a progress report each 20 ms of output
    this.port.onmessage = (message) => this.onMessage(message.data);
  }

  report(type, extra) {
    this.port.postMessage(Object.assign({
      type,
      position: this.position,
      played: this.played,
      written: this.written,
      overflowed: this.overflowed,
    }, extra || {}));
  }

  onMessage(message) {
    if (message.type === "audio") {
      const samples = new Int16Array(message.pcm);
      const room = this.ring.length - (this.written - this.position);
      // A reply longer than the ring is cut rather than overwriting unplayed audio.
      const count = Math.min(samples.length, room);
      this.overflowed += samples.length - count;
      for (let k = 0; k < count; k++) {
        this.ring[(this.written + k) % this.ring.length] = samples[k] / 32768;
      }
      this.written += count;
    } else if (message.type === "clear") {
      const stoppedAt = this.position;
      this.position = this.written;
      this.fraction = 0;
      this.playing = false;
      this.report("cleared", { stoppedAt, request: message.request });
    }
  }

  process(inputs, outputs) {
    const output = outputs[0];
    const first = output[0];
    const ring = this.ring;
    const size = ring.length;
    for (let k = 0; k < first.length; k++) {
      let value = 0;
      if (this.position < this.written) {
        if (!this.playing) {
          this.playing = true;
          this.report("started");
        }
        const a = ring[this.position % size];
        const b = this.position + 1 < this.written ? ring[(this.position + 1) % size] : a;
        value = a + (b - a) * this.fraction;
        this.fraction += this.step;
        while (this.fraction >= 1 && this.position < this.written) {
          this.fraction -= 1;
          this.position += 1;
          this.played += 1;
        }
      } else if (this.playing) {
        this.playing = false;
        this.fraction = 0;
        this.report("idle");
      }
      first[k] = value;
    }
    for (let channel = 1; channel < output.length; channel++) output[channel].set(first);
    this.sinceReport += first.length;
    if (this.sinceReport >= this.reportEvery) {
      this.sinceReport = 0;
      this.report("progress");
    }
    return true;
  }
}

registerProcessor("realtalk-capture", CaptureProcessor);
registerProcessor("realtalk-playback", PlaybackProcessor);
