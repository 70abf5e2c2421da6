// The board polls a small version token and is swapped only when it changed; sections the
// reader opened stay open across a swap.
(function () {
  var open = [];
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (!e.detail.target || e.detail.target.id !== "board") return;
    open = Array.prototype.map.call(e.detail.target.querySelectorAll("details[id][open]"), function (d) { return d.id; });
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
  });
})();
