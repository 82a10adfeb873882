// A model page: a file (dropped, browsed or an example) is sent at once; the answer fills the
// figures, count, notes and tables. On segmentation pages the threshold slider repaints the
// mask in the browser at once and asks the server for new counts once the slider rests.

import { ApiError, predict } from "./api.js";
import { attachDropZone, rejectionMessage } from "./dropzone.js";
import { purgeFigures, renderFigures, setHoverObjects, showMask } from "./figures.js";
import {
  describeSize,
  downloadStem,
  lineageTable,
  objectsTable,
  probabilityDownloadLink,
  showNotes,
  showTimings,
} from "./results.js";
import {
  assemblyFields,
  assemblySummary,
  describePosition,
  downloadButtons,
  drawFrameChart,
  fetchDownload,
  markCurrentFrame,
  saveBlob,
  shownNumber,
} from "./stack.js";
import { ThresholdMask } from "./threshold.js";
import { cancelJob, fetchJobDownload, jobResult, jobStatus, submitJob, timeLeft } from "./jobs.js";
import { carryOver, filterFields, squareMicronsPerPixel } from "./held.js";
import { attachViewControls } from "./view_controls.js";

// Counts, outlines and centroids are asked for this long after the slider stops moving: from
// the result the server holds (no upload, no network run), or with the file when it holds none.
const REFRESH_DELAY_MS = 400;
// A job's state is asked for this often while the page follows it.
const JOB_POLL_MS = 500;
const JOB_ID = /^[0-9a-f]{32}$/;
// From a held result a refresh costs the server tens of milliseconds, so the page asks sooner:
// counts should follow the slider within 300 ms.
const HELD_REFRESH_DELAY_MS = 60;

const root = document.getElementById("analysis");
const pageData = JSON.parse(document.getElementById("page-data").textContent);
const isSegmentation = pageData.task === "segmentation";
const jobs = pageData.jobs;
const byId = (id) => document.getElementById(id);
const ui = {
  zone: byId("dropzone"),
  input: byId("file-input"),
  progress: byId("progress"),
  progressText: byId("progress-text"),
  message: byId("message"),
  results: byId("results"),
  count: byId("count-value"),
  countNoun: byId("count-noun"),
  fileInfo: byId("file-info"),
  downloads: byId("downloads"),
  warning: byId("range-warning"),
  notes: byId("notes"),
  imageWarnings: byId("image-warnings"),
  diameter: byId("diameter"),
  scaleInfo: byId("scale-info"),
  figures: byId("figures"),
  table: byId("table-container"),
  timings: byId("timings"),
  controls: byId("threshold-controls"),
  slider: byId("threshold"),
  sliderValue: byId("threshold-value"),
  updateStatus: byId("update-status"),
  stack: byId("stack-controls"),
  stackAxesText: byId("stack-axes-text"),
  stackAxesForm: byId("stack-axes-form"),
  stackAxes: byId("stack-axes"),
  frameSlider: byId("frame-slider"),
  frameValue: byId("frame-value"),
  frameChart: byId("frame-chart"),
  skipFirst: byId("skip-first"),
  skipLast: byId("skip-last"),
  runningMax: byId("running-max"),
  assemble: byId("assemble-3d"),
  track: byId("track"),
  zStep: byId("z-step"),
  assemblySummary: byId("assembly-summary"),
  figures3d: byId("figures-3d"),
  asJob: byId("as-job"),
  jobCancel: byId("job-cancel"),
  jobLink: byId("job-link"),
  jobLinkAnchor: byId("job-link-anchor"),
  objectFilter: byId("object-filter"),
  minSize: byId("min-size"),
  minSizeUnit: byId("min-size-unit"),
  restoreExcluded: byId("restore-excluded"),
};

const state = {
  file: null,
  run: 0, // one per file; answers from an older run are dropped
  controller: null,
  refreshTimer: null,
  mask: null,
  maskPlots: [],
  downloadUrls: [],
  stackAnswer: null, // the last stack or movie answer; frames are shown from it
  frameIndex: 0,
  axes: "", // the visitor's axes override for the held file ("" = the server's guess)
  job: null, // the id of the job followed or shown; its downloads come from the server's copy
  resultId: null, // the server's id for this file's network output (held.js), while it holds it
  lastAnswer: null, // the last single-image answer: a held answer's pictures come from it
  excluded: [], // clicked points whose objects are dropped: [x, y] or [x, y, frame]
  perPixel: null, // µm² per upload pixel, when the image has a pixel size
};

/** The min_area and exclude fields of the visitor's object filter. */
function objectFields() {
  return isSegmentation ? filterFields(ui.minSize.value, state.perPixel, state.excluded) : {};
}

/** Form fields sent with every request for the held file. */
function requestFields() {
  const fields = state.axes ? { axes: state.axes } : {};
  const diameter = ui.diameter ? ui.diameter.value.trim() : "";
  if (diameter) fields.diameter = diameter;
  if (ui.assemble) {
    Object.assign(
      fields,
      assemblyFields({ assemble: ui.assemble.checked, track: ui.track.checked, zStep: ui.zStep.value }),
    );
  }
  return fields;
}

function showProgress(done, total) {
  ui.progressText.textContent = `Analysing frame ${done} of ${total}…`;
  const bar = ui.progress.querySelector("progress");
  bar.max = total;
  bar.value = done;
}

function setState(name) {
  root.dataset.state = name;
}

function showMessage(text) {
  ui.message.textContent = text || "";
  ui.message.hidden = !text;
}

function setBusy(text) {
  ui.progressText.textContent = text;
  ui.progress.hidden = false;
  ui.zone.classList.add("is-busy");
  root.setAttribute("aria-busy", "true");
  setState("busy");
}

function clearBusy() {
  ui.progress.hidden = true;
  ui.zone.classList.remove("is-busy");
  root.removeAttribute("aria-busy");
}

function cancelPending() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = null;
  if (state.controller) state.controller.abort();
  state.controller = null;
}

/** Analyse a new file: the first answer also loads the probability map for the slider. */
async function analyse(file, { ignored = 0, keepAxes = false } = {}) {
  cancelPending();
  if (!keepAxes) {
    state.axes = "";
    // A new file starts as a plain stack: 3D and tracks are asked for once its axes are seen.
    if (ui.assemble) ui.assemble.checked = ui.track.checked = false;
  }
  state.file = file;
  state.mask = null;
  forgetJob();
  state.resultId = null;
  state.lastAnswer = null;
  state.excluded = [];
  // A ZIP of time points is a whole recording: only jobs read it.
  const isZip = /\.zip$/i.test(file.name);
  const newFile = !keepAxes;
  if (jobs && (ui.asJob.checked || isZip || file.size > jobs.min_bytes)) return runJob(file, { newFile });
  const run = ++state.run;
  const controller = new AbortController();
  state.controller = controller;
  showMessage("");
  setBusy(`Analysing “${file.name}”…`);
  try {
    ui.progress.querySelector("progress").removeAttribute("value");
    const answer = await predict(root.dataset.predictUrl, file, {
      signal: controller.signal,
      fields: { ...requestFields(), ...objectFields() },
      onProgress: showProgress,
    });
    if (run !== state.run) return;
    if (ignored > 0) {
      answer.notes = [
        `${ignored + 1} files were dropped: only “${file.name}” was analysed.`,
        ...(answer.notes || []),
      ];
    }
    await showAnyAnswer(answer, file, run, { newFile: true });
    if (run === state.run) {
      setState("done");
      clearBusy(); // before measuring: the progress row above the results folds away
      bringResultIntoView();
    }
  } catch (error) {
    if (error.name === "AbortError" || run !== state.run) return;
    // Too many frames or values for one request: the same file as a job has room for it.
    if (jobs && error instanceof ApiError && error.status === 413) return runJob(file, { newFile });
    fail(error, { newFile });
  } finally {
    if (run === state.run) clearBusy();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jobPageLink = (id) => `${window.location.pathname}?job=${id}`;

function forgetJob() {
  state.job = null;
  ui.jobCancel.hidden = true;
  ui.jobLink.hidden = true;
  delete root.dataset.job;
  delete root.dataset.jobState;
  if (new URLSearchParams(window.location.search).has("job")) {
    window.history.replaceState(null, "", window.location.pathname);
  }
}

/** Send the file as a job, then follow it to its answer. */
async function runJob(file, { newFile = true } = {}) {
  const run = ++state.run;
  showMessage("");
  setBusy(`Sending “${file.name}” as a job…`);
  ui.progress.querySelector("progress").removeAttribute("value");
  try {
    const accepted = await submitJob(jobs.url, pageData.model, file, requestFields());
    if (run !== state.run) return;
    await followJob(accepted.id, file.name, run, { newFile });
  } catch (error) {
    if (error.name === "AbortError" || run !== state.run) return;
    clearBusy();
    fail(error, { newFile });
  }
}

/** Poll the job's state (progress, time left), then draw its result as predict's is drawn. */
async function followJob(id, name, run, { newFile = true } = {}) {
  state.job = id;
  root.dataset.job = id;
  window.history.replaceState(null, "", jobPageLink(id));
  ui.jobLinkAnchor.href = jobPageLink(id);
  ui.jobLink.hidden = false;
  ui.jobCancel.hidden = false;
  setBusy(`The job for “${name}” is queued…`);
  let first = null;
  try {
    for (;;) {
      const status = await jobStatus(jobs.url, id);
      if (run !== state.run) return;
      root.dataset.jobState = status.state;
      if (status.state === "finished") break;
      if (status.state === "failed") throw new ApiError(422, status.error || "The job failed.");
      if (status.state === "cancelled") {
        throw new ApiError(409, "The job was cancelled; its upload and results were deleted.");
      }
      const { done, total } = status.progress;
      if (total) {
        const now = performance.now();
        if (!first) first = { done, at: now };
        showProgress(done, total);
        ui.progressText.textContent =
          `Job: frame ${done} of ${total} done` + timeLeft(first, done, total, now) + "…";
      } else if (status.state === "running") {
        ui.progressText.textContent = `The job is reading “${name}”…`;
      }
      await sleep(JOB_POLL_MS);
      if (run !== state.run) return;
    }
    ui.jobCancel.hidden = true;
    const answer = await jobResult(jobs.url, id);
    if (run !== state.run) return;
    state.file = state.file && state.file.name === name ? state.file : { name };
    // A reopened job's link shows what it was asked for: 3D nuclei, tracks.
    if (ui.assemble) {
      ui.track.checked = "tracks" in answer;
      ui.assemble.checked = !ui.track.checked && "objects_3d" in answer;
    }
    await showAnyAnswer(answer, state.file, run, { newFile: true });
    if (run === state.run) setState("done");
  } catch (error) {
    if (error.name === "AbortError" || run !== state.run) return;
    ui.jobCancel.hidden = true;
    fail(error, { newFile });
  } finally {
    if (run === state.run) clearBusy();
  }
}

async function cancelFollowedJob() {
  const id = state.job;
  if (!id) return;
  state.run += 1; // the polling loop stops at its next turn
  ui.jobCancel.hidden = true;
  try {
    await cancelJob(jobs.url, id);
  } catch (error) {
    clearBusy();
    fail(error);
    return;
  }
  clearBusy();
  forgetJob();
  forgetShownResults();
  root.dataset.jobState = "cancelled";
  setState("cancelled");
  showMessage("The job was cancelled; its upload and any results were deleted from the server.");
}

/** Scroll a new file's answer into view (controls, count, first figure), unless it already is. */
function bringResultIntoView() {
  const firstFigure = ui.figures.querySelector(".figure-panel");
  const inView = (node) => {
    const box = node.getBoundingClientRect();
    return box.top >= 0 && box.top < window.innerHeight * 0.8;
  };
  if (inView(ui.count) && (!firstFigure || inView(firstFigure))) return;
  // The controls just above the count stay in view with it: the slider moves what it shows.
  let target = ui.results;
  if (state.stackAnswer) target = ui.stack;
  else if (ui.controls && !ui.controls.hidden) target = ui.controls;
  // Unless the controls are so tall (a phone) that the figure would stay below the fold.
  const gap = ui.results.getBoundingClientRect().top - target.getBoundingClientRect().top;
  if (gap > window.innerHeight * 0.3) target = ui.results;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  target.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
}

/** Show why an analysis failed. When a new file failed, the last file's results go: left
 * under the message they read as this file's, and the slider would send the failed file. */
function fail(error, { newFile = false } = {}) {
  setState("error");
  if (newFile) forgetShownResults();
  if (error instanceof ApiError) {
    showMessage(error.message);
  } else {
    showMessage(`The page could not show the result: ${error.message}`);
    console.warn(error);
  }
}

function forgetShownResults() {
  state.file = null;
  state.stackAnswer = null;
  ui.results.hidden = true;
  ui.stack.hidden = true;
  if (ui.controls) ui.controls.hidden = true;
  if (ui.objectFilter) ui.objectFilter.hidden = true;
}

/** A single image's answer, or a stack/movie answer shown one frame at a time. */
async function showAnyAnswer(answer, file, run, { newFile = false } = {}) {
  state.resultId = answer.result_id || null;
  showObjectFilter(answer);
  if (!answer.kind) {
    state.lastAnswer = answer;
    state.stackAnswer = null;
    ui.stack.hidden = true;
    await showAnswer(answer, file, run);
    await showAssembly({});
    if (ui.assemblySummary) ui.assemblySummary.hidden = true;
    if (isSegmentation && newFile) await prepareSlider(answer, run);
    return;
  }
  state.stackAnswer = answer;
  if (newFile) state.frameIndex = firstFrameShown(answer);
  state.frameIndex = Math.min(state.frameIndex, answer.frame_count - 1);
  showStackControls(answer);
  if (answer.frame_count > 1) await drawFrameChart(ui.frameChart, answer, chartOptions());
  await showFrame(state.frameIndex, run);
  await showAssembly(answer, run);
}

/** A z-stack opens on its middle slice, where the embryo is widest (napari does the same); a
 * time-lapse or a movie on its first frame. */
function firstFrameShown(answer) {
  const used = answer.axes ? answer.axes.used : "";
  const zOnly = answer.kind === "stack" && used.includes("Z") && !used.includes("T");
  return zOnly ? Math.floor(answer.frame_count / 2) : 0;
}

/** The 3D view, lineage tree, founder counts and nuclei over time of an answer with assemble or track. */
async function showAssembly(answer, run = state.run) {
  if (!ui.figures3d) return;
  const figures = answer.figures_3d || {};
  for (const figure of Object.values(figures)) {
    figure.layout = { ...figure.layout, uirevision: `run-${run}` };
  }
  await renderFigures(ui.figures3d, figures, {
    filenamePrefix: downloadStem(pageData.model, state.file ? state.file.name : ""),
    order: ["nuclei_3d", "lineage_tree", "founder_counts", "nuclei_over_time"],
  });
}

function chartOptions() {
  return {
    skipFirst: ui.skipFirst ? Number(ui.skipFirst.value) || 0 : 0,
    skipLast: ui.skipLast ? Number(ui.skipLast.value) || 0 : 0,
    runningMax: ui.runningMax ? ui.runningMax.checked : false,
    current: state.frameIndex,
    trainingA: pageData.training_range_a,
  };
}

function showStackControls(answer) {
  const axes = answer.axes;
  // channel is null where a colour file's brightness was used: no channel to name then.
  const channel = axes.channels > 1 && axes.channel !== null ? ` · channel ${shownNumber(axes.channel)} of ${axes.channels}` : "";
  const frames = `${answer.frame_count} frame${answer.frame_count === 1 ? "" : "s"}`;
  ui.stackAxesText.textContent =
    `${answer.kind === "movie" ? "Movie" : "Stack"} of ${frames} · axes ` +
    `${axes.used} (guessed ${axes.guessed}: ${axes.source})${channel}`;
  // One frame (a z-stack projected into one image): no slider, chart or frame skipping to use.
  const single = answer.frame_count < 2;
  ui.frameSlider.closest(".frame-row").hidden = single;
  ui.frameChart.hidden = single;
  if (ui.skipFirst) ui.skipFirst.closest(".frame-options").hidden = single;
  ui.stackAxes.value = axes.used.replace(/[YXS]/g, "");
  ui.stackAxesForm.hidden = answer.kind === "movie";
  ui.frameSlider.max = String(answer.frame_count - 1);
  ui.frameSlider.value = String(state.frameIndex);
  ui.stack.hidden = false;
}

/** Show frame `index` of the held stack answer: figures, count, table, mask for the slider. */
async function showFrame(index, run) {
  const answer = state.stackAnswer;
  const frame = answer.frames[index];
  state.frameIndex = index;
  ui.frameValue.textContent = describePosition(frame, answer.frame_count);
  ui.frameSlider.dataset.shown = String(index);
  markCurrentFrame(ui.frameChart, index);
  await showAnswer({ ...frame, notes: [...answer.notes, ...(frame.notes || [])] }, state.file, run);
  showDownloads(answer, state.file);
  if (ui.assemblySummary) {
    ui.assemblySummary.textContent = assemblySummary(answer, frame);
    ui.assemblySummary.hidden = !ui.assemblySummary.textContent;
  }
  if (isSegmentation && frame.probability) await prepareSlider(frame, run);
  else if (isSegmentation) ui.controls.hidden = false;
}

async function showAnswer(answer, file, run) {
  ui.results.hidden = false; // Plotly needs a visible container to size its plots
  const count = isSegmentation ? answer.count : answer.total;
  ui.count.textContent = String(count);
  ui.countNoun.textContent = count === 1 ? root.dataset.countNounOne : root.dataset.countNoun;
  // A stack's frames leave the pixel size to the stack's answer.
  const calibration = answer.calibration || (state.stackAnswer && state.stackAnswer.calibration);
  ui.fileInfo.textContent = isSegmentation
    ? `${file.name} · ${describeSize(answer.width, answer.height, calibration)} · threshold ${answer.threshold.toFixed(2)}`
    : file.name;
  showNotes(ui.notes, answer.notes);
  showNotes(ui.imageWarnings, answer.warnings);
  showScale(answer);
  showTimings(ui.timings, answer.timings_ms);
  showRangeWarning(answer);
  showTable(answer);
  showDownloads(answer, file);
  // A new file starts from its own full view; a threshold change keeps the visitor's zoom.
  for (const figure of Object.values(answer.figures || {})) {
    figure.layout = { ...figure.layout, uirevision: `run-${run}` };
  }
  const inputMeta = answer.figures?.input?.layout?.meta || {};
  setHoverObjects(ui.figures, answer.objects, inputMeta.labels);
  state.maskPlots = await renderFigures(ui.figures, answer.figures || {}, {
    filenamePrefix: downloadStem(pageData.model, file.name),
    order: pageData.figure_order,
  });
  if (isSegmentation) hookExcludeClicks();
  root.dataset.answers = String(Number(root.dataset.answers || 0) + 1);
}

function showRangeWarning(answer) {
  const over = !isSegmentation && answer.outside_training_range;
  const atEnd = !isSegmentation && !over && answer.at_end_of_training_range;
  ui.warning.hidden = !(over || atEnd);
  const limit = pageData.training_range_a;
  if (over) {
    ui.warning.textContent =
      `A = ${answer.populations.A} cells is past the model's training range (up to A = ${limit}): ` +
      "this embryo is older than any the model learned from, so treat these counts as extrapolation.";
  } else if (atEnd) {
    // The network's counts stop rising at the range's end: an older embryo reads the same.
    ui.warning.textContent =
      `A = ${answer.populations.A} cells is at the end of the model's training range (up to A = ${limit}): ` +
      "its counts stop rising there, so this embryo may be older and these counts too low.";
  }
}

function showTable(answer) {
  const objects = answer.objects || [];
  const noun = objects.length === 1 ? root.dataset.countNounOne : root.dataset.countNoun;
  const table = isSegmentation
    ? objectsTable(objects, noun, answer.calibration || (state.stackAnswer && state.stackAnswer.calibration))
    : lineageTable(answer.populations, answer.total, pageData.lineages);
  ui.table.replaceChildren(table);
}

function showDownloads(answer, file) {
  // Every file is made by the server from the upload sent again (nothing is kept there).
  const stackAnswer = state.stackAnswer || {};
  // A job's files are made from its results on the server, at the job's own threshold.
  const job = state.job;
  let buttons = downloadButtons(
    pageData.task,
    Boolean(state.stackAnswer),
    (format, button) =>
      job ? requestJobDownload(job, format, button) : requestDownload(format, button, file),
    { assembled: "objects_3d" in stackAnswer, tracked: "tracks" in stackAnswer },
  );
  if (job) buttons = buttons.filter((button) => jobs.formats.includes(button.dataset.format));
  ui.downloads.replaceChildren(...buttons);
  if (isSegmentation && !state.stackAnswer && answer.probability) {
    const stem = downloadStem(pageData.model, file.name);
    // Named like the server's files (downloads.FILE_SUFFIXES): <model>-<upload>_<what>.
    ui.downloads.append(probabilityDownloadLink(answer.probability, `${stem}_probability.png`));
  }
}

async function requestDownload(format, button, file) {
  const fields = { format, ...objectFields() };
  if (isSegmentation) fields.threshold = Number(ui.slider.value).toFixed(3);
  button.disabled = true;
  try {
    const { blob, filename } = await downloadHeldOrFile(fields, file);
    root.dataset.lastDownload = `${filename} ${blob.size}`;
    saveBlob(blob, filename);
  } catch (error) {
    showMessage(error.message);
  } finally {
    button.disabled = false;
  }
}

async function requestJobDownload(id, format, button) {
  button.disabled = true;
  try {
    const { blob, filename } = await fetchJobDownload(jobs.url, id, format);
    root.dataset.lastDownload = `${filename} ${blob.size}`;
    saveBlob(blob, filename);
  } catch (error) {
    showMessage(error.message);
  } finally {
    button.disabled = false;
  }
}

/** A download made from the held result; with the file again when the server holds none. */
async function downloadHeldOrFile(fields, file) {
  if (state.resultId) {
    try {
      return await fetchDownload(root.dataset.predictUrl, null, { ...fields, result: state.resultId });
    } catch (error) {
      if (error.status !== 410) throw error;
      state.resultId = null; // expired, or held by another server process
    }
  }
  return fetchDownload(root.dataset.predictUrl, file, { ...requestFields(), ...fields });
}

function showObjectFilter(answer) {
  if (!ui.objectFilter) return;
  state.perPixel = squareMicronsPerPixel(answer.calibration);
  ui.minSizeUnit.textContent = state.perPixel ? "µm²" : "pixels";
  ui.restoreExcluded.hidden = state.excluded.length === 0;
  ui.restoreExcluded.textContent = `Bring back ${state.excluded.length} excluded`;
  ui.objectFilter.hidden = false;
}

/** A click on a figure excludes the object under it (once per plot: plots are reused). */
function hookExcludeClicks() {
  for (const plot of ui.figures.querySelectorAll(".plot")) {
    if (plot.dataset.excludeHooked || typeof plot.on !== "function") continue;
    plot.dataset.excludeHooked = "true";
    plot.on("plotly_click", (event) => {
      const point = event && event.points && event.points[0];
      if (!point || typeof point.x !== "number" || typeof point.y !== "number") return;
      // Calibrated figures are drawn in µm; the server finds objects by upload pixel.
      const meta = (plot.layout && plot.layout.meta) || {};
      const [sizeX, sizeY] = meta.pixel_size || [1, 1];
      const x = point.x / (sizeX || 1);
      const y = point.y / (sizeY || 1);
      state.excluded.push(state.stackAnswer ? [x, y, state.frameIndex] : [x, y]);
      refreshNow();
    });
  }
}

function refreshNow() {
  clearTimeout(state.refreshTimer);
  refresh(Number(ui.slider.value));
}

function showScale(answer) {
  if (!ui.scaleInfo) return;
  if (typeof answer.scale !== "number") {
    ui.scaleInfo.textContent = "";
    return;
  }
  const found = typeof answer.diameter === "number" ? `, found ${answer.diameter.toFixed(1)} px` : "";
  ui.scaleInfo.textContent = `ran at ${answer.scale.toFixed(2)}× (${answer.scale_source})${found}`;
}

async function prepareSlider(answer, run) {
  const mask = new ThresholdMask(pageData.mask_rgba);
  await mask.load(answer.probability);
  if (run !== state.run) return;
  state.mask = mask;
  ui.slider.value = String(answer.threshold);
  ui.sliderValue.textContent = answer.threshold.toFixed(2);
  ui.updateStatus.textContent = "";
  ui.controls.hidden = false;
}

function onSliderInput() {
  const threshold = Number(ui.slider.value);
  ui.sliderValue.textContent = threshold.toFixed(2);
  if (!state.mask || !state.mask.ready) return;
  const started = performance.now();
  showMask(state.maskPlots, state.mask.render(threshold));
  const painted = performance.now() - started;
  // Read by the browser test and handy when tuning: how long the mask took to follow.
  ui.slider.dataset.lastRepaintMs = painted.toFixed(1);
  ui.slider.dataset.repaints = String(Number(ui.slider.dataset.repaints || 0) + 1);
  scheduleRefresh(threshold);
}

function scheduleRefresh(threshold) {
  clearTimeout(state.refreshTimer);
  ui.updateStatus.textContent = "";
  const delay = state.resultId ? HELD_REFRESH_DELAY_MS : REFRESH_DELAY_MS;
  state.refreshTimer = setTimeout(() => refresh(threshold), delay);
}

/** New counts from the held result, or from the file when the server holds none (or when
 * `reuse` is false: a new diameter changes what the network sees). */
async function refresh(threshold, { reuse = true } = {}) {
  if (!state.file) return;
  if (state.job) {
    // The whole stack again would be another job: the mask follows, the counts stay the job's.
    ui.updateStatus.textContent =
      "The mask follows the slider; counts and downloads are the job's, at its threshold.";
    return;
  }
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const run = state.run;
  ui.updateStatus.textContent = "Updating counts and outlines…";
  try {
    let answer = null;
    if (reuse && state.resultId) {
      const fields = { result: state.resultId, ...objectFields() };
      answer = await predict(root.dataset.predictUrl, null, { threshold, signal: controller.signal, fields }).catch(
        (error) => {
          if (!(error instanceof ApiError && error.status === 410)) throw error;
          return null; // expired, or held by another server process: send the file
        },
      );
    }
    if (!answer) {
      answer = await predict(root.dataset.predictUrl, state.file, {
        threshold,
        signal: controller.signal,
        fields: { ...requestFields(), ...objectFields() },
      });
    }
    // A later slider move has its own request coming: this answer is already stale.
    if (run !== state.run || Number(ui.slider.value) !== threshold) return;
    carryOver(state.stackAnswer || state.lastAnswer, answer);
    await showAnyAnswer(answer, state.file, run);
    ui.updateStatus.textContent = "";
    setState("done");
  } catch (error) {
    if (error.name === "AbortError" || run !== state.run) return;
    ui.updateStatus.textContent = "";
    fail(error);
  }
}

async function runExample(button) {
  const name = button.dataset.exampleName;
  cancelPending();
  state.run += 1;
  const run = state.run;
  showMessage("");
  setBusy(`Fetching the example “${name}”…`);
  const unavailable = (status) => new ApiError(status, `The example “${name}” could not be loaded.`);
  try {
    const response = await fetch(button.dataset.exampleUrl).catch(() => {
      throw unavailable(0);
    });
    if (!response.ok) throw unavailable(response.status);
    const blob = await response.blob();
    if (run !== state.run) return;
    await analyse(new File([blob], name, { type: blob.type }));
  } catch (error) {
    if (run !== state.run) return;
    clearBusy();
    fail(error);
  }
}

attachDropZone(ui.zone, ui.input, {
  extensions: pageData.accepted_extensions,
  onFile: (file, details) => analyse(file, details),
  onReject: (file) => {
    setState("rejected");
    showMessage(
      rejectionMessage(file, pageData.accepted_extensions, pageData.accepted_formats, {
        formats: pageData.microscope_formats,
        advice: pageData.microscope_format_advice,
      }),
    );
  },
});

for (const button of document.querySelectorAll(".example-button")) {
  button.addEventListener("click", () => runExample(button));
}

if (isSegmentation) {
  ui.slider.addEventListener("input", onSliderInput);
  // A new diameter means a new working scale: the server runs the model again.
  ui.diameter.addEventListener("change", () => refresh(Number(ui.slider.value), { reuse: false }));
  ui.minSize.addEventListener("input", () => scheduleRefresh(Number(ui.slider.value)));
  ui.restoreExcluded.addEventListener("click", () => {
    state.excluded = [];
    refreshNow();
  });
}

ui.frameSlider.addEventListener("input", () => {
  if (!state.stackAnswer) return;
  const index = Number(ui.frameSlider.value);
  const run = state.run;
  showFrame(index, run).catch(fail);
});

ui.stackAxesForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!(state.file instanceof File)) {
    showMessage("Drop the file again to read it with other axes: this page reopened a job.");
    return;
  }
  state.axes = ui.stackAxes.value.trim().toUpperCase();
  analyse(state.file, { keepAxes: true });
});

// Ticking 3D or tracking (or a new z step while one is ticked) analyses the held file again.
for (const control of [ui.assemble, ui.track, ui.zStep]) {
  if (!control) continue;
  control.addEventListener("change", () => {
    if (!state.file) return;
    if (control === ui.zStep && !ui.assemble.checked && !ui.track.checked) return;
    if (!(state.file instanceof File)) {
      showMessage("Drop the file again to analyse it in 3D or with tracks: this page reopened a job.");
      return;
    }
    analyse(state.file, { keepAxes: true });
  });
}

for (const control of [ui.skipFirst, ui.skipLast, ui.runningMax]) {
  if (!control) continue;
  control.addEventListener(control.type === "checkbox" ? "change" : "input", () => {
    if (state.stackAnswer) drawFrameChart(ui.frameChart, state.stackAnswer, chartOptions());
  });
}

if (!window.Plotly) {
  showMessage("The plotting library did not load, so figures cannot be shown. Reload the page.");
} else {
  purgeFigures(ui.figures);
  attachViewControls(root);
  setState("ready");
  const linked = new URLSearchParams(window.location.search).get("job");
  if (jobs && linked && JOB_ID.test(linked)) followJob(linked, `job ${linked.slice(0, 8)}`, ++state.run);
}

ui.jobCancel.addEventListener("click", cancelFollowedJob);
