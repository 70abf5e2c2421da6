// Keyboard shortcuts for the voting page: each answer button carries its key in data-key.
// With htmx loaded the answer is sent through htmx directly, so a key pressed right after a
// swap (before htmx has wired up the new form) still swaps the next task in.
// Enter goes on to the next task after a reveal; a key that means nothing here shows which
// keys do; a tap on an image shows it full screen.
(function () {
  var busy = false;
  var hintTimer = null;
  document.addEventListener("htmx:afterRequest", function () { busy = false; });

  function zoomView() { return document.getElementById("zoom-view"); }
  function closeZoom() { var z = zoomView(); if (z && !z.hidden) { z.hidden = true; return true; } return false; }

  function showHint() {
    var hint = document.getElementById("key-hint");
    if (!hint) return;
    hint.hidden = false;
    clearTimeout(hintTimer);
    hintTimer = setTimeout(function () { hint.hidden = true; }, 2500);
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("#task a.zoom");
    var z = zoomView();
    if (link && z) {
      e.preventDefault();
      z.querySelector("img").src = link.getAttribute("href");
      z.hidden = false;
      return;
    }
    if (z && !z.hidden && e.target.closest("#zoom-view")) closeZoom();
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.target.closest && e.target.closest("input, textarea, select, summary")) return;
    if (e.key === "Escape" && closeZoom()) return;
    var next = document.querySelector("#task [data-next]");
    if (next && e.key === "Enter") {
      e.preventDefault();
      if (busy) return;
      if (window.htmx) { busy = true; window.htmx.ajax("GET", next.getAttribute("hx-get"), { target: "#task", swap: "outerHTML" }); }
      else { next.click(); }
      return;
    }
    var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    var btn = document.querySelector('#task form.answer button[data-key="' + key + '"]');
    if (!btn || btn.disabled) {
      if (document.querySelector("#task form.answer") && (e.key.length === 1 || e.key.indexOf("Arrow") === 0) && e.key !== " ") showHint();
      return;
    }
    e.preventDefault();
    closeZoom();
    var form = btn.form;
    if (window.htmx && form.getAttribute("hx-post")) {
      if (busy) return;
      busy = true;
      window.htmx.ajax("POST", form.getAttribute("hx-post"), {
        source: form, target: "#task", swap: "outerHTML", values: { answer: btn.value }
      });
    } else {
      btn.click();
    }
  });
})();
