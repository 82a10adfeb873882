// Stacks and movies on a model page: the axes guess (and its override), a slice/time slider
// over the per-frame figures, a Plotly line chart of counts (or lineage populations) per frame,
// and downloads made by re-sending the file the page still holds with format=...

const LINEAGE_COLOURS = {
  A: "#0072b2",
  E: "#e69f00",
  M: "#009e73",
  P: "#cc79a7",
  C: "#d55e00",
  D: "#56b4e9",
  Z: "#555555",
};
const AXIS_NAMES = { z: "slice", time: "frame" };

const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
// Above this many ticks' worth of whole numbers Plotly's own tick steps are whole anyway.
const MAX_WHOLE_TICKS = 10;

/** The number the page shows for a 0-based index: slices and frames count from 1, as in Fiji. */
export function shownNumber(index) {
  return index + 1;
}

/** "slice 3 of 35" / "frame 12 of 389 (4.0 s)" / "frame 2, slice 5 · 13 of 70", counted from 1. */
export function describePosition(frame, count) {
  const position = frame.position || {};
  const parts = Object.entries(position)
    .filter(([key]) => key in AXIS_NAMES)
    .map(([key, value]) => `${AXIS_NAMES[key]} ${shownNumber(value)}`);
  const seconds = typeof position.seconds === "number" ? ` (${position.seconds.toFixed(1)} s)` : "";
  if (parts.length > 1) return `${parts.join(", ")}${seconds} · ${shownNumber(frame.index)} of ${count}`;
  const where = parts.length ? parts[0] : `frame ${shownNumber(frame.index)}`;
  return `${where} of ${count}${seconds}`;
}

/** A whole tick step (1, 2 or 5) for an axis spanning `span`, where Plotly would pick halves. */
export function wholeTickStep(span) {
  return [1, 2, 5].find((step) => span / step <= MAX_WHOLE_TICKS);
}

/** Running maximum of a list of numbers (cells do not disappear). */
export function runningMaximum(values) {
  let best = -Infinity;
  return values.map((value) => (best = Math.max(best, value)));
}

/** The per-frame chart: counts (segmentation) or lineage populations with the page's options.
 * trainingA: where the lineage training range ends (the page's training_range_a, from the card
 * and the catalogue). */
export function frameChart(answer, { skipFirst = 0, skipLast = 0, runningMax = false, current = 0, trainingA }) {
  const count = answer.frame_count;
  const first = Math.min(Math.max(0, skipFirst), count);
  const last = Math.max(first, count - Math.max(0, skipLast));
  const indices = [...Array(last - first).keys()].map((i) => i + first);
  const axisWord = (answer.axes.slider || []).length === 1 && answer.axes.slider[0] === "z" ? "slice" : "frame";
  const data = [];
  let title;
  if (answer.populations_per_frame) {
    const series = answer.populations_per_frame;
    for (const [key, values] of Object.entries(series)) {
      const shown = indices.map((i) => values[i]);
      data.push({
        type: "scatter",
        mode: "lines",
        name: key,
        x: indices,
        y: runningMax ? runningMaximum(shown) : shown,
        line: { color: LINEAGE_COLOURS[key] || "#333", width: 2 },
        hovertemplate: `${key}: %{y} cells at ${axisWord} %{x}<extra></extra>`,
      });
    }
    // The server flags the frames; at the range's end the counts stop rising, so a frame there
    // may hold an older embryo than its count says.
    const flags = [
      [answer.outside_training_range_frames, `past A = ${trainingA} (outside the training range)`, "outside the training range", "#c0392b"],
      [answer.at_end_of_training_range_frames, `A at the end of the training range (${trainingA})`, "at the end of the training range: may be older", "#d35400"],
    ];
    for (const [frames, name, meaning, color] of flags) {
      const flagged = indices.filter((i) => (frames || []).includes(i));
      if (!flagged.length) continue;
      data.push({
        type: "scatter",
        mode: "markers",
        name,
        x: flagged,
        y: flagged.map((i) => series.A[i]),
        marker: { color, symbol: "x", size: 7 },
        hovertemplate: `${axisWord} %{x}: A = %{y}, ${meaning}<extra></extra>`,
      });
    }
    title = `Cells per lineage, ${axisWord} by ${axisWord}${runningMax ? " (running maximum)" : ""}`;
  } else {
    data.push({
      type: "scatter",
      mode: "lines+markers",
      name: "count",
      x: indices,
      y: indices.map((i) => answer.count_per_frame[i]),
      line: { color: "#2a7ab0", width: 2 },
      marker: { size: 5 },
      hovertemplate: `${axisWord} %{x}: %{y} objects<extra></extra>`,
    });
    title = `Objects per ${axisWord}`;
  }
  // The chart numbers frames as the label beside the slider does.
  for (const trace of data) trace.x = trace.x.map(shownNumber);
  const highest = data.reduce((most, trace) => Math.max(most, ...trace.y), 0);
  const layout = {
    title: { text: title, x: 0.02 },
    margin: { l: 55, r: 15, t: 45, b: 45 },
    xaxis: { title: { text: axisWord }, dtick: wholeTickStep(last - first - 1) },
    yaxis: {
      title: { text: answer.populations_per_frame ? "cells" : "count" },
      rangemode: "tozero",
      dtick: wholeTickStep(highest),
    },
    hovermode: "x unified",
    legend: { orientation: "h", y: -0.25 },
    shapes: [
      {
        type: "line",
        name: "current-frame",
        xref: "x",
        yref: "paper",
        x0: shownNumber(current),
        x1: shownNumber(current),
        y0: 0,
        y1: 1,
        line: { color: "#888", width: 1, dash: "dot" },
      },
    ],
    uirevision: "frames",
  };
  return { data, layout };
}

/** POST the held file again with format=...; resolve to {blob, filename}. */
export async function fetchDownload(url, file, fields) {
  const form = new FormData();
  // No file: the fields name a result the server holds (held.js).
  if (file) form.append("file", file, file.name);
  for (const [key, value] of Object.entries(fields)) if (value !== null && value !== "") form.append(key, value);
  const response = await fetch(url, { method: "POST", body: form });
  if (!response.ok) {
    let sentence = `The download could not be made (HTTP status ${response.status}).`;
    try {
      sentence = (await response.json()).error || sentence;
    } catch {
      // keep the generic sentence
    }
    const error = new Error(sentence);
    error.status = response.status;
    throw error;
  }
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = disposition.match(/filename="([^"]+)"/);
  return { blob: await response.blob(), filename: match ? match[1] : "devolearn-download" };
}

/** The fields that ask for 3D nuclei and tracks; the z step only with one of them (else a 400). */
export function assemblyFields({ assemble = false, track = false, zStep = "" } = {}) {
  const fields = {};
  if (assemble) fields.assemble = "3d";
  if (track) fields.track = "true";
  if ((assemble || track) && String(zStep).trim()) fields.z_step_um = String(zStep).trim();
  return fields;
}

/** "24 nuclei in 3D (z step 1 µm) · 30 tracks, 3 divisions" for the frame shown, or "". */
export function assemblySummary(answer, frame) {
  const parts = [];
  const step = typeof answer.z_step_um === "number" ? ` (z step ${answer.z_step_um} µm)` : "";
  if (typeof answer.count_3d === "number") {
    parts.push(`${answer.count_3d} ${answer.count_3d === 1 ? "nucleus" : "nuclei"} in 3D${step}`);
  } else if (Array.isArray(answer.count_3d_per_time)) {
    const counts = answer.count_3d_per_time;
    const time = Math.min((frame && frame.position && frame.position.time) || 0, counts.length - 1);
    parts.push(
      `${counts[time]} ${counts[time] === 1 ? "nucleus" : "nuclei"} in 3D at time point ` +
        `${shownNumber(time)} of ${counts.length}${step}`,
    );
  }
  if (Array.isArray(answer.tracks)) {
    const divisions = answer.divisions || 0;
    parts.push(
      `${answer.tracks.length} ${answer.tracks.length === 1 ? "track" : "tracks"}, ` +
        `${divisions} ${divisions === 1 ? "division" : "divisions"}`,
    );
  }
  return parts.join(" · ");
}

/** The download buttons for one answer: each asks the server for a file made from the upload. */
export function downloadButtons(task, isStack, onRequest, { assembled = false, tracked = false } = {}) {
  let labels = isStack ? "Labels (16-bit multi-page TIFF)" : "Labels (16-bit TIFF)";
  // With assemble or track sent again, the server's TIFF holds 3D labels (or track ids).
  if (tracked) labels = "Labels = track ids (16-bit TIFF)";
  else if (assembled) labels = "3D labels (16-bit ZYX TIFF)";
  const choices =
    task === "segmentation"
      ? [
          ["csv", "Objects (CSV)"],
          ["tiff", labels],
          ["roi", "Outlines (Fiji ROI set)"],
          ["probability-tiff", "Probability (TIFF)"],
          isStack ? ["zip", "Everything (ZIP)"] : ["png", "Mask (PNG)"],
        ]
      : [["csv", isStack ? "Populations per frame (CSV)" : "Populations (CSV)"]];
  if (tracked) {
    choices.push(
      ["ctc", "Tracks, Cell Tracking Challenge layout (ZIP)"],
      ["tracks-csv", "Tracks (CSV)"],
      ["founder-counts-csv", "Founder counts (CSV)"],
    );
  }
  return choices.map(([format, label]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button-small";
    button.textContent = label;
    button.dataset.format = format;
    button.addEventListener("click", () => onRequest(format, button));
    return button;
  });
}

/** Save a blob under a file name (an <a download> clicked once). */
export function saveBlob(blob, filename) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

/** Draw (or update) the per-frame chart in its container. */
export async function drawFrameChart(container, answer, options) {
  const { data, layout } = frameChart(answer, options);
  await window.Plotly.react(container, data, layout, PLOT_CONFIG);
}

/** Move the chart's dotted line to the frame shown. */
export function markCurrentFrame(container, index) {
  if (!container.data) return;
  const x = shownNumber(index);
  window.Plotly.relayout(container, { "shapes[0].x0": x, "shapes[0].x1": x });
}
