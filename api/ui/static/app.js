// Model Ledger dashboard: small progressive enhancement (the pages work without it).
"use strict";

(function () {
  // The browser's time zone for the server's buckets; the page reloads once when it changes.
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const cookie = "ml_tz=" + encodeURIComponent(zone);
  const had = document.cookie.split("; ").includes(cookie);
  document.cookie = cookie + "; path=/ui; max-age=31536000; samesite=lax";
  // A chart drawn in another zone before the server knew this one: once, with the zone.
  // (A zone the windows refuse stays UTC; the cookie then already holds it: no loop.)
  const zoned = document.querySelector("[data-zoned][data-tz]");
  if (!had && zoned && zoned.dataset.tz !== zone) {
    location.reload();
    return;
  }

  // Sparklines: a small SVG polyline from the numbers in data-points.
  for (const el of document.querySelectorAll(".spark[data-points]")) {
    const points = JSON.parse(el.dataset.points);
    const max = Math.max(1, ...points);
    const w = 120, h = 24;
    const step = points.length > 1 ? w / (points.length - 1) : w;
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`).join(" "));
    line.setAttribute("class", "spark-line");
    svg.appendChild(line);
    el.appendChild(svg);
  }

  // Copy buttons: data-copy names the element whose text is copied.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const text = source.value !== undefined ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (e) {
        if (source.select) source.select();
        button.textContent = "Press Ctrl+C";
      }
    });
  }

  // Confirmation before destructive forms (the server still requires the typed name).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Times in the browser's zone.
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) el.textContent = format.format(d);
  }
})();
