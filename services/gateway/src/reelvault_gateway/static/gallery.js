// The gallery: requests videos and shows them, newest first, through the public API only.
// It signs in once with a key (POST /v1/session) and then relies on the session cookie, which
// scripts cannot read: the key is never kept (no storage, no URL). Cards follow their videos
// live over Server-Sent Events (GET /v1/events), without reloading.
"use strict";

const PAGE_SIZE = 24;
// What the gateway accepts when it does not publish its models (GET /v1/models answers 404).
const BUILT_IN_MODELS = [
  { id: "sora-2", sizes: ["720x1280", "1280x720"], seconds: ["4", "8", "12"],
    seconds_by_size: {}, max_images: 2, usd_per_second: "0.10", default: true },
  { id: "sora-2-pro", sizes: ["720x1280", "1280x720", "1024x1792", "1792x1024", "1920x1080", "1080x1920"],
    seconds: ["4", "8", "12"], seconds_by_size: {}, max_images: 2, usd_per_second: "0.30" },
];
const STATE_EVENTS = new Set(["video.requested", "video.generation.started", "video.completed",
  "video.archive.requested", "video.stored", "video.failed", "video.cancel.requested"]);
const EVENT_TYPES = [...STATE_EVENTS, "video.generation.progress", "video.deleted"];
// What status an event implies, to know when the catalog has caught up with it.
const IMPLIES = { "video.stored": "completed", "video.failed": "failed" };

const state = {
  models: [], cursor: null, filter: "", cards: new Map(),
  events: null, lastEventId: null, retryMs: 1000, retryTimer: null, deleteAvailable: true,
};

class SignedOut extends Error {}

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text; // textContent only: prompts are user input
  return node;
}

async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status}.`;
}

// Every API call: same-origin with the session cookie; a 401 means signing in (again).
async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin", headers: { Accept: "application/json" }, ...options,
  });
  if (response.status === 401) {
    showSignIn(await apiError(response));
    throw new SignedOut("Signed out.");
  }
  return response;
}

// --- session -----------------------------------------------------------------------------------
function showSignIn(message = "") {
  stopLive();
  $("app").hidden = true;
  $("account").hidden = true;
  $("gallery").replaceChildren();
  state.cards.clear();
  $("signin").hidden = false;
  $("signin-status").textContent = message;
  $("signin-key").focus();
}

async function checkSession() {
  try {
    const response = await api("/v1/session");
    if (!response.ok) throw new Error(await apiError(response));
    const session = await response.json();
    $("signin").hidden = true;
    $("account-label").textContent = `${session.org}`;
    $("account-label").title = `Scopes: ${session.scopes.join(", ")}`;
    $("account").hidden = false;
    $("app").hidden = false;
    await loadModels();
    await startLive(); // first, so nothing that happens while the list loads is missed
    await loadGallery(true);
  } catch (err) {
    if (!(err instanceof SignedOut)) showSignIn(`Could not reach reelvault: ${err.message}`);
  }
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const status = $("signin-status");
  const key = form.key.value.trim();
  form.reset(); // the key leaves the page at once; the cookie takes its place
  if (!key) { status.textContent = "Enter an API key."; return; }
  status.textContent = "Signing in…";
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const response = await fetch("/v1/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ key }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    status.textContent = "";
    await checkSession();
  } catch (err) {
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  stopLive();
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
  showSignIn("Signed out.");
}

// --- models: only choices the chosen model accepts --------------------------------------------
async function loadModels() {
  state.models = BUILT_IN_MODELS;
  $("models-note").textContent = "";
  try {
    const response = await api("/v1/models");
    if (response.ok) {
      const listed = (await response.json()).data || [];
      if (listed.length) state.models = listed;
    } else if (response.status !== 404) {
      $("models-note").textContent = "Could not load the models; showing the usual ones.";
    }
  } catch (err) {
    if (err instanceof SignedOut) throw err;
    $("models-note").textContent = "Could not load the models; showing the usual ones.";
  }
  const select = $("model");
  const previous = select.value;
  select.replaceChildren(...state.models.map((m) => el("option", { value: m.id }, m.id)));
  const preferred = state.models.find((m) => m.id === previous) ||
    state.models.find((m) => m.default) || state.models[0];
  if (preferred) select.value = preferred.id;
  onModelChange();
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function sizeLabel(size) {
  const [w, h] = size.split("x").map(Number);
  const shape = w > h ? "wide" : w < h ? "tall" : "square";
  return `${w}×${h} ${shape}`;
}

function fillSelect(select, values, label, keep) {
  select.replaceChildren(...values.map((v) => el("option", { value: v }, label(v))));
  if (values.includes(keep)) select.value = keep;
}

function onModelChange() {
  const model = currentModel();
  if (!model) return;
  fillSelect($("size"), model.sizes, sizeLabel, $("size").value);
  onSizeChange();
  const maxImages = Number(model.max_images ?? 2);
  ["image1", "image2"].forEach((name, index) => {
    const input = $(name);
    input.disabled = index >= maxImages;
    input.closest(".picker").classList.toggle("disabled", input.disabled);
    if (input.disabled) clearPicker(name);
  });
}

function onSizeChange() {
  const model = currentModel();
  if (!model) return;
  const allowed = (model.seconds_by_size || {})[$("size").value] || model.seconds;
  fillSelect($("seconds"), allowed, (s) => `${s} s`, $("seconds").value);
  showEstimate();
}

function showEstimate() {
  const model = currentModel();
  const price = model && Number(model.usd_per_second);
  const seconds = Number($("seconds").value);
  $("estimate").textContent = price && seconds ? `About $${(price * seconds).toFixed(2)}` : "";
}

function clearPicker(name) {
  $(name).value = "";
  const preview = $(`preview${name.slice(-1)}`);
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.hidden = true;
  const picker = $(name).closest(".picker");
  picker.classList.remove("filled");
  picker.querySelector(".picker-text").textContent = `Image ${name.slice(-1)}`;
}

function onPick(event) {
  const input = event.target;
  const file = input.files[0];
  if (!file) { clearPicker(input.name); return; }
  const preview = $(`preview${input.name.slice(-1)}`);
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const picker = input.closest(".picker");
  picker.classList.add("filled");
  picker.querySelector(".picker-text").textContent = file.name;
}

// --- creating ------------------------------------------------------------------------------------
function checkPrompt() {
  const prompt = $("prompt");
  $("prompt-count").textContent = String(prompt.value.length);
  const blank = !prompt.value.trim();
  prompt.setAttribute("aria-invalid", blank && prompt.dataset.touched ? "true" : "false");
  $("prompt-error").textContent = blank && prompt.dataset.touched ? "Describe the video first." : "";
  return !blank;
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  const response = await api("/v1/uploads", { method: "POST", body: form });
  if (!response.ok) throw new Error(`${file.name}: ${await apiError(response)}`);
  return (await response.json()).key;
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const status = $("form-status");
  form.prompt.dataset.touched = "1";
  if (!checkPrompt()) { form.prompt.focus(); return; }
  const button = $("create-button");
  button.disabled = true;
  status.className = "status";
  try {
    const files = [form.image1, form.image2].filter((i) => !i.disabled && i.files[0])
      .map((i) => i.files[0]);
    const keys = [];
    for (const [index, file] of files.entries()) {
      status.textContent = `Uploading image ${index + 1} of ${files.length}…`;
      keys.push(await upload(file));
    }
    status.textContent = "Sending…";
    const response = await api("/v1/videos", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        prompt: form.prompt.value, model: form.model.value, seconds: form.seconds.value,
        size: form.size.value, reference_images: keys,
      }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    const video = await response.json();
    status.textContent = "Queued: it appears below and updates by itself.";
    form.prompt.value = "";
    delete form.prompt.dataset.touched;
    checkPrompt();
    clearPicker("image1");
    clearPicker("image2");
    placeCard(video, { top: true });
  } catch (err) {
    if (err instanceof SignedOut) return;
    status.className = "status error";
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

// --- the gallery -----------------------------------------------------------------------------------
function formatWhen(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "" : when.toLocaleString(undefined,
    { dateStyle: "medium", timeStyle: "short" });
}

function media(video) {
  const box = el("div", { class: "media" });
  const [w, h] = String(video.size || "").split("x").map(Number);
  if (w > 0 && h > 0) box.style.aspectRatio = `${w} / ${h}`;
  if (video.status === "completed") {
    const player = el("video", { controls: "", preload: "metadata", playsinline: "",
      src: `/v1/videos/${video.id}/content`, "aria-label": `Video: ${video.prompt.slice(0, 80)}` });
    if (video.thumbnail_url) player.setAttribute("poster", video.thumbnail_url);
    box.append(player);
  } else if (video.status === "failed") {
    box.append(el("div", { class: "placeholder" }, "This video could not be made."));
  } else {
    const holder = el("div", { class: "placeholder" });
    const label = video.status === "queued" ? "Waiting for its turn…" : "Generating…";
    holder.append(el("span", { class: "progress-label" }, label));
    const bar = el("progress", { max: "100", "aria-label": "Progress" });
    if (video.status === "processing" && video.progress) bar.value = video.progress;
    else bar.removeAttribute("value"); // indeterminate until the provider reports
    holder.append(bar);
    box.append(holder);
  }
  return box;
}

function card(video) {
  const box = el("article", { class: "card", "data-id": video.id, "data-status": video.status });
  box.append(media(video));
  const body = el("div", { class: "body" });
  body.append(el("span", { class: `badge ${video.status}` }, video.status));
  const prompt = el("p", { class: "prompt", id: `prompt-${video.id}` }, video.prompt);
  body.append(prompt);
  if (video.prompt.length > 140 || video.prompt.split("\n").length > 3) {
    const toggle = el("button", { type: "button", class: "more-toggle",
      "aria-expanded": "false", "aria-controls": prompt.id }, "Show more");
    toggle.addEventListener("click", () => {
      const open = prompt.classList.toggle("open");
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "Show less" : "Show more";
    });
    body.append(toggle);
  }
  body.append(el("p", { class: "facts" },
    `${video.model} · ${video.seconds}s · ${video.size} · ${formatWhen(video.created_at)}`));
  if (video.status === "failed" && video.error_message) {
    body.append(el("p", { class: "error-text" }, video.error_message));
  }
  const actions = el("div", { class: "actions" });
  if (video.status === "completed") {
    actions.append(el("a", { href: `/v1/videos/${video.id}/content`, download: `${video.id}.mp4`,
      class: "download" }, "Download"));
  }
  const remove = el("button", { type: "button", class: "delete",
    "aria-label": `Delete video: ${video.prompt.slice(0, 60)}` }, "Delete");
  remove.disabled = !state.deleteAvailable;
  if (!state.deleteAvailable) remove.title = "Deleting is not available on this server.";
  remove.addEventListener("click", () => deleteVideo(video.id, remove));
  actions.append(remove);
  body.append(actions);
  box.append(body);
  return box;
}

function matchesFilter(video) {
  return !state.filter || video.status === state.filter;
}

// Put a video's card in place: replace its card, or add it (on top for new ones).
function placeCard(video, { top = false } = {}) {
  const grid = $("gallery");
  const existing = state.cards.get(video.id);
  if (!matchesFilter(video)) {
    if (existing) { existing.remove(); state.cards.delete(video.id); }
    updateEmptyState();
    return;
  }
  const fresh = card(video);
  // A card whose video is playing keeps its player; only the text around it changes.
  if (existing) existing.replaceWith(fresh);
  else if (top) grid.prepend(fresh);
  else grid.append(fresh);
  state.cards.set(video.id, fresh);
  updateEmptyState();
}

function updateEmptyState() {
  const stateBox = $("gallery-state");
  if (stateBox.dataset.kind === "error" || stateBox.dataset.kind === "loading") return;
  if (state.cards.size === 0) {
    stateBox.className = "state empty";
    stateBox.textContent = state.filter
      ? `No ${state.filter} videos.`
      : "No videos yet. Describe one on the left and it shows up here.";
  } else {
    stateBox.className = "state";
    stateBox.textContent = "";
  }
}

function setGalleryState(kind, text) {
  const box = $("gallery-state");
  box.dataset.kind = kind;
  box.className = kind === "error" ? "state error" : "state";
  box.textContent = text;
  if (kind === "error") {
    const retry = el("button", { type: "button", class: "ghost" }, "Try again");
    retry.addEventListener("click", () => loadGallery(true));
    box.append(" ", retry);
  }
}

function skeletons(count) {
  return Array.from({ length: count }, () => {
    const box = el("div", { class: "card skeleton", "aria-hidden": "true" });
    box.append(el("div", { class: "media" }), el("div", { class: "line" }), el("div", { class: "line" }));
    return box;
  });
}

async function loadGallery(reset) {
  const grid = $("gallery");
  const more = $("load-more");
  if (reset) {
    state.cursor = null;
    state.cards.clear();
    grid.replaceChildren(...skeletons(3));
  }
  setGalleryState("loading", reset ? "Loading your videos…" : "");
  grid.setAttribute("aria-busy", "true");
  more.disabled = true;
  try {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.filter) params.set("status", state.filter);
    if (!reset && state.cursor) params.set("cursor", state.cursor);
    const response = await api(`/v1/videos?${params}`);
    if (!response.ok) throw new Error(await apiError(response));
    const page = await response.json();
    if (reset) grid.replaceChildren();
    for (const video of page.data) {
      if (!state.cards.has(video.id)) placeCard(video);
    }
    state.cursor = page.next_cursor;
    more.hidden = !state.cursor;
    setGalleryState("", "");
    updateEmptyState();
  } catch (err) {
    if (err instanceof SignedOut) return;
    if (reset) grid.replaceChildren();
    setGalleryState("error", `Could not load your videos: ${err.message}`);
  } finally {
    grid.setAttribute("aria-busy", "false");
    more.disabled = false;
  }
}

async function deleteVideo(id, button) {
  const dialog = $("confirm-delete");
  dialog.returnValue = "";
  dialog.showModal();
  const choice = await new Promise((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (choice !== "delete") { button.focus(); return; }
  button.disabled = true;
  button.textContent = "Deleting…";
  try {
    const response = await api(`/v1/videos/${id}`, { method: "DELETE" });
    if (response.status === 405 || (response.status === 404 && (await isKnown(id)))) {
      state.deleteAvailable = false;
      button.textContent = "Delete";
      button.title = "Deleting is not available on this server.";
      setFormNote("Deleting is not available on this server.");
      return;
    }
    if (!response.ok && response.status !== 404) throw new Error(await apiError(response));
    removeCard(id);
  } catch (err) {
    if (err instanceof SignedOut) return;
    button.disabled = false;
    button.textContent = "Delete";
    setFormNote(`Could not delete: ${err.message}`);
  }
}

// A 404 to DELETE means "already gone" or, on a server without the route, "no such route":
// a video that still reads means the latter.
async function isKnown(id) {
  const response = await api(`/v1/videos/${id}`);
  return response.ok;
}

function setFormNote(text) {
  const status = $("gallery-state");
  status.dataset.kind = "";
  status.className = "state error";
  status.textContent = text;
}

function removeCard(id) {
  const existing = state.cards.get(id);
  if (existing) {
    existing.remove();
    state.cards.delete(id);
  }
  updateEmptyState();
}

// --- live updates --------------------------------------------------------------------------------
function setLive(kind, text) {
  const live = $("live");
  live.dataset.state = kind;
  live.textContent = text;
}

function stopLive() {
  clearTimeout(state.retryTimer);
  if (state.events) state.events.close();
  state.events = null;
  setLive("off", "Offline");
}

// Resolves once the stream is open (or after 3 s: the gallery loads anyway).
function startLive() {
  stopLive();
  const after = state.lastEventId !== null ? `?after=${encodeURIComponent(state.lastEventId)}` : "";
  const source = new EventSource(`/v1/events${after}`, { withCredentials: true });
  state.events = source;
  setLive("retry", "Connecting…");
  const opened = new Promise((resolve) => {
    source.addEventListener("open", resolve, { once: true });
    setTimeout(resolve, 3000);
  });
  source.addEventListener("open", () => {
    state.retryMs = 1000;
    setLive("on", "Live");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (signed out, too many streams, unavailable): check the session, then retry.
      setLive("retry", "Reconnecting…");
      state.retryTimer = setTimeout(async () => {
        try {
          const response = await api("/v1/session");
          if (response.ok) startLive();
        } catch (_) { /* signed out: the sign-in form shows */ }
      }, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 30000);
    } else {
      setLive("retry", "Reconnecting…"); // the browser retries with Last-Event-ID itself
    }
  });
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      state.lastEventId = message.lastEventId || state.lastEventId;
      onEvent(type, JSON.parse(message.data));
    });
  }
  return opened;
}

const pending = new Map();

function onEvent(type, event) {
  const id = event.video_id;
  if (!id) return;
  if (type === "video.deleted") { removeCard(id); return; }
  const existing = state.cards.get(id);
  if (type === "video.generation.progress" && existing) {
    const bar = existing.querySelector("progress");
    if (bar) bar.value = event.progress;
    const label = existing.querySelector(".progress-label");
    if (label) label.textContent = `Generating… ${event.progress}%`;
    if (existing.dataset.status === "queued") refresh(id, type);
    return;
  }
  if (STATE_EVENTS.has(type)) refresh(id, type);
}

// Fetch the video again after an event; the catalog projects the same events, so it may be a
// moment behind: ask again a few times until it shows what the event implies.
function refresh(id, type, attempt = 0) {
  clearTimeout(pending.get(id));
  pending.set(id, setTimeout(async () => {
    pending.delete(id);
    try {
      const response = await api(`/v1/videos/${id}`);
      if (response.status === 404) { removeCard(id); return; }
      if (!response.ok) throw new Error(await apiError(response));
      const video = await response.json();
      const known = state.cards.has(id);
      if (known || type === "video.requested") placeCard(video, { top: !known });
      const wanted = IMPLIES[type];
      if (wanted && video.status !== wanted && attempt < 8) refresh(id, type, attempt + 1);
    } catch (err) {
      if (!(err instanceof SignedOut) && attempt < 8) refresh(id, type, attempt + 1);
    }
  }, attempt === 0 ? 50 : 400 * attempt));
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("create-form").addEventListener("submit", submit);
  $("prompt").addEventListener("input", checkPrompt);
  $("prompt").addEventListener("blur", (e) => { if (e.target.value) e.target.dataset.touched = "1"; checkPrompt(); });
  $("model").addEventListener("change", onModelChange);
  $("size").addEventListener("change", onSizeChange);
  $("seconds").addEventListener("change", showEstimate);
  $("image1").addEventListener("change", onPick);
  $("image2").addEventListener("change", onPick);
  $("status-filter").addEventListener("change", (e) => { state.filter = e.target.value; loadGallery(true); });
  $("refresh").addEventListener("click", () => loadGallery(true));
  $("load-more").addEventListener("click", () => loadGallery(false));
  checkSession();
});
