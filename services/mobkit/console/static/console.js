// The console's shell: session and login, the hash router, live updates (SSE from
// WatchEvents, resumed by cursor), and the helpers every page uses.
import { PAGES } from "./pages.js";

const ACTION_HEADER = { "x-mobkit-console": "1", "content-type": "application/json" };
export const session = { actions: [], open: true, name: null };
const live = { source: null, cursor: 0, listeners: new Set() };
let refreshTimer = null;

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(`${error.reason || status}: ${error.message || "request failed"}`);
    this.status = status;
    this.reason = error.reason;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers = ACTION_HEADER;
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (response.status === 401) showLogin();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A POST whose answer is one JSON object per line (a streamed turn).
export async function apiLines(path, body, onLine) {
  const response = await fetch(path, { method: "POST", headers: ACTION_HEADER, body: JSON.stringify(body), credentials: "same-origin" });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onLine(JSON.parse(line));
    }
    if (done) return;
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const title = (state) => state ? state[0].toUpperCase() + state.slice(1) : "-";
export const can = (action) => session.actions.includes(action);

export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// Pages re-read what they show whenever an event arrives (debounced).
export function onEvent(listener) {
  live.listeners.add(listener);
  return () => live.listeners.delete(listener);
}

function connectLive() {
  if (live.source) live.source.close();
  const badge = document.getElementById("live");
  // EventSource resends the last id as Last-Event-ID on its own reconnects.
  const source = new EventSource(`/api/live?after=${live.cursor}`);
  live.source = source;
  source.addEventListener("ready", () => { badge.textContent = "live"; badge.classList.add("on"); });
  source.addEventListener("structural", (message) => {
    const event = JSON.parse(message.data);
    live.cursor = Math.max(live.cursor, event.cursor);
    for (const listener of live.listeners) listener(event);
    scheduleRefresh();
  });
  source.addEventListener("failed", (message) => {
    const error = JSON.parse(message.data);
    if (error.reason === "STALE_EVENT_CURSOR") live.cursor = 0;
  });
  source.onerror = () => { badge.textContent = "reconnecting"; badge.classList.remove("on"); };
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => current && current.refresh && current.refresh(), 150);
}

let current = null;
let started = false;

async function route() {
  const [, name = "fleet", ...rest] = location.hash.split("/");
  const page = PAGES[name] || PAGES.fleet;
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", link.getAttribute("href") === `#/${name}`);
  }
  if (current && current.leave) current.leave();
  const root = document.getElementById("page");
  root.replaceChildren();
  root.dataset.page = name;
  current = page(root, rest.map(decodeURIComponent));
  try {
    await current.refresh();
  } catch (error) {
    root.append(el("p", { class: "error" }, error.message));
  }
}

function showLogin() {
  document.getElementById("login").hidden = false;
  document.getElementById("page").hidden = true;
}

async function start() {
  try {
    Object.assign(session, await api("/api/session"));
  } catch (error) {
    if (error.status === 401) return showLogin();
    throw error;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("page").hidden = false;
  document.getElementById("who").textContent = session.open ? "open console" : `${session.name}`;
  document.getElementById("logout").hidden = session.open;
  const head = await api("/api/events?after=0").catch(() => null);
  live.cursor = head ? head.latest_cursor : 0;
  connectLive();
  if (!started) window.addEventListener("hashchange", route);
  started = true;
  await route();
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  try {
    await api("/api/login", { method: "POST", body: { token } });
    document.getElementById("token").value = "";
    await start();
  } catch (error) {
    document.getElementById("login-error").textContent = error.message;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" });
  location.reload();
});

start();
