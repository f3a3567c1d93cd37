/* Experiments (A/B tests) of every model: per-arm requests, labels and scores; start and stop them. */
"use strict";

(() => {
  if (!Refit.features.experiments) return;
  const {api, act, el, fmt, when, debounce} = Refit;

  function arms(experiment) {
    return Object.entries(experiment.arms || {}).map(([version, arm]) =>
      el("div", {class: "arm"}, el("strong", {}, version), ` ${arm.requests} / ${arm.labels} / ${fmt(arm.score)}`));
  }

  function stopCell(model, experiment) {
    if (experiment.status !== "running") return el("td", {}, "");
    const choice = el("select", {"aria-label": "promote on stop"}, el("option", {value: ""}, "keep the active version"),
      ...experiment.versions.map(v => el("option", {value: v}, `promote ${v}`)));
    const stop = el("button", {"data-action": "stop-experiment", onclick: () =>
      act(`Stop ${experiment.name}`, "POST", `/api/${model}/experiments/${experiment.id}/stop`,
          {promote: choice.value || null}).then(reload)}, "Stop");
    return el("td", {class: "row-actions"}, choice, stop);
  }

  async function load() {
    const lists = await Promise.all(Refit.models.map(async model =>
      ((await api("GET", `/api/${model}/experiments`)).experiments || []).map(e => ({model, e}))));
    const rows = lists.flat().sort((a, b) => (b.e.started_at || "").localeCompare(a.e.started_at || ""))
      .map(({model, e}) => el("tr", {"data-experiment": e.id, class: "status-" + e.status},
        el("td", {class: "mono"}, e.id), el("td", {}, model), el("td", {}, e.name),
        el("td", {}, el("span", {class: "badge " + e.status}, e.status)), el("td", {}, when(e.started_at)),
        el("td", {}, arms(e)), el("td", {}, e.winner || "–"), el("td", {}, fmt(e.p_value)), stopCell(model, e)));
    document.querySelector("#experiments tbody").replaceChildren(...rows);
    Refit.guardButtons();
  }
  const reload = debounce(() => load().catch(failure => Refit.toast("error", "Experiments", failure.message)));

  document.getElementById("start-form").addEventListener("submit", async event => {
    event.preventDefault();
    const model = document.getElementById("start-model").value;
    const versions = document.getElementById("start-versions").value.split(",").map(v => v.trim()).filter(Boolean);
    const splitText = document.getElementById("start-split").value.trim();
    const payload = {name: document.getElementById("start-name").value.trim(), versions};
    if (splitText) payload.split = splitText.split(",").map(Number);
    if (await act("Experiment started", "POST", `/api/${model}/experiments`, payload)) reload();
  });

  Refit.on("history", event => { if (event.event_type.startsWith("EXPERIMENT_") || event.event_type.startsWith("MODEL_")) reload(); });
  Refit.ready.then(() => {
    Refit.listen(null);
    reload();
    setInterval(reload, 5000);  // arm counts move with every request, which is no event
  });
})();
