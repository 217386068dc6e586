// The codec ladder (image-codec-q1 .. -q5), or a variable-rate codec (image-codec) at RATE_QUALITIES:
// every level's decoded image, its size, bpp and PSNR, beside JPEG and WebP encoded by this browser
// at the sizes closest to each level's.

import { postImage } from "./api.js";
import { decodeImage, encode, psnr } from "./pixels.js";
import { color, lineChart } from "./plot.js";

// A variable-rate codec's levels: nine qualities from 0 to 1, each `reconstruct?quality=Q`.
export const RATE_QUALITIES = [0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1];

const QUALITIES = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
const FORMATS = [
  { name: "JPEG", type: "image/jpeg" },
  { name: "WebP", type: "image/webp" },
];

// Models of task `compress` grouped by name without the `-qN` suffix, each group sorted by N. A
// variable-rate codec is no rung, even when its name is a ladder's base (image-codec beside
// image-codec-q1..q5): its slider runs over qualities instead.
export function ladders(models) {
  const groups = new Map();
  for (const model of models.filter((m) => m.task === "compress" && !m.variable_rate)) {
    const match = /^(.*)-q(\d+)$/.exec(model.name);
    const key = match ? match[1] : model.name;
    const level = match ? Number(match[2]) : 0;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push({ name: model.name, level });
  }
  for (const group of groups.values()) group.sort((a, b) => a.level - b.level);
  return groups;
}

export const ladderKey = (name) => name.replace(/-q\d+$/, "");

// A level to run: `key` caches its result, `label` names it, `query` is sent with `reconstruct`.
export const ladderLevel = (name) => ({ key: name, label: name, model: name, query: {} });
export const qualityLevel = (model, quality) => ({
  key: `${model}?quality=${quality}`,
  label: `quality ${quality}`,
  model,
  query: { quality },
});
export const targetLevel = (model, bpp) => ({
  key: `${model}?target_bpp=${bpp}`,
  label: `target ${bpp} bpp`,
  model,
  query: { target_bpp: bpp },
});

// One level through `reconstruct`: the decoded pixels, its bytes (from the service's bpp, counted on
// the real stream, header included), PSNR both as the service and as the page compute it, and the
// quality the service coded at (X-Quality; null for a fixed-rate codec).
export async function runLevel(level, file, original) {
  const answer = await postImage(level.model, "reconstruct", file, level.query);
  const image = await decodeImage(answer.blob);
  const pixels = original.width * original.height;
  return {
    ...level,
    image,
    bpp: answer.bitsPerPixel,
    bytes: Math.round((answer.bitsPerPixel * pixels) / 8),
    psnr: psnr(original, image),
    serverPsnr: answer.psnr,
    quality: answer.quality,
  };
}

// JPEG and WebP over QUALITIES: [{name, points: [{quality, bytes, bpp, psnr}]}], formats this
// browser cannot encode left out.
export async function browserCodecs(original) {
  const pixels = original.width * original.height;
  const out = [];
  for (const format of FORMATS) {
    const points = [];
    try {
      for (const quality of QUALITIES) {
        const blob = await encode(original, format.type, quality);
        const decoded = await decodeImage(blob);
        points.push({ quality, bytes: blob.size, bpp: (blob.size * 8) / pixels, psnr: psnr(original, decoded) });
      }
    } catch {
      continue; // e.g. WebP in a browser without a WebP encoder
    }
    out.push({ name: format.name, points });
  }
  return out;
}

const closest = (points, bytes) =>
  points.reduce((best, p) => (Math.abs(p.bytes - bytes) < Math.abs(best.bytes - bytes) ? p : best));

const fmt = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : "inf");

// The table (one row per level, and `current` when it is none of them: a size target's answer) and
// the PSNR-against-bpp chart; `current` is highlighted.
export function renderReport(levels, others, current) {
  const rows = levels.includes(current) ? levels : [...levels, current];
  const body = document.querySelector("#codec-table tbody");
  body.replaceChildren(
    ...rows.map((level) => {
      const row = document.createElement("tr");
      if (level === current) row.className = "current";
      const cells = [
        level.label,
        String(level.bytes),
        level.bpp.toFixed(3),
        `${fmt(level.psnr, 2)} (${fmt(level.serverPsnr, 2)})`,
        ...FORMATS.map((format) => {
          const other = others.find((o) => o.name === format.name);
          if (!other) return "not available";
          const p = closest(other.points, level.bytes);
          return `q${Math.round(p.quality * 100)}: ${p.bytes} B, ${fmt(p.psnr, 2)} dB`;
        }),
      ];
      row.replaceChildren(
        ...cells.map((text) => {
          const cell = document.createElement("td");
          cell.textContent = text;
          return cell;
        }),
      );
      return row;
    }),
  );
  const series = [
    {
      name: "autoencoder",
      color: color(0),
      markers: true,
      width: 2,
      points: levels.map((l) => [l.bpp, l.psnr]),
      highlight: [current.bpp, current.psnr],
    },
    ...others.map((o, i) => ({ name: o.name, color: color(i + 1), markers: true, points: o.points.map((p) => [p.bpp, p.psnr]) })),
  ];
  // The x axis spans the ladder's range (and a little more), not JPEG's top qualities.
  const maxBpp = Math.max(...rows.map((l) => l.bpp)) * 1.6;
  for (const s of series) s.points = s.points.filter(([x, y]) => x <= maxBpp && Number.isFinite(y));
  lineChart(document.getElementById("rd-chart"), series, { xLabel: "bits per pixel", yLabel: "PSNR (dB)" });
}
