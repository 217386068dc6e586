// The image view: pick or drop an image, run it through a model, compare with the original.
// Codecs: the whole quality ladder and JPEG/WebP beside it. Denoisers: noise added here, then removed.

import { postImage, showModels } from "./api.js";
import { browserCodecs, ladderKey, ladders, renderReport, runLevel } from "./codec.js";
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
    this.codecCache = new Map(); // model -> level result, for this image
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
      const level = this.ladder[Number($("codec-level").value)];
      $("image-model").value = level.name;
      this.modelChanged();
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
    if (codec) {
      this.ladder = this.ladders.get(ladderKey(model.name));
      const slider = $("codec-level");
      slider.max = String(this.ladder.length - 1);
      slider.value = String(this.ladder.findIndex((level) => level.name === model.name));
      $("codec-level-name").textContent = model.name;
    }
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
    const levels = [];
    for (const level of this.ladder) {
      if (!this.codecCache.has(level.name)) {
        this.status(`encoding and decoding with ${level.name}...`);
        this.codecCache.set(level.name, await runLevel(level.name, this.file, this.original));
        if (stale()) return;
      }
      levels.push(this.codecCache.get(level.name));
      if (level.name === model.name) this.showLevel(levels.at(-1));
    }
    if (!this.others) {
      this.status("encoding JPEG and WebP in the browser...");
      this.others = await browserCodecs(this.original);
      if (stale()) return;
    }
    this.showLevel(this.codecCache.get(model.name));
    renderReport(levels, this.others, model.name);
  }

  showLevel(level) {
    this.viewer.showRight(level.image, `decoded (${level.model})`);
    this.stats(
      ["size", `${level.bytes} bytes`],
      ["bpp", level.bpp.toFixed(3)],
      ["PSNR", `${dB(level.psnr)} (service: ${dB(level.serverPsnr)})`],
    );
  }
}
