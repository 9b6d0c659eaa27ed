/* Run comparison charts (Chart.js, vendored): one chart per metric, one line per run in the
   run's colour (the same on every chart), with smoothing, log scale and x axis by step,
   relative time or wall time. Data comes from JSON blocks (no inline scripts: CSP). */
(function () {
  "use strict";
  var charts = [];

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (err) { return null; }
  }

  function settings() {
    var sm = document.querySelector("[data-smoothing]");
    var log = document.querySelector("[data-log-scale]");
    var xa = document.querySelector("[data-x-axis]");
    return {
      smoothing: sm ? parseFloat(sm.value) || 0 : 0,
      log: !!(log && log.checked),
      x: xa ? xa.value : "step"
    };
  }

  // Exponential moving average, debiased as TensorBoard does, so the first points are not
  // dragged towards zero. Gaps (NaN) stay gaps.
  function smooth(values, weight) {
    if (!weight) return values.slice();
    var out = [], last = 0, n = 0;
    values.forEach(function (v) {
      if (v === null || !isFinite(v)) { out.push(null); return; }
      last = last * weight + (1 - weight) * v;
      n++;
      out.push(last / (1 - Math.pow(weight, n)));
    });
    return out;
  }

  function datasets(spec, cfg) {
    return spec.series.map(function (s) {
      var xs = cfg.x === "relative" ? s.seconds : cfg.x === "wall" ? s.times : s.steps;
      var ys = smooth(s.values, cfg.smoothing);
      var data = [];
      for (var i = 0; i < xs.length; i++) {
        var y = ys[i];
        if (cfg.log && y !== null && y <= 0) y = null;  // log scale: non-positive values cannot be drawn
        data.push({ x: xs[i], y: y, raw: s.values[i], step: s.steps[i] });
      }
      return {
        label: s.label, runId: s.run_id, data: data, borderColor: s.color, backgroundColor: s.color,
        borderWidth: 2, pointRadius: data.length > 60 ? 0 : 2.5, pointHoverRadius: 4,
        tension: 0, spanGaps: true
      };
    });
  }

  function xTitle(x) { return x === "relative" ? "seconds since the first point" : x === "wall" ? "time" : "step"; }

  function xTick(x) {
    return function (v) {
      if (x === "wall") { var d = new Date(v); return d.toISOString().slice(11, 19); }
      return Number(v).toLocaleString();
    };
  }

  function build(canvas) {
    if (canvas.dataset.ready || typeof window.Chart === "undefined") return;
    var spec = readJSON(canvas.getAttribute("data-run-chart"));
    if (!spec) return;
    canvas.dataset.ready = "1";
    var cfg = settings();
    var chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: datasets(spec, cfg) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: {
          legend: { display: true, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
          tooltip: { callbacks: {
            label: function (item) {
              var p = item.raw;
              var v = p.raw === null ? "NaN" : Number(p.raw).toPrecision(6);
              return item.dataset.label + ": " + v + " (step " + p.step + ")";
            }
          } }
        },
        scales: {
          x: { type: "linear", title: { display: true, text: xTitle(cfg.x) }, grid: { color: "#eef0f3" }, ticks: { callback: xTick(cfg.x) } },
          y: { type: cfg.log ? "logarithmic" : "linear", title: { display: true, text: spec.key }, grid: { color: "#eef0f3" } }
        }
      }
    });
    chart.$spec = spec;
    charts.push(chart);
    canvas.setAttribute("data-lines", String(chart.data.datasets.length));
  }

  function refresh() {
    var cfg = settings();
    var out = document.querySelector("[data-smoothing-value]");
    if (out) out.textContent = cfg.smoothing.toFixed(2);
    charts.forEach(function (chart) {
      chart.data.datasets = datasets(chart.$spec, cfg);
      chart.options.scales.y.type = cfg.log ? "logarithmic" : "linear";
      chart.options.scales.x.title.text = xTitle(cfg.x);
      chart.options.scales.x.ticks.callback = xTick(cfg.x);
      chart.update("none");
      chart.canvas.setAttribute("data-lines", String(chart.data.datasets.length));
      chart.canvas.setAttribute("data-x-axis", cfg.x);
      chart.canvas.setAttribute("data-y-scale", cfg.log ? "log" : "linear");
    });
  }

  document.addEventListener("input", function (e) {
    if (e.target.matches("[data-smoothing]")) refresh();
  });
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches("[data-log-scale], [data-x-axis]")) refresh();
    if (t.matches("[data-only-diffs]")) {
      document.querySelectorAll("[data-diff-scope]").forEach(function (el) { el.classList.toggle("only-diffs", t.checked); });
      // Keep the choice in the address, so a shared link opens the same view.
      var url = new URL(window.location.href);
      if (t.checked) url.searchParams.set("diff", "1"); else url.searchParams.delete("diff");
      window.history.replaceState(null, "", url.toString());
    }
  });

  function init() { document.querySelectorAll("canvas[data-run-chart]").forEach(build); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
