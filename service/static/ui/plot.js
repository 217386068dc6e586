// Small charts drawn on a canvas: lines, points with labels, and a score bar. No library.

const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4"];
export const color = (i) => COLORS[i % COLORS.length];

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function ticks(lo, hi, count = 5) {
  const step = 10 ** Math.floor(Math.log10((hi - lo) / count));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= count) || step * 10;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi; t += nice) out.push(Number(t.toPrecision(6)));
  return out;
}

// A frame with axes; returns functions mapping data to pixels.
function frame(canvas, xs, ys, { xLabel = "", yLabel = "", title = "" } = {}) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const m = { left: 52, right: 12, top: title ? 22 : 10, bottom: xLabel ? 34 : 22 };
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const px = (x) => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right);
  const py = (y) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  ctx.strokeStyle = "#d5dbe0";
  ctx.fillStyle = "#5b6670";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of ticks(y0, y1, Math.max(2, Math.floor((height - m.top - m.bottom) / 40)))) {
    ctx.beginPath();
    ctx.moveTo(m.left, py(t));
    ctx.lineTo(width - m.right, py(t));
    ctx.stroke();
    ctx.fillText(String(t), m.left - 4, py(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of ticks(x0, x1, 8)) ctx.fillText(String(t), px(t), height - m.bottom + 4);
  if (xLabel) ctx.fillText(xLabel, (m.left + width - m.right) / 2, height - 14);
  if (title) {
    ctx.textAlign = "left";
    ctx.fillStyle = "#1d232a";
    ctx.fillText(title, m.left, 4);
  }
  if (yLabel) {
    ctx.save();
    ctx.translate(12, (m.top + height - m.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(yLabel, 0, 0);
    ctx.restore();
  }
  return { ctx, px, py };
}

function legend(ctx, canvas, series) {
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  let x = canvas.width - 12;
  for (const s of [...series].reverse()) {
    x -= ctx.measureText(s.name).width + 22;
    ctx.fillStyle = s.color;
    ctx.fillRect(x, 8, 12, 3);
    ctx.fillStyle = "#1d232a";
    ctx.fillText(s.name, x + 16, 10);
  }
}

// series: [{name, color, points: [[x, y], ...], markers: bool, dashed: bool}]
export function lineChart(canvas, series, options = {}) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).concat(options.extraY || []);
  const { ctx, px, py } = frame(canvas, xs, ys, options);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = s.width || 1.5;
    ctx.setLineDash(s.dashed ? [5, 4] : []);
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.markers) {
      for (const [x, y] of s.points) {
        ctx.beginPath();
        ctx.arc(px(x), py(y), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    if (s.highlight) {
      const [x, y] = s.highlight;
      ctx.beginPath();
      ctx.lineWidth = 2;
      ctx.arc(px(x), py(y), 7, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
  for (const line of options.hLines || []) {
    ctx.strokeStyle = line.color;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(px(Math.min(...xs)), py(line.y));
    ctx.lineTo(px(Math.max(...xs)), py(line.y));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  legend(ctx, canvas, series.filter((s) => s.name));
}

// points: [{x, y, label, color}]
export function scatter(canvas, points, options = {}) {
  const { ctx, px, py } = frame(canvas, points.map((p) => p.x), points.map((p) => p.y), options);
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  for (const p of points) {
    ctx.fillStyle = p.color;
    ctx.beginPath();
    ctx.arc(px(p.x), py(p.y), 5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = "#1d232a";
    ctx.fillText(p.label, px(p.x) + 6, py(p.y) - 2);
  }
  if (options.legend) legend(ctx, canvas, options.legend);
}

// A horizontal bar: the score against the threshold (red when flagged, or above the threshold).
export function scoreBar(canvas, score, threshold, anomalous = null) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  const top = Math.max(score, threshold ?? 0) * 1.25 || 1;
  const x = (v) => 52 + (v / top) * (width - 64);
  const above = anomalous ?? (threshold != null && score > threshold);
  ctx.fillStyle = above ? "#d1242f" : "#1a7f37";
  ctx.fillRect(x(0), 18, x(score) - x(0), 20);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#1d232a";
  ctx.textBaseline = "middle";
  ctx.fillText("score", 8, 28);
  ctx.fillText(score.toPrecision(3), x(score) + 4, 28);
  if (threshold != null) {
    ctx.strokeStyle = "#1d232a";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(x(threshold), 8);
    ctx.lineTo(x(threshold), 48);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.textAlign = "center";
    ctx.fillText(`threshold ${threshold.toPrecision(3)}`, x(threshold), 58);
    ctx.textAlign = "left";
  }
}
