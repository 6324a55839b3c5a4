// Bandmate in the browser: microphone -> AudioWorklet -> WebSocket -> server -> WebSocket
// -> AudioWorklet -> speakers. Protocol: docs/protocol.md.
"use strict";

const BLOCK = 1024; // frames per message: one model hop at 48 kHz
const CLOSE_REASONS = {
  1006: "the connection dropped",
  1009: "a message was too large",
  4400: "the server refused the session settings",
  4401: "the token is missing or wrong",
  4403: "the server does not accept pages from this site",
  4404: "the session does not exist",
  4408: "the server timed the stream out",
  4409: "the session already has a stream",
  4420: "this page sent too many messages a second",
  4426: "this page speaks a protocol the server does not",
  4429: "the server is full",
  4500: "the server had an internal error",
};
const $ = (id) => document.getElementById(id);
const stats = { sentBlocks: 0, receivedSamples: 0, receivedEnergy: 0, telemetry: 0,
                reconnects: 0, errors: [] };
window.bandmate = { stats };

let audio = null; // {context, node, stream}
let socket = null;
let ready = null;
let hopMs = null; // the model's hop, the deadline of its compute: from `ready`
let wanted = false; // the user pressed Start and not Stop
let retryDelay = 1;
let pending = new Float32Array(BLOCK);
let pendingFill = 0;

function token() { return $("token").value.trim(); }

function headers() { return token() ? { Authorization: `Bearer ${token()}` } : {}; }

function setStatus(text, kind) { const s = $("status"); s.textContent = text; s.className = `status ${kind}`; }

function showError(text) { const e = $("error"); e.textContent = text; e.hidden = !text; if (text) stats.errors.push(text); }

async function loadCheckpoints() {
  try {
    const response = await fetch("/v1/checkpoints", { headers: headers() });
    if (response.status === 401) {
      $("token-field").hidden = false; // shown only where the server needs one
      showError("This server needs a token: enter it, then Start.");
      return;
    }
    const select = $("checkpoint");
    select.innerHTML = "";
    for (const c of await response.json()) {
      const option = document.createElement("option");
      option.value = c.name;
      option.textContent = `${c.name} · ${c.sample_rate / 1000} kHz`;
      select.appendChild(option);
    }
  } catch (error) { showError(`Cannot reach the server: ${error}`); }
}

async function startAudio() {
  const context = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
  await context.audioWorklet.addModule("/static/worklet.js");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const node = new AudioWorkletNode(context, "bandmate-io", { numberOfInputs: 1, numberOfOutputs: 1,
                                                               outputChannelCount: [2] });
  context.createMediaStreamSource(stream).connect(node);
  node.connect(context.destination);
  node.port.onmessage = (event) => onInput(event.data);
  await context.resume();
  return { context, node, stream };
}

function level(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / Math.max(1, samples.length));
}

function setBar(id, fraction) { $(id).style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`; }

function onInput(frames) {
  if (wanted) setBar("input-bar", level(frames) * 4);
  let offset = 0;
  while (offset < frames.length) {
    const take = Math.min(BLOCK - pendingFill, frames.length - offset);
    pending.set(frames.subarray(offset, offset + take), pendingFill);
    pendingFill += take;
    offset += take;
    if (pendingFill === BLOCK) {
      if (ready && socket && socket.readyState === WebSocket.OPEN) {
        socket.send(pending.buffer.slice(0));
        stats.sentBlocks++;
      }
      pendingFill = 0;
    }
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token() ? `?token=${encodeURIComponent(token())}` : "";
  socket = new WebSocket(`${scheme}://${location.host}/v1/stream${query}`);
  socket.binaryType = "arraybuffer";
  setStatus("connecting…", "connecting");
  socket.onopen = () => socket.send(JSON.stringify({
    type: "open", protocol: 1, checkpoint: $("checkpoint").value || "default",
    seed: Number($("seed").value) || 0, sample_rate: audio.context.sampleRate, format: "float32",
  }));
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return onAccompaniment(new Float32Array(event.data));
    const message = JSON.parse(event.data);
    if (message.type === "ready") onReady(message);
    else if (message.type === "telemetry") onTelemetry(message);
    else if (message.type === "error") showError(`Server: ${message.message}`);
  };
  socket.onclose = (event) => {
    ready = null;
    clearMeters();
    if (!wanted) return;
    const why = CLOSE_REASONS[event.code] || `closed (${event.code})`;
    const fatal = [4400, 4401, 4403, 4426].includes(event.code);
    if (fatal) { showError(`Stopped: ${why}. ${event.reason || ""}`); stop(); return; }
    showError(`Connection lost: ${why}. Reconnecting in ${retryDelay} s…`);
    setStatus("reconnecting", "connecting");
    setTimeout(() => { if (wanted) { stats.reconnects++; connect(); } }, retryDelay * 1000);
    retryDelay = Math.min(retryDelay * 2, 8);
  };
}

function onReady(message) {
  ready = message;
  hopMs = (1000 * message.hop_samples) / message.model_sample_rate;
  retryDelay = 1;
  showError("");
  setStatus(`live · ${message.checkpoint}`, "live");
  $("steering").hidden = !(message.steering || []).length;
  for (const name of STEER_KNOBS) $(`steer-${name}`).parentElement.hidden = !(message.steering || []).includes(name);
  audio.node.port.postMessage({ prefill: 2 * BLOCK }); // jitter buffer: two hops
  sendControls();
}

function onAccompaniment(samples) {
  audio.node.port.postMessage(samples);
  stats.receivedSamples += samples.length;
  const rms = level(samples);
  stats.receivedEnergy += rms * rms * samples.length;
  setBar("output-bar", rms * 4);
}

function onTelemetry(t) {
  stats.telemetry++;
  const instruction = $("instruction");
  instruction.textContent = t.instruction || "";
  instruction.hidden = !t.instruction;
  const buffered = (2 * BLOCK) / audio.context.sampleRate * 1000;
  $("latency").textContent = `${(t.latency_ms + buffered).toFixed(1)} ms `;
  const server = document.createElement("small"); // the part `bandmate client stream` reports
  server.textContent = `server ${t.latency_ms.toFixed(1)}`;
  $("latency").appendChild(server);
  $("latency").title = `the server's ${t.latency_ms.toFixed(1)} ms + this page's jitter buffer ${buffered.toFixed(1)} ms, plus the network`;
  $("compute").textContent = `${t.p50_ms.toFixed(2)} / ${t.p99_ms.toFixed(2)} ms`;
  // Over the hop, the server cannot keep up: some hops come late and the band drops out.
  warn("compute", hopMs !== null && t.p99_ms > hopMs, `p99 above the hop (${hopMs?.toFixed(1)} ms): the server is not keeping up`);
  $("rtf").textContent = t.real_time_factor.toFixed(3);
  setBar("rtf-bar", t.real_time_factor);
  $("misses").textContent = String(t.misses);
  warn("misses", t.misses > 0, "hops that came too late: the band dropped out there");
  $("dropped").textContent = String(t.dropped_messages);
  $("valence-meter").hidden = t.valence === null; // only while an EEG loop sends it
  $("valence").textContent = t.valence === null ? "—" : t.valence.toFixed(2);
  setBar("valence-bar", t.valence === null ? 0 : (t.valence + 1) / 2);
}

function warn(id, on, why) { $(id).classList.toggle("warn", on); $(id).title = on ? why : ""; }

// When the stream stops, the figures of the last one must not look live.
function clearMeters() {
  for (const id of ["latency", "compute", "rtf", "misses", "dropped", "valence"]) {
    $(id).textContent = "—";
    warn(id, false, "");
  }
  for (const id of ["rtf-bar", "valence-bar", "input-bar", "output-bar"]) setBar(id, 0);
  $("valence-meter").hidden = true;
  $("instruction").hidden = true;
}

function sendControl(name, value) {
  if (ready && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "control", name, value }));
  }
}

const STEER_KNOBS = ["brightness", "density", "register", "loudness"];

function sendSteer(alphas) {
  if (ready && socket && socket.readyState === WebSocket.OPEN && Object.keys(alphas).length) {
    socket.send(JSON.stringify({ type: "steer", alphas }));
  }
}

function sendControls() {
  for (const name of ["gain", "dry_wet", "noise_scale"]) sendControl(name, Number($(name).value));
  // Only what this checkpoint steers: the knobs show only then (ready.steering).
  const alphas = {};
  for (const name of STEER_KNOBS) {
    if ((ready.steering || []).includes(name)) alphas[name] = Number($(`steer-${name}`).value);
  }
  sendSteer(alphas);
}

async function start() {
  showError("");
  $("start").disabled = true;
  try {
    audio = audio || await startAudio();
  } catch (error) {
    showError(`No microphone: ${error.message || error}`);
    $("start").disabled = false;
    return;
  }
  wanted = true;
  $("stop").disabled = false;
  $("reset").disabled = false;
  connect();
}

function stop() {
  wanted = false;
  if (socket) socket.close(1000, "stopped");
  if (audio) { audio.stream.getTracks().forEach((t) => t.stop()); audio.context.close(); audio = null; }
  ready = null;
  clearMeters();
  setStatus("not connected", "idle");
  $("start").disabled = false;
  $("stop").disabled = true;
  $("reset").disabled = true;
}

for (const name of ["gain", "dry_wet", "noise_scale"]) {
  $(name).addEventListener("input", () => {
    $(`${name}-value`).textContent = Number($(name).value).toFixed(2);
    sendControl(name, Number($(name).value));
  });
}
// One knob per attribute, -2..2 (0: unsteered), built here rather than written out four times.
for (const name of STEER_KNOBS) {
  const box = document.createElement("div");
  box.className = "knob";
  box.innerHTML = `<label for="steer-${name}">${name[0].toUpperCase() + name.slice(1)}</label>
    <input id="steer-${name}" type="range" min="-2" max="2" step="0.05" value="0">
    <output id="steer-${name}-value">0.00</output>`;
  $("steering").append(box);
  const knob = $(`steer-${name}`);
  knob.addEventListener("input", () => {
    $(`steer-${name}-value`).textContent = Number(knob.value).toFixed(2);
    sendSteer({ [name]: Number(knob.value) });
  });
}
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("reset").addEventListener("click", () => { if (socket && ready) socket.send(JSON.stringify({ type: "reset" })); });
$("token").addEventListener("change", loadCheckpoints);
loadCheckpoints();
