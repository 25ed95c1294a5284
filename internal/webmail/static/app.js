// posthorn webmail: keyboard shortcuts and live updates. Everything works
// without this file; it only saves clicks and reloads.
(function () {
  "use strict";

  var list = document.getElementById("msglist");
  var message = document.getElementById("message");
  var current = -1;

  function rows() { return list ? list.querySelectorAll("tr.msg:not([hidden])") : []; }

  function select(i) {
    var rs = rows();
    if (!rs.length) { return; }
    i = Math.max(0, Math.min(rs.length - 1, i));
    if (current >= 0 && rs[current]) { rs[current].classList.remove("current"); }
    current = i;
    rs[i].classList.add("current");
    rs[i].scrollIntoView({ block: "nearest" });
  }

  function currentRow() {
    var rs = rows();
    return current >= 0 ? rs[current] : null;
  }

  function go(url) { if (url) { window.location.href = url; } }

  function click(id) {
    var el = document.getElementById(id);
    if (el) { el.click(); }
  }

  function composeFor(mode) {
    if (message) { click(mode === "reply" ? "reply" : mode === "replyall" ? "replyall" : "forward"); return; }
    var r = currentRow();
    var form = document.getElementById("listform");
    if (r && form) { go("/compose?mode=" + mode + "&msg=" + form.dataset.mailbox + "/" + r.dataset.uid); }
  }

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) {
      if (e.key === "Escape") { t.blur(); }
      return;
    }
    switch (e.key) {
      case "j":
        if (list) { select(current + 1); } else if (message) { go(message.dataset.next); }
        break;
      case "k":
        if (list) { select(current - 1); } else if (message) { go(message.dataset.prev); }
        break;
      case "Enter":
      case "o":
        var r = currentRow();
        if (r) { go(r.dataset.href); }
        break;
      case "x":
        var rx = currentRow();
        if (rx) { var cb = rx.querySelector("input[type=checkbox]"); cb.checked = !cb.checked; }
        break;
      case "r": composeFor("reply"); break;
      case "a": composeFor("replyall"); break;
      case "f": composeFor("forward"); break;
      case "c": go("/compose"); break;
      case "#":
        if (message) { click("delete"); break; }
        var rd = currentRow();
        if (rd && !list.querySelector("input[type=checkbox]:checked")) {
          rd.querySelector("input[type=checkbox]").checked = true;
        }
        click("delete-selected");
        break;
      case "/":
        var q = document.getElementById("q");
        if (q) { q.focus(); q.select(); e.preventDefault(); }
        return;
      default:
        return;
    }
    e.preventDefault();
  });

  // A conversation's ▸ shows its messages in place (without script it is
  // a link to the page with that conversation expanded).
  function toggleConv(a) {
    var open = a.getAttribute("aria-expanded") !== "true";
    a.setAttribute("aria-expanded", open ? "true" : "false");
    a.textContent = open ? "▾" : "▸";
    list.querySelectorAll('tr[data-parent="' + a.dataset.conv + '"]').forEach(function (tr) {
      tr.hidden = !open;
    });
  }

  // Rows open on a click anywhere but the checkbox.
  function onListClick(e) {
    var ex = e.target.closest("a.expand");
    if (ex) { e.preventDefault(); toggleConv(ex); return; }
    var tr = e.target.closest("tr.msg");
    if (!tr || e.target.tagName === "INPUT" || e.target.tagName === "A") { return; }
    go(tr.dataset.href);
  }
  if (list) { list.addEventListener("click", onListClick); }

  // Live updates: the server says when a mailbox changed; the page's own
  // URL is fetched again and the list and the mailbox counts swapped in.
  if (!window.EventSource || !(list || message)) { return; }
  var pending = null;
  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var nav = doc.getElementById("mailboxes");
        var oldNav = document.getElementById("mailboxes");
        if (nav && oldNav) { oldNav.replaceWith(document.importNode(nav, true)); }
        if (list) {
          var fresh = doc.getElementById("msglist");
          if (!fresh) { return; }
          var expanded = {};
          list.querySelectorAll('a.expand[aria-expanded="true"]').forEach(function (a) { expanded[a.dataset.conv] = true; });
          var checked = {};
          list.querySelectorAll("input[type=checkbox]:checked").forEach(function (c) { checked[c.value] = true; });
          var cur = currentRow();
          var curUID = cur ? cur.dataset.uid : null;
          var node = document.importNode(fresh, true);
          list.replaceWith(node);
          list = node;
          current = -1;
          list.querySelectorAll("a.expand").forEach(function (a) {
            if ((a.getAttribute("aria-expanded") === "true") !== !!expanded[a.dataset.conv]) { toggleConv(a); }
          });
          rows().forEach(function (r, i) {
            var c = r.querySelector("input[type=checkbox]");
            if (c && checked[c.value]) { c.checked = true; }
            if (r.dataset.uid === curUID) { select(i); }
          });
          list.addEventListener("click", onListClick);
          var paging = doc.querySelector(".paging");
          var oldPaging = document.querySelector(".paging");
          if (paging && oldPaging) { oldPaging.replaceWith(document.importNode(paging, true)); }
        }
      })
      .catch(function () {});
  }
  var es = new EventSource("/events");
  es.addEventListener("change", function () {
    if (!pending) { pending = setTimeout(refresh, 250); }
  });
})();

// Drafts saved as you go: a few seconds after typing stops, the compose
// form is posted to /compose/autosave (the CSRF token in a header); the
// answer names the draft that now holds it, which the next save replaces,
// and its attachments, which the form keeps (the files already sent are
// cleared from the file field so that they are not attached twice).
(function () {
  "use strict";
  var form = document.getElementById("composeform");
  if (!form || !window.fetch || !window.FormData) { return; }
  var meta = document.querySelector('meta[name="csrf-token"]');
  var status = document.getElementById("autosave-status");
  var delay = Number(form.dataset.autosaveDelay || 3000);
  var timer = null, busy = null, dirty = false, submitting = false;

  function say(t) { if (status) { status.textContent = t; } }

  function keptList(atts) {
    var ul = document.getElementById("kept");
    if (!ul) { return; }
    ul.textContent = "";
    atts.forEach(function (a) {
      var li = document.createElement("li");
      var label = document.createElement("label");
      var cb = document.createElement("input");
      cb.type = "checkbox"; cb.name = "keep"; cb.value = a.Path; cb.checked = true;
      label.appendChild(cb);
      label.appendChild(document.createTextNode(" " + a.Name));
      li.appendChild(label);
      ul.appendChild(li);
    });
  }

  function save() {
    timer = null;
    if (submitting) { return Promise.resolve(); }
    if (busy) { dirty = true; return busy; }
    dirty = false;
    var data = new FormData(form);
    data.delete("action");
    say("Saving…");
    busy = fetch(form.dataset.autosave, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRF-Token": meta ? meta.content : "" }
    }).then(function (resp) {
      return resp.json().then(function (j) { return { ok: resp.ok, j: j }; });
    }).then(function (r) {
      if (!r.ok) { say("Not saved: " + (r.j.error || "error")); return; }
      form.elements.draft.value = r.j.draft;
      if (form.elements.forward) { form.elements.forward.value = ""; }
      var file = document.getElementById("attachment");
      if (file && file.files.length) { file.value = ""; }
      keptList(r.j.attachments || []);
      say("Draft saved at " + r.j.saved);
      form.dataset.saved = r.j.draft;
    }).catch(function () { say("Not saved (offline?)"); })
      .then(function () {
        busy = null;
        if (dirty && !submitting) { schedule(); }
      });
    return busy;
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, delay);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  // Sending or saving by hand waits for a save in progress, so that the
  // form names the latest draft (which the server then removes or replaces).
  form.addEventListener("submit", function (e) {
    if (timer) { clearTimeout(timer); timer = null; }
    if (submitting) { return; }
    if (busy) {
      e.preventDefault();
      var submitter = e.submitter;
      busy.then(function () {
        submitting = true;
        if (form.requestSubmit) { form.requestSubmit(submitter); } else { form.submit(); }
      });
      return;
    }
    submitting = true;
  });
})();
