/* Schedules pages: times in the viewer's timezone, and the job fields of the selected
   executor. No inline scripts (CSP): everything is wired from data-* attributes. */
(function () {
  "use strict";

  var zone = "UTC";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* keep UTC */ }
  var fmt = new Intl.DateTimeFormat(undefined, {
    weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });

  function localise(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) t.textContent = fmt.format(d);
    });
    (root || document).querySelectorAll("[data-viewer-zone]").forEach(function (el) {
      el.textContent = zone;
    });
  }

  function syncExecutor(root) {
    (root || document).querySelectorAll("[data-executor-select]").forEach(function (sel) {
      var form = sel.closest("form");
      form.querySelectorAll("[data-executor]").forEach(function (box) {
        box.hidden = box.getAttribute("data-executor") !== sel.value;
      });
    });
  }

  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("[data-executor-select]")) syncExecutor(e.target.closest("form"));
  });
  document.addEventListener("DOMContentLoaded", function () { localise(); syncExecutor(); });
  document.body.addEventListener("htmx:afterSettle", function (e) {
    localise(e.detail.elt);
    syncExecutor(e.detail.elt.closest ? (e.detail.elt.closest("form") || e.detail.elt) : null);
  });
})();
