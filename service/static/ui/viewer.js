// The before/after viewer: two canvases stacked, the right one clipped at the split, both zoomed.

const $ = (id) => document.getElementById(id);
const FIT = 384;

export class Viewer {
  constructor() {
    this.left = $("left-canvas");
    this.right = $("right-canvas");
    this.line = $("split-line");
    this.split = $("split");
    this.zoom = $("zoom");
    this.split.addEventListener("input", () => this.layout());
    this.zoom.addEventListener("input", () => this.layout());
    this.layout();
  }

  // Either side may be null (nothing yet): that canvas is cleared and hidden.
  show(leftImage, rightImage, leftLabel, rightLabel) {
    draw(this.left, leftImage);
    draw(this.right, rightImage);
    $("left-label").textContent = leftLabel;
    $("right-label").textContent = rightImage ? rightLabel : `${rightLabel} (waiting)`;
    this.layout();
  }

  showRight(rightImage, rightLabel) {
    draw(this.right, rightImage);
    $("right-label").textContent = rightLabel;
    this.layout();
  }

  layout() {
    // Zoom 1 shows a small image enlarged by a whole factor to about FIT pixels, a large one as is.
    const fit = Math.max(1, Math.floor(FIT / Math.max(this.left.width, this.left.height, 1)));
    const scale = fit * Number(this.zoom.value);
    const split = Number(this.split.value);
    $("zoom-value").textContent = `${scale}x`;
    for (const canvas of [this.left, this.right]) {
      // CSSOM properties, not style attributes: allowed under the page's style-src 'self'.
      canvas.style.width = `${this.left.width * scale}px`;
      canvas.style.height = `${this.left.height * scale}px`;
    }
    this.right.style.clipPath = `inset(0 0 0 ${split}%)`;
    this.line.style.left = `calc(${split}% - 1px)`;
    this.line.hidden = this.right.hidden;
  }
}

function draw(canvas, image) {
  canvas.hidden = !image;
  if (!image) return;
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
}
