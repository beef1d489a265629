// The portal's only script (the Content-Security-Policy refuses inline scripts and handlers).
// Progressive enhancement: every page works without it.
(function () {
  "use strict";

  // Consents: the hospital boxes only matter for "Only the hospitals I choose".
  var pick = document.getElementById("pick-institutions");
  if (pick) {
    var sync = function () {
      var checked = document.querySelector("input[name=scope]:checked");
      pick.disabled = !checked || checked.value !== "some";
    };
    document.querySelectorAll("input[name=scope]").forEach(function (radio) {
      radio.addEventListener("change", sync);
    });
    sync();
  }

  // A form sent back with errors: start at the first field to correct, whose description
  // (aria-describedby) says what is wrong; a fieldset's first box sits under its error.
  var invalid = document.querySelector("main [aria-invalid=true]");
  if (invalid) invalid.focus();

  // A filter that applies as soon as it changes (the access log's "include my own actions").
  document.querySelectorAll("[data-autosubmit]").forEach(function (input) {
    input.addEventListener("change", function () { input.form.submit(); });
  });

  // A form that asks first (closing the shared record).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // A series preview that cannot be rendered says so instead of showing a broken image.
  function noPreview(img) {
    var note = document.createElement("p");
    note.className = "muted";
    note.textContent = "No preview for this series.";
    img.replaceWith(note);
  }
  document.querySelectorAll("img[data-preview]").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) noPreview(img);
    else img.addEventListener("error", function () { noPreview(img); });
  });
})();
