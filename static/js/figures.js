// Plotly figures built by the server (devolearn_web/figures.py), drawn into panels that each
// have a full-screen button. Zoom, pan, reset and PNG download come from Plotly's modebar.

const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  scrollZoom: true,
  modeBarButtonsToRemove: ["select2d", "lasso2d"],
};

export const MASK_IMAGE_NAME = "threshold-mask";

function titleOf(figure, key) {
  const title = figure.layout && figure.layout.title;
  if (title && typeof title === "object" && title.text) return title.text;
  if (typeof title === "string") return title;
  return key;
}

// Full screen shows the whole analysis (slider, count, view controls) with one panel enlarged.
function isFullscreen(panel) {
  return Boolean(document.fullscreenElement) && panel.classList.contains("is-fullscreen");
}

// Plotly follows window resizes by itself, not its container's (grid reflow, full screen).
const resizeObserver = new ResizeObserver((entries) => {
  for (const entry of entries) {
    if (entry.target.data && entry.contentRect.width > 0) window.Plotly.Plots.resize(entry.target);
  }
});

function createPanel(key) {
  const panel = document.createElement("figure");
  panel.className = "figure-panel";
  panel.dataset.figureKey = key;

  const toolbar = document.createElement("div");
  toolbar.className = "figure-toolbar";
  const readout = document.createElement("p");
  readout.className = "hover-readout";
  toolbar.append(readout);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "fullscreen-button";
  button.textContent = "Full screen";
  toolbar.append(button);

  const plot = document.createElement("div");
  plot.className = "plot";
  resizeObserver.observe(plot);

  panel.append(toolbar, plot);
  button.addEventListener("click", () => toggleFullscreen(panel));
  return panel;
}

async function toggleFullscreen(panel) {
  const stage = panel.closest(".analysis") || panel;
  try {
    if (isFullscreen(panel)) {
      await document.exitFullscreen();
    } else {
      if (document.fullscreenElement) await document.exitFullscreen();
      panel.classList.add("is-fullscreen");
      await stage.requestFullscreen();
    }
  } catch (error) {
    // Full screen can be refused (an iframe without permission): the plot simply stays put.
    console.warn("Full screen was refused:", error.message);
  }
}

document.addEventListener("fullscreenchange", () => {
  for (const panel of document.querySelectorAll(".figure-panel")) {
    if (!document.fullscreenElement) panel.classList.remove("is-fullscreen");
    const button = panel.querySelector(".fullscreen-button");
    const on = isFullscreen(panel);
    button.textContent = on ? "Exit full screen" : "Full screen";
    button.setAttribute("aria-pressed", String(on));
    const plot = panel.querySelector(".plot");
    if (plot.data) window.Plotly.Plots.resize(plot);
  }
});

/**
 * Draw (or update in place, keeping the visitor's zoom) every figure of an API answer, in the
 * given order of keys (others after them).
 * Returns [{key, plot, maskIndex}] for the plots that carry the threshold mask.
 */
export async function renderFigures(container, figures, { filenamePrefix, order = [] }) {
  const rank = (key) => (order.includes(key) ? order.indexOf(key) : order.length);
  const keys = Object.keys(figures).sort((a, b) => rank(a) - rank(b));
  for (const panel of container.querySelectorAll(".figure-panel")) {
    if (!keys.includes(panel.dataset.figureKey)) {
      const plot = panel.querySelector(".plot");
      resizeObserver.unobserve(plot);
      window.Plotly.purge(plot);
      panel.remove();
    }
  }
  // Every panel is in the grid before any plot is drawn, so each plot sizes to its own cell.
  const panels = keys.map((key) => {
    let panel = container.querySelector(`.figure-panel[data-figure-key="${CSS.escape(key)}"]`);
    if (!panel) {
      panel = createPanel(key);
      container.append(panel);
    }
    return panel;
  });
  showAtNaturalSize(container, Object.values(figures));
  const maskPlots = [];
  for (const [i, key] of keys.entries()) {
    const figure = figures[key];
    const panel = panels[i];
    const title = titleOf(figure, key);
    panel.setAttribute("aria-label", title);
    panel.querySelector(".fullscreen-button").setAttribute("aria-label", `Show “${title}” full screen`);
    const plot = panel.querySelector(".plot");
    const config = {
      ...PLOT_CONFIG,
      toImageButtonOptions: { format: "png", filename: `${filenamePrefix}_${key}`, scale: 1 },
    };
    plot.classList.toggle("is-image", Boolean(imageMeta(figure)));
    await window.Plotly.react(plot, figure.data, figure.layout, config);
    if (imageMeta(figure)) {
      linkZoom(plot, container);
      followHover(plot, panel.querySelector(".hover-readout"), container);
    }
    const images = (figure.layout && figure.layout.images) || [];
    const maskIndex = images.findIndex((image) => image.name === MASK_IMAGE_NAME);
    if (maskIndex >= 0) maskPlots.push({ key, plot, maskIndex });
  }
  return maskPlots;
}

function imageMeta(figure) {
  const meta = figure.layout && figure.layout.meta;
  return meta && typeof meta.width === "number" ? meta : null;
}

// Plot margins (axis titles, ticks, title) around the image, for sizing the plot to it.
const MARGIN_X = 80;
const MARGIN_Y = 100;

/** Image panels as wide as the image's own pixels when there is room, never wider. */
function showAtNaturalSize(container, figures) {
  const meta = figures.map(imageMeta).find(Boolean);
  if (!meta) {
    container.style.removeProperty("--natural-width");
    return;
  }
  container.style.setProperty("--natural-width", `${meta.width + MARGIN_X}px`);
  container.style.setProperty("--plot-aspect", `${meta.width + MARGIN_X} / ${meta.height + MARGIN_Y}`);
}

const AXIS_KEYS = ["xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]"];

/** The x and y ranges a relayout event sets, as one update (or null: not a zoom or pan). */
function rangeUpdate(event, plot) {
  if (event["xaxis.autorange"] || event["yaxis.autorange"]) {
    return { "xaxis.autorange": true, "yaxis.autorange": true };
  }
  const zoomed = AXIS_KEYS.some((key) => key in event) || "xaxis.range" in event || "yaxis.range" in event;
  if (!zoomed) return null;
  const { xaxis, yaxis } = plot.layout;
  return { "xaxis.range": [...xaxis.range], "yaxis.range": [...yaxis.range] };
}

function sameRanges(plot, update) {
  const close = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a));
  return ["xaxis", "yaxis"].every((axis) => {
    const wanted = update[`${axis}.range`];
    const range = plot.layout[axis].range;
    return wanted && range && close(wanted[0], range[0]) && close(wanted[1], range[1]);
  });
}

/** Zoom and pan on one image panel move every image panel of the same result. */
function linkZoom(plot, container) {
  if (plot.dataset.linked) return;
  plot.dataset.linked = "true";
  plot.on("plotly_relayout", (event) => {
    const update = rangeUpdate(event, plot);
    if (!update) return;
    for (const other of container.querySelectorAll(".plot.is-image")) {
      // Comparing ranges ends the echo: each panel's own relayout fires this handler again.
      if (other === plot || !other.layout) continue;
      const done = update["xaxis.range"]
        ? sameRanges(other, update)
        : other.layout.xaxis.autorange && other.layout.yaxis.autorange;
      if (done) continue;
      window.Plotly.relayout(other, update);
    }
  });
}

// The label map of the answer (layout.meta.labels of its input figure), decoded once.
const labelMaps = new WeakMap();

async function decodeLabels(lookup) {
  const image = new Image();
  image.src = lookup.source;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  return { data, width: canvas.width, height: canvas.height, step: lookup.step };
}

function labelAt(map, column, row) {
  const x = Math.floor(column / map.step);
  const y = Math.floor(row / map.step);
  if (x < 0 || y < 0 || x >= map.width || y >= map.height) return 0;
  const i = 4 * (y * map.width + x);
  return map.data[i] + 256 * map.data[i + 1] + 65536 * map.data[i + 2];
}

/** Set the answer whose objects the hover readout names (label, area, centroid). */
export function setHoverObjects(container, objects, labels) {
  const entry = { objects: new Map((objects || []).map((o) => [o.label, o])), map: null };
  labelMaps.set(container, entry);
  if (labels) {
    decodeLabels(labels)
      .then((map) => {
        entry.map = map;
      })
      .catch((error) => console.warn("The label map could not be read:", error.message));
  }
}

function describeObject(object, meta) {
  const [sx, sy] = meta.pixel_size || [1, 1];
  const noun = document.getElementById("analysis")?.dataset.countNounOne || "object";
  const name = `${noun.charAt(0).toUpperCase()}${noun.slice(1)} ${object.label}`;
  if (meta.unit === "µm") {
    const area = (object.area * sx * sy).toFixed(2);
    return `${name} · area ${area} µm² (${object.area} px²) · centre x ${(object.x * sx).toFixed(2)}, y ${(object.y * sy).toFixed(2)} µm`;
  }
  return `${name} · area ${object.area} px² · centre x ${object.x.toFixed(1)}, y ${object.y.toFixed(1)} px`;
}

/** Hovering any pixel of an object (not only its centroid) names it in the panel's readout. */
function followHover(plot, readout, container) {
  if (plot.dataset.hovered) return;
  plot.dataset.hovered = "true";
  plot.on("plotly_hover", (event) => {
    const entry = labelMaps.get(container);
    const point = event.points && event.points[0];
    const meta = plot.layout.meta || {};
    if (!entry || !entry.map || !point) return;
    const [sx, sy] = meta.pixel_size || [1, 1];
    const label = labelAt(entry.map, Math.round(point.x / sx), Math.round(point.y / sy));
    const object = entry.objects.get(label);
    readout.textContent = object ? describeObject(object, meta) : "";
  });
  plot.on("plotly_unhover", () => {
    readout.textContent = "";
  });
}

/** Swap the mask picture of every plot that shows it; no redraw of anything else. */
export function showMask(maskPlots, source) {
  for (const { plot, maskIndex } of maskPlots) {
    window.Plotly.relayout(plot, { [`images[${maskIndex}].source`]: source });
  }
}

export function purgeFigures(container) {
  for (const plot of container.querySelectorAll(".plot")) {
    resizeObserver.unobserve(plot);
    window.Plotly.purge(plot);
  }
  container.replaceChildren();
}
