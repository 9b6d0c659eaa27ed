/* Podstack UI behaviour. No inline scripts anywhere (CSP script-src 'self'): pages describe
   what they need with data-* attributes and JSON data blocks, and this file wires it up. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.content : "";

  // ------------------------------------------------------------------ toasts
  var TOAST_MS = 6000;

  function dismiss(toast) {
    if (!toast || toast.classList.contains("leaving")) return;
    toast.classList.add("leaving");
    setTimeout(function () { toast.remove(); }, 220);
  }

  function armToast(toast) {
    var close = toast.querySelector(".toast-close");
    if (close) close.addEventListener("click", function () { dismiss(toast); });
    // Errors stay until dismissed: people need time to read why something was refused.
    if (!toast.classList.contains("toast-error")) {
      setTimeout(function () { dismiss(toast); }, TOAST_MS);
    }
  }

  function toast(message, level) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (level || "success");
    el.setAttribute("role", level === "error" ? "alert" : "status");
    var span = document.createElement("span");
    span.textContent = message;
    var btn = document.createElement("button");
    btn.type = "button";
    btn.className = "toast-close";
    btn.setAttribute("aria-label", "Dismiss");
    btn.textContent = "×";
    el.appendChild(span);
    el.appendChild(btn);
    box.appendChild(el);
    armToast(el);
  }
  window.podstackToast = toast;

  document.body.addEventListener("podstack:toast", function (e) {
    var d = e.detail || {};
    toast(d.message || "Done.", d.level || "success");
  });

  // ------------------------------------------------------------------ htmx integration
  document.body.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = CSRF;
  });
  document.body.addEventListener("htmx:afterRequest", function (e) {
    var xhr = e.detail.xhr;
    if (!xhr || xhr.status < 400) return;
    // Domain errors arrive with an HX-Trigger toast; anything else still deserves a message.
    if (!xhr.getResponseHeader("HX-Trigger") && [409, 422].indexOf(xhr.status) < 0) {
      toast("The request failed (HTTP " + xhr.status + "). Reload the page and try again.", "error");
    }
  });
  document.body.addEventListener("htmx:sendError", function () {
    toast("Cannot reach the server. Check your connection and try again.", "error");
  });
  document.body.addEventListener("htmx:afterSwap", function (e) {
    // A dialog whose content changed the page (e.g. aliases) reloads the page when closed.
    var target = e.detail.target;
    var dirty = target && (target.matches("[data-mark-dirty]") ? target : target.querySelector && target.querySelector("[data-mark-dirty]"));
    var holder = document.querySelector("[data-mark-dirty]");
    if (dirty || holder) {
      var dlg = (holder || dirty).closest("dialog");
      if (dlg && !dlg.dataset.reloadOnClose) {
        dlg.dataset.reloadOnClose = "1";
        dlg.addEventListener("close", function () { window.location.reload(); });
      }
    }
    var bad = e.detail.target && e.detail.target.querySelector && e.detail.target.querySelector('[aria-invalid="true"]');
    if (bad) bad.focus();
  });

  // ------------------------------------------------------------------ dialogs
  function openDialog(id) {
    var d = document.getElementById(id);
    if (d && !d.open) {
      d.showModal();
      var first = d.querySelector("[autofocus]") || d.querySelector("input:not([type=hidden]), select, textarea");
      if (first) first.focus();
    }
  }

  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-dialog-open]");
    if (t) {
      e.preventDefault();
      var dlgId = t.getAttribute("data-dialog-open");
      var fill = t.getAttribute("data-fill-name");
      if (fill) {
        var field = document.querySelector("#" + dlgId + ' [name="' + fill + '"]');
        if (field) field.value = t.getAttribute("data-fill-value") || "";
      }
      openDialog(dlgId);
      return;
    }
    t = e.target.closest("[data-dialog-close]");
    if (t) { var d = t.closest("dialog"); if (d) d.close(); return; }
    t = e.target.closest("[data-confirm]");
    if (t && !t.disabled) {
      e.preventDefault();
      var dlg = document.getElementById("confirm-dialog");
      var form = dlg.querySelector("form");
      form.setAttribute("action", t.getAttribute("data-confirm-action"));
      dlg.querySelector("[data-confirm-text]").textContent = t.getAttribute("data-confirm");
      dlg.querySelector(".dialog-title").textContent = t.getAttribute("data-confirm-title") || "Are you sure?";
      var submit = dlg.querySelector("[data-confirm-submit]");
      submit.textContent = t.getAttribute("data-confirm-label") || "Confirm";
      submit.className = "btn " + (t.getAttribute("data-confirm-style") === "primary" ? "btn-primary" : "btn-danger");
      dlg.showModal();
      submit.focus();
      return;
    }
    t = e.target.closest("[data-copy]");
    if (t) {
      var src = document.getElementById(t.getAttribute("data-copy"));
      if (src) {
        src.select();
        var done = function () { toast("Copied to the clipboard.", "success"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(src.value).then(done, function () { document.execCommand("copy"); done(); });
        } else { document.execCommand("copy"); done(); }
      }
      return;
    }
    t = e.target.closest("[data-edit-toggle]");
    if (t) {
      var ids = t.getAttribute("data-edit-toggle").split(" ");
      ids.forEach(function (id) { var el = document.getElementById(id); if (el) el.hidden = !el.hidden; });
      var focus = document.querySelector("#" + ids[0] + ":not([hidden]) textarea, #" + ids[0] + ":not([hidden]) input:not([type=hidden])");
      if (focus) focus.focus();
      return;
    }
    // Close the user menu when clicking elsewhere.
    document.querySelectorAll("details[data-menu][open]").forEach(function (m) {
      if (!m.contains(e.target)) m.removeAttribute("open");
    });
  });

  // A click on the backdrop (outside the dialog box) closes it, like Escape does.
  document.addEventListener("mousedown", function (e) {
    if (e.target.tagName === "DIALOG" && e.target.open) {
      var r = e.target.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) e.target.close();
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      document.querySelectorAll("details[data-menu][open]").forEach(function (m) { m.removeAttribute("open"); });
    }
  });

  // ------------------------------------------------------------------ forms
  // "Type the name to confirm": the destructive button stays disabled until it matches.
  document.addEventListener("input", function (e) {
    var t = e.target;
    if (t.matches && t.matches("[data-confirm-match]")) {
      var btn = t.form && t.form.querySelector("[data-confirm-target]");
      if (btn) btn.disabled = t.value !== t.getAttribute("data-confirm-match");
    }
  });

  function syncSelection(root) {
    (root || document).querySelectorAll("[data-selection]").forEach(function (box) {
      var name = box.getAttribute("data-selection");
      var boxes = document.querySelectorAll('input[type=checkbox][name="' + name + '"]');
      var n = 0;
      boxes.forEach(function (b) {
        if (b.checked) n++;
        var row = b.closest("tr");
        if (row) row.classList.toggle("is-selected", b.checked);
      });
      box.querySelectorAll("[data-count]").forEach(function (c) { c.textContent = String(n); });
      box.querySelectorAll("[data-min-selected]").forEach(function (b) {
        b.disabled = n < parseInt(b.getAttribute("data-min-selected"), 10);
      });
      document.querySelectorAll('[data-select-all="' + name + '"]').forEach(function (all) {
        all.checked = boxes.length > 0 && n === boxes.length;
        all.indeterminate = n > 0 && n < boxes.length;
      });
    });
  }

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches("[data-select-all]")) {
      var name = t.getAttribute("data-select-all");
      document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (b) { b.checked = t.checked; });
    }
    if (t.matches("input[type=checkbox]")) syncSelection();
    if (t.matches("[data-autosubmit]")) {
      if (t.form.requestSubmit) t.form.requestSubmit(); else t.form.submit();
    }
  });

  // ------------------------------------------------------------------ charts (Chart.js)
  var PALETTE = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#64748b", "#84cc16"];

  function readJSON(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (err) { return null; }
  }

  function initChart(canvas) {
    if (canvas.dataset.ready || typeof window.Chart === "undefined") return;
    var spec = readJSON(canvas.getAttribute("data-chart"));
    if (!spec) return;
    canvas.dataset.ready = "1";
    var kind = spec.kind || "line";
    var datasets = spec.series.map(function (s, i) {
      var color = PALETTE[i % PALETTE.length];
      var base = { label: s.label, borderColor: color, backgroundColor: kind === "bar" ? color + "cc" : color + "22" };
      if (kind === "bar") {
        base.data = s.values; base.borderWidth = 0; base.borderRadius = 4;
        // The best value stands out; the rest share the series colour.
        if (typeof spec.highlight === "number") {
          base.backgroundColor = s.values.map(function (_, j) { return j === spec.highlight ? "#16a34a" : "#818cf8"; });
        }
        return base;
      }
      base.data = s.points.map(function (p) { return { x: p[0], y: p[1] }; });
      base.borderWidth = 2;
      base.pointRadius = s.points.length > 60 ? 0 : 2.5;
      base.pointHoverRadius = 4;
      base.tension = 0.25;
      base.spanGaps = true;
      return base;
    });
    var options = {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: kind === "bar",
      interaction: { mode: kind === "bar" ? "index" : "nearest", intersect: false },
      plugins: {
        legend: { display: datasets.length > 1, position: "bottom", labels: { boxWidth: 10, boxHeight: 10, usePointStyle: true } },
        tooltip: { callbacks: {} }
      },
      scales: {
        x: kind === "bar"
          ? { grid: { display: false } }
          : { type: "linear", title: { display: true, text: spec.xLabel || "step" }, grid: { color: "#eef0f3" }, ticks: { precision: 0 } },
        y: { title: { display: !!spec.yLabel, text: spec.yLabel || "" }, grid: { color: "#eef0f3" } }
      }
    };
    if (kind === "bar") {
      new window.Chart(canvas, { type: "bar", data: { labels: spec.labels, datasets: datasets }, options: options });
    } else {
      new window.Chart(canvas, { type: "line", data: { datasets: datasets }, options: options });
    }
  }

  // ------------------------------------------------------------------ lineage graph (Cytoscape)
  var NODE_COLORS = {
    experiment: "#0ea5e9", run: "#4f46e5", params: "#f59e0b", dataset: "#10b981",
    model_version: "#8b5cf6", version: "#8b5cf6", parent: "#a855f7", child: "#c084fc",
    deployment: "#ef4444", model: "#6366f1"
  };

  // Left to right by longest path from the inputs: experiment, params and datasets feed the
  // run, the run feeds the version, the version its fine-tuned children and deployments.
  function lineagePositions(data) {
    var depth = {}, preds = {};
    data.nodes.forEach(function (n) { depth[n.id] = 0; preds[n.id] = []; });
    data.edges.forEach(function (e) { if (preds[e.target]) preds[e.target].push(e.source); });
    for (var pass = 0; pass < data.nodes.length; pass++) {  // bounded: safe even with a cycle
      var changed = false;
      data.nodes.forEach(function (n) {
        preds[n.id].forEach(function (p) {
          if (depth[p] !== undefined && depth[p] + 1 > depth[n.id]) { depth[n.id] = depth[p] + 1; changed = true; }
        });
      });
      if (!changed) break;
    }
    var columns = {};
    data.nodes.forEach(function (n) { (columns[depth[n.id]] = columns[depth[n.id]] || []).push(n.id); });
    var pos = {};
    Object.keys(columns).forEach(function (d) {
      var col = columns[d];
      col.forEach(function (id, i) { pos[id] = { x: Number(d) * 270, y: (i - (col.length - 1) / 2) * 72 }; });
    });
    return pos;
  }

  function initLineage(el) {
    if (el.dataset.ready || typeof window.cytoscape === "undefined") return;
    var data = readJSON(el.getAttribute("data-lineage"));
    if (!data) return;
    el.dataset.ready = "1";
    var elements = [];
    data.nodes.forEach(function (n) {
      elements.push({ data: { id: n.id, label: n.label, kind: n.kind, href: n.href || "", focus: n.focus ? 1 : 0 } });
    });
    data.edges.forEach(function (e, i) {
      elements.push({ data: { id: "e" + i, source: e.source, target: e.target, label: e.label || "" } });
    });
    var cy = window.cytoscape({
      container: el,
      elements: elements,
      minZoom: 0.3,
      maxZoom: 2.5,
      style: [
        { selector: "node", style: {
          "shape": "round-rectangle", "background-color": function (n) { return NODE_COLORS[n.data("kind")] || "#64748b"; },
          "label": "data(label)", "color": "#fff", "font-size": 12, "font-weight": 600,
          "text-valign": "center", "text-halign": "center", "text-wrap": "ellipsis", "text-max-width": 200,
          "width": function (n) { return Math.min(220, Math.max(90, n.data("label").length * 7.5 + 28)); },
          "height": 40
        } },
        { selector: "node[focus = 1]", style: { "border-width": 3, "border-color": "#111827" } },
        { selector: "edge", style: {
          "width": 1.6, "line-color": "#a3aab6", "target-arrow-color": "#a3aab6", "target-arrow-shape": "triangle",
          "curve-style": "bezier", "label": "data(label)", "font-size": 9, "color": "#5f6875",
          "text-background-color": "#fff", "text-background-opacity": 1, "text-background-padding": 2
        } }
      ],
      layout: { name: "preset", positions: lineagePositions(data), fit: true, padding: 30 }
    });
    if (cy.zoom() > 1.25) { cy.zoom(1.25); cy.center(); }  // small graphs: readable, not huge
    cy.on("mouseover", "node", function (evt) { el.style.cursor = evt.target.data("href") ? "pointer" : ""; });
    cy.on("mouseout", "node", function () { el.style.cursor = ""; });
    cy.on("tap", "node", function (evt) {
      var href = evt.target.data("href");
      if (href) window.location.href = href;
    });
    el.setAttribute("data-node-count", String(data.nodes.length));
    el._cy = cy;
  }

  // ------------------------------------------------------------------ boot
  function init(root) {
    root = root || document;
    root.querySelectorAll(".toast").forEach(function (t) { if (!t.dataset.armed) { t.dataset.armed = "1"; armToast(t); } });
    root.querySelectorAll("canvas[data-chart]").forEach(initChart);
    root.querySelectorAll("[data-lineage]").forEach(initLineage);
    root.querySelectorAll("dialog[data-open-on-load]").forEach(function (d) { if (!d.open) d.showModal(); });
    syncSelection(document);
  }

  if (window.htmx) {
    window.htmx.onLoad(function (el) { init(el.nodeType === 1 ? el : document); });
  } else {
    init(document);
  }
})();
