// The words and tables around the figures: count, notes, warnings, tables, timings.
// Everything from the server or the file name goes in as text, never as HTML.

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function showNotes(list, notes) {
  list.replaceChildren(...(notes || []).map((note) => element("li", note)));
  list.hidden = !notes || notes.length === 0;
}

export function showTimings(paragraph, timings) {
  if (!timings) {
    paragraph.textContent = "";
    return;
  }
  const parts = [];
  const names = { decode: "decode", preprocess: "preprocess", inference: "model", postprocess: "post-process" };
  for (const [key, label] of Object.entries(names)) {
    if (typeof timings[key] === "number") parts.push(`${label} ${Math.round(timings[key])} ms`);
  }
  const total = typeof timings.total === "number" ? `Server time ${Math.round(timings.total)} ms` : "";
  paragraph.textContent = [total, parts.join(" · ")].filter(Boolean).join(": ");
}

/** A table whose column headers are buttons that sort it (aria-sort says how). */
export function sortableTable(caption, columns, rows) {
  const table = element("table", null, "data-table");
  table.append(element("caption", caption));
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  const body = document.createElement("tbody");
  let sortState = { index: 0, ascending: true };

  const fill = () => {
    const { index, ascending } = sortState;
    const sorted = [...rows].sort((a, b) => (a[index] - b[index]) * (ascending ? 1 : -1));
    body.replaceChildren(
      ...sorted.map((row) => {
        const tr = document.createElement("tr");
        row.forEach((value, i) => tr.append(element("td", columns[i].format(value), "num")));
        return tr;
      }),
    );
    headRow.querySelectorAll("th").forEach((th, i) => {
      th.setAttribute("aria-sort", i === index ? (ascending ? "ascending" : "descending") : "none");
    });
  };

  columns.forEach((column, i) => {
    const th = element("th", null, "num");
    th.scope = "col";
    const button = element("button", column.label, "sort-button");
    button.type = "button";
    button.addEventListener("click", () => {
      sortState = { index: i, ascending: sortState.index === i ? !sortState.ascending : true };
      fill();
    });
    th.append(button);
    headRow.append(th);
  });
  head.append(headRow);
  table.append(head, body);
  fill();
  return table;
}

// Micrometres per unit of a calibration's `unit` (devolearn_web/calibration.py UNITS).
const MICROMETRES = { nm: 1e-3, "µm": 1, mm: 1e3, cm: 1e4, m: 1e6 };

/** µm per pixel [x, y] of an answer's `calibration`, or null when the image is uncalibrated. */
export function micrometresPerPixel(calibration) {
  const factor = calibration && MICROMETRES[calibration.unit];
  return factor ? [calibration.pixel_width * factor, calibration.pixel_height * factor] : null;
}

/** "708 × 512 pixels of 0.25 µm (177 × 128 µm)", or "... pixels (no pixel size in the file)". */
export function describeSize(width, height, calibration) {
  const size = micrometresPerPixel(calibration);
  if (!size) return `${width} × ${height} px (no pixel size in the file)`;
  const [sx, sy] = size;
  const pixel = sx === sy ? `${sx.toPrecision(3)} µm` : `${sx.toPrecision(3)} × ${sy.toPrecision(3)} µm`;
  return `${width} × ${height} px of ${pixel} (${(width * sx).toFixed(1)} × ${(height * sy).toFixed(1)} µm)`;
}

export function objectsTable(objects, noun, calibration = null) {
  const size = micrometresPerPixel(calibration);
  const columns = [{ label: "Label", format: (v) => v }];
  const rows = objects.map((o) => [o.label]);
  if (size) {
    // µm first; pixels kept beside them, as the CSV download has them.
    const [sx, sy] = size;
    columns.push(
      { label: "x (µm)", format: (v) => v.toFixed(2) },
      { label: "y (µm)", format: (v) => v.toFixed(2) },
      { label: "Area (µm²)", format: (v) => v.toFixed(2) },
    );
    objects.forEach((o, i) => rows[i].push(o.x * sx, o.y * sy, o.area * sx * sy));
  }
  columns.push(
    { label: "x (px)", format: (v) => v.toFixed(1) },
    { label: "y (px)", format: (v) => v.toFixed(1) },
    { label: "Area (px²)", format: (v) => v },
  );
  objects.forEach((o, i) => rows[i].push(o.x, o.y, o.area));
  const units = size ? "in µm and in upload pixels" : "in upload pixels (no pixel size in the file)";
  return sortableTable(`${objects.length} ${noun}: centroid and area ${units}`, columns, rows);
}

export function lineageTable(populations, total, lineages) {
  const table = element("table", null, "data-table");
  table.append(element("caption", "Predicted cells per founder lineage"));
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  for (const label of ["Lineage", "Founder", "Cells"]) {
    const th = element("th", label, label === "Cells" ? "num" : null);
    th.scope = "col";
    headRow.append(th);
  }
  head.append(headRow);
  const body = document.createElement("tbody");
  for (const { key, founder } of lineages) {
    const tr = document.createElement("tr");
    tr.dataset.lineage = key;
    tr.append(element("th", key), element("td", founder), element("td", populations[key], "num"));
    tr.firstChild.scope = "row";
    body.append(tr);
  }
  const foot = document.createElement("tfoot");
  const totalRow = document.createElement("tr");
  const totalHead = element("th", "Total");
  totalHead.scope = "row";
  totalHead.colSpan = 2;
  totalRow.append(totalHead, element("td", total, "num"));
  foot.append(totalRow);
  table.append(head, body, foot);
  return table;
}

/** The stem of every file from an upload, <model>-<upload>: the server's downloads.safe_stem. */
export function downloadStem(model, fileName) {
  // Same rule as the server (tests/browser compare them): no folder, no last extension, each run
  // of anything but ASCII A-Z a-z 0-9 _ - becomes one "_", at most 80 characters.
  const base = String(fileName || "").split(/[\\/]/).pop();
  const cleaned = base.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 80);
  return `${model}-${cleaned || "image"}`;
}

/** A link that saves the objects as CSV, made in the browser from the JSON answer. */
export function csvDownloadLink(objects, filename) {
  const lines = ["label,x,y,area", ...objects.map((o) => `${o.label},${o.x},${o.y},${o.area}`)];
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const link = element("a", "Download the table (CSV)", "button button-small");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  return link;
}

export function probabilityDownloadLink(probabilityUrl, filename) {
  const link = element("a", "Probability (8-bit PNG)", "button button-small");
  link.href = probabilityUrl;
  link.download = filename;
  return link;
}
