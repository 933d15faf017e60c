// Only adds to pages that work without it: every form posts and every wait is written by the server.
(function () {
  "use strict";

  // "You can ask for a new code in N seconds" counts down; its button is off until zero.
  function wait(seconds) {
    return "You can ask for a new code in " + seconds + (seconds === 1 ? " second." : " seconds.");
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-countdown]"), function (el) {
    var left = parseInt(el.getAttribute("data-countdown"), 10);
    var button = document.getElementById(el.getAttribute("data-for"));
    if (!(left > 0)) { return; }
    if (button) { button.disabled = true; }
    var timer = setInterval(function () {
      left -= 1;
      if (left > 0) { el.textContent = wait(left); return; }
      clearInterval(timer);
      el.textContent = "You can ask for a new code now.";
      if (button) { button.disabled = false; }
    }, 1000);
  });

  // The code form sends itself at the last digit, when every code has the same length.
  var main = document.querySelector("[data-code-length]");
  var code = document.querySelector('input[autocomplete="one-time-code"]');
  if (main && code && code.form) {
    var length = parseInt(main.getAttribute("data-code-length"), 10);
    var submitted = false;
    code.addEventListener("input", function () {
      if (submitted || code.value.replace(/\D/g, "").length !== length || !code.checkValidity()) { return; }
      submitted = true;
      if (code.form.requestSubmit) { code.form.requestSubmit(); } else { code.form.submit(); }
    });
  }
})();
