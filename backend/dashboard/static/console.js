/* The console's shared parts: the JSON API, the API key, the event stream, toasts and small helpers.
   Plain JavaScript, no build step; every page script uses the global `Refit`. */
"use strict";

const Refit = (() => {
  const KEY = "refit.apiKey";
  const body = document.body.dataset;
  const models = body.models ? body.models.split(",") : [];
  const handlers = {history: [], job: [], notification: []};
  let authRequired = false;
  let source = null;

  function apiKey() { return sessionStorage.getItem(KEY) || ""; }

  /* One call to the JSON API; an error envelope becomes an Error with code, status and details. */
  async function api(method, path, payload) {
    const headers = {"Accept": "application/json"};
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && apiKey()) headers["Authorization"] = "Bearer " + apiKey();
    const response = await fetch(path, {method, headers, body: payload === undefined ? undefined : JSON.stringify(payload)});
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : null;
    if (!response.ok) {
      const error = (data && data.error) || {};
      const failure = new Error(error.message || response.statusText);
      failure.status = response.status;
      failure.code = error.code || "http_" + response.status;
      failure.details = error.details || {};
      if (response.status === 401) { forgetKey(); toast("error", "API key refused", failure.message); }
      throw failure;
    }
    return data;
  }

  /* A mutating call from a button: the outcome is told in a toast; returns the answer or null. */
  async function act(what, method, path, payload) {
    try {
      const answer = await api(method, path, payload);
      toast("success", what, "done");
      return answer;
    } catch (failure) {
      if (failure.status !== 401) toast("error", what + " failed", failure.message);
      return null;
    }
  }

  // -- the API key: asked for once (kept for this tab) when /health says one is required ------------
  function guardButtons() {
    const missing = authRequired && !apiKey();
    document.querySelectorAll("[data-action]").forEach(button => {
      if (button.dataset.unavailable) return;  // disabled for a reason of its own
      button.disabled = missing;
      button.title = missing ? "Enter the API key (top right) first: this server requires one for changes" : "";
    });
    document.getElementById("key-box").hidden = !authRequired;
    document.getElementById("key-form").hidden = !authRequired || !!apiKey();
    document.getElementById("key-set").hidden = !authRequired || !apiKey();
  }

  function forgetKey() { sessionStorage.removeItem(KEY); guardButtons(); }

  function setupKey() {
    document.getElementById("key-form").addEventListener("submit", event => {
      event.preventDefault();
      const value = document.getElementById("key-input").value.trim();
      if (value) sessionStorage.setItem(KEY, value);
      document.getElementById("key-input").value = "";
      guardButtons();
    });
    document.getElementById("key-forget").addEventListener("click", forgetKey);
  }

  // -- the event stream -------------------------------------------------------------------------------
  function on(kind, handler) { handlers[kind].push(handler); }

  function listen(model) {
    const live = document.getElementById("live");
    source = new EventSource("/api/events" + (model ? "?model=" + encodeURIComponent(model) : ""));
    source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    for (const kind of Object.keys(handlers)) {
      source.addEventListener(kind, message => {
        const data = JSON.parse(message.data);
        for (const handler of handlers[kind]) handler(data, Number(message.lastEventId));
      });
    }
  }

  // -- toasts: every notification, as it arrives ------------------------------------------------------
  function toast(level, title, message) {
    const box = document.createElement("div");
    box.className = "toast toast-" + level;
    box.setAttribute("role", "status");
    box.append(el("strong", {}, title), el("span", {}, message || ""));
    box.addEventListener("click", () => box.remove());
    document.getElementById("toasts").append(box);
    setTimeout(() => box.remove(), 10000);
  }

  // -- helpers ----------------------------------------------------------------------------------------
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(value, digits = 4) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
    return String(value);
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString();
  }

  function ago(iso) {
    if (!iso) return "–";
    const seconds = (new Date(iso) - Date.now()) / 1000;
    const magnitude = Math.abs(seconds);
    const text = magnitude < 90 ? Math.round(magnitude) + " s" : magnitude < 5400 ? Math.round(magnitude / 60) + " min"
      : Math.round(magnitude / 3600) + " h";
    return seconds >= 0 ? "in " + text : text + " ago";
  }

  /* Call `fn` at most once per `ms`, after the last request (several events in a burst: one reload). */
  function debounce(fn, ms = 300) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  const TERMINAL = new Set(["completed", "skipped", "failed", "cancelled"]);

  async function start() {
    setupKey();
    try {
      authRequired = !!(await api("GET", "/health")).auth_required;
    } catch (failure) {
      toast("error", "Server unreachable", failure.message);
    }
    guardButtons();
    on("notification", note => toast(note.level, note.model + ": " + note.event_type, note.message));
  }

  const ready = start();

  return {api, act, on, listen, toast, el, fmt, when, ago, debounce, guardButtons, ready, models, TERMINAL,
          page: body.page, model: body.model || null, features: {experiments: !!body.experiments, promote: !!body.promote},
          eventTypes: body.eventTypes ? body.eventTypes.split(",") : []};
})();
