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

  document.documentElement.classList.add("js");

  /* The main menu folds into a button on narrow screens; Escape closes it again. */
  function menu() {
    var toggle = document.querySelector(".menu-toggle");
    var nav = document.querySelector(".topnav");
    if (!toggle || !nav) { return; }
    toggle.hidden = false;
    function set(open) {
      nav.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      set(open);
      if (open) {
        var first = nav.querySelector(".menu a, .menu button");
        if (first) { first.focus(); }
      }
    });
    nav.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) {
        set(false);
        toggle.focus();
      }
    });
  }

  /* A row just added is scrolled into view with the message about it. */
  function showAdded() {
    var row = document.querySelector(".just-added");
    if (!row) { return; }
    var note = document.querySelector(".section .flash") || row;
    note.scrollIntoView({ block: "start" });
  }

  /* Typing past a field's limit is said at once, not cut off silently. */
  function limits() {
    document.querySelectorAll("[data-maxlength]").forEach(function (input) {
      var max = parseInt(input.getAttribute("data-maxlength"), 10);
      var note = document.createElement("p");
      note.className = "field-error";
      note.id = "limit-" + input.id;
      note.setAttribute("aria-live", "polite");
      note.hidden = true;
      input.insertAdjacentElement("afterend", note);
      function check() {
        var over = input.value.length - max;
        note.hidden = over <= 0;
        note.textContent = over > 0 ? input.value.length + " characters: at most " + max + " are allowed" : "";
      }
      input.addEventListener("input", check);
      check();
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
     choice lasts for the browser tab. It waits while a filter is being written (the
     focus in the filter form, or a field changed and not yet sent), so a reload never
     takes what someone typed. */
  function autoRefresh() {
    var button = document.getElementById("refresh-toggle");
    if (!button) { return; }
    var seconds = parseInt(button.getAttribute("data-refresh"), 10) || 15;
    var form = document.querySelector("form.filters");
    var timer = null;
    function paused() { return window.sessionStorage.getItem("monitor-paused") === "1"; }
    function editing() {
      if (!form) { return false; }
      if (form.contains(document.activeElement)) { return true; }
      return Array.prototype.some.call(form.elements, function (field) {
        if (field.tagName === "SELECT") {
          var initial = 0;
          Array.prototype.forEach.call(field.options, function (o, i) { if (o.defaultSelected) { initial = i; } });
          return field.selectedIndex !== initial;
        }
        return "defaultValue" in field && field.value !== field.defaultValue;
      });
    }
    function tick() {
      timer = null;
      if (editing()) { timer = window.setTimeout(tick, seconds * 1000); return; }
      window.location.reload();
    }
    function show() {
      var off = paused();
      button.setAttribute("aria-pressed", off ? "true" : "false");
      button.textContent = off ? "Resume auto-refresh" : "Pause auto-refresh";
      if (timer) { window.clearTimeout(timer); timer = null; }
      if (!off) { timer = window.setTimeout(tick, seconds * 1000); }
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      window.sessionStorage.setItem("monitor-paused", paused() ? "0" : "1");
      show();
    });
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    menu();
    limits();
    showAdded();
    placeBars();
    autoRefresh();
    document.querySelectorAll("table[data-sortable]").forEach(enhance);
    var summary = document.querySelector(".error-summary[tabindex]");
    if (summary) { summary.focus(); }
  });
})();
