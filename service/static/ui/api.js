// Calls to the service from the same origin; every failure becomes an ApiError whose message is
// the server's (the error body's `message`), or says the service could not be reached.

const KEY_STORAGE = "ae-playground-api-key";

export class ApiError extends Error {
  constructor(message, status = 0, code = "network_error") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

// The page lives at <base>/ui/: API paths are resolved against <base>/, so a path prefix still works.
const API_BASE = new URL("../", document.baseURI);

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): fall back to the status line
  }
  const error = body && body.error;
  if (error && typeof error.message === "string") {
    return new ApiError(`${error.message} (${response.status} ${error.code})`, response.status, error.code);
  }
  return new ApiError(`HTTP ${response.status} ${response.statusText || ""}`.trim(), response.status, "http_error");
}

// One request; resolves to the Response when it is 2xx, else throws an ApiError.
export async function request(path, { method = "GET", body = undefined, headers = {} } = {}) {
  const all = { ...headers };
  const key = apiKey();
  if (key) all.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), { method, body, headers: all });
  } catch (cause) {
    throw new ApiError(`network error: the service could not be reached (${cause.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function listModels() {
  const response = await request("v1/models");
  const { models } = await response.json();
  // One entry per model with its default version's description.
  return models
    .map((model) => {
      const version = model.versions.find((v) => v.version === model.default_version) || model.versions[0];
      return version ? { name: model.name, ...version } : null;
    })
    .filter(Boolean);
}

// Fill a <select> with models ("name (task)"), keeping the current choice when it is still listed.
export function showModels(select, models) {
  const previous = select.value;
  select.replaceChildren(
    ...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (${m.task})`;
      return option;
    }),
  );
  if (models.some((m) => m.name === previous)) select.value = previous;
}

// An image (Blob) through `operation`, with optional query parameters (a codec's `quality` or
// `target_bpp`); the answer as a Blob plus the headers that describe it.
export async function postImage(model, operation, blob, query = {}) {
  const search = new URLSearchParams(query).toString();
  const path = `v1/models/${encodeURIComponent(model)}/${operation}${search ? `?${search}` : ""}`;
  const response = await request(path, {
    method: "POST",
    body: blob,
    headers: { "Content-Type": blob.type || "application/octet-stream", Accept: "image/png" },
  });
  const number = (name) => {
    const value = response.headers.get(name);
    return value === null ? null : Number(value);
  };
  return {
    blob: await response.blob(),
    bitsPerPixel: number("X-Bits-Per-Pixel"),
    psnr: number("X-PSNR"),
    quality: number("X-Quality"), // a variable-rate codec's quality, as coded
  };
}

export async function postJson(model, operation, payload) {
  const response = await request(`v1/models/${encodeURIComponent(model)}/${operation}`, {
    method: "POST",
    body: JSON.stringify(payload),
    headers: { "Content-Type": "application/json" },
  });
  return response.json();
}
