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

function isFullscreen(panel) {
  return document.fullscreenElement === panel;
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
  try {
    if (isFullscreen(panel)) {
      await document.exitFullscreen();
    } else {
      await panel.requestFullscreen();
    }
  } catch (error) {
    // Full screen can be refused (an iframe without permission): the plot simply stays put.
    console.warn("Full screen was refused:", error.message);
  }
}

document.addEventListener("fullscreenchange", () => {
  for (const panel of document.querySelectorAll(".figure-panel")) {
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
    await window.Plotly.react(plot, figure.data, figure.layout, config);
    const images = (figure.layout && figure.layout.images) || [];
    const maskIndex = images.findIndex((image) => image.name === MASK_IMAGE_NAME);
    if (maskIndex >= 0) maskPlots.push({ key, plot, maskIndex });
  }
  return maskPlots;
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
