// The image view: pick or drop an image, run it through a model, compare with the original.
// Codecs: the whole quality ladder (or a variable-rate codec's qualities, and a size target) and
// JPEG/WebP beside it. Denoisers: noise added here, then removed.

import { postImage, showModels } from "./api.js";
import {
  RATE_QUALITIES,
  browserCodecs,
  ladderKey,
  ladderLevel,
  ladders,
  qualityLevel,
  renderReport,
  runLevel,
  targetLevel,
} from "./codec.js";
import { addNoise, decodeImage, encode, psnr } from "./pixels.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const dB = (value) => (Number.isFinite(value) ? `${value.toFixed(2)} dB` : "identical");

export class ImageView {
  constructor(showError) {
    this.section = $("view-images");
    this.viewer = new Viewer();
    this.models = [];
    this.file = null; // the Blob sent to the service, as picked
    this.original = null; // its pixels (RGBA, whatever its colour type)
    this.run = 0; // a newer run makes older answers stale
    this.codecCache = new Map(); // level key -> level result, for this image
    this.qualityIndex = RATE_QUALITIES.indexOf(0.5); // a variable-rate codec's slider position
    this.targetBpp = null; // a variable-rate codec's size target, once asked for
    this.others = null; // JPEG/WebP sweep, for this image
    this.showError = showError;
    this.bindInputs();
  }

  bindInputs() {
    const drop = $("drop");
    $("image-file").addEventListener("change", (event) => this.load(event.target.files[0]));
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      this.load(event.dataTransfer.files[0]);
    });
    $("image-model").addEventListener("change", () => this.modelChanged());
    $("codec-level").addEventListener("input", () => {
      const index = Number($("codec-level").value);
      if (!this.model.variable_rate) {
        $("image-model").value = this.ladder[index].name;
        this.modelChanged();
        return;
      }
      this.qualityIndex = index;
      this.targetBpp = null;
      this.codecChanged(this.model);
    });
    $("codec-target-run").addEventListener("click", () => {
      this.targetBpp = Number($("codec-target-bpp").value); // the service says what it cannot take
      this.codecChanged(this.model);
    });
    $("noise-sigma").addEventListener("input", () => ($("noise-sigma-value").textContent = $("noise-sigma").value));
    $("denoise-run").addEventListener("click", () => this.process());
  }

  setModels(models) {
    this.models = models.filter((m) => m.input.kind === "image" && m.operations.includes("reconstruct"));
    this.ladders = ladders(this.models);
    showModels($("image-model"), this.models);
    this.modelChanged();
  }

  get model() {
    return this.models.find((m) => m.name === $("image-model").value);
  }

  modelChanged() {
    const model = this.model;
    const codec = model && model.task === "compress";
    $("codec-controls").hidden = !codec;
    $("codec-report").hidden = !codec;
    $("denoise-controls").hidden = !(model && model.task === "denoise");
    if (!codec) {
      this.process();
      return;
    }
    this.targetBpp = null;
    this.ladder = this.ladders.get(ladderKey(model.name));
    const slider = $("codec-level");
    slider.max = String(this.levelsOf(model).length - 1);
    slider.value = String(
      model.variable_rate ? this.qualityIndex : this.ladder.findIndex((level) => level.name === model.name),
    );
    $("codec-target").hidden = !model.variable_rate;
    this.codecChanged(model);
  }

  // The levels a codec's slider runs over: a ladder's models, or a variable-rate codec's qualities.
  levelsOf(model) {
    if (model.variable_rate) return RATE_QUALITIES.map((quality) => qualityLevel(model.name, quality));
    return this.ladder.map((level) => ladderLevel(level.name));
  }

  // The level shown: the size target once asked for, else the slider's.
  currentLevel(model) {
    if (this.targetBpp !== null) return targetLevel(model.name, this.targetBpp);
    return this.levelsOf(model)[Number($("codec-level").value)];
  }

  // The label until the answer comes, then the run.
  codecChanged(model) {
    $("codec-level-name").textContent = this.currentLevel(model).label;
    this.process();
  }

  async load(file) {
    if (!file) return;
    this.clear();
    let original;
    try {
      original = await decodeImage(file);
    } catch {
      this.fail(new Error(`this browser cannot read ${file.name || "that file"} as an image`));
      return;
    }
    this.file = file;
    this.original = original;
    this.codecCache.clear();
    this.others = null;
    $("image-info").textContent = `${file.name || "image"}: ${original.width} x ${original.height}, ${file.size} bytes`;
    this.process();
  }

  clear() {
    $("image-error").hidden = true;
    $("image-stats").replaceChildren();
  }

  fail(error) {
    this.section.dataset.state = "error";
    $("image-status").textContent = "";
    this.showError($("image-error"), error);
  }

  status(text, state = "busy") {
    $("image-status").textContent = text;
    this.section.dataset.state = state;
  }

  stats(...entries) {
    $("image-stats").replaceChildren(
      ...entries.map(([label, value]) => {
        const span = document.createElement("span");
        const bold = document.createElement("b");
        bold.textContent = `${label}: `;
        span.append(bold, value);
        return span;
      }),
    );
  }

  async process() {
    const model = this.model;
    if (!model || !this.original) return;
    const run = ++this.run;
    this.clear();
    const stale = () => run !== this.run;
    try {
      if (model.task === "compress") await this.compress(model, stale);
      else if (model.task === "denoise") await this.denoise(model, stale);
      else await this.reconstruct(model, stale);
      if (!stale()) this.status("done", "done");
    } catch (error) {
      if (!stale()) this.fail(error);
    }
  }

  async reconstruct(model, stale) {
    this.viewer.show(this.original, null, "original", model.name);
    this.status(`running ${model.name}...`);
    const answer = await postImage(model.name, "reconstruct", this.file);
    const image = await decodeImage(answer.blob);
    if (stale()) return;
    this.viewer.showRight(image, model.name);
    this.stats(["PSNR", dB(psnr(this.original, image))], ["answer", `${answer.blob.size} bytes (PNG)`]);
  }

  async denoise(model, stale) {
    const sigma = Number($("noise-sigma").value);
    const noisy = addNoise(this.original, sigma);
    this.viewer.show(noisy, null, `noisy (sigma ${sigma})`, model.name);
    this.status(`denoising with ${model.name}...`);
    const answer = await postImage(model.name, "reconstruct", await encode(noisy, "image/png"));
    const denoised = await decodeImage(answer.blob);
    if (stale()) return;
    this.viewer.showRight(denoised, `denoised by ${model.name}`);
    this.stats(
      ["noisy PSNR", dB(psnr(this.original, noisy))],
      ["denoised PSNR", dB(psnr(this.original, denoised))],
      ["sigma", String(sigma)],
    );
  }

  async compress(model, stale) {
    this.viewer.show(this.original, null, "original", model.name);
    const current = this.currentLevel(model);
    const levels = [];
    for (const level of this.levelsOf(model)) {
      levels.push(await this.runCached(level));
      if (stale()) return;
      if (level.key === current.key) this.showLevel(levels.at(-1));
    }
    if (!this.others) {
      this.status("encoding JPEG and WebP in the browser...");
      this.others = await browserCodecs(this.original);
      if (stale()) return;
    }
    const chosen = await this.runCached(current); // a size target's answer is none of the levels
    if (stale()) return;
    this.showLevel(chosen);
    renderReport(levels, this.others, chosen);
  }

  async runCached(level) {
    if (!this.codecCache.has(level.key)) {
      const name = level.label === level.model ? level.model : `${level.model} (${level.label})`;
      this.status(`encoding and decoding with ${name}...`);
      this.codecCache.set(level.key, await runLevel(level, this.file, this.original));
    }
    return this.codecCache.get(level.key);
  }

  // A level's answer; a variable-rate codec's also says the quality the service coded at (X-Quality).
  showLevel(level) {
    const rated = level.quality !== null;
    const quality = rated ? level.quality.toFixed(4) : "";
    $("codec-level-name").textContent = rated ? `${level.label} (coded at quality ${quality})` : level.label;
    this.viewer.showRight(level.image, rated ? `decoded (${level.model}, ${level.label})` : `decoded (${level.model})`);
    this.stats(
      ["size", `${level.bytes} bytes`],
      ["bpp", level.bpp.toFixed(3)],
      ...(rated ? [["quality", quality]] : []),
      ["PSNR", `${dB(level.psnr)} (service: ${dB(level.serverPsnr)})`],
    );
  }
}
