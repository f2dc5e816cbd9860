// imagedrop dashboard: actions go to the same API as any client (with the page's CSRF token),
// and a folder's cards refresh in place while work is under way.
(function () {
  "use strict";
  var meta = document.querySelector("meta[name=csrf-token]");
  var csrf = meta ? meta.getAttribute("content") : "";

  function post(path, body) {
    var headers = {"Content-Type": "application/json"};
    if (csrf) { headers["X-CSRF-Token"] = csrf; }
    return fetch(path, {method: "POST", headers: headers, credentials: "same-origin",
                        body: JSON.stringify(body)}).then(function (r) {
      if (!r.ok) { return r.json().then(function (e) { throw new Error(e.error || r.status); }); }
      return r.json();
    });
  }

  var actions = {
    retry: function (b) { return post("/replay", {job_ids: [b.dataset.jobId]}); },
    force: function (b) { return post("/replay", {job_ids: [b.dataset.jobId], force: true}); },
    redeliver: function (b) { return post("/replay", {delivery_ids: [b.dataset.deliveryId]}); },
    trigger: function (b) {
      return post("/trigger", {bucket: b.dataset.bucket, prefix: b.dataset.prefix});
    },
    disable: function (b) {
      return post("/subscribers/disable", {url: b.dataset.url, reason: "from the dashboard"});
    },
    enable: function (b) { return post("/subscribers/enable", {url: b.dataset.url}); }
  };

  // Actions that call the paid provider ask first.
  var paid = {force: "Edit this image again? The provider is paid for it.",
              trigger: "Process every image in this folder now? Paid edits may follow."};

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button || !actions[button.dataset.action]) { return; }
    var question = paid[button.dataset.action];
    if (question && !window.confirm(question)) { return; }
    button.disabled = true;
    actions[button.dataset.action](button).then(function () {
      busyUntil = Date.now() + 15000;
      if (cards) { refresh(); } else { window.location.reload(); }
    }, function (err) {
      button.disabled = false;
      button.title = String(err.message || err);
      button.textContent = "Failed: " + button.title;
    });
  });

  // A thumbnail that cannot be made (not an image, gone) becomes a plain note.
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img && img.tagName === "IMG" && img.dataset.role) {
      var note = document.createElement("span");
      note.className = "none";
      note.textContent = "no preview";
      img.replaceWith(note);
    }
  }, true);

  var cards = document.querySelector("[data-role=cards]");
  var last = cards ? cards.innerHTML : "";
  var busyUntil = 0;  // after an action, follow the folder for a while even if all is final
  function refresh() {
    if (!cards) { return Promise.resolve(); }
    return fetch(cards.dataset.src, {credentials: "same-origin", redirect: "manual"})
      .then(function (r) {
        if (r.status === 401 || r.type === "opaqueredirect") {
          window.location.reload();  // signed out: the page goes to the sign-in form
          return null;
        }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html !== null && html !== last) {  // unchanged cards keep their images
          cards.innerHTML = html;
          last = html;
        }
      });
  }
  function working() {
    return Date.now() < busyUntil || document.querySelector(
      "article[data-state=queued], article[data-state=running]") !== null;
  }
  if (cards) {
    setInterval(function () {
      if (document.visibilityState === "visible" && working()) { refresh(); }
    }, 2000);
  }
})();
