// The playground's entry: tabs, the API key, the model list, and how errors are shown.

import { ApiError, apiKey, listModels, setApiKey } from "./api.js";
import { ImageView } from "./images.js";
import { SequenceView } from "./sequences.js";

const $ = (id) => document.getElementById(id);

// Every failure ends up here: the server's message (or the network's), never a blank panel.
function showError(element, error) {
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && error.status === 401) text += "\nEnter an API key at the top of the page.";
  element.textContent = text || "something went wrong (no message)";
  element.hidden = false;
}

function selectTab(name) {
  for (const tab of ["images", "sequences"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`view-${tab}`).hidden = tab !== name;
  }
  location.hash = name;
}

async function loadModels(views) {
  const banner = $("global-error");
  try {
    const models = await listModels();
    banner.hidden = true;
    for (const view of views) view.setModels(models);
    document.body.dataset.models = "loaded";
  } catch (error) {
    showError(banner, error);
    document.body.dataset.models = "error";
  }
}

async function loadExamples(view) {
  try {
    const response = await fetch("ecg-examples.json");
    view.setExamples((await response.json()).examples);
  } catch (error) {
    showError($("global-error"), new Error(`could not load the ECG examples: ${error.message}`));
  }
}

function main() {
  const images = new ImageView(showError);
  const sequences = new SequenceView(showError);
  const views = [images, sequences];
  const key = $("api-key");
  key.value = apiKey();
  key.addEventListener("change", () => {
    setApiKey(key.value.trim());
    loadModels(views);
  });
  $("tab-images").addEventListener("click", () => selectTab("images"));
  $("tab-sequences").addEventListener("click", () => selectTab("sequences"));
  selectTab(location.hash === "#sequences" ? "sequences" : "images");
  loadExamples(sequences);
  loadModels(views);
}

main();
