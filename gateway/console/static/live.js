// Live updates of the flows page from the server's event stream. Rows are
// built with textContent, never markup: names come from policy files and
// the audit stream.
"use strict";
(function () {
  var state = document.getElementById("live-state");
  var flows = document.querySelector("#flows tbody");
  var decisions = document.querySelector("#decisions tbody");
  var count = document.getElementById("flow-count");
  var maxDecisions = 200;

  function row(cells, cls) {
    var tr = document.createElement("tr");
    if (cls) { tr.className = cls; }
    cells.forEach(function (c) {
      var td = document.createElement("td");
      td.textContent = c === undefined || c === null ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }

  var es = new EventSource(state.dataset.events);
  es.onopen = function () { state.textContent = "live"; };
  es.onerror = function () { state.textContent = "reconnecting…"; };
  es.addEventListener("flows", function (ev) {
    var list = JSON.parse(ev.data) || [];
    var rows = list.map(function (f) {
      return row([f.id, f.identity, f.service, f.site, f.port, f.rule, f.in, f.out, f.age]);
    });
    flows.replaceChildren.apply(flows, rows);
    count.textContent = "(" + list.length + ")";
  });
  es.addEventListener("decision", function (ev) {
    var d = JSON.parse(ev.data);
    var v = ["allow", "audit", "deny"].indexOf(d.verdict) >= 0 ? d.verdict : "";
    decisions.insertBefore(row([d.time, d.verdict, d.identity, d.service, d.src, d.dst, d.rule, d.reason], v), decisions.firstChild);
    while (decisions.rows.length > maxDecisions) { decisions.deleteRow(-1); }
  });
})();
