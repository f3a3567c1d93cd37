/* The history log as it is written, filterable by model and event type (kept in the address). */
"use strict";

(() => {
  const {api, el, when} = Refit;
  const modelSelect = document.getElementById("filter-model");
  const typeSelect = document.getElementById("filter-type");
  const model = modelSelect.value || null;
  const type = typeSelect.value || null;

  function details(event) {
    const d = event.details || {};
    return Object.entries(d).filter(([, v]) => v !== null && typeof v !== "object")
      .slice(0, 8).map(([k, v]) => `${k} ${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : v}`).join(", ");
  }

  function row(event, fresh) {
    return el("tr", {class: (fresh ? "fresh " : "") + "event-" + event.event_type.toLowerCase()},
      el("td", {}, when(event.timestamp)), el("td", {}, event.model),
      el("td", {}, el("span", {class: "badge"}, event.event_type)), el("td", {}, event.message),
      el("td", {class: "details"}, details(event)));
  }

  function matches(event) {
    return (!model || event.model === model) && (!type || event.event_type === type);
  }

  for (const select of [modelSelect, typeSelect]) {
    select.addEventListener("change", () => {
      const query = new URLSearchParams();
      if (modelSelect.value) query.set("model", modelSelect.value);
      if (typeSelect.value) query.set("event_type", typeSelect.value);
      window.location.search = query.toString();  // the filter is in the address, so it can be shared
    });
  }

  const body = document.querySelector("#history tbody");
  const seen = new Set();  // an event both streamed and read from the log is shown once
  const key = event => `${event.timestamp}|${event.model}|${event.event_type}`;
  Refit.on("history", event => {
    if (!matches(event) || seen.has(key(event))) return;
    seen.add(key(event));
    body.prepend(row(event, true));
  });

  Refit.ready.then(async () => {
    Refit.listen(model);
    const names = model ? [model] : Refit.models;
    const query = "limit=200" + (type ? "&event_type=" + encodeURIComponent(type) : "");
    const lists = await Promise.all(names.map(name => api("GET", `/api/${name}/training/history?${query}`)));
    const events = lists.flatMap(list => list.events).sort((a, b) => b.timestamp.localeCompare(a.timestamp));
    const live = [...body.children];  // events that arrived while the log was read stay on top
    const older = events.filter(event => !seen.has(key(event))).slice(0, 200);
    older.forEach(event => seen.add(key(event)));
    body.replaceChildren(...live, ...older.map(event => row(event, false)));
  }).catch(failure => Refit.toast("error", "History", failure.message));
})();
