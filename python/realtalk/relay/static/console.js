// The realtalk browser console: a Realtime voice session through the relay that served this
// page. Plain JavaScript, no build step. `window.realtalkConsole` exposes the state and the
// counters (the tests read them) and connect/disconnect/sendText/send.
"use strict";

(() => {
  const WIRE_RATE = 24000; // pcm16 mono both ways
  const SAMPLES_PER_MS = WIRE_RATE / 1000;
  const CHUNK_MS = 20; // one input_audio_buffer.append per 20 ms of microphone audio
  const MAX_LOGGED_EVENTS = 300;
  const $ = (id) => document.getElementById(id);

  const counters = { captured: 0, appended: 0, received: 0, played: 0 }; // wire samples
  const state = {
    phase: "idle", // idle | connecting | connected | closed | error
    close: null, // {code, reason} once closed
    error: null, // the last error event's message
    muted: false,
    playing: false, // reply audio is being rendered
    turns: [], // {trigger, firstAudioMs}
    truncations: [], // {item_id, audio_end_ms, played_ms, position}
    lastEvents: {}, // the last event of each type, whole
  };

  let ws = null;
  let audio = null; // {context, player, capture, stream}
  let enqueued = 0; // wire samples handed to the player
  let playerPosition = 0; // the player's last reported stream position
  let turnStartedAt = null; // performance.now() when the user finished a turn
  let responseActive = false;
  const itemSpans = []; // assistant audio in the player's stream: {id, start, end}
  const droppedItems = new Set(); // items cut by a barge-in: late deltas are not played
  const bubbles = new Map(); // item id -> transcript element
  const clearWaiters = new Map();
  let clearRequests = 0;

  // ---- display ---------------------------------------------------------------------------

  function setStatus(text) {
    $("status").textContent = text;
  }

  function setPhase(phase, text) {
    state.phase = phase;
    setStatus(text);
    const live = phase === "connected";
    $("connect").textContent = phase === "connecting" || live ? "Disconnect" : "Connect";
    $("connect").disabled = phase === "connecting";
    $("mute").disabled = !live;
    $("message").disabled = !live;
    $("send").disabled = !live;
  }

  function seconds(samples) {
    return (samples / WIRE_RATE).toFixed(2) + " s";
  }

  let countersQueued = false;
  function showCounters() {
    if (countersQueued) return;
    countersQueued = true;
    requestAnimationFrame(() => {
      countersQueued = false;
      for (const name of Object.keys(counters)) $(name).textContent = seconds(counters[name]);
    });
  }

  function logEvent(direction, event, note) {
    const list = $("events");
    const entry = document.createElement("li");
    entry.textContent = `${direction} ${event.type}${note ? " " + note : ""}`;
    if (event.type === "error") entry.className = "error";
    list.append(entry);
    while (list.childElementCount > MAX_LOGGED_EVENTS) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function bubble(id, role, text) {
    let element = id ? bubbles.get(id) : null;
    if (!element) {
      element = document.createElement("li");
      element.className = role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = { user: "You", assistant: "Assistant", tool: "Tool call" }[role] + ": ";
      const body = document.createElement("span");
      body.className = "text";
      element.append(who, body);
      $("transcript").append(element);
      if (id) bubbles.set(id, element);
    }
    if (text !== undefined) element.querySelector(".text").textContent = text;
    $("transcript").scrollTop = $("transcript").scrollHeight;
    return element;
  }

  function appendText(id, delta) {
    const body = bubble(id, "assistant").querySelector(".text");
    body.textContent += delta;
  }

  function note(id, text) {
    const element = bubbles.get(id);
    if (!element) return;
    const span = document.createElement("span");
    span.className = "note";
    span.textContent = text;
    element.append(span);
  }

  // ---- the wire --------------------------------------------------------------------------

  function send(event) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(event));
    if (event.type !== "input_audio_buffer.append") logEvent("→", event);
    return true;
  }

  function base64FromBytes(bytes) {
    let binary = "";
    for (let k = 0; k < bytes.length; k += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
    }
    return btoa(binary);
  }

  function bytesFromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let k = 0; k < binary.length; k++) bytes[k] = binary.charCodeAt(k);
    return bytes;
  }

  async function fetchToken() {
    const response = await fetch("console/token", { method: "POST", cache: "no-store" });
    if (!response.ok) throw new Error(`the relay gave no token (HTTP ${response.status})`);
    return (await response.json()).token;
  }

  // Paths relative to the page, so a proxy may serve the console under a prefix.
  function relayUrl() {
    const url = new URL("v1/realtime", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  async function connect(token) {
    if (ws) return;
    setPhase("connecting", "Connecting…");
    // Every figure is per session: the counters, the turns, the player's stream.
    Object.assign(state, { close: null, error: null, turns: [], truncations: [],
                           lastEvents: {}, playing: false });
    for (const name of Object.keys(counters)) counters[name] = 0;
    showCounters();
    enqueued = 0;
    playerPosition = 0;
    itemSpans.length = 0;
    droppedItems.clear();
    responseActive = false;
    turnStartedAt = null;
    try {
      if (token === undefined) token = await fetchToken();
    } catch (error) {
      setPhase("error", `Cannot connect: ${error.message}.`);
      return;
    }
    const socket = new WebSocket(relayUrl(), ["realtime", "openai-insecure-api-key." + token]);
    ws = socket;
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      try {
        onEvent(event);
      } catch (error) { // a malformed event must not stop the session
        state.error = `could not handle ${event.type}: ${error.message}`;
        logEvent("!", { type: "error" }, state.error);
        setStatus(`Error: ${state.error}`);
      }
    };
    socket.onclose = (close) => {
      if (ws !== socket) return;
      ws = null;
      state.close = { code: close.code, reason: close.reason };
      stopAudio();
      const why = state.error ? `: ${state.error}` : close.reason ? `: ${close.reason}` : "";
      setPhase("closed", `Closed (${close.code})${why}.`);
    };
  }

  function disconnect() {
    if (ws) ws.close(1000, "");
  }

  // ---- server events ---------------------------------------------------------------------

  function onEvent(event) {
    state.lastEvents[event.type] = event;
    switch (event.type) {
      case "session.created":
        setPhase("connected", "Connected. Speak, or type a message.");
        // Transcribe what the user says, so both sides show in the transcript.
        send({ type: "session.update", session: { type: "realtime", audio: { input: {
          transcription: { model: "gpt-4o-mini-transcribe" } } } } });
        startAudio().catch((error) => {
          setStatus(`Connected without a microphone: ${error.message}`);
        });
        break;
      case "input_audio_buffer.speech_started":
        bargeIn();
        bubble(event.item_id, "user", "…");
        break;
      case "input_audio_buffer.speech_stopped":
        turnStartedAt = performance.now();
        break;
      case "conversation.item.input_audio_transcription.completed":
        bubble(event.item_id, "user", event.transcript);
        break;
      case "response.created":
        responseActive = true;
        break;
      case "response.output_item.added":
        if (event.item && event.item.type === "message") bubble(event.item.id, "assistant", "");
        break;
      case "response.output_audio.delta":
        playDelta(event);
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        appendText(event.item_id, event.delta);
        break;
      case "response.output_item.done":
        // The console shows tool calls; running them is the app's job (or the relay's pins).
        if (event.item && event.item.type === "function_call") {
          bubble(event.item.id, "tool", `${event.item.name}(${event.item.arguments})`);
        }
        break;
      case "conversation.item.truncated":
        note(event.item_id, `(cut at ${(event.audio_end_ms / 1000).toFixed(2)} s)`);
        break;
      case "response.done":
        responseActive = false;
        break;
      case "error":
        state.error = (event.error && event.error.message) || "error";
        setStatus(`Error: ${state.error}`);
        break;
    }
    const size = event.type === "response.output_audio.delta" ? `(${event.delta.length} b64)` : "";
    logEvent("←", event, size);
  }

  function playDelta(event) {
    const bytes = bytesFromBase64(event.delta);
    const samples = bytes.length >> 1;
    counters.received += samples;
    showCounters();
    if (!audio || !audio.player || droppedItems.has(event.item_id)) return;
    const last = itemSpans[itemSpans.length - 1];
    if (last && last.id === event.item_id) {
      last.end += samples;
    } else {
      itemSpans.push({ id: event.item_id, contentIndex: event.content_index || 0,
                       start: enqueued, end: enqueued + samples });
      if (itemSpans.length > 64) itemSpans.shift();
    }
    enqueued += samples;
    const pcm = bytes.buffer.slice(0, samples * 2);
    audio.player.port.postMessage({ type: "audio", pcm }, [pcm]);
  }

  // Barge-in, RealtimeClient's rule: stop playback, and truncate the item that was playing to
  // what the listener heard (at most what was received). The server cancels the response
  // itself (server VAD's interrupt_response).
  async function bargeIn(cancelResponse) {
    if (!audio || !audio.player) return; // nothing can be playing yet
    const cleared = await clearPlayback();
    const stoppedAt = cleared.stoppedAt;
    if (cancelResponse && responseActive) send({ type: "response.cancel" });
    let span = null;
    for (const candidate of itemSpans) if (candidate.start <= stoppedAt) span = candidate;
    if (!span) return;
    const stillPlaying = stoppedAt < span.end || (responseActive && span === itemSpans.at(-1));
    if (!stillPlaying) return;
    droppedItems.add(span.id);
    const playedMs = Math.floor((Math.min(stoppedAt, span.end) - span.start) / SAMPLES_PER_MS);
    const receivedMs = Math.floor((span.end - span.start) / SAMPLES_PER_MS);
    const endMs = Math.min(playedMs, receivedMs);
    if (endMs <= 0) return;
    send({ type: "conversation.item.truncate", item_id: span.id,
           content_index: span.contentIndex, audio_end_ms: endMs });
    state.truncations.push({ item_id: span.id, audio_end_ms: endMs,
                             played_ms: (stoppedAt - span.start) / SAMPLES_PER_MS,
                             position: stoppedAt });
  }

  function clearPlayback() {
    const request = ++clearRequests;
    return new Promise((resolve) => {
      clearWaiters.set(request, resolve);
      audio.player.port.postMessage({ type: "clear", request });
    });
  }

  // ---- audio -----------------------------------------------------------------------------

  async function startAudio() {
    const context = new AudioContext({ latencyHint: "interactive" });
    audio = { context, player: null, capture: null, stream: null };
    await context.audioWorklet.addModule("console-worklets.js");
    if (audio === null || audio.context !== context) return; // disconnected meanwhile
    const player = new AudioWorkletNode(context, "realtalk-playback", {
      numberOfInputs: 0, outputChannelCount: [1] });
    player.port.onmessage = (message) => onPlayer(message.data);
    player.connect(context.destination);
    audio.player = player;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true,
               autoGainControl: true } });
    if (audio === null || audio.context !== context) { // disconnected meanwhile
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    audio.stream = stream;
    const capture = new AudioWorkletNode(context, "realtalk-capture", {
      numberOfOutputs: 0, processorOptions: { chunkMs: CHUNK_MS } });
    capture.port.onmessage = (message) => onCaptured(message.data);
    context.createMediaStreamSource(stream).connect(capture);
    audio.capture = capture;
    if (context.state === "suspended") await context.resume();
  }

  function stopAudio() {
    if (!audio) return;
    const { context, stream } = audio;
    audio = null;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    context.close();
    for (const resolve of clearWaiters.values()) resolve({ stoppedAt: playerPosition });
    clearWaiters.clear();
  }

  function onCaptured(buffer) {
    const samples = new Int16Array(buffer);
    counters.captured += samples.length;
    // Muted: send silence, so the server's turn detector still sees the end of an utterance.
    if (state.muted) samples.fill(0);
    const bytes = new Uint8Array(samples.buffer);
    if (send({ type: "input_audio_buffer.append", audio: base64FromBytes(bytes) })) {
      counters.appended += samples.length;
    }
    showCounters();
  }

  function onPlayer(report) {
    playerPosition = report.position;
    counters.played = report.played;
    showCounters();
    if (report.type === "started" || report.type === "idle" || report.type === "cleared") {
      state.playing = report.type === "started";
    }
    if (report.type === "started" && turnStartedAt !== null) {
      const firstAudioMs = Math.round(performance.now() - turnStartedAt);
      turnStartedAt = null;
      state.turns.push({ firstAudioMs });
      $("latency").textContent = `${firstAudioMs} ms`;
    } else if (report.type === "cleared") {
      const resolve = clearWaiters.get(report.request);
      clearWaiters.delete(report.request);
      if (resolve) resolve(report);
    }
  }

  // ---- controls --------------------------------------------------------------------------

  async function sendText(text) {
    if (!text.trim()) return false;
    if (!send({ type: "conversation.item.create", item: { type: "message", role: "user",
                content: [{ type: "input_text", text }] } })) return false;
    bubble(null, "user", text);
    await bargeIn(true); // typing over a reply interrupts it too
    send({ type: "response.create" });
    turnStartedAt = performance.now();
    return true;
  }

  function toggleMute() {
    state.muted = !state.muted;
    $("mute").setAttribute("aria-pressed", String(state.muted));
    $("mute").textContent = state.muted ? "Unmute microphone" : "Mute microphone";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("connect").addEventListener("click", () => (ws ? disconnect() : connect()));
    $("mute").addEventListener("click", toggleMute);
    $("typed").addEventListener("submit", (submit) => {
      submit.preventDefault();
      const text = $("message").value;
      $("message").value = "";
      sendText(text);
    });
  });

  window.realtalkConsole = {
    state, counters, connect, disconnect, sendText, send, toggleMute,
    get enqueued() { return enqueued; },
  };
})();
