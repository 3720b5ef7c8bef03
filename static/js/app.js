// Behaviour HTMX does not give by itself: stale data stays visible with a quiet warning
// when a refresh fails; the job buttons stay disabled (with a spinner) while a job is sent
// or runs; every failure of the jobs page is told in a sentence that says what happened;
// destructive buttons ask first; wide tables say that they scroll.
(function () {
  "use strict";

  function now() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function closest(elt, selector) {
    return elt && elt.closest ? elt.closest(selector) : null;
  }

  // --- Jobs -----------------------------------------------------------------------------

  var sending = false;

  function jobPanel() {
    return document.getElementById("job-result");
  }

  function syncJobButtons() {
    var busy = sending || !!document.querySelector("[data-job-panel][data-job-active]");
    document.querySelectorAll("[data-job-button]").forEach(function (button) {
      button.disabled = busy;
      if (busy) { button.setAttribute("aria-busy", "true"); } else { button.removeAttribute("aria-busy"); }
    });
  }

  function connectionNote(text) {
    var note = document.getElementById("job-connection");
    if (!note) { return; }
    note.hidden = !text;
    note.textContent = text || "";
  }

  function panelMessage(panel, text, attribute) {
    var message = document.createElement("p");
    message.className = "message error";
    message.setAttribute("role", "alert");
    message.setAttribute(attribute, "");
    message.textContent = text;
    panel.replaceChildren(message);
  }

  // A poll that will never succeed (the job is gone, or not ours to see) stops: the panel
  // is replaced by a copy without its polling, which HTMX forgets with the old element.
  function stopPolling(panel) {
    var still = panel.cloneNode(true);
    ["hx-get", "hx-trigger", "hx-swap", "data-job-active"].forEach(function (name) { still.removeAttribute(name); });
    still.querySelectorAll("[aria-busy]").forEach(function (busy) { busy.remove(); });
    var hadFocus = panel.contains(document.activeElement);
    panel.replaceWith(still);
    if (hadFocus) { still.focus(); }
    return still;
  }

  function sendFailed(status) {
    if (!status) {
      return "Could not reach the server to send your job. Check your connection and try again; " +
        "if it went through after all, it appears in the history below with its cost.";
    }
    if (status >= 500) {
      return "The server had a problem and could not take your job (error " + status + "). " +
        "Try again in a moment; if it was taken after all, it appears in the history below with its cost.";
    }
    return "The server refused your job (error " + status + "), so nothing was charged. " +
      "Reload the page and try again.";
  }

  function pollFailed(panel, status) {
    if (!status) {
      connectionNote("We could not reach the server (" + now() + "). Your job keeps running; " +
        "its result will appear here when the connection is back.");
      return;
    }
    if (status >= 500) {
      // Reading a result does not touch the job: keep asking.
      connectionNote("The server had a problem showing your job's result (error " + status + ", " + now() +
        "). Your job is not affected; we keep asking every 2 seconds.");
      return;
    }
    connectionNote("");
    var still = stopPolling(panel);
    panelMessage(still, status === 404
      ? "This job can no longer be found (error 404), so its result cannot be shown here. " +
        "Reload the page to see your organisation's job history."
      : "The server refused to show this job's result (error " + status + "). Reload the page and try again.",
    "data-job-poll-error");
    syncJobButtons();
  }

  function requestFailed(event) {
    var elt = event.detail.elt;
    var status = event.type === "htmx:responseError" ? event.detail.xhr.status : 0;
    var refreshing = closest(elt, "[data-refresh]");
    if (refreshing) {
      var warning = refreshing.querySelector("[data-stale-warning]");
      if (warning) {
        warning.hidden = false;
        warning.textContent = "Could not refresh (" + now() + (status ? ", error " + status : "") +
          "). Showing the balance as of " + refreshing.dataset.asOf + ".";
      }
    }
    if (closest(elt, "[data-job-form]")) {
      var panel = jobPanel();
      if (panel) { panelMessage(panel, sendFailed(status), "data-job-send-error"); }
    }
    var polling = closest(elt, "[data-job-panel]");
    if (polling) { pollFailed(polling, status); }
  }

  document.addEventListener("htmx:sendError", requestFailed);
  document.addEventListener("htmx:timeout", requestFailed);
  document.addEventListener("htmx:responseError", requestFailed);

  document.addEventListener("htmx:beforeSend", function (event) {
    if (!closest(event.detail.elt, "[data-job-form]")) { return; }
    sending = true;
    syncJobButtons();
    connectionNote("");
    // The clicked button is now disabled and would drop keyboard focus on the page: the
    // panel that will tell how the job goes takes it (and keeps it across its swaps).
    var panel = jobPanel();
    if (panel) {
      var status = document.createElement("p");
      status.setAttribute("aria-busy", "true");
      status.textContent = "Sending your job…";
      panel.replaceChildren(status);
      panel.focus();
    }
  });

  // Fired once a response is handled or has failed (on an ancestor when the element that
  // asked was swapped away, so only the form is recognised here).
  document.addEventListener("htmx:afterRequest", function (event) {
    if (closest(event.detail.elt, "[data-job-form]")) { sending = false; }
    syncJobButtons();
  });

  // Fired on the new content, in the same moment it appears: an answer came, so the
  // connection is fine again.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (closest(event.target, "[data-job-panel]")) { connectionNote(""); }
    syncJobButtons();
  });

  document.addEventListener("htmx:afterSettle", function () {
    syncJobButtons();
    markScrollingTables();
  });

  // --- Confirmation ---------------------------------------------------------------------

  // A button with data-confirm asks before its form is sent. The server asks again on a
  // page of its own unless the form says it was confirmed, so it also works without this.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !button.dataset.confirm) { return; }
    if (!window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    var confirmed = event.target.querySelector("input[name=confirmed]");
    if (!confirmed) {
      confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirmed";
      event.target.appendChild(confirmed);
    }
    confirmed.value = button.value;
  }, true);

  // --- Tables that scroll sideways ------------------------------------------------------

  function markScrollingTables() {
    document.querySelectorAll(".table-scroll").forEach(function (box) {
      var overflowing = box.scrollWidth > box.clientWidth + 1;
      var hint = box.previousElementSibling;
      var hasHint = hint && hint.classList.contains("scroll-hint");
      if (overflowing && !hasHint) {
        hint = document.createElement("p");
        hint.className = "scroll-hint muted";
        hint.id = "scroll-hint-" + Math.random().toString(36).slice(2);
        hint.textContent = "Scroll sideways to see every column →";
        box.before(hint);
        box.setAttribute("aria-describedby", hint.id);
        box.tabIndex = 0; // keyboard users scroll it with the arrow keys
      } else if (!overflowing && hasHint) {
        hint.remove();
        box.removeAttribute("aria-describedby");
        box.removeAttribute("tabindex");
      }
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(markScrollingTables, 150);
  });

  document.addEventListener("DOMContentLoaded", function () {
    syncJobButtons();
    markScrollingTables();
  });
})();
