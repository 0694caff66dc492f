// The persona studio: make personas and hear them, through the sidecar's own HTTP API only.
//
// Everything the page knows comes from that API (personas, health, errors) or from
// /studio/config.json (the limits and cues, from the Python code that enforces them).

const KEY_STORAGE = "s2-sidecar-api-key";
const SPEECH = "/v1/audio/speech";
const VOICES = "/v1/audio/voices";
const LEAD_S = 0.05; // how far ahead the first chunk (and one after a gap) is scheduled
const HEALTH_EVERY_MS = 5000;

const $ = (selector, root = document) => root.querySelector(selector);

let config; // /studio/config.json
let voices = [];
let casts = []; // made in this tab, each a list of persona names
let castDraft = []; // the cast being ticked, in speaking order
let clip = null; // {blob, name}: what "Add persona" uploads
let recording = null; // {recorder} while the microphone records
let speaking = null; // {controller, player} of the take in flight
let audio = null;
let takeCount = 0;

// --- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch() with the tab's key; a non-2xx answer throws the API's own message. */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach the sidecar (${e.message}); is it running?`, null);
  }
  if (response.ok) return response;
  const error = await errorOf(response);
  if (error.status === 401) askForKey(error);
  throw error;
}

async function errorOf(response) {
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.message, error.code ?? null);
  } catch {
    return new ApiError(response.status, `${response.status} ${response.statusText}`, null);
  }
}

function showError(element, error) {
  element.textContent = error.message;
  element.dataset.code = error.code ?? "";
  element.hidden = false;
}

function hide(element) {
  element.hidden = true;
  element.textContent = "";
}

// --- the key ------------------------------------------------------------------------------

function askForKey(error) {
  $("#key-panel").hidden = false;
  showError($("#key-error"), error);
  $("#key-input").focus();
}

async function useKey(event) {
  event.preventDefault();
  const key = $("#key-input").value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $("#key-input").value = "";
  if (await loadVoices()) $("#key-panel").hidden = true;
}

// --- health -------------------------------------------------------------------------------

async function pollHealth() {
  const element = $("#health");
  try {
    // /health answers 503 with the same body while the engine starts or is unhealthy.
    const health = await (await fetch("/health")).json();
    element.dataset.status = health.status;
    element.dataset.preview = String(health.preview);
    const what = health.preview
      ? `CPU preview voice (engine "${health.engine}"): not S2, no cloning, tags dropped`
      : `S2 on GPU: ${health.model} (engine "${health.engine}")`;
    const detail = health.status === "ready" || !health.detail ? "" : `: ${health.detail}`;
    $("#engine").textContent = `${what} · ${health.status}${detail}`;
    $("#preview-note").hidden = !health.preview;
    $("#tags-note").hidden = !health.preview;
  } catch (e) {
    element.dataset.status = "unreachable";
    $("#engine").textContent = `the sidecar does not answer (${e.message})`;
  }
  setTimeout(pollHealth, HEALTH_EVERY_MS);
}

// --- personas -----------------------------------------------------------------------------

async function loadVoices() {
  const error = $("#personas-error");
  try {
    voices = (await (await api(VOICES)).json()).uploaded_voices; // SGLang-Omni's list shape: names in "voices"
  } catch (e) {
    if (e.status !== 401) showError(error, e); // a refused key is shown by the key field
    return false;
  }
  hide(error);
  renderPersonas();
  renderVoicePicker();
  return true;
}

function renderPersonas() {
  const list = $("#personas");
  list.replaceChildren(...voices.map(personaRow));
  $("#personas-empty").hidden = voices.length > 0;
}

function personaRow(voice) {
  const row = $("#persona-row").content.firstElementChild.cloneNode(true);
  row.dataset.persona = voice.name;
  $(".name", row).textContent = voice.name;
  $(".duration", row).textContent = `${voice.duration_s.toFixed(1)} s`;
  $(".style", row).textContent = voice.style ? `[${voice.style}]` : "";
  $(".transcript", row).textContent = voice.transcript;
  $(".warnings", row).replaceChildren(...voice.warnings.map(warningItem));
  row.classList.toggle("warned", voice.warnings.length > 0);
  const [remove, confirm, cancel] = [".delete", ".confirm", ".cancel"].map((s) => $(s, row));
  const asking = (yes) => {
    remove.hidden = yes;
    confirm.hidden = cancel.hidden = !yes;
  };
  remove.onclick = () => asking(true);
  cancel.onclick = () => asking(false);
  confirm.onclick = async () => {
    try {
      await api(`${VOICES}/${encodeURIComponent(voice.name)}`, { method: "DELETE" });
    } catch (e) {
      asking(false);
      showError($(".error", row), e);
      return;
    }
    await loadVoices();
  };
  const play = $(".play", row);
  play.onclick = async () => {
    // Fetched with the tab's key (an <audio src> could not send it), then played from a blob.
    const audio = $("audio.clip", row);
    try {
      const response = await api(`${VOICES}/${encodeURIComponent(voice.name)}/clip`);
      if (audio.src) URL.revokeObjectURL(audio.src);
      audio.src = URL.createObjectURL(await response.blob());
    } catch (e) {
      showError($(".error", row), e);
      return;
    }
    audio.hidden = false;
    play.hidden = true;
    await audio.play().catch(() => {}); // a blocked autoplay still leaves the controls
  };
  $(".use", row).onclick = () => {
    $("#voice").value = `voice:${voice.name}`;
    renderPalette();
    $("#text").focus();
  };
  return row;
}

function warningItem(text) {
  const item = document.createElement("li");
  item.className = "warning";
  item.textContent = text;
  return item;
}

/** What the Speak form can address, as request fields; a cast is one more group here. */
function speakTargets() {
  const targets = [
    {
      group: "Personas",
      items: voices.map((v) => ({ value: `voice:${v.name}`, label: v.name, fields: { voice: v.name } })),
    },
  ];
  if (casts.length) {
    const items = casts.map((names) => ({
      value: `cast:${names.join(",")}`,
      label: names.join(" + "),
      fields: { cast: names },
      speakers: names,
    }));
    targets.push({ group: "Casts", items });
  }
  if (!voices.some((v) => v.name === "default")) {
    const fields = { voice: "default" };
    targets.push({ group: "Engine", items: [{ value: "voice:default", label: "default voice", fields }] });
  }
  return targets;
}

function renderVoicePicker() {
  const select = $("#voice");
  const chosen = select.value;
  select.replaceChildren(
    ...speakTargets().map(({ group, items }) => {
      const optgroup = document.createElement("optgroup");
      optgroup.label = group;
      optgroup.append(...items.map(({ value, label }) => new Option(label, value)));
      return optgroup;
    }),
  );
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  renderCastBuilder();
  renderPalette();
}

// A cast: personas in speaking order, `<|speaker:N|>` in the text picks the Nth.

function renderCastBuilder() {
  const builder = $("#cast-builder");
  builder.hidden = !config.cast || voices.length < 2;
  castDraft = castDraft.filter((name) => voices.some((v) => v.name === name));
  $("#cast-members").replaceChildren(
    ...voices.map(({ name }) => {
      const label = document.createElement("label");
      label.className = "inline";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.checked = castDraft.includes(name);
      box.onchange = () => {
        castDraft = box.checked ? [...castDraft, name] : castDraft.filter((n) => n !== name);
        renderCastBuilder();
      };
      const at = castDraft.indexOf(name);
      label.append(box, at < 0 ? name : `${name} (speaker ${at})`);
      return label;
    }),
  );
  $("#cast-use").disabled = castDraft.length < 2;
}

function useCast() {
  const value = `cast:${castDraft.join(",")}`;
  if (!casts.some((names) => `cast:${names.join(",")}` === value)) casts.push([...castDraft]);
  renderVoicePicker();
  $("#voice").value = value;
  renderPalette();
}

function currentTarget() {
  const value = $("#voice").value;
  return speakTargets().flatMap((t) => t.items).find((item) => item.value === value);
}

// --- adding a persona ---------------------------------------------------------------------

async function chooseFile() {
  const file = $("#clip-file").files[0];
  if (!file) return;
  if (!recording) $("#recorder").hidden = true; // the file replaces an earlier recording
  await setClip(file, file.name);
}

async function setClip(blob, name) {
  clip = { blob, name };
  hide($("#add-result")); // the verdict on the previous clip, which will not be uploaded
  const preview = $("#clip-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.hidden = false;
  const info = $("#clip-info");
  info.hidden = false;
  delete info.dataset.seconds;
  try {
    const decoded = await audioContext().decodeAudioData(await blob.arrayBuffer());
    info.dataset.seconds = decoded.duration.toFixed(2);
    info.textContent = `${name}: ${decoded.duration.toFixed(1)} s. ${durationHint(decoded.duration)}`;
  } catch {
    info.textContent = `${name}: the browser cannot play it; the sidecar will say if it can read it.`;
  }
}

function durationHint(seconds) {
  const { good_min: low, good_max: high } = config.clip_s;
  if (seconds < low) return `Under ${low} s: S2 clones best from ${low}-${high} s of speech.`;
  if (seconds > high) return `Over ${high} s: S2 gains nothing past ${high} s of speech.`;
  return `The sidecar checks the speech in it (silence at the ends does not count).`;
}

async function addPersona(event) {
  event.preventDefault();
  const result = $("#add-result");
  const form = new FormData();
  form.set("name", $("#add-name").value.trim());
  form.set("transcript", $("#add-transcript").value);
  if ($("#add-style").value.trim()) form.set("style", $("#add-style").value.trim());
  if ($("#add-replace").checked) form.set("replace", "true");
  if (clip) form.set("audio", clip.blob, clip.name);
  result.className = "result";
  result.hidden = false;
  result.textContent = "checking the clip…";
  $("#add-submit").disabled = true;
  try {
    const response = await api(VOICES, { method: "POST", body: form });
    const info = await response.json();
    await loadVoices();
    $("#voice").value = `voice:${info.name}`;
    result.classList.add("ok");
    if (response.status === 201) clearAddForm();
    result.replaceChildren(
      response.status === 201
        ? `Added ${info.name}: ${info.duration_s.toFixed(1)} s of speech.`
        : `${info.name} already holds this clip, transcript and style; nothing changed.`,
    );
    if (info.warnings.length) {
      const list = document.createElement("ul");
      list.append(...info.warnings.map(warningItem));
      result.append(list);
    }
  } catch (e) {
    result.classList.add("error");
    result.textContent = e.message;
    result.dataset.code = e.code ?? "";
  } finally {
    $("#add-submit").disabled = false;
  }
}

/** Empty the form after a persona is added, so the next one starts clean. */
function clearAddForm() {
  $("#add-form").reset();
  clip = null;
  const preview = $("#clip-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.hidden = true;
  hide($("#clip-info"));
  $("#recorder").hidden = true;
  $("#record").textContent = "Record";
}

// --- recording ----------------------------------------------------------------------------

async function toggleRecording() {
  if (recording) {
    recording.recorder.stop();
    return;
  }
  const button = $("#record");
  const hint = $("#rec-hint");
  $("#recorder").hidden = false;
  let stream;
  try {
    // No processing: S2 copies what it hears, including a gate's pumping or a denoiser's warble.
    const constraints = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    stream = await navigator.mediaDevices.getUserMedia({ audio: constraints });
  } catch (e) {
    hint.textContent = `no microphone: ${e.message}`;
    return;
  }
  const context = audioContext();
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const recorder = new MediaRecorder(stream);
  const parts = [];
  recorder.ondataavailable = (e) => parts.push(e.data);
  const started = performance.now();
  recording = { recorder };
  button.textContent = "Stop recording";
  button.classList.add("recording");

  const { good_min: low, good_max: high } = config.clip_s;
  $(".guide .good-min").style.left = `${(low / high) * 100}%`;
  $("#good-min-label").style.left = `${(low / high) * 100}%`;
  $("#good-min-label").textContent = `${low} s`;
  $("#good-max-label").textContent = `${high} s`;
  const samples = new Float32Array(analyser.fftSize);
  const meter = () => {
    if (!recording) return;
    const seconds = (performance.now() - started) / 1000;
    analyser.getFloatTimeDomainData(samples);
    const peak = samples.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const db = 20 * Math.log10(peak || 1e-6);
    const level = $("#level");
    level.style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
    level.className = peak > 0.98 ? "hot" : db < -50 ? "quiet" : "";
    $("#rec-progress").style.width = `${Math.min(100, (seconds / high) * 100)}%`;
    $("#recorder").dataset.zone = seconds < low ? "short" : "good";
    hint.textContent =
      seconds < low
        ? `${seconds.toFixed(0)} s: keep talking, at least ${low} s for a good clone`
        : `${seconds.toFixed(0)} s: good; stop whenever you like (it stops itself at ${high} s)`;
    if (seconds >= high) recorder.stop();
    else requestAnimationFrame(meter);
  };
  recorder.onstop = async () => {
    recording = null;
    stream.getTracks().forEach((t) => t.stop());
    source.disconnect();
    button.textContent = "Record again";
    button.classList.remove("recording");
    hint.textContent = `recorded ${((performance.now() - started) / 1000).toFixed(0)} s`;
    $("#clip-file").value = ""; // the recording replaces any file chosen before
    // MediaRecorder gives WebM/Opus, which the sidecar does not read: hand it a WAV instead.
    const blob = new Blob(parts, { type: recorder.mimeType });
    const decoded = await context.decodeAudioData(await blob.arrayBuffer());
    await setClip(wavBlob(toPcm16(mixdown(decoded)), decoded.sampleRate), "recording.wav");
  };
  recorder.start();
  requestAnimationFrame(meter);
}

function mixdown(buffer) {
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    buffer.getChannelData(c).forEach((x, i) => (mono[i] += x / buffer.numberOfChannels));
  }
  return mono;
}

function toPcm16(floats) {
  return Int16Array.from(floats, (x) => Math.round(Math.max(-1, Math.min(1, x)) * 32767));
}

function wavBlob(samples, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + samples.byteLength, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, samples.byteLength, true);
  return new Blob([header, pcmBytes(samples)], { type: "audio/wav" });
}

/** Little-endian bytes of int16 samples, whatever the machine's byte order. */
function pcmBytes(samples) {
  const view = new DataView(new ArrayBuffer(samples.length * 2));
  samples.forEach((x, i) => view.setInt16(i * 2, x, true));
  return view.buffer;
}

// --- speaking -----------------------------------------------------------------------------

function audioContext() {
  audio ??= new AudioContext();
  if (audio.state === "suspended") audio.resume();
  return audio;
}

/** Plays int16 chunks back to back as they arrive, through Web Audio. */
class StreamPlayer {
  constructor(context, rate) {
    this.context = context;
    this.rate = rate;
    this.next = 0;
    this.startAt = null;
    this.sources = new Set();
    this.played = 0; // samples whose buffer played to its end
    this.gaps = 0; // times the network fell behind playback
    this.closed = false;
    this.stopped = false;
    this.done = new Promise((resolve) => (this.resolve = resolve));
  }

  push(samples) {
    const buffer = this.context.createBuffer(1, samples.length, this.rate);
    buffer.getChannelData(0).set(Float32Array.from(samples, (x) => x / 32768));
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const now = this.context.currentTime;
    let at = this.next;
    if (at < now) {
      if (this.startAt !== null) this.gaps++;
      at = now + LEAD_S;
    }
    this.startAt ??= at;
    source.start(at);
    this.next = at + buffer.duration;
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      if (!this.stopped) this.played += samples.length;
      this.settle();
    };
  }

  position() {
    return this.startAt === null ? 0 : Math.max(0, this.context.currentTime - this.startAt);
  }

  end() {
    this.closed = true;
    this.settle();
  }

  stop() {
    this.stopped = true;
    this.sources.forEach((s) => s.stop());
    this.end();
  }

  settle() {
    if (this.closed && this.sources.size === 0) this.resolve(this.played);
  }
}

/** Int16 samples from a byte stream whose chunks may split a sample. */
class Pcm16Reader {
  constructor() {
    this.odd = null;
  }

  read(bytes) {
    if (this.odd !== null) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.odd;
      joined.set(bytes, 1);
      bytes = joined;
    }
    const n = bytes.length >> 1;
    this.odd = bytes.length % 2 ? bytes[bytes.length - 1] : null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
    return Int16Array.from({ length: n }, (_, i) => view.getInt16(i * 2, true));
  }
}

/** Min/max per 10 ms, drawn as a waveform with a playhead. */
class Waveform {
  constructor(canvas, rate) {
    this.canvas = canvas;
    this.block = Math.round(rate / 100);
    this.peaks = [];
    this.pending = [];
  }

  add(samples) {
    let i = 0;
    if (this.pending.length) {
      const take = Math.min(this.block - this.pending.length, samples.length);
      this.pending.push(...samples.subarray(0, take));
      i = take;
      if (this.pending.length === this.block) this.flush();
    }
    for (; i + this.block <= samples.length; i += this.block) {
      this.peaks.push(extent(samples.subarray(i, i + this.block)));
    }
    if (i < samples.length) this.pending.push(...samples.subarray(i));
  }

  flush() {
    if (this.pending.length) this.peaks.push(extent(this.pending));
    this.pending = [];
  }

  draw(playedS = 0, minS = 0) {
    const { canvas } = this;
    const g = canvas.getContext("2d");
    const { width, height } = canvas;
    const span = Math.max(this.peaks.length, minS * 100);
    const mid = height / 2;
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    for (let x = 0; x < width; x++) {
      const from = Math.floor((x / width) * span);
      const to = Math.max(from + 1, Math.floor(((x + 1) / width) * span));
      let low = 0;
      let high = 0;
      for (let p = from; p < to && p < this.peaks.length; p++) {
        low = Math.min(low, this.peaks[p][0]);
        high = Math.max(high, this.peaks[p][1]);
      }
      if (high === low) continue;
      g.fillStyle = x / width < (playedS * 100) / span ? style.getPropertyValue("--played") : style.color;
      g.fillRect(x, mid - (high / 32768) * mid, 1, Math.max(1, ((high - low) / 32768) * mid));
    }
  }
}

function extent(samples) {
  let low = 0;
  let high = 0;
  for (const x of samples) {
    low = Math.min(low, x);
    high = Math.max(high, x);
  }
  return [low, high];
}

function stat(id, text) {
  $(`#${id}`).textContent = text;
}

async function speak(event) {
  event.preventDefault();
  const context = audioContext(); // inside the click, so the browser lets it play
  const target = currentTarget();
  const errorBox = $("#speak-error");
  hide(errorBox);
  if (!target) {
    showError(errorBox, { message: "add a persona first, or pick a voice", code: null });
    return;
  }
  const seed = $("#seed").value === "" ? Math.floor(Math.random() * 2 ** 31) : Number($("#seed").value);
  const request = { input: $("#text").value, ...target.fields, seed, stream: true, response_format: "pcm" };
  if ($("#style").value.trim()) request.style = $("#style").value.trim();
  const take = addTake(request, target.label);

  speaking = { controller: new AbortController(), player: null };
  $("#speak").disabled = true;
  $("#stop").disabled = false;
  ["ttfa", "rtf", "duration"].forEach((id) => stat(id, "…"));
  stat("state", "waiting for audio");
  const started = performance.now();
  let player = null;
  let animating = true;
  try {
    const response = await api(SPEECH, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      signal: speaking.controller.signal,
    });
    const rate = Number(response.headers.get("X-Sample-Rate"));
    player = speaking.player = new StreamPlayer(context, rate);
    const wave = new Waveform($("#wave"), rate);
    const pcm = new Pcm16Reader();
    const chunks = [];
    let total = 0;
    let firstS = null;
    const animate = () => {
      wave.draw(player.position(), total / rate);
      if (animating) requestAnimationFrame(animate);
    };
    requestAnimationFrame(animate);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read().catch((e) => {
        if (e.name === "AbortError") throw e;
        // A failure after the first audio can only cut the stream: the status is long sent.
        const message = `the stream broke after ${(total / rate).toFixed(2)} s of audio (${e.message})`;
        throw new ApiError(0, message, "stream_cut");
      });
      if (done) break;
      const samples = pcm.read(value);
      if (!samples.length) continue;
      if (firstS === null) {
        firstS = (performance.now() - started) / 1000;
        stat("ttfa", `${Math.round(firstS * 1000)} ms`);
        stat("state", "streaming");
      }
      chunks.push(samples);
      total += samples.length;
      player.push(samples);
      wave.add(samples);
      stat("duration", `${(total / rate).toFixed(2)} s`);
    }
    if (!total) throw new ApiError(0, "the sidecar ended the stream without audio", null);
    player.end();
    wave.flush();
    const generatedS = (performance.now() - started) / 1000;
    const durationS = total / rate;
    const rtf = generatedS / durationS;
    stat("rtf", rtf.toFixed(3));
    stat("state", "playing");
    const samples = concat(chunks, total);
    take.finish({ samples, rate, firstS, rtf });
    const played = await player.done;
    if (player.stopped) throw new DOMException("stopped while playing", "AbortError");
    take.played(played, player.gaps, performance.now() - started);
    stat("state", player.gaps ? `played (${player.gaps} gaps)` : "played");
  } catch (e) {
    player?.stop();
    const stopped = e.name === "AbortError";
    stat("state", stopped ? "stopped" : "failed");
    if (!stopped) showError(errorBox, e);
    take.fail(stopped ? { message: "stopped", code: "stopped" } : e);
  } finally {
    animating = false;
    speaking = null;
    $("#speak").disabled = false;
    $("#stop").disabled = true;
  }
}

function concat(chunks, total) {
  const all = new Int16Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

// --- takes --------------------------------------------------------------------------------

function addTake(request, label) {
  const n = ++takeCount;
  const row = $("#take-row").content.firstElementChild.cloneNode(true);
  row.dataset.take = String(n);
  row.dataset.state = "streaming";
  $(".voice", row).textContent = `#${n} ${label}`;
  $(".text", row).textContent = request.input;
  $(".stats", row).textContent = `seed ${request.seed}`;
  $("#takes").prepend(row);
  return {
    finish({ samples, rate, firstS, rtf }) {
      const seconds = samples.length / rate;
      const ttfaMs = Math.round(firstS * 1000);
      Object.assign(row.dataset, { samples: samples.length, rate, ttfaMs, rtf, state: "playing" });
      $(".stats", row).textContent =
        `${seconds.toFixed(2)} s · first audio ${ttfaMs} ms · ` +
        `RTF ${rtf.toFixed(3)} · seed ${request.seed}`;
      const wave = new Waveform($(".wave", row), rate);
      wave.add(samples);
      wave.flush();
      wave.draw();
      const wav = URL.createObjectURL(wavBlob(samples, rate));
      $("audio", row).src = wav;
      $(".downloads", row).append(
        ...wavFirst(config.formats).map((format) => downloadLink(format, n, request, samples, wav)),
      );
    },
    played(samples, gaps, elapsedMs) {
      const doneMs = Math.round(elapsedMs); // request sent -> the last sample played
      Object.assign(row.dataset, { played: samples, gaps, doneMs, state: "played" });
    },
    fail(error) {
      row.dataset.state = error.code === "stopped" ? "stopped" : "failed";
      showError($(".error", row), error);
    },
  };
}

function wavFirst(formats) {
  return [...formats].sort((a, b) => (b === "wav") - (a === "wav"));
}

/** WAV and PCM are this take's own samples; other formats ask the API again with its seed. */
function downloadLink(format, n, request, samples, wavUrl) {
  const link = document.createElement("a");
  link.textContent = format;
  link.download = `take-${n}.${format}`;
  if (format === "wav") link.href = wavUrl;
  else if (format === "pcm") link.href = URL.createObjectURL(new Blob([pcmBytes(samples)]));
  else {
    link.title = "rendered again by the sidecar in this format, with this take's seed";
    link.href = "#";
    link.onclick = async (event) => {
      event.preventDefault();
      const body = { ...request, stream: false, response_format: format };
      const error = $(".error", link.closest(".take"));
      try {
        const response = await api(SPEECH, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        const save = document.createElement("a");
        save.href = URL.createObjectURL(await response.blob());
        save.download = link.download;
        save.click();
      } catch (e) {
        showError(error, e);
      }
    };
  }
  return link;
}

// --- start --------------------------------------------------------------------------------

/** The cue buttons, and one per speaker when a cast is picked. */
function renderPalette() {
  const text = $("#text");
  const speakers = (currentTarget()?.speakers ?? []).map((name, i) => [`<|speaker:${i}|>`, name]);
  $("#palette").replaceChildren(
    ...[...speakers, ...config.palette.map((cue) => [cue, cue])].map(([cue, label]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.cue = cue;
      if (cue !== label) {
        button.className = "speaker";
        button.title = `${cue}: ${label} speaks from here`;
      }
      button.onclick = () => {
        const { selectionStart: at, selectionEnd: end, value } = text;
        const before = at > 0 && !/\s$/.test(value.slice(0, at)) ? " " : "";
        text.setRangeText(`${before}${cue} `, at, end, "end");
        text.focus();
      };
      return button;
    }),
  );
}

async function start() {
  $("#key-form").addEventListener("submit", useKey);
  $("#add-form").addEventListener("submit", addPersona);
  $("#clip-file").addEventListener("change", chooseFile);
  $("#record").addEventListener("click", toggleRecording);
  $("#speak-form").addEventListener("submit", speak);
  $("#voice").addEventListener("change", renderPalette);
  $("#cast-use").addEventListener("click", useCast);
  $("#stop").addEventListener("click", () => {
    speaking?.controller.abort();
    speaking?.player?.stop();
  });
  pollHealth();
  try {
    config = await (await api("/studio/config.json")).json();
  } catch (e) {
    showError($("#personas-error"), e);
    return;
  }
  renderPalette();
  await loadVoices();
  document.body.dataset.ready = "true";
}

start();
