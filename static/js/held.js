// Reusing what the page already has: after the first answer the server holds the network's
// output for a few minutes under a result id (devolearn_web/result_cache.py), so a threshold,
// a minimum size, an excluded object or a download is asked for by that id, never by sending
// the file again. The server holds no picture of the upload: its answers leave the input
// picture and the probability map for the page to carry over from the answer it already has.

/** The placeholder the server puts where the input picture goes (figures.HELD_INPUT). */
export const HELD_INPUT = "held-by-page";

/** Fill a held result's answer in from the previous answer (same file): input pictures and
 * probability maps, which the server did not send again. */
export function carryOver(previous, answer) {
  if (!previous) return answer;
  const pairs = answer.kind
    ? answer.frames.map((frame, index) => [(previous.frames || [])[index], frame])
    : [[previous, answer]];
  for (const [old, now] of pairs) {
    if (!old || !now) continue;
    if (!now.probability && old.probability) now.probability = old.probability;
    if (now.input === HELD_INPUT) now.input = old.input;
    for (const [key, figure] of Object.entries(now.figures || {})) {
      const oldFigure = (old.figures || {})[key];
      const oldTrace = oldFigure && oldFigure.data.find((trace) => trace.type === "image");
      figure.data = figure.data.map((trace) =>
        trace.type === "image" && trace.source === HELD_INPUT && oldTrace ? oldTrace : trace,
      );
    }
  }
  return answer;
}

/** Square micrometres per upload pixel, or null when the image has no (µm) pixel size. */
export function squareMicronsPerPixel(calibration) {
  if (!calibration) return null;
  const microns = { "µm": 1, um: 1, micron: 1, nm: 0.001, mm: 1000 }[calibration.unit];
  if (!microns) return null;
  return calibration.pixel_width * calibration.pixel_height * microns * microns;
}

/** The `min_area` and `exclude` fields: objects smaller than `minSize` (µm² when `perPixel`,
 * else pixels) and the objects under the clicked points ([x, y] or [x, y, frame]). */
export function filterFields(minSize, perPixel, points) {
  const fields = {};
  const size = Number(minSize);
  if (size > 0) fields.min_area = String(perPixel ? size / perPixel : size);
  if (points.length) fields.exclude = points.map((point) => point.map((v) => Number(v).toFixed(1)).join(",")).join(";");
  return fields;
}
