// Only adds to pages that work without it: every form posts and every wait is written by the server.
(function () {
  "use strict";

  // "You can ask for a new code in N seconds" counts down; its button is off until zero. The
  // server wrote the sentence for every second left (data-texts), in the page's language.
  Array.prototype.forEach.call(document.querySelectorAll("[data-countdown]"), function (el) {
    var left = parseInt(el.getAttribute("data-countdown"), 10);
    var texts = JSON.parse(el.getAttribute("data-texts") || "[]");
    var button = document.getElementById(el.getAttribute("data-for"));
    if (!(left > 0)) { return; }
    if (button) { button.disabled = true; }
    var timer = setInterval(function () {
      left -= 1;
      if (texts[left] !== undefined) { el.textContent = texts[left]; }
      if (left > 0) { return; }
      clearInterval(timer);
      if (button) { button.disabled = false; }
    }, 1000);
  });

  // The recovery codes' print button: printing needs a script, so it shows only with one.
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });

  // Each form is sent once. A second send (Enter pressed after the code sent itself, a double
  // click) would replace the answer to the first with "Please wait" or a cooldown.
  function sendOnce(form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-sent")) { event.preventDefault(); return; }
      form.setAttribute("data-sent", "1");
    });
  }
  Array.prototype.forEach.call(document.forms, sendOnce);
  // A page brought back by the Back button is a fresh start.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    Array.prototype.forEach.call(document.forms, function (form) { form.removeAttribute("data-sent"); });
  });

  // The code form sends itself at the last digit, when every code has the same length (the
  // field's own data-length, an app's 6, before the provider's).
  var main = document.querySelector("[data-code-length]");
  var code = document.querySelector('input[autocomplete="one-time-code"]');
  var fixed = code && (code.getAttribute("data-length") || (main && main.getAttribute("data-code-length")));
  if (fixed && code.form) {
    var length = parseInt(fixed, 10);
    code.addEventListener("input", function () {
      if (code.form.getAttribute("data-sent")) { return; }
      if (code.value.replace(/\D/g, "").length !== length || !code.checkValidity()) { return; }
      // requestSubmit fires "submit", which marks the form sent; submit() does not, so mark it here.
      if (code.form.requestSubmit) { code.form.requestSubmit(); } else {
        code.form.setAttribute("data-sent", "1");
        code.form.submit();
      }
    });
  }
})();
