// llmos dashboard: refresh the marked parts of the page without reloading it (short polling of server-rendered
// HTML fragments), and draw the resource and loss charts with uPlot (vendored, no CDN).
(function () {
  "use strict";
  const state = { polls: 0, charts: {}, loadedAt: Date.now() };
  window.llmosDashboard = state;
  const live = document.getElementById("live");

  async function refresh(el) {
    try {
      const response = await fetch(el.dataset.poll, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      if (html !== el._html) { el.innerHTML = html; el._html = html; }
      state.polls += 1;
      el.dataset.updated = String(Date.now());
      if (live) { live.textContent = "live · " + new Date().toLocaleTimeString(); live.classList.remove("stale"); }
    } catch (err) {
      if (live) { live.textContent = "not updating: " + err.message; live.classList.add("stale"); }
    }
  }

  function every(ms, fn) {
    const tick = async () => { try { await fn(); } finally { setTimeout(tick, ms); } };
    setTimeout(tick, ms);
  }

  document.querySelectorAll("[data-poll]").forEach((el) => every(Number(el.dataset.every) || 1000, () => refresh(el)));

  const filter = document.getElementById("state-filter");
  if (filter) {
    filter.addEventListener("change", () => {
      const query = filter.value === "all" ? "" : "?state=" + encodeURIComponent(filter.value);
      const jobs = document.getElementById("jobs");
      jobs.dataset.poll = "/ui/jobs" + query;
      history.replaceState(null, "", "/" + query);
      refresh(jobs);
    });
  }

  const palette = ["#2f5fd0", "#d0552f", "#1a7f37", "#9a4fd0", "#c09000", "#0a8a8a", "#c62828", "#5f6b78"];

  function size(el) { return { width: Math.max(260, el.clientWidth - 12), height: 220 }; }

  function plot(el, key, series, data, opts) {
    let chart = state.charts[key];
    const labels = series.map((s) => s.label).join("|");
    if (chart && chart._labels !== labels) { chart.destroy(); chart = null; }
    if (!chart) {
      el.innerHTML = "";
      chart = new uPlot(Object.assign({ ...size(el), series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: true, points: { show: s.points || false } }))] }, opts), data, el);
      chart._labels = labels;
      state.charts[key] = chart;
    } else {
      chart.setData(data);
    }
    el.dataset.points = String(data[0].length);
    el.dataset.series = String(series.length);
    return chart;
  }

  window.addEventListener("resize", () => {
    Object.values(state.charts).forEach((chart) => chart.setSize(size(chart.root.parentElement)));
  });

  const resources = document.getElementById("resource-chart");
  if (resources) {
    const draw = async () => {
      const response = await fetch(resources.dataset.series, { cache: "no-store" });
      if (!response.ok) return;
      const body = await response.json();
      if (!body.x.length) return;
      plot(resources, "resources", body.series, [body.x, ...body.series.map((s) => s.values)],
        { scales: { x: { time: true, range: (u, min, max) => (max - min < 60 ? [max - 60, max] : [min, max]) },
                    y: { range: [0, 100] } }, axes: [{}, { label: "%" }] });
    };
    draw();
    every(Number(resources.dataset.every) || 5000, draw);
  }

  const loss = document.getElementById("loss-chart");
  if (loss) {
    let done = false;
    const draw = async () => {
      if (done) return;
      const response = await fetch(loss.dataset.loss, { cache: "no-store" });
      if (!response.ok) return;
      const body = await response.json();
      if (!body.step.length) { loss.dataset.points = "0"; return; }
      plot(loss, "loss", [{ label: "loss", points: true }], [body.step, body.loss],
        { scales: { x: { time: false } }, axes: [{ label: "step" }, { label: "loss" }] });
      done = body.final;
    };
    draw();
    every(Number(loss.dataset.every) || 2000, draw);
  }
})();
