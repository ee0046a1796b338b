// Draws the page's usage charts with uPlot from the series the server embedded
// (data-series on #charts: the API's buckets as columns). Each chart's element keeps the
// exact arrays it plotted in data-plotted, so a test can compare them with the API.
"use strict";

(function () {
  const root = document.getElementById("charts");
  if (!root || typeof uPlot === "undefined") return;
  const series = JSON.parse(root.dataset.series);
  const css = getComputedStyle(document.documentElement);
  const colour = (name) => css.getPropertyValue(name).trim();
  const x = series.start;
  const stacked = series.successes.map((s, i) => s + series.failures[i]);

  function width(el) {
    return Math.max(200, el.clientWidth || el.parentElement.clientWidth || 600);
  }

  function draw(id, data, lines, yLabel) {
    const el = document.getElementById(id);
    const started = performance.now();
    const opts = {
      width: width(el),
      height: 220,
      scales: { x: { time: true } },
      axes: [
        { stroke: colour("--muted"), grid: { stroke: colour("--line") } },
        { stroke: colour("--muted"), grid: { stroke: colour("--line") }, label: yLabel, size: 60 },
      ],
      series: [{}, ...lines],
    };
    const plot = new uPlot(opts, data, el);
    el.dataset.plotted = JSON.stringify(data);
    el.dataset.drawMs = String(performance.now() - started);
    return plot;
  }

  const plots = [];
  performance.mark("charts-start");
  plots.push(draw("chart-requests", [x, stacked, series.successes], [
    { label: "Failures", stroke: colour("--chart-2"), fill: colour("--chart-2") },
    { label: "Successes", stroke: colour("--chart-1"), fill: colour("--chart-1") },
  ], "requests"));
  plots.push(draw("chart-latency", [x, series.p50, series.p95, series.p99], [
    { label: "p50", stroke: colour("--chart-1"), spanGaps: false },
    { label: "p95", stroke: colour("--chart-3"), spanGaps: false },
    { label: "p99", stroke: colour("--chart-2"), spanGaps: false },
  ], "ms"));
  plots.push(draw("chart-success", [x, series.success_rate.map((r) => (r === null ? null : r * 100))], [
    { label: "Success rate", stroke: colour("--chart-1") },
  ], "%"));
  const byVersion = document.getElementById("chart-versions");
  if (byVersion) {
    const versions = JSON.parse(byVersion.dataset.versions);
    const palette = ["--chart-1", "--chart-2", "--chart-3"];
    const numbers = Object.keys(versions);
    plots.push(draw("chart-versions", [x, ...numbers.map((n) => versions[n])],
      numbers.map((n, i) => ({ label: "v" + n, stroke: colour(palette[i % palette.length]) })),
      "requests"));
  }
  performance.mark("charts-end");
  performance.measure("charts", "charts-start", "charts-end");
  root.dataset.drawn = "true";

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      for (const p of plots) p.setSize({ width: width(p.root.parentElement), height: 220 });
    });
  });
})();
