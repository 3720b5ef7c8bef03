// The API access page: "Get an access token" asks /api/v1/auth/token with the session and
// shows the token (a file of its own: the Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var button = document.getElementById("get-token");
  var output = document.getElementById("token-output");
  if (!button || !output) { return; }
  var csrf = document.cookie.split("; ").find(function (c) { return c.indexOf("csrftoken=") === 0; });
  button.addEventListener("click", function () {
    output.hidden = false;
    output.textContent = "Requesting a token…";
    fetch("/api/v1/auth/token", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrf ? csrf.split("=")[1] : "" }
    }).then(function (response) {
      return response.json().then(function (body) {
        output.textContent = response.ok
          ? "TOKEN=" + body.data.access + "\n\nExpires at " + body.data.expires_at
          : body.error.message;
      });
    }).catch(function () {
      output.textContent = "Could not reach the server. Check your connection and try again.";
    });
  });
})();
