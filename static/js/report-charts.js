/* The reports' charts (templates/analytics/): every <canvas data-report-chart="id"
 * data-chart="JSON"> is drawn from its JSON (an attribute: htmx drops <script> elements,
 * json_script included, from the content it swaps in):
 *   {type: "bar" | "line" | "doughnut", labels: [...], datasets: [{label, data, color}],
 *    stacked: bool, percent: bool (values are fractions), money: "CAD" or ""}
 * Redrawn after htmx swaps the report (a new period), so chart and table always agree.
 * A file, not inline script: the Content-Security-Policy allows scripts from this site only.
 * Needs Chart.js (vendored) loaded before it.
 */
(function () {
  "use strict";

  function formatValue(spec, value) {
    if (value === null || value === undefined) return "—";
    if (spec.percent) return (value * 100).toFixed(1) + "%";
    const text = Number(value).toLocaleString(undefined, spec.money
      ? { minimumFractionDigits: 2, maximumFractionDigits: 2 } : {});
    return spec.money ? text + " " + spec.money : text;
  }

  function draw(canvas) {
    if (!canvas.dataset.chart || !window.Chart) return;
    if (window.Chart.getChart(canvas)) return;  // drawn already
    const spec = JSON.parse(canvas.dataset.chart);
    const doughnut = spec.type === "doughnut";
    const datasets = spec.datasets.map(function (d) {
      return {
        label: d.label,
        data: d.data,
        backgroundColor: doughnut
          ? ["#0d6efd", "#198754", "#20c997", "#6f42c1", "#fd7e14", "#dc3545", "#adb5bd"]
          : d.color,
        borderColor: doughnut ? "#fff" : d.color,
        borderWidth: spec.type === "line" ? 2 : 1,
        pointRadius: spec.type === "line" && d.data.length > 60 ? 0 : 2,
        spanGaps: true,
        stack: spec.stacked ? "all" : undefined,
      };
    });
    const scales = doughnut ? {} : {
      x: { stacked: spec.stacked, ticks: { autoSkip: true, maxRotation: 0 } },
      y: {
        stacked: spec.stacked,
        beginAtZero: true,
        ticks: { callback: function (value) { return formatValue(spec, value); } },
      },
    };
    new window.Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: doughnut ? "nearest" : "index", intersect: false },
        plugins: {
          legend: { display: doughnut || datasets.length > 1, position: doughnut ? "right" : "top" },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + formatValue(spec, item.raw);
              },
            },
          },
        },
        scales: scales,
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-report-chart]").forEach(draw);
  }

  // A new preset shows its report at once; "Custom dates" waits for the dates and "Show".
  document.addEventListener("change", function (event) {
    const form = event.target.closest("form[data-report-form]");
    if (!form || event.target.name !== "period" || event.target.value === "custom") return;
    form.requestSubmit();
  });

  document.addEventListener("DOMContentLoaded", function () { drawAll(); });
  // New content (a report swapped in for a new period) brings new canvases to draw.
  document.addEventListener("htmx:load", function (event) { drawAll(event.target); });
  document.addEventListener("htmx:afterSettle", function () { drawAll(); });
})();
