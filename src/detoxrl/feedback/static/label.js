// The labelling page of `detoxrl label`. No library, nothing from the internet: the server inlines this
// file and checks every submission (the messages shown here come from it).
"use strict";
(function () {
  var NAME_KEY = "detoxrl.labeller";
  var S = { batch: null, name: null, done: [], index: -1, ranks: [], special: null, focus: 0, busy: false };
  var $ = function (id) { return document.getElementById(id); };

  function api(method, path, body) {
    var opts = { method: method, headers: { "Accept": "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        return { status: res.status, data: data };
      });
    });
  }

  function draftKey(id) { return "detoxrl.draft." + S.name + "." + id; }
  function saveDraft() {
    var item = current();
    if (item) localStorage.setItem(draftKey(item.id), JSON.stringify({ ranks: S.ranks, special: S.special }));
  }
  function current() { return S.batch && S.index >= 0 ? S.batch.items[S.index] : null; }

  function message(text, kind) {
    var m = $("message");
    m.textContent = text || "";
    m.className = kind || "";
  }

  function showProgress() {
    $("progress").textContent = S.done.length + " / " + S.batch.items.length + " labelled by you";
  }

  // ------------------------------------------------------------------------------------ name
  function askName() {
    $("name-form").hidden = false;
    $("item").hidden = true;
    $("finished").hidden = true;
    $("who").hidden = true;
    $("instructions").open = true;
    $("name").value = S.name || "";
    $("name").focus();
  }

  function setName(name) {
    S.name = name.split(/\s+/).filter(Boolean).join(" ");
    localStorage.setItem(NAME_KEY, S.name);
    $("name-form").hidden = true;
    $("who-name").textContent = S.name;
    $("who").hidden = false;
    resume();
  }

  // ------------------------------------------------------------------------------ resuming
  function resume() {
    return api("GET", "/api/progress?labeller=" + encodeURIComponent(S.name)).then(function (r) {
      if (r.status !== 200) { fatal(r.data.error || ("the server answered " + r.status)); return; }
      S.done = r.data.done;
      showProgress();
      var next = r.data.next;
      S.index = next === null ? -1 : S.batch.items.findIndex(function (it) { return it.id === next; });
      if (S.index < 0) { finished(); } else { render(); }
    }, function () { fatal("the labelling server does not answer: is `detoxrl label` still running?"); });
  }

  function finished() {
    $("item").hidden = true;
    $("finished").hidden = false;
  }

  function fatal(text) {
    $("fatal").textContent = text;
    $("fatal").hidden = false;
  }

  // -------------------------------------------------------------------------------- an item
  function render() {
    var item = current();
    var n = item.completions.length;
    var draft = null;
    try { draft = JSON.parse(localStorage.getItem(draftKey(item.id)) || "null"); } catch (e) { draft = null; }
    S.ranks = draft && Array.isArray(draft.ranks) && draft.ranks.length === n ? draft.ranks : new Array(n).fill(null);
    S.special = draft ? draft.special || null : null;
    $("finished").hidden = true;
    $("item").hidden = false;
    $("item-pos").textContent = "(item " + (S.index + 1) + " of " + S.batch.items.length + ", id " + item.id + ")";
    $("prompt").textContent = item.prompt;
    var list = $("candidates");
    list.textContent = "";
    item.completions.forEach(function (text, i) { list.appendChild(candidate(text, i, n)); });
    $("keys").innerHTML = "Keys: <kbd>Tab</kbd>/<kbd>↑</kbd><kbd>↓</kbd> or <kbd>j</kbd><kbd>k</kbd> move between " +
      "candidates · <kbd>1</kbd>–<kbd>" + n + "</kbd> rank the focused one · <kbd>0</kbd> clears its rank · " +
      S.batch.specials.map(function (s) { return "<kbd>" + s.key + "</kbd> " + s.name; }).join(" · ") +
      " · <kbd>Enter</kbd> submit";
    message("");
    paint();
    focusCandidate(0);
  }

  function candidate(text, i, n) {
    var li = document.createElement("li");
    li.className = "cand";
    li.tabIndex = 0;
    li.dataset.i = i;
    var left = document.createElement("div");
    var head = document.createElement("span");
    head.className = "label";
    head.textContent = "candidate " + (i + 1);
    left.appendChild(head);
    var lab = document.createElement("label");
    lab.className = "rank-label";
    lab.textContent = "rank ";
    var sel = document.createElement("select");
    sel.className = "rank";
    sel.tabIndex = -1;
    sel.setAttribute("aria-label", "rank of candidate " + (i + 1));
    sel.appendChild(new Option("–", ""));
    for (var r = 1; r <= n; r++) sel.appendChild(new Option(String(r), String(r)));
    sel.addEventListener("change", function () { setRank(i, sel.value === "" ? null : Number(sel.value)); });
    lab.appendChild(sel);
    left.appendChild(lab);
    var body = document.createElement("div");
    body.className = "text" + (text.trim() ? "" : " empty");
    body.textContent = text.trim() ? text : "(empty response)";
    li.appendChild(left);
    li.appendChild(body);
    li.addEventListener("focusin", function () { S.focus = i; paint(); });
    li.addEventListener("click", function (e) { if (e.target.tagName !== "SELECT") li.focus(); });
    return li;
  }

  function setRank(i, rank) {
    S.ranks[i] = rank;
    if (rank !== null) S.special = null;
    saveDraft();
    paint();
  }

  function setSpecial(name) {
    S.special = S.special === name ? null : name;
    saveDraft();
    paint();
  }

  function focusCandidate(i) {
    var items = $("candidates").children;
    if (!items.length) return;
    S.focus = Math.max(0, Math.min(items.length - 1, i));
    items[S.focus].focus();
  }

  function paint() {
    var items = $("candidates").children;
    for (var i = 0; i < items.length; i++) {
      items[i].querySelector("select").value = S.ranks[i] === null ? "" : String(S.ranks[i]);
      items[i].classList.toggle("focused", i === S.focus);
    }
    $("candidates").classList.toggle("muted", S.special !== null);
    var buttons = $("specials").querySelectorAll("button");
    for (var b = 0; b < buttons.length; b++) {
      buttons[b].setAttribute("aria-pressed", String(buttons[b].dataset.special === S.special));
    }
  }

  // ------------------------------------------------------------------------------- submitting
  function submit() {
    var item = current();
    if (!item || S.busy) return;
    var body = { labeller: S.name, id: item.id };
    if (S.special) { body.special = S.special; } else { body.ranks = S.ranks; }
    S.busy = true;
    $("submit").disabled = true;
    api("POST", "/api/submit", body).then(function (r) {
      if (r.status === 200) {
        localStorage.removeItem(draftKey(item.id));
        S.done = r.data.done;
        message("Saved.", "ok");
        advance(r.data.next);
      } else if (r.status === 409) {
        localStorage.removeItem(draftKey(item.id));
        message(r.data.error, "error");
        resume();
      } else {
        message("Not saved: " + (r.data.error || ("the server answered " + r.status)), "error");
      }
    }, function () {
      message("Not saved: the server does not answer (is `detoxrl label` still running?). Your ranks stay " +
              "on this page; press Enter to try again.", "error");
    }).then(function () { S.busy = false; $("submit").disabled = false; });
  }

  function advance(next) {
    showProgress();
    S.index = next === null ? -1 : S.batch.items.findIndex(function (it) { return it.id === next; });
    if (S.index < 0) { finished(); return; }
    render();
    message("Saved.", "ok");
  }

  // ------------------------------------------------------------------------------------ keys
  function onKey(e) {
    if ($("item").hidden || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    var n = current() ? current().completions.length : 0;
    var k = e.key;
    if (k === "Enter") { e.preventDefault(); submit(); return; }
    if (/^[1-9]$/.test(k) && Number(k) <= n) {
      e.preventDefault();
      setRank(S.focus, Number(k));
      focusCandidate(S.focus + 1);
      return;
    }
    if (k === "0" || k === "Backspace" || k === "Delete") { e.preventDefault(); setRank(S.focus, null); return; }
    if (e.target.tagName === "SELECT" && (k === "ArrowUp" || k === "ArrowDown")) return;
    if (k === "ArrowDown" || k === "j") { e.preventDefault(); focusCandidate(S.focus + 1); return; }
    if (k === "ArrowUp" || k === "k") { e.preventDefault(); focusCandidate(S.focus - 1); return; }
    var special = S.batch.specials.find(function (s) { return s.key === k.toLowerCase(); });
    if (special) { e.preventDefault(); setSpecial(special.name); }
  }

  // ------------------------------------------------------------------------------------ start
  function start() {
    api("GET", "/api/batch").then(function (r) {
      if (r.status !== 200) { fatal(r.data.error || ("the server answered " + r.status)); return; }
      S.batch = r.data;
      $("instructions-body").innerHTML = S.batch.instructions_html;
      S.batch.specials.forEach(function (s) {
        var b = document.createElement("button");
        b.type = "button";
        b.className = "special";
        b.dataset.special = s.name;
        b.title = s.meaning;
        b.innerHTML = s.name.replace("_", " ") + " <kbd>" + s.key + "</kbd>";
        b.addEventListener("click", function () { setSpecial(s.name); });
        $("specials").appendChild(b);
      });
      $("submit").addEventListener("click", submit);
      document.addEventListener("keydown", onKey);
      $("name-entry").addEventListener("submit", function (e) {
        e.preventDefault();
        if ($("name").value.trim()) setName($("name").value);
      });
      $("change-name").addEventListener("click", askName);
      var name = localStorage.getItem(NAME_KEY);
      if (name) { setName(name); } else { askName(); }
    }, function () { fatal("the labelling server does not answer: is `detoxrl label` running?"); });
  }

  start();
})();
