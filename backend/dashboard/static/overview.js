/* Overview: each model's active version, live score over time, samples since training, next check,
   training progress, drift and a running experiment; kept current by the event stream. */
"use strict";

(() => {
  const {api, fmt, ago, debounce, TERMINAL} = Refit;

  function field(model, name) { return document.querySelector(`#card-${CSS.escape(model)} [data-field="${name}"]`); }

  function showJob(model, job) {
    const running = job && !TERMINAL.has(job.status);
    const bar = field(model, "progress");
    bar.hidden = !running;
    if (running) bar.value = job.progress || 0;
    field(model, "training").textContent = running ? `${job.status} · ${job.stage} · ${job.progress || 0}%` : "idle";
  }

  async function load(model) {
    const [status, monitoring] = await Promise.all([
      api("GET", `/api/${model}/training/status`), api("GET", `/api/${model}/monitoring`)]);
    field(model, "version").textContent = status.active_version || "no version yet";
    field(model, "samples").textContent = fmt(status.samples_since_last_training);
    field(model, "next").textContent = status.next_check_time ? `${Refit.when(status.next_check_time)} (${ago(status.next_check_time)})` : "–";
    const live = monitoring.live || {};
    field(model, "score").textContent = live.score === null || live.score === undefined ? "no labels yet"
      : `${monitoring.metric} ${fmt(live.score)} over ${live.n_labels} labels (recorded ${fmt(live.recorded_score)})`;
    field(model, "drift").hidden = !(monitoring.drift && monitoring.drift.detected);
    showJob(model, status.current_job);
    const points = (monitoring.windows || []).map(w => ({x: w.end, y: w.score, cls: "promoted",
                                                         title: `${w.version}: ${fmt(w.score)} over ${w.n} labels`}));
    Charts.line(field(model, "chart"), points, {xLabel: "sample-store row", empty: "no live score yet: it is computed from labelled rows as they arrive"});
    if (Refit.features.experiments) {
      const found = await api("GET", `/api/${model}/experiments`);
      const running = (found.experiments || []).find(e => e.status === "running");
      const flag = field(model, "experiment");
      flag.hidden = !running;
      if (running) flag.textContent = `experiment ${running.name}: ${running.versions.join(" vs ")}`;
    }
  }

  const reload = {};
  for (const model of Refit.models) {
    reload[model] = debounce(() => load(model).catch(failure => Refit.toast("error", model, failure.message)));
  }

  Refit.on("job", job => {
    if (!reload[job.model]) return;
    showJob(job.model, job);
    if (TERMINAL.has(job.status)) reload[job.model]();
  });
  Refit.on("history", event => { if (reload[event.model]) reload[event.model](); });

  Refit.ready.then(() => {
    for (const model of Refit.models) reload[model]();
    Refit.listen(null);
    // the live score moves with every labelled row, which is no event: look again now and then
    setInterval(() => Refit.models.forEach(model => reload[model]()), 15000);
  });
})();
