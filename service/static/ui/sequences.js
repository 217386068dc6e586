// The sequence view: series pasted or picked from the ECG examples, reconstructed and scored
// against the model's anomaly threshold; a batch's embeddings projected on two principal axes.

import { postJson, showModels } from "./api.js";
import { color, lineChart, scatter, scoreBar } from "./plot.js";

const $ = (id) => document.getElementById(id);

// One series per line; numbers split on commas, semicolons, tabs or spaces; words (a CSV header)
// are skipped. A column of single numbers (one per line) is one series.
export function parseSeries(text) {
  const rows = text
    .split(/\r?\n/)
    .map((line) => line.split(/[\s,;]+/).filter((t) => t !== "").map(Number).filter((v) => !Number.isNaN(v)))
    .filter((row) => row.length > 0);
  if (rows.length > 1 && rows.every((row) => row.length === 1)) return [rows.map((row) => row[0])];
  return rows;
}

// The first two principal components of the rows (power iteration with deflation).
export function pca2(rows) {
  const n = rows.length;
  const d = rows[0].length;
  const mean = Array.from({ length: d }, (_, j) => rows.reduce((s, r) => s + r[j], 0) / n);
  const x = rows.map((r) => r.map((v, j) => v - mean[j]));
  const cov = Array.from({ length: d }, (_, i) =>
    Array.from({ length: d }, (_, j) => x.reduce((s, r) => s + r[i] * r[j], 0) / Math.max(1, n - 1)),
  );
  const axes = [];
  for (let k = 0; k < 2; k += 1) {
    let v = Array.from({ length: d }, (_, j) => Math.sin(j + 1 + k)); // deterministic start
    for (let it = 0; it < 200; it += 1) {
      const w = cov.map((row) => row.reduce((s, c, j) => s + c * v[j], 0));
      const norm = Math.hypot(...w) || 1;
      v = w.map((c) => c / norm);
    }
    const lambda = v.reduce((s, vi, i) => s + vi * cov[i].reduce((t, c, j) => t + c * v[j], 0), 0);
    for (let i = 0; i < d; i += 1) for (let j = 0; j < d; j += 1) cov[i][j] -= lambda * v[i] * v[j];
    axes.push(v);
  }
  return x.map((r) => axes.map((a) => r.reduce((s, c, j) => s + c * a[j], 0)));
}

// Per-step squared error in the units the model scores in (its `errors` are MSEs there).
function stepErrors(series, reconstruction, normalization) {
  let mean = 0;
  let std = 1;
  if (normalization && normalization.kind === "per_series") {
    mean = series.reduce((s, v) => s + v, 0) / series.length;
    std = Math.sqrt(series.reduce((s, v) => s + (v - mean) ** 2, 0) / series.length) + (normalization.epsilon || 0);
  } else if (normalization && normalization.kind === "dataset" && normalization.std) {
    std = Number(normalization.std[0] ?? normalization.std) || 1;
  }
  return series.map((v, i) => ((v - reconstruction[i]) / std) ** 2);
}

export class SequenceView {
  constructor(showError) {
    this.section = $("view-sequences");
    this.showError = showError;
    this.models = [];
    this.examples = [];
    this.result = null;
    $("sequence-run").addEventListener("click", () => this.process());
    $("sequence-example").addEventListener("change", () => this.pickExample());
    $("sequence-pick").addEventListener("change", () => this.renderSeries());
  }

  setModels(models) {
    this.models = models.filter((m) => m.input.kind === "sequence" && m.input.features === 1);
    showModels($("sequence-model"), this.models);
  }

  setExamples(examples) {
    this.examples = examples;
    const select = $("sequence-example");
    const options = examples.map((example, i) => new Option(`${example.name} (label ${example.label})`, String(i)));
    options.push(new Option("all examples (a batch)", "all"));
    select.append(...options);
  }

  pickExample() {
    const value = $("sequence-example").value;
    if (value === "") return;
    const chosen = value === "all" ? this.examples : [this.examples[Number(value)]];
    $("sequence-input").value = chosen.map((example) => example.values.join(", ")).join("\n");
    this.labels = chosen.map((example) => `${example.normal ? "normal" : "abnormal"} (${example.label})`);
  }

  get model() {
    return this.models.find((m) => m.name === $("sequence-model").value);
  }

  async process() {
    $("sequence-error").hidden = true;
    const model = this.model;
    const series = parseSeries($("sequence-input").value);
    this.section.dataset.state = "busy";
    $("sequence-status").textContent = `running ${model ? model.name : ""}...`;
    try {
      if (!model) throw new Error("no sequence model is loaded");
      if (series.length === 0) throw new Error("paste at least one series (numbers), or pick an example");
      await this.run(model, series);
      this.section.dataset.state = "done";
      $("sequence-status").textContent = `${series.length} series through ${model.name}`;
    } catch (error) {
      this.section.dataset.state = "error";
      $("sequence-status").textContent = "";
      $("sequence-results").hidden = true;
      $("projection").hidden = true;
      this.showError($("sequence-error"), error);
    }
  }

  async run(model, series) {
    const payload = { sequences: series };
    const threshold = $("sequence-threshold").value;
    const reconstructs = model.operations.includes("reconstruct");
    const body = threshold !== "" && reconstructs ? { ...payload, threshold: Number(threshold) } : payload;
    const reconstruction = reconstructs ? await postJson(model.name, "reconstruct", body) : null;
    const embed = series.length > 1 && model.operations.includes("encode");
    const encoded = embed ? await postJson(model.name, "encode", payload) : null;
    const labels = this.labels && this.labels.length === series.length ? this.labels : null;
    this.result = { model, series, reconstruction, labels, threshold: threshold === "" ? null : Number(threshold) };
    const pick = $("sequence-pick");
    pick.replaceChildren(...series.map((_, i) => new Option(`${i + 1}${labels ? `: ${labels[i]}` : ""}`, String(i))));
    $("sequence-results").hidden = !reconstruction;
    if (reconstruction) this.renderSeries();
    $("projection").hidden = !encoded;
    if (encoded) this.renderProjection(encoded.embeddings, labels);
  }

  renderSeries() {
    const { model, series, reconstruction } = this.result;
    const i = Number($("sequence-pick").value || 0);
    const input = series[i];
    const output = reconstruction.reconstructions[i];
    lineChart(
      $("sequence-chart"),
      [
        { name: "input", color: color(0), points: input.map((v, t) => [t, v]) },
        { name: "reconstruction", color: color(1), dashed: true, points: output.map((v, t) => [t, v]) },
      ],
      { title: `series ${i + 1}`, xLabel: "step" },
    );
    const errors = stepErrors(input, output, model.input.normalization);
    lineChart($("error-chart"), [{ name: "squared error per step", color: color(3), points: errors.map((e, t) => [t, e]) }], {
      extraY: [0],
    });
    this.renderScore(i);
  }

  renderScore(i) {
    const { model, reconstruction } = this.result;
    const score = reconstruction.errors[i];
    // The body's threshold if one was sent, else the model's calibrated one when its listing says it.
    const threshold = this.result.threshold ?? (model.anomaly ? model.anomaly.threshold : null);
    const parts = [`score (mean squared error, normalised) ${score.toPrecision(4)}`];
    if (threshold != null) parts.push(`threshold ${threshold.toPrecision(4)}`);
    if (reconstruction.percentiles) parts.push(`percentile ${reconstruction.percentiles[i].toFixed(1)} of normal beats`);
    const box = $("anomaly");
    box.replaceChildren(parts.join(" · "));
    if (reconstruction.anomaly) {
      const flag = document.createElement("span");
      const anomalous = reconstruction.anomaly[i];
      flag.className = `flag ${anomalous ? "bad" : "ok"}`;
      flag.textContent = anomalous ? "anomaly" : "normal";
      box.append(flag);
    } else {
      box.append(" · no calibrated threshold: set one to flag anomalies");
    }
    $("score-chart").hidden = false;
    scoreBar($("score-chart"), score, threshold, reconstruction.anomaly ? reconstruction.anomaly[i] : null);
  }

  renderProjection(embeddings, labels) {
    const projected = pca2(embeddings);
    const groups = labels ? [...new Set(labels)] : [];
    const points = projected.map(([x, y], i) => ({
      x,
      y,
      label: String(i + 1),
      color: color(labels ? groups.indexOf(labels[i]) : 0),
    }));
    const legend = groups.map((name, k) => ({ name, color: color(k) }));
    scatter($("pca-chart"), points, { xLabel: "PC 1", yLabel: "PC 2", legend });
  }
}
