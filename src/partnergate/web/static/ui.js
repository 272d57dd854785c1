/* partnergate UI: progressive enhancement only; every page works without this file.
   Tables marked data-sortable get sortable column headers (keyboard usable buttons,
   aria-sort announced); the error summary of a refused form takes the focus. */
(function () {
  "use strict";

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell ? (cell.getAttribute("data-sort") || cell.textContent.trim()) : "";
    return numeric ? parseFloat(raw) || 0 : raw.toLowerCase();
  }

  function sortBy(table, th, index) {
    var numeric = th.getAttribute("data-type") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("th[aria-sort]").forEach(function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function enhance(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      if (th.hasAttribute("data-nosort")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      var mark = document.createElement("span");
      mark.className = "sort-mark";
      mark.setAttribute("aria-hidden", "true");
      button.appendChild(mark);
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, index); });
    });
  }

  /* The monitor's step timeline: bars placed from data attributes (no inline styles). */
  function placeBars() {
    document.querySelectorAll(".timeline-bar[data-left]").forEach(function (bar) {
      bar.style.marginLeft = bar.getAttribute("data-left") + "%";
      bar.style.width = bar.getAttribute("data-width") + "%";
    });
  }

  /* The monitor's auto-refresh: reloads the list every N seconds until paused; the
     choice lasts for the browser tab. */
  function autoRefresh() {
    var button = document.getElementById("refresh-toggle");
    if (!button) { return; }
    var seconds = parseInt(button.getAttribute("data-refresh"), 10) || 15;
    var timer = null;
    function paused() { return window.sessionStorage.getItem("monitor-paused") === "1"; }
    function show() {
      var off = paused();
      button.setAttribute("aria-pressed", off ? "true" : "false");
      button.textContent = off ? "Resume auto-refresh" : "Pause auto-refresh";
      if (timer) { window.clearTimeout(timer); timer = null; }
      if (!off) { timer = window.setTimeout(function () { window.location.reload(); }, seconds * 1000); }
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      window.sessionStorage.setItem("monitor-paused", paused() ? "0" : "1");
      show();
    });
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    placeBars();
    autoRefresh();
    document.querySelectorAll("table[data-sortable]").forEach(enhance);
    var summary = document.querySelector(".error-summary[tabindex]");
    if (summary) { summary.focus(); }
  });
})();
