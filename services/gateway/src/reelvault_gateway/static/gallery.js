// The gallery: lists videos newest first and requests new ones through the public /v1 API.
// Only relative URLs. It signs in once with a key (POST /v1/session) and then relies on the
// session cookie, which scripts cannot read: the key is never kept (no storage, no URL).
"use strict";

const TERMINAL = new Set(["completed", "failed"]);
let refreshTimer = null;

class SignedOut extends Error {}

// Every API call: same-origin with the session cookie; a 401 means signing in (again).
async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    showSignIn(await apiError(response));
    throw new SignedOut("Signed out.");
  }
  return response;
}

function showSignIn(message = "") {
  clearTimeout(refreshTimer);
  document.getElementById("app").hidden = true;
  document.getElementById("account").hidden = true;
  document.getElementById("gallery").replaceChildren();
  document.getElementById("signin").hidden = false;
  document.getElementById("signin-status").textContent = message;
}

function showApp(session) {
  document.getElementById("signin").hidden = true;
  document.getElementById("account-label").textContent =
    `Signed in to ${session.org} (${session.scopes.join(", ")})`;
  document.getElementById("account").hidden = false;
  document.getElementById("app").hidden = false;
}

async function checkSession() {
  try {
    const response = await api("/v1/session", { headers: { Accept: "application/json" } });
    if (!response.ok) {
      showSignIn(await apiError(response));
      return;
    }
    showApp(await response.json());
    await loadGallery();
  } catch (err) {
    if (!(err instanceof SignedOut)) showSignIn(`Could not reach reelvault: ${err.message}`);
  }
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const status = document.getElementById("signin-status");
  const key = form.key.value.trim();
  form.reset(); // the key leaves the page at once; the cookie takes its place
  status.textContent = "Signing in…";
  try {
    const response = await fetch("/v1/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    status.textContent = "";
    await checkSession();
  } catch (err) {
    status.textContent = err.message;
  }
}

async function signOut() {
  await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
  showSignIn("Signed out.");
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text; // textContent only: prompts are user input
  return node;
}

async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error.message} (${body.error.code})`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

function card(video) {
  const box = el("article", { class: "card" });
  if (video.status === "completed" && video.video_url) {
    const player = el("video", {
      controls: "", preload: "none", playsinline: "",
      src: `/v1/videos/${video.id}/content`,
    });
    if (video.thumbnail_url) player.setAttribute("poster", video.thumbnail_url);
    box.append(player);
  } else if (video.thumbnail_url) {
    box.append(el("img", { src: video.thumbnail_url, alt: "thumbnail" }));
  } else {
    const label = video.status === "failed" ? "failed" : `${video.status} ${video.progress || 0}%`;
    box.append(el("div", { class: "placeholder" }, label));
  }
  // Show each video in its own shape (1280x720 is landscape, 720x1280 portrait).
  const [width, height] = String(video.size || "").split("x").map(Number);
  if (width > 0 && height > 0) box.firstChild.style.aspectRatio = `${width} / ${height}`;
  const meta = el("div", { class: "meta" });
  meta.append(el("span", { class: `badge ${video.status}` }, video.status));
  meta.append(el("p", { class: "prompt" }, video.prompt));
  meta.append(el("small", {}, `${video.model} · ${video.seconds}s · ${video.size} · ` +
                             new Date(video.created_at).toLocaleString()));
  if (video.status === "failed" && video.error_message) {
    meta.append(el("p", { class: "error" }, video.error_message));
  }
  box.append(meta);
  return box;
}

async function loadGallery() {
  const status = document.getElementById("gallery-status");
  const grid = document.getElementById("gallery");
  try {
    const response = await api("/v1/videos?limit=100", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(await apiError(response));
    const page = await response.json();
    grid.replaceChildren(...page.data.map(card));
    status.textContent = page.data.length ? "" : "No videos yet.";
    clearTimeout(refreshTimer);
    if (page.data.some((v) => !TERMINAL.has(v.status))) refreshTimer = setTimeout(loadGallery, 4000);
  } catch (err) {
    if (err instanceof SignedOut) return;
    status.textContent = `Could not load videos: ${err.message}`;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(loadGallery, 8000);
  }
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
  const status = document.getElementById("form-status");
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const files = [form.image1.files[0], form.image2.files[0]].filter(Boolean);
    status.textContent = files.length ? "Uploading images…" : "Sending…";
    const keys = [];
    for (const file of files) keys.push(await upload(file));
    status.textContent = "Sending…";
    const response = await api("/v1/videos", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        prompt: form.prompt.value,
        model: form.model.value,
        seconds: form.seconds.value,
        size: form.size.value,
        reference_images: keys,
      }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    const video = await response.json();
    status.textContent = `Queued video ${video.id}.`;
    form.reset();
    await loadGallery();
  } catch (err) {
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin-form").addEventListener("submit", signIn);
  document.getElementById("signout").addEventListener("click", signOut);
  document.getElementById("create-form").addEventListener("submit", submit);
  document.getElementById("refresh").addEventListener("click", loadGallery);
  checkSession();
});
