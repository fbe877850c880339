/* The portal's own script: small behaviours the pages declare with data attributes.
 *
 * One static file, loaded by every page, so the Content-Security-Policy can allow scripts
 * from this site only ('self'): no inline script, no `hx-on` attribute and no htmx trigger
 * filter (`change[...]`), which htmx would have to evaluate as code.
 */
(function () {
  "use strict";

  // Copy a panel's text: <button data-copy-target="#id">.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy-target]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copyTarget);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // "Select all on this page": <input type="checkbox" data-select-all="#table .row-select">.
  document.addEventListener("change", function (event) {
    const selector = event.target.dataset && event.target.dataset.selectAll;
    if (!selector) return;
    document.querySelectorAll(selector).forEach(function (box) {
      box.checked = event.target.checked;
    });
  });

  // Edits that htmx sends as custom events (instead of trigger filters it would eval):
  // - a change inside an element with data-edit-event="name", except inside [data-no-edit]
  //   or on a field named in data-edit-skip, fires "name" on that element; with
  //   data-edit-match="selector", only changes of matching controls do, and the other
  //   named controls fire data-value-event instead (on change and as you type).
  function editOwner(target) {
    if (!(target instanceof Element) || !target.name) return null;
    const owner = target.closest("[data-edit-event]");
    if (!owner || target.closest("[data-no-edit]")) return null;
    const skip = (owner.dataset.editSkip || "").split(" ");
    return skip.indexOf(target.name) === -1 ? owner : null;
  }
  document.addEventListener("change", function (event) {
    const owner = editOwner(event.target);
    if (!owner || !window.htmx) return;
    const match = owner.dataset.editMatch;
    if (!match || event.target.matches(match)) {
      window.htmx.trigger(owner, owner.dataset.editEvent);
    } else if (owner.dataset.valueEvent) {
      window.htmx.trigger(owner, owner.dataset.valueEvent);
    }
  });
  document.addEventListener("input", function (event) {
    const owner = editOwner(event.target);
    if (!owner || !window.htmx || !owner.dataset.valueEvent) return;
    if (owner.dataset.editMatch && event.target.matches(owner.dataset.editMatch)) return;
    window.htmx.trigger(owner, owner.dataset.valueEvent);
  });

  // A part shown only for one value of a field: <div data-show-when="field=value">.
  function showWhen(root) {
    (root || document).querySelectorAll("[data-show-when]").forEach(function (part) {
      const rule = part.dataset.showWhen.split("=");
      const field = document.querySelector('[name="' + rule[0] + '"]');
      part.hidden = !field || field.value !== rule[1];
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.name && document.querySelector('[data-show-when^="' + event.target.name + '="]')) {
      showWhen();
    }
  });
  document.addEventListener("DOMContentLoaded", function () { showWhen(); });

  // Searchable multi-selects (Tom Select, vendored, where the page loads it):
  // <select multiple data-searchable data-placeholder="...">.
  function searchable(root) {
    if (!window.TomSelect) return;
    (root || document).querySelectorAll("select[data-searchable]").forEach(function (select) {
      if (select.tomselect) return;
      // Tom Select points the <label> at its own input: the select keeps its name for
      // assistive technology through aria-label.
      const label = select.id && document.querySelector('label[for="' + select.id + '"]');
      if (label && !select.hasAttribute("aria-label")) {
        select.setAttribute("aria-label", label.textContent.trim());
      }
      new window.TomSelect(select, {
        plugins: ["remove_button"],
        placeholder: select.dataset.placeholder || "",
        maxOptions: null,
        hidePlaceholder: true,
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { searchable(); });
  document.addEventListener("htmx:load", function (event) { searchable(event.target); });

  // A panel that must show the answer to the latest edit only (the live count):
  // <div data-latest-only="event-a event-b">. Every such event seen on the page counts as an
  // edit; a response to a request sent before the latest edit is not shown (the request that
  // edit causes follows, queued: no request is aborted, so nothing is logged as an error).
  document.addEventListener("htmx:beforeRequest", function (event) {
    const panel = event.detail.elt;
    if (!panel.matches || !panel.matches("[data-latest-only]")) return;
    event.detail.xhr.portalEdits = panel.portalEdits || 0;
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    const panel = event.detail.elt;
    if (!panel.matches || !panel.matches("[data-latest-only]")) return;
    if ((event.detail.xhr.portalEdits || 0) < (panel.portalEdits || 0)) {
      event.detail.shouldSwap = false;
    }
  });
  function countEdits(event) {
    document.querySelectorAll("[data-latest-only]").forEach(function (panel) {
      if (panel.dataset.latestOnly.split(" ").indexOf(event.type) !== -1) {
        panel.portalEdits = (panel.portalEdits || 0) + 1;
      }
    });
  }
  ["rules-changed", "rules-value"].forEach(function (name) {
    document.addEventListener(name, countEdits, true);
  });

  // Filter forms send only the fields that have a value (short, readable URLs).
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.target.matches || !event.target.matches("[data-drop-empty]")) return;
    const data = event.detail.formData;
    Array.from(data.entries()).forEach(function (entry) {
      if (entry[1] === "") data.delete(entry[0]);
    });
  });

  // A request htmx made was refused or failed: say so instead of leaving the page stale.
  const MESSAGES = {
    400: "The request could not be read (too large or malformed). Nothing was saved.",
    403: "You may not do that with your role.",
    404: "That no longer exists.",
    429: "Too many requests; wait a moment and try again.",
    503: "The database is busy; try again in a moment. Nothing was saved.",
  };
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    showProblem(MESSAGES[status] || "The server could not answer (" + status + "). Try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showProblem("The server cannot be reached. Check the connection and try again.");
  });

  function showProblem(text) {
    const main = document.querySelector("main");
    if (!main) return;
    let box = document.getElementById("request-problem");
    if (!box) {
      box = document.createElement("div");
      box.id = "request-problem";
      box.className = "alert alert-warning alert-dismissible";
      box.setAttribute("role", "alert");
      const message = document.createElement("span");
      const close = document.createElement("button");
      close.type = "button";
      close.className = "btn-close";
      close.setAttribute("data-bs-dismiss", "alert");
      close.setAttribute("aria-label", "Close");
      box.append(message, close);
      main.prepend(box);
    }
    box.firstChild.textContent = text;
  }

  // Line charts: <canvas data-line-chart="id of a json_script with [[label, value], ...]"
  // data-label="Members">. Needs Chart.js on the page.
  function drawCharts() {
    if (!window.Chart) return;
    document.querySelectorAll("canvas[data-line-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      const source = document.getElementById(canvas.dataset.lineChart);
      if (!source) return;
      const points = JSON.parse(source.textContent);
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, {
        type: "line",
        data: {
          labels: points.map(function (p) { return p[0]; }),
          datasets: [{
            label: canvas.dataset.label || "",
            data: points.map(function (p) { return p[1]; }),
            tension: 0.2,
            pointRadius: 2,
          }],
        },
        options: {
          animation: false,
          plugins: { legend: { display: false } },
          scales: { y: { beginAtZero: true } },
        },
      });
    });
  }
  document.addEventListener("DOMContentLoaded", drawCharts);
  document.addEventListener("htmx:afterSettle", drawCharts);
})();
