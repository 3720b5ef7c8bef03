// Behaviour HTMX does not give by itself: stale data stays visible with a quiet warning
// when a refresh fails, and the job buttons stay disabled while a job runs.
(function () {
  function now() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function refreshFailed(event) {
    var panel = event.detail.elt.closest("[data-refresh]");
    if (panel) {
      var warning = panel.querySelector("[data-stale-warning]");
      if (warning) {
        warning.hidden = false;
        warning.textContent =
          "Could not refresh (" + now() + "). Showing the balance as of " + panel.dataset.asOf + ".";
      }
    }
    var job = event.detail.elt.closest("[data-job-panel]");
    if (job) {
      var note = document.getElementById("job-connection");
      if (note) {
        note.hidden = false;
        note.textContent =
          "We could not reach the server (" + now() + "). Your job keeps running; " +
          "its result will appear here when the connection is back.";
      }
    }
  }

  function syncJobButtons() {
    var active = document.querySelector("[data-job-panel][data-job-active]");
    document.querySelectorAll("[data-job-button]").forEach(function (button) {
      button.disabled = !!active;
      if (active) { button.setAttribute("aria-busy", "true"); } else { button.removeAttribute("aria-busy"); }
    });
  }

  document.addEventListener("htmx:sendError", refreshFailed);
  document.addEventListener("htmx:responseError", refreshFailed);
  document.addEventListener("htmx:afterSettle", function (event) {
    var note = document.getElementById("job-connection");
    if (note && event.detail.elt.closest && event.detail.elt.closest("[data-job-panel]")) { note.hidden = true; }
    syncJobButtons();
  });
  document.addEventListener("DOMContentLoaded", syncJobButtons);
})();
