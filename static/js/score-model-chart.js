/* The model page's tracking plot (templates/customers/score_model.html): the repeat orders
 * seen each week and those the model fitted on the calibration weeks expected, with the
 * holdout weeks shaded (Fader, Hardie and Lee 2005, figure 2).
 *
 * <canvas id="holdout-chart" data-source="id of a json_script with
 *   {labels: [week start, ...], actual: [...], expected: [...], holdout: [bool, ...]}">
 *
 * A file, not inline script: the Content-Security-Policy allows scripts from this site only.
 * Needs Chart.js (vendored) loaded before it.
 */
(function () {
  "use strict";

  // Shades the chart area from the first holdout week on, and labels both periods.
  const periods = {
    id: "holdoutPeriods",
    beforeDatasetsDraw: function (chart, args, options) {
      const flags = options.flags || [];
      const first = flags.indexOf(true);
      if (first < 0) return;
      const x = chart.scales.x;
      const area = chart.chartArea;
      const left = first > 0
        ? (x.getPixelForValue(first - 1) + x.getPixelForValue(first)) / 2
        : area.left;
      const ctx = chart.ctx;
      ctx.save();
      ctx.fillStyle = "rgba(108, 117, 125, 0.14)";
      ctx.fillRect(left, area.top, area.right - left, area.bottom - area.top);
      ctx.fillStyle = "#495057";
      ctx.font = "12px system-ui, sans-serif";
      // Above the plot area (the layout keeps room for it), clear of the lines.
      ctx.textBaseline = "bottom";
      ctx.textAlign = "right";
      ctx.fillText("calibration", left - 6, area.top - 4);
      ctx.textAlign = "left";
      ctx.fillText("holdout", left + 6, area.top - 4);
      ctx.restore();
    },
  };

  function draw() {
    const canvas = document.getElementById("holdout-chart");
    if (!canvas || !window.Chart || canvas.dataset.drawn) return;
    const source = document.getElementById(canvas.dataset.source);
    if (!source) return;
    const data = JSON.parse(source.textContent);
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          {
            label: "Seen",
            data: data.actual,
            borderColor: "#0d6efd",
            backgroundColor: "#0d6efd",
            borderWidth: 2,
            pointRadius: 0,
            tension: 0,
          },
          {
            label: "Expected by the model",
            data: data.expected,
            borderColor: "#dc3545",
            backgroundColor: "#dc3545",
            borderWidth: 2,
            borderDash: [6, 4],
            pointRadius: 0,
            tension: 0,
          },
        ],
      },
      options: {
        animation: false,
        aspectRatio: 2.6,
        interaction: { mode: "index", intersect: false },
        layout: { padding: { top: 20 } },
        plugins: {
          legend: { position: "bottom", labels: { usePointStyle: true, pointStyle: "line" } },
          holdoutPeriods: { flags: data.holdout },
          tooltip: {
            callbacks: {
              title: function (items) {
                const i = items[0].dataIndex;
                return "Week of " + data.labels[i] + (data.holdout[i] ? " (holdout)" : "");
              },
            },
          },
        },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 16 } },
          y: { beginAtZero: true, title: { display: true, text: "Repeat orders per week" } },
        },
      },
      plugins: [periods],
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
