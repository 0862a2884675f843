// The gallery: lists videos newest first and requests new ones through the public /v1 API.
// Only relative URLs and no credentials: everything goes through the gateway.
"use strict";

const TERMINAL = new Set(["completed", "failed"]);
let refreshTimer = null;

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
    const response = await fetch("/v1/videos?limit=100", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(await apiError(response));
    const page = await response.json();
    grid.replaceChildren(...page.data.map(card));
    status.textContent = page.data.length ? "" : "No videos yet.";
    clearTimeout(refreshTimer);
    if (page.data.some((v) => !TERMINAL.has(v.status))) refreshTimer = setTimeout(loadGallery, 4000);
  } catch (err) {
    status.textContent = `Could not load videos: ${err.message}`;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(loadGallery, 8000);
  }
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  const response = await fetch("/v1/uploads", { method: "POST", body: form });
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
    const response = await fetch("/v1/videos", {
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
  document.getElementById("create-form").addEventListener("submit", submit);
  document.getElementById("refresh").addEventListener("click", loadGallery);
  loadGallery();
});
