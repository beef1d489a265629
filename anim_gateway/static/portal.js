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

  // The series viewer: steps through the images without reloading the page. Each image is
  // asked from the server (gated and audited) one at a time: while one loads, only the last
  // image stepped to is asked next, so a fast scroll does not fetch every image it passes.
  var viewer = document.getElementById("viewer");
  if (viewer) startViewer(viewer);

  function startViewer(box) {
    var images = JSON.parse(document.getElementById("viewer-images").textContent);
    var template = box.dataset.template;
    var total = Number(box.dataset.total);
    var position = Number(box.dataset.position);
    var img = document.getElementById("viewer-image");
    var count = document.getElementById("viewer-count");
    var slider = document.getElementById("viewer-slider");
    var form = document.getElementById("viewer-go");
    var label = img.alt.replace(/^Image \d+ of \d+/, "");
    form.querySelector("button").hidden = true;

    function source(at) {
      for (var i = 0; i < images.length; i++) {
        if (at <= images[i][1]) return template.replace("SOP", images[i][0]).replace("FRAME", at);
        at -= images[i][1];
      }
      return "";
    }
    function show(at) {
      at = Math.min(Math.max(at, 1), total);
      if (at === position) return;
      position = at;
      img.alt = "Image " + at + " of " + total + label;
      count.textContent = "Image " + at + " of " + total;
      slider.value = at;
      request(at);
      box.querySelectorAll("[data-step]").forEach(function (link) {
        var end = link.dataset.step === "1" ? total : 1;
        link.setAttribute("aria-disabled", String(at === end));
      });
      // Links keep working when opened in a new tab, and a window preset keeps the image.
      box.querySelectorAll("a[href]").forEach(function (link) {
        var target = new URL(link.href);
        target.searchParams.set("image", at + Number(link.dataset.step || 0));
        link.href = target;
      });
      var url = new URL(window.location.href);
      url.searchParams.set("image", at);
      window.history.replaceState(null, "", url);
    }
    var loading = !img.complete; // the page's own image may still be on its way
    var wanted = position;
    img.dataset.position = position;
    function request(at) {
      wanted = at;
      if (loading) return;
      loading = true;
      img.src = source(at);
      img.dataset.position = at;
    }
    function loaded() {
      loading = false;
      if (wanted !== Number(img.dataset.position)) request(wanted);
    }
    img.addEventListener("load", loaded);
    img.addEventListener("error", loaded);
    box.querySelectorAll("[data-step]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        show(position + Number(link.dataset.step));
      });
    });
    slider.addEventListener("input", function () { show(Number(slider.value)); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      show(Number(slider.value));
    });
    img.addEventListener("wheel", function (event) {
      event.preventDefault();
      show(position + (event.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    document.addEventListener("keydown", function (event) {
      // Alt+Left is the browser's Back, Ctrl+End its own: keys with a modifier are left alone.
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (event.target.closest && event.target.closest("input, textarea, select")) return;
      var moves = { ArrowRight: 1, ArrowDown: 1, PageDown: 10, ArrowLeft: -1, ArrowUp: -1, PageUp: -10 };
      if (event.key in moves) show(position + moves[event.key]);
      else if (event.key === "Home") show(1);
      else if (event.key === "End") show(total);
      else return;
      event.preventDefault();
    });
  }
})();
