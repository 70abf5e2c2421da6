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

  // Question checks: one question is current (outlined). Y or N answers it and moves on to the
  // next unanswered one; up/down move; Enter sends once every question has an answer (else it
  // goes to the first unanswered one); a tap answers a question and moves on the same way.
  function qForm() { return document.querySelector("#task form.answer.questions"); }
  function qItems(form) { return Array.prototype.slice.call(form.querySelectorAll("li.qcheck")); }
  function qAnswered(li) { return !!li.querySelector("input:checked"); }
  function qSetCurrent(form, li) {
    qItems(form).forEach(function (x) { x.classList.toggle("current", x === li); });
    if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
  }
  function qNext(form, from) {
    var items = qItems(form);
    var start = items.indexOf(from);
    for (var k = 1; k <= items.length; k++) {
      var li = items[(start + k) % items.length];
      if (!qAnswered(li)) return li;
    }
    return null;
  }
  function qFocusSend(form) {
    qSetCurrent(form, null);
    var send = form.querySelector("button.send");
    if (send) send.focus();
  }
  function qMark(form, li) {
    li.classList.toggle("answered", qAnswered(li));
    var next = qNext(form, li);
    if (next) qSetCurrent(form, next); else qFocusSend(form);
  }
  document.addEventListener("change", function (e) {
    var form = qForm();
    var li = e.target.closest && e.target.closest("li.qcheck");
    if (form && li && form.contains(li)) qMark(form, li);
  });
  function qKey(e, form) {
    var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    var items = qItems(form);
    var cur = form.querySelector("li.qcheck.current");
    if (key === "y" || key === "n") {
      if (!cur) cur = qNext(form, items[items.length - 1]) || items[items.length - 1];
      var input = cur.querySelector('input[value="' + (key === "y" ? "yes" : "no") + '"]');
      input.checked = true;
      qMark(form, cur);
      return true;
    }
    if (key === "ArrowDown" || key === "ArrowUp") {
      var at = cur ? items.indexOf(cur) : items.length;
      at = Math.max(0, Math.min(items.length - 1, at + (key === "ArrowDown" ? 1 : -1)));
      qSetCurrent(form, items[at]);
      return true;
    }
    if (key === "Enter") {
      var open = qNext(form, items[items.length - 1]);
      if (open) { qSetCurrent(form, open); showHint(); return true; }
      if (!busy) { busy = true; form.querySelector("button.send").click(); }
      return true;
    }
    if (key === "s") { form.querySelector("button.skip").click(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    var qf = qForm();
    if (qf && !(e.target.closest && e.target.closest("textarea, select, summary, details.flag"))) {
      if (e.key === "Escape" && closeZoom()) return;
      if (qKey(e, qf)) { e.preventDefault(); closeZoom(); return; }
      if (e.key.length === 1 && e.key !== " ") showHint();
      return;
    }
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
