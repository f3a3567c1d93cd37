/* A model: its versions (status, metric, window, gate decision), the promotion metric over time,
   plots and feature importance, compare two versions; train, activate, roll back, promote, reject. */
"use strict";

(() => {
  const {api, act, el, fmt, when, debounce, TERMINAL} = Refit;
  const model = Refit.model;
  const base = `/api/${model}`;
  let versions = [];
  let shown = null;  // the version whose plots are open

  // -- training progress -------------------------------------------------------------------------------
  function showJob(job) {
    const panel = document.getElementById("training");
    if (!job) return;
    panel.hidden = false;
    document.getElementById("job-id").textContent = job.job_id;
    document.getElementById("train-progress").value = job.progress || 0;
    const outcome = TERMINAL.has(job.status) ? ` · ${job.status}` + (job.result && job.result.version ?
      ` ${job.result.version} (${job.result.promoted ? "promoted" : "not promoted"})` : "") : "";
    document.getElementById("job-stage").textContent = `${job.stage} · ${job.progress || 0}%${outcome}`;
  }

  // -- versions --------------------------------------------------------------------------------------
  function score(record) {
    const promotion = record.promotion || {};
    if (typeof promotion.candidate_score === "number") return promotion.candidate_score;
    const metric = record.metric || promotion.metric;
    return record.metrics && metric ? record.metrics[metric] : null;
  }

  function kind(record) {
    if (record.status === "rejected" || record.status === "staged" || record.status === "failed") return record.status;
    return (record.promotion || {}).promoted === false ? "rejected" : "promoted";
  }

  function decision(record) {
    const promotion = record.promotion || {};
    const parts = [];
    if (promotion.reason) parts.push(promotion.reason);
    if (promotion.comparison) parts.push(`(${promotion.comparison})`);
    return parts.join(" ") || "–";
  }

  function actions(record) {
    const cell = el("td", {class: "row-actions"});
    const v = record.version;
    cell.append(el("button", {class: "link", onclick: () => showDetail(record)}, "details"));
    if (record.status === "staged" && Refit.features.promote) {
      cell.append(el("button", {"data-action": "promote", onclick: () =>
        act(`Promote ${v}`, "POST", `${base}/versions/${v}/promote`, {}).then(refresh)}, "Promote"));
      cell.append(el("button", {"data-action": "reject", onclick: () =>
        act(`Reject ${v}`, "POST", `${base}/versions/${v}/reject`, {}).then(refresh)}, "Reject"));
    }
    if (!["active", "pruned", "staged"].includes(record.status)) {
      const forced = record.status === "rejected" || record.status === "failed";
      cell.append(el("button", {"data-action": "activate", onclick: () => {
        if (forced && !window.confirm(`${v} is ${record.status}. Serve it anyway?`)) return;
        act(`Activate ${v}`, "POST", `${base}/versions/${v}/activate`, {force: forced}).then(refresh);
      }}, forced ? "Activate (force)" : "Activate"));
    }
    return cell;
  }

  function renderVersions() {
    const active = versions.find(r => r.status === "active");
    document.getElementById("active-version").textContent = active ? active.version : "no version serving";
    const rows = versions.map(record => el("tr", {"data-version": record.version, class: "status-" + record.status},
      el("td", {class: "mono"}, record.version),
      el("td", {}, el("span", {class: "badge " + record.status}, record.status)),
      el("td", {}, when(record.created_at)),
      el("td", {}, record.algorithm || "–"),
      el("td", {}, record.metric || (record.promotion || {}).metric || "–"),
      el("td", {}, fmt(score(record))),
      el("td", {}, fmt(record.training_window)),
      el("td", {}, record.trigger || "–"),
      el("td", {class: "decision"}, decision(record)),
      actions(record)));
    document.querySelector("#versions tbody").replaceChildren(...rows);
    const points = versions.map(record => ({x: new Date(record.created_at), y: score(record), cls: kind(record),
                                            title: `${record.version} ${record.status}: ${fmt(score(record))}`}));
    Charts.line(document.getElementById("metric-chart"), points, {height: 200, empty: "no versions yet"});
    // the two newest versions, until a person picks others
    ["compare-a", "compare-b"].forEach((id, index) => {
      const select = document.getElementById(id);
      const keep = select.dataset.touched ? select.value : (versions[index] || versions[0] || {}).version;
      select.replaceChildren(...versions.map(r => el("option", {value: r.version}, r.version)));
      if (keep) select.value = keep;
    });
    Refit.guardButtons();
  }

  function showDetail(record) {
    shown = record.version;
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-version").textContent = record.version;
    const importance = (record.feature_importance || {}).features || {};
    Charts.bars(document.getElementById("importance"), Object.entries(importance));
    const plots = (record.plots || []).map(name => el("figure", {},
      el("img", {src: `${base}/versions/${record.version}/plots/${name}.png`, alt: name, loading: "lazy"}),
      el("figcaption", {}, name.replace(/_/g, " "))));
    document.getElementById("plots").replaceChildren(...(plots.length ? plots : [el("p", {class: "note"}, "no plots recorded")]));
  }

  async function refresh() {
    versions = (await api("GET", `${base}/versions`)).versions;
    renderVersions();
    const current = versions.find(r => r.version === shown) || versions.find(r => r.status === "active");
    if (current) showDetail(current);
  }
  const reload = debounce(() => refresh().catch(failure => Refit.toast("error", "Versions", failure.message)));

  // -- compare ----------------------------------------------------------------------------------------
  async function compare(event) {
    event.preventDefault();
    const a = document.getElementById("compare-a").value, b = document.getElementById("compare-b").value;
    const answer = await act(`Compare ${a} and ${b}`, "POST", `${base}/compare`, {versions: [a, b]});
    if (!answer) return;
    const records = answer.versions;
    const metrics = [...new Set(records.flatMap(r => Object.keys(r.metrics || {})))]
      .filter(name => records.some(r => typeof (r.metrics || {})[name] === "number"));
    const head = el("tr", {}, el("th", {}, ""), ...records.map(r => el("th", {}, r.version)));
    const row = (label, values) => el("tr", {}, el("th", {}, label), ...values.map(v => el("td", {}, fmt(v))));
    document.querySelector("#compare thead").replaceChildren(head);
    document.querySelector("#compare tbody").replaceChildren(
      row("status", records.map(r => r.status)), row("algorithm", records.map(r => r.algorithm)),
      row("created", records.map(r => when(r.created_at))), row("trigger", records.map(r => r.trigger)),
      row("training rows", records.map(r => r.n_samples)), row("held-out rows", records.map(r => r.n_test_samples)),
      ...metrics.map(name => row(name, records.map(r => (r.metrics || {})[name]))));
  }

  // -- buttons ----------------------------------------------------------------------------------------
  document.getElementById("train").addEventListener("click", async () => {
    const answer = await act("Training started", "POST", `${base}/train`, {force: true});
    // the stream may have told of this job already (and of more progress than a queued job has)
    if (answer && document.getElementById("job-id").textContent !== answer.job_id) {
      showJob({job_id: answer.job_id, status: "queued", stage: "queued", progress: 0});
    }
  });
  document.getElementById("rollback").addEventListener("click", () => act("Roll back", "POST", `${base}/rollback`, {}).then(reload));
  document.getElementById("compare-form").addEventListener("submit", compare);
  for (const id of ["compare-a", "compare-b"]) {
    document.getElementById(id).addEventListener("change", event => { event.target.dataset.touched = "1"; });
  }

  Refit.on("job", job => {
    showJob(job);
    if (TERMINAL.has(job.status)) reload();
  });
  Refit.on("history", event => {
    if (/^(MODEL_|TRAINING_COMPLETED|EXPERIMENT_)/.test(event.event_type)) reload();
  });

  Refit.ready.then(async () => {
    Refit.listen(model);
    await refresh();
    const status = await api("GET", `${base}/training/status`);
    if (status.current_job) showJob(status.current_job);
  }).catch(failure => Refit.toast("error", model, failure.message));
})();
