/* Jobs of every model, newest first, with live progress and cancel. */
"use strict";

(() => {
  const {api, act, el, when, TERMINAL} = Refit;
  const jobs = new Map();  // job_id -> record

  function outcome(job) {
    if (job.error) return `${job.error.reason}: ${job.error.message}`;
    const result = job.result || {};
    if (job.status === "skipped") return result.reason || "skipped";
    if (result.version) return `${result.version} ${result.promoted ? "promoted" : "not promoted"}`;
    return "–";
  }

  function row(job) {
    const cancel = TERMINAL.has(job.status) ? "" : el("button", {"data-action": "cancel", onclick: () =>
      act(`Cancel ${job.job_id}`, "DELETE", `/api/${job.model}/jobs/${job.job_id}`)}, "Cancel");
    return el("tr", {"data-job": job.job_id, class: "status-" + job.status},
      el("td", {class: "mono"}, job.job_id), el("td", {}, job.model), el("td", {}, job.trigger),
      el("td", {}, el("span", {class: "badge " + job.status}, job.status)),
      el("td", {}, el("progress", {max: 100, value: job.progress || 0}), ` ${job.progress || 0}%`),
      el("td", {}, job.stage), el("td", {}, when(job.created_at)), el("td", {}, when(job.finished_at)),
      el("td", {}, outcome(job)), el("td", {}, cancel));
  }

  function render() {
    const ordered = [...jobs.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
    document.querySelector("#jobs tbody").replaceChildren(...ordered.slice(0, 200).map(row));
    Refit.guardButtons();
  }

  Refit.on("job", job => { jobs.set(job.job_id, job); render(); });

  Refit.ready.then(async () => {
    Refit.listen(null);
    const lists = await Promise.all(Refit.models.map(model => api("GET", `/api/${model}/jobs?limit=50`)));
    for (const list of lists) for (const job of list.jobs) if (!jobs.has(job.job_id)) jobs.set(job.job_id, job);
    render();
  }).catch(failure => Refit.toast("error", "Jobs", failure.message));
})();
