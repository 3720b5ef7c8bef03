// Behaviour HTMX does not give by itself: stale data stays visible with a quiet warning
// when a refresh fails; the job buttons stay disabled (with a spinner) while a job is sent
// or runs; every failure of the jobs page is told in a sentence that says what happened;
// destructive buttons ask first; wide tables say that they scroll; an audit's progress says
// when it cannot be refreshed, and an upload says it is under way.
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
    var progress = closest(elt, "[data-audit-progress]");
    if (progress) { auditPollFailed(progress, status); }
    if (closest(elt, "[data-audit-action]")) {
      auditActing = false;
      auditNote(status
        ? "The server could not change the audit (error " + status + "). Reload the page to see its status."
        : "Could not reach the server to change the audit. Check your connection; its status shows here again " +
          "once the connection is back.");
    }
  }

  // --- Audits -----------------------------------------------------------------------------

  function auditNote(text) {
    var note = document.querySelector("[data-audit-connection]");
    if (!note) { return; }
    note.hidden = !text;
    note.textContent = text || "";
  }

  function auditPollFailed(progress, status) {
    if (!status) {
      auditNote("We could not reach the server (" + now() + "). The audit goes on; its progress shows here " +
        "again when the connection is back.");
    } else if (status >= 500) {
      auditNote("The server had a problem showing the progress (error " + status + ", " + now() +
        "). The audit is not affected; we keep asking.");
    } else {
      // It will not get better by asking again (gone, or not ours to see): stop.
      var still = progress.cloneNode(true);
      ["hx-get", "hx-trigger", "hx-swap", "data-audit-polling"].forEach(function (name) { still.removeAttribute(name); });
      progress.replaceWith(still);
      auditNote("This audit's progress can no longer be shown (error " + status + "). Reload the page.");
    }
  }

  // A file over the upload limit is refused before a byte is sent, where it was chosen.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input || input.type !== "file" || !input.dataset.maxBytes) { return; }
    var limit = Number(input.dataset.maxBytes);
    var file = input.files && input.files[0];
    if (file && file.size > limit) {
      input.setCustomValidity("The file is larger than the upload limit of " +
        Math.floor(limit / 1048576) + " MiB. Choose a smaller file, or split it into several audits.");
      input.reportValidity();
    } else {
      input.setCustomValidity("");
    }
  });

  // An upload takes a while: its button says so, and cannot send the file twice.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.matches || !form.matches("[data-busy-form]")) { return; }
    form.querySelectorAll("[data-busy-button]").forEach(function (button) {
      button.dataset.label = button.textContent;
      button.setAttribute("aria-busy", "true");
      button.textContent = "Uploading…";
      // After this event: a disabled submitter would not be sent.
      setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  // Back to a page with a busy form (the browser's back button): it can be sent again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("[data-busy-form] [data-busy-button][aria-busy]").forEach(function (button) {
      button.removeAttribute("aria-busy");
      button.disabled = false;
      button.textContent = button.dataset.label || button.textContent;
    });
  });

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
    if (closest(event.target, "[data-audit-progress]") || closest(event.target, "[data-audit-controls]")) {
      auditNote("");
    }
    syncJobButtons();
  });

  // Pause becomes Resume (and back): the button that had keyboard focus is gone, so the
  // new controls take it rather than the page (only after a button of theirs was used: a
  // status change seen by the poll moves nobody's focus).
  var auditActing = false;
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (closest(event.detail.elt, "[data-audit-action]")) { auditActing = true; }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var controls = closest(event.target, "[data-audit-controls]");
    if (!controls || !auditActing) { return; }
    auditActing = false;
    if (document.activeElement && document.activeElement !== document.body && document.contains(document.activeElement)) {
      return;
    }
    var first = controls.querySelector("button");
    (first || controls).focus();
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
