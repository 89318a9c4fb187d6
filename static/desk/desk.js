// The desk's live layer: the client's event stream, fragments swapped in place, approval
// dialogs and countdowns. Every page works without it; this only makes it live.
(function () {
  "use strict";
  var body = document.body;
  var streamPath = body.dataset.stream;
  var fragmentBase = (body.dataset.fragments || "").replace(/banner$/, "");
  var statusEl = document.getElementById("live-status");
  var lastSeq = null;
  var socket = null;
  var attempts = 0;
  var pollTimer = null;
  var staleSince = null;
  // The book page's regions the greeks and fills move: risk against limits, the day's chart, positions.
  var BOOK_REGIONS = ["book-live", "book-history", "book-positions"];

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function clock(date) { return date.toISOString().slice(11, 19) + " UTC"; }

  function replaceById(id, html) {
    var current = document.getElementById(id);
    if (!current) return;
    var parsed = typeof html === "string" ? new DOMParser().parseFromString(html, "text/html") : html;
    var fresh = parsed.getElementById(id);
    if (!fresh) return;
    var focused = document.activeElement;
    var focusedSummary = -1;  // a disclosure's summary keeps its focus across a refresh
    if (current.contains(focused) && focused !== document.body) {
      if (focused.tagName !== "SUMMARY") return;  // never pull a control from under the trader
      focusedSummary = Array.prototype.indexOf.call(current.querySelectorAll("summary"), focused);
    }
    if (current.querySelector("dialog[open]")) return;
    var imported = document.importNode(fresh, true);
    // A disclosure the trader opened (a chart's numbers) stays open across a refresh.
    var wasOpen = current.querySelectorAll("details");
    imported.querySelectorAll("details").forEach(function (details, index) {
      if (wasOpen[index] && wasOpen[index].open) details.open = true;
    });
    current.replaceWith(imported);
    if (focusedSummary >= 0) {
      var summary = imported.querySelectorAll("summary")[focusedSummary];
      if (summary) summary.focus();
    }
    enhance(document.getElementById(id));
  }

  function refreshFragment(name, id) {
    if (!document.getElementById(id) || !fragmentBase) return Promise.resolve();
    return fetch(fragmentBase + name, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) { if (html) replaceById(id, html); });
  }

  // The page's own regions, fetched once for all of them. One fetch at a time: events that come
  // while one is in flight ask for one more after it, not one each.
  var pending = {}, inFlight = false;
  function refreshPageRegion(ids) {
    (typeof ids === "string" ? [ids] : ids).forEach(function (id) {
      if (document.getElementById(id)) pending[id] = true;
    });
    if (inFlight || !Object.keys(pending).length) return Promise.resolve();
    var wanted = Object.keys(pending);
    pending = {};
    inFlight = true;
    return fetch(window.location.href, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (!html) return;
        var parsed = new DOMParser().parseFromString(html, "text/html");
        wanted.forEach(function (id) { replaceById(id, parsed); });
        body.dispatchEvent(new CustomEvent("desk:refreshed", {detail: wanted}));
      })
      .catch(function () { /* the next event or poll tries again */ })
      .then(function () { inFlight = false; if (Object.keys(pending).length) refreshPageRegion([]); });
  }

  function refreshAll() {
    refreshFragment("banner", "state-banner");
    refreshFragment("badge", "pending-badge");
    refreshPageRegion(BOOK_REGIONS.concat(["proposal-list", "chat-log", "orders-live"]));
  }

  function onEvent(event) {
    if (typeof event.seq === "number") {
      if (lastSeq !== null && event.seq <= lastSeq) return;  // a replayed repeat
      lastSeq = event.seq;
    }
    switch (event.type) {
      case "halt":
      case "agent_status":
        refreshFragment("banner", "state-banner");
        refreshFragment("badge", "pending-badge");
        refreshPageRegion("proposal-list");  // buttons follow the halt
        refreshPageRegion("orders-live");
        break;
      case "proposal":
        refreshFragment("badge", "pending-badge");
        refreshPageRegion("proposal-list");
        break;
      case "agent_message":
        onAgentMessage(event.data || {});
        break;
      case "greeks":
        writeGreeks(event.data || {});
        refreshPageRegion(BOOK_REGIONS);
        break;
      case "trade":
      case "position":
        refreshPageRegion(event.type === "trade" ? BOOK_REGIONS.concat(["orders-live"]) : BOOK_REGIONS);
        break;
      case "order":
        refreshPageRegion("orders-live");
        break;
    }
  }

  // A greeks event carries the numbers: they are written at once, and the regions that depend on
  // more than the event (positions, the chart) follow with the page's own rendering.
  function writeGreeks(data) {
    (data.by_underlying || []).forEach(function (entry) {
      ["delta", "gamma", "vega", "theta"].forEach(function (name) {
        document.querySelectorAll('[data-live^="' + entry.underlying + ":" + name + ':"]').forEach(function (el) {
          var value = entry[name];
          var decimals = parseInt(el.dataset.live.split(":")[2], 10) || 2;
          el.textContent = (typeof value === "number") ? value.toFixed(decimals) : "—";
        });
      });
    });
    body.dispatchEvent(new CustomEvent("desk:numbers", {detail: data}));
  }

  // The agent's reply appears as it streams; once done, the server's rendering (with any
  // proposal it drafted, as a card) replaces it.
  function onAgentMessage(data) {
    var log = document.getElementById("chat-log");
    if (!log || !data.message_id) return;
    var bubble = log.querySelector('[data-message-id="' + data.message_id + '"]');
    if (!bubble) {
      bubble = document.createElement("article");
      bubble.className = "bubble bubble-agent streaming";
      bubble.dataset.messageId = data.message_id;
      var who = document.createElement("p");
      who.className = "who";
      who.textContent = "Agent";
      var text = document.createElement("p");
      text.className = "text";
      bubble.appendChild(who);
      bubble.appendChild(text);
      log.insertBefore(bubble, document.getElementById("chat-end"));
    }
    if (bubble.classList.contains("streaming")) {
      bubble.querySelector(".text").textContent += data.delta || "";
    }
    if (data.done) {
      bubble.classList.remove("streaming");
      refreshPageRegion("chat-log");
    }
    bubble.scrollIntoView({block: "end"});
  }

  function enhanceChat() {
    var form = document.getElementById("chat-form");
    if (!form || form.dataset.enhanced) return;
    form.dataset.enhanced = "1";
    form.addEventListener("submit", function (submit) {
      var box = form.querySelector("textarea");
      var text = box.value.trim();
      if (!text || !socket) return;  // without a live stream, the plain form post does it all
      submit.preventDefault();
      var log = document.getElementById("chat-log");
      var mine = document.createElement("article");
      mine.className = "bubble bubble-user";
      var p = document.createElement("p");
      p.className = "text";
      p.textContent = text;
      mine.appendChild(p);
      log.insertBefore(mine, document.getElementById("chat-end"));
      var data = new FormData(form);
      box.value = "";
      fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                          headers: {"X-Requested-With": "fetch"}})
        .then(function (response) { if (!response.ok) refreshPageRegion("chat-log"); });
    });
  }

  function startPolling() {
    if (pollTimer) return;
    staleSince = staleSince || new Date();
    setStatus("stale", "Stale since " + clock(staleSince) + ": the live stream is down, polling every 5 s");
    pollTimer = setInterval(refreshAll, 5000);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
    staleSince = null;
  }

  function connect() {
    if (!streamPath || !("WebSocket" in window)) { startPolling(); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + streamPath + (lastSeq !== null ? "?since=" + lastSeq : "");
    try { socket = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
    socket.onopen = function () {
      var recovering = attempts > 0 || pollTimer;
      attempts = 0;
      stopPolling();
      setStatus("live", "Live");
      if (recovering) refreshAll();
    };
    socket.onmessage = function (message) {
      try { onEvent(JSON.parse(message.data)); } catch (e) { /* not ours to break the page */ }
    };
    socket.onclose = function () { socket = null; scheduleReconnect(); };
  }

  function scheduleReconnect() {
    attempts += 1;
    if (attempts >= 3) startPolling(); else setStatus("reconnecting", "Reconnecting…");
    setTimeout(connect, Math.min(1000 * Math.pow(2, attempts - 1), 10000));
  }

  function formatSeconds(total) {
    if (total <= 0) return "0 s";
    var minutes = Math.floor(total / 60), seconds = total % 60;
    return (minutes ? minutes + " min " : "") + seconds + " s";
  }

  function tickCountdowns() {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = parseInt(el.dataset.countdown, 10) - 1;
      if (isNaN(left)) return;
      el.dataset.countdown = String(Math.max(left, 0));
      el.textContent = formatSeconds(Math.max(left, 0));
    });
  }

  // An approval's confirmation becomes a modal dialog (focus stays inside; Escape cancels).
  function enhance(root) {
    (root || document).querySelectorAll("details[data-dialog]").forEach(function (details) {
      if (details.dataset.enhanced) return;
      details.dataset.enhanced = "1";
      var summary = details.querySelector("summary");
      var confirm = details.querySelector(".confirm");
      var dialog = document.createElement("dialog");
      dialog.className = "confirm-dialog";
      var title = details.dataset.dialogTitle || "Confirm approval";
      dialog.setAttribute("aria-label", title);
      var heading = document.createElement("h2");
      heading.textContent = title;
      dialog.appendChild(heading);
      dialog.appendChild(confirm);
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = details.dataset.dismissLabel || "Cancel";
      cancel.addEventListener("click", function () { dialog.close(); });
      confirm.querySelector("form").appendChild(cancel);
      details.after(dialog);
      var opener = document.createElement("button");
      opener.type = "button";
      opener.className = details.dataset.openerClass || "primary approve-open";
      opener.textContent = summary.textContent;
      opener.addEventListener("click", function () {
        dialog.showModal();
        (dialog.querySelector("[autofocus]") || dialog.querySelector("button[type=submit]")).focus();
      });
      dialog.addEventListener("close", function () { opener.focus(); });
      dialog.addEventListener("keydown", function (event) {  // Tab cycles inside the dialog
        if (event.key !== "Tab") return;
        var focusable = dialog.querySelectorAll("button, [href], input, select, textarea");
        var first = focusable[0], last = focusable[focusable.length - 1];
        if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
        else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
      });
      details.replaceWith(opener);
      opener.after(dialog);
    });
  }

  // A form that acts on the broker says so while it is in flight, and cannot be sent twice.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.dataset || !form.dataset.busy) return;
    var button = form.querySelector("button[type=submit]");
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
    if (button) { button.textContent = form.dataset.busy; button.setAttribute("aria-disabled", "true"); }
  });

  enhance(document);
  enhanceChat();
  setInterval(tickCountdowns, 1000);
  if (streamPath) connect();
})();
