/* Runs table: the run selection for "Compare" (kept in sessionStorage, so it survives paging,
   filtering, sorting and moving between experiments in this tab), and the column chooser.
   Without JavaScript the table is a plain form: ticking runs on one page and pressing
   Compare submits them to /runs/compare. */
(function () {
  "use strict";
  var KEY = "podstack.runSelection";

  function load() {
    try {
      var v = JSON.parse(window.sessionStorage.getItem(KEY) || "[]");
      return Array.isArray(v) ? v : [];
    } catch (err) { return []; }
  }
  function save(list) { window.sessionStorage.setItem(KEY, JSON.stringify(list)); }
  function ids(list) { return list.map(function (x) { return x.id; }); }

  function bar() { return document.querySelector("[data-run-selection]"); }
  function maxRuns() { var b = bar(); return b ? parseInt(b.getAttribute("data-max"), 10) || 20 : 20; }

  function compareUrl(list) { return "/runs/compare?runs=" + ids(list).map(encodeURIComponent).join(","); }

  function render() {
    var b = bar();
    if (!b) return;
    var sel = load(), chosen = ids(sel), onPage = 0;
    var boxes = document.querySelectorAll("input[data-run-select]");
    boxes.forEach(function (box) {
      box.checked = chosen.indexOf(box.value) >= 0;
      if (box.checked) onPage++;
      var row = box.closest("tr");
      if (row) row.classList.toggle("is-selected", box.checked);
    });
    var all = document.querySelector("[data-select-page]");
    if (all) {
      all.checked = boxes.length > 0 && onPage === boxes.length;
      all.indeterminate = onPage > 0 && onPage < boxes.length;
    }
    b.querySelector("[data-selected-count]").textContent = String(sel.length);
    var elsewhere = sel.length - onPage;
    b.querySelector("[data-selected-elsewhere]").textContent = elsewhere > 0 ? "(" + elsewhere + " not on this page)" : "";
    var names = b.querySelector("[data-selected-names]");
    names.textContent = "";
    sel.forEach(function (x) {
      var chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = x.name || x.id;
      chip.title = x.id;
      names.appendChild(chip);
    });
    var btn = b.querySelector("[data-compare-button]");
    var ok = sel.length >= 2 && sel.length <= maxRuns();
    btn.disabled = !ok;
    btn.title = ok ? "Compare the selected runs" : "Select 2 to " + maxRuns() + " runs to compare";
    b.classList.toggle("has-selection", sel.length > 0);
  }

  function toggle(id, name, on) {
    var sel = load(), i = ids(sel).indexOf(id);
    if (on && i < 0) {
      if (sel.length >= maxRuns()) {
        if (window.podstackToast) window.podstackToast("At most " + maxRuns() + " runs can be compared; untick one first.", "error");
        return false;
      }
      sel.push({ id: id, name: name });
    } else if (!on && i >= 0) {
      sel.splice(i, 1);
    }
    save(sel);
    return true;
  }

  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches("input[data-run-select]")) {
      toggle(t.value, t.getAttribute("data-run-name"), t.checked);
      render();
    } else if (t.matches("[data-select-page]")) {
      document.querySelectorAll("input[data-run-select]").forEach(function (box) {
        toggle(box.value, box.getAttribute("data-run-name"), t.checked);
      });
      render();
    }
  });

  document.addEventListener("click", function (e) {
    if (e.target.closest("[data-clear-selection]")) { save([]); render(); return; }
    var btn = e.target.closest("[data-compare-button]");
    if (btn && !btn.disabled) {
      e.preventDefault();
      window.location.href = compareUrl(load());
    }
  });

  // With JavaScript, Compare takes the whole selection (other pages too), not just this page.
  document.addEventListener("submit", function (e) {
    if (e.target.matches("[data-run-select-form]")) {
      e.preventDefault();
      var sel = load();
      if (sel.length >= 2) window.location.href = compareUrl(sel);
    }
  });

  if (window.htmx) window.htmx.onLoad(function () { render(); });
  else document.addEventListener("DOMContentLoaded", render);
})();
