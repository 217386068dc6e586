// Pixels in the page: decoding a Blob to RGBA, PSNR against the original, Gaussian noise, encoding.

// A Blob (any image the browser reads: PNG of any colour type, grey included, JPEG, WebP, ...) as
// ImageData. Canvas pixels are always RGBA, so a grey image compares channel by channel with the
// RGB answer the service gives for it (it converts grey to RGB by repeating the channel).
export async function decodeImage(blob) {
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

// PSNR in dB over the R, G and B channels (alpha ignored), peak 255; Infinity when identical.
export function psnr(a, b) {
  if (a.width !== b.width || a.height !== b.height) {
    throw new Error(`sizes differ: ${a.width}x${a.height} and ${b.width}x${b.height}`);
  }
  const x = a.data;
  const y = b.data;
  let sum = 0;
  for (let i = 0; i < x.length; i += 4) {
    const dr = x[i] - y[i];
    const dg = x[i + 1] - y[i + 1];
    const db = x[i + 2] - y[i + 2];
    sum += dr * dr + dg * dg + db * db;
  }
  const mse = sum / ((x.length / 4) * 3);
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

// Seeded (mulberry32), so the same sigma gives the same noisy image twice.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The image plus Gaussian noise of `sigma` (0-255 scale) per channel, rounded and clipped to 0-255.
export function addNoise(image, sigma, seed = 1) {
  const next = random(seed);
  const out = new ImageData(new Uint8ClampedArray(image.data), image.width, image.height);
  const data = out.data;
  for (let i = 0; i < data.length; i += 4) {
    for (let c = 0; c < 3; c += 1) {
      // Box-Muller: one standard normal from two uniforms (1 - u keeps the log finite).
      const u = 1 - next();
      const v = next();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
      data[i + c] = Math.round(data[i + c] + sigma * z); // the clamped array clips to 0-255
    }
    data[i + 3] = 255;
  }
  return out;
}

export function canvasOf(image) {
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

// ImageData -> Blob of `type` ("image/png", "image/jpeg", "image/webp") at `quality` (0-1, lossy only).
export function encode(image, type, quality) {
  const canvas = image instanceof HTMLCanvasElement ? image : canvasOf(image);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => {
      if (blob && blob.type === type) resolve(blob);
      else reject(new Error(`this browser cannot encode ${type}`));
    }, type, quality);
  });
}
