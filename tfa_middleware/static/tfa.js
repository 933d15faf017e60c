// Counts down "You can ask for a new code in N seconds" and re-enables the button at zero.
// The pages work without it: the number is written by the server and a reload updates it.
(function () {
  var waits = document.querySelectorAll("[data-countdown]");
  Array.prototype.forEach.call(waits, function (el) {
    var left = parseInt(el.getAttribute("data-countdown"), 10);
    var number = el.querySelector("[data-seconds]");
    var button = document.getElementById(el.getAttribute("data-for"));
    if (!number || !(left > 0)) { return; }
    if (button) { button.disabled = true; }
    var timer = setInterval(function () {
      left -= 1;
      if (left <= 0) {
        clearInterval(timer);
        el.textContent = "You can ask for a new code now.";
        if (button) { button.disabled = false; }
        return;
      }
      number.textContent = left;
    }, 1000);
  });
})();
