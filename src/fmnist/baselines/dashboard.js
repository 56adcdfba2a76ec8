// The benchmark dashboard's table: filter by name, parameter, status and kind, sort by any column. Plain
// JavaScript, no libraries, no network: the rows are embedded in the page as JSON (#bench-data).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bench-data").textContent);
  var rows = data.rows;          // one per (name, parameters, training size); cells per data set
  var columns = data.columns;    // [{key, label, numeric}]
  var table = document.getElementById("results");
  var tbody = table.querySelector("tbody");
  var nameBox = document.getElementById("filter-name");
  var paramBox = document.getElementById("filter-param");
  var statusBox = document.getElementById("filter-status");
  var kindBox = document.getElementById("filter-kind");  // full, quick, grid, addition, cnn, table3: row tags
  var counter = document.getElementById("row-count");
  var sortKey = data.default_sort, sortDir = -1;  // -1: descending

  function tokens(text) {
    return text.toLowerCase().split(/\s+/).filter(function (t) { return t.length > 0; });
  }
  function matchesAll(haystack, words) {
    haystack = haystack.toLowerCase();
    return words.every(function (w) { return haystack.indexOf(w) !== -1; });
  }
  function value(row, key) {
    var v = row[key];
    return v === undefined ? null : v;
  }
  function compare(a, b) {
    var x = value(a, sortKey), y = value(b, sortKey);
    if (x === null && y === null) return 0;
    if (x === null) return 1;   // missing values last, whichever the direction
    if (y === null) return -1;
    if (typeof x === "number" && typeof y === "number") return sortDir * (x - y);
    return sortDir * String(x).localeCompare(String(y));
  }
  function format(row, col) {
    var v = value(row, col.key);
    if (col.format === "size") return row.size || "";  // "60,000 (full)"; sorted by the count
    if (v === null) return "";
    if (col.format === "acc") return v.toFixed(4);
    if (col.format === "seconds") return v < 10 ? v.toFixed(2) : v.toFixed(1);
    if (col.format === "diff") return (v < 0 ? "\u2212" : "+") + Math.abs(100 * v).toFixed(1) + " pt";
    return String(v);
  }
  function render() {
    var names = tokens(nameBox.value), params = tokens(paramBox.value), status = statusBox.value;
    var wanted = kindBox.value;
    var shown = rows.filter(function (r) {
      if (wanted !== "all" && (r.tags || []).indexOf(wanted) === -1) return false;
      if (!matchesAll(r.name + " " + r.family, names)) return false;
      if (!matchesAll(r.params, params)) return false;
      if (status === "done") return r.any_done;
      if (status === "other") return !r.all_done;
      return true;
    });
    shown.sort(compare);
    var frag = document.createDocumentFragment();
    shown.forEach(function (r) {
      var tr = document.createElement("tr");
      columns.forEach(function (col) {
        var td = document.createElement("td");
        td.textContent = format(r, col);
        td.className = col.numeric ? "num" : "";
        if (col.key.indexOf("status") === 0 && r[col.key] && r[col.key] !== "done") {
          td.className = "bad";
          td.title = r[col.key.replace("status", "reason")] || "";
        }
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    tbody.replaceChildren(frag);
    counter.textContent = shown.length + " of " + rows.length + " configurations";
    table.querySelectorAll("th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir < 0 ? "descending" : "ascending") : "none");
    });
  }
  table.querySelectorAll("th").forEach(function (th) {
    th.addEventListener("click", function () {
      if (sortKey === th.dataset.key) { sortDir = -sortDir; }
      else { sortKey = th.dataset.key; sortDir = th.dataset.numeric === "1" ? -1 : 1; }
      render();
    });
  });
  [nameBox, paramBox].forEach(function (box) { box.addEventListener("input", render); });
  [statusBox, kindBox].forEach(function (box) { box.addEventListener("change", render); });
  render();
})();
