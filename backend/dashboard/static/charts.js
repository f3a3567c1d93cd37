/* Small SVG charts drawn by hand (no library): a line of points over time, and horizontal bars. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attributes, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* points: [{x: Date or number, y: number, cls: "promoted"|..., title: "..."}]; joined by a line in x order. */
  function line(container, points, {height = 180, empty = "no data yet", format = v => v.toFixed(3), xLabel = ""} = {}) {
    // drawn at the container's own width, so the text keeps its size whatever the layout
    const width = Math.max(280, Math.round(container.clientWidth || 520));
    container.replaceChildren();
    const usable = points.filter(p => typeof p.y === "number" && isFinite(p.y));
    if (!usable.length) {
      container.append(Object.assign(document.createElement("p"), {className: "note", textContent: empty}));
      return;
    }
    const pad = {left: 48, right: 12, top: 10, bottom: 24};
    const xs = usable.map(p => +p.x), ys = usable.map(p => p.y);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 0.05; y1 += 0.05; }
    const sx = x => pad.left + (width - pad.left - pad.right) * (x - x0) / (x1 - x0);
    const sy = y => height - pad.bottom - (height - pad.top - pad.bottom) * (y - y0) / (y1 - y0);
    const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "line-chart", role: "img"});
    chart.append(svg("line", {x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, class: "axis"}));
    chart.append(svg("line", {x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, class: "axis"}));
    for (const y of [y0, (y0 + y1) / 2, y1]) {
      chart.append(svg("text", {x: pad.left - 6, y: sy(y) + 4, class: "tick", "text-anchor": "end"}, format(y)));
    }
    const label = x => usable[0].x instanceof Date ? new Date(x).toLocaleTimeString() : String(Math.round(x));
    chart.append(svg("text", {x: pad.left, y: height - 6, class: "tick"}, label(x0)));
    chart.append(svg("text", {x: width - pad.right, y: height - 6, class: "tick", "text-anchor": "end"}, label(x1)));
    if (xLabel) chart.append(svg("text", {x: (pad.left + width - pad.right) / 2, y: height - 6, class: "tick",
                                          "text-anchor": "middle"}, xLabel));
    const ordered = [...usable].sort((a, b) => a.x - b.x);
    chart.append(svg("polyline", {points: ordered.map(p => `${sx(+p.x)},${sy(p.y)}`).join(" "), class: "series"}));
    for (const p of ordered) {
      const dot = svg("circle", {cx: sx(+p.x), cy: sy(p.y), r: 4.5, class: "point " + (p.cls || "")});
      if (p.title) dot.append(svg("title", {}, p.title));
      chart.append(dot);
    }
    container.append(chart);
  }

  /* entries: [[name, value], ...] drawn largest first. */
  function bars(container, entries, {row = 18, empty = "none recorded"} = {}) {
    const width = Math.max(280, Math.round(container.clientWidth || 420));
    container.replaceChildren();
    if (!entries.length) {
      container.append(Object.assign(document.createElement("p"), {className: "note", textContent: empty}));
      return;
    }
    const sorted = [...entries].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 20);
    const top = Math.max(...sorted.map(e => Math.abs(e[1]))) || 1;
    const labelWidth = 150;
    const chart = svg("svg", {viewBox: `0 0 ${width} ${row * sorted.length + 4}`, class: "bar-chart", role: "img"});
    sorted.forEach(([name, value], i) => {
      const y = i * row + 2;
      chart.append(svg("text", {x: labelWidth - 6, y: y + row * 0.7, class: "tick", "text-anchor": "end"}, name));
      const w = (width - labelWidth - 60) * Math.abs(value) / top;
      chart.append(svg("rect", {x: labelWidth, y: y + 2, width: Math.max(1, w), height: row - 5, class: "bar"}));
      chart.append(svg("text", {x: labelWidth + w + 4, y: y + row * 0.7, class: "tick"}, value.toFixed(3)));
    });
    container.append(chart);
  }

  return {line, bars};
})();
