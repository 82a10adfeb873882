// The jobs API as the model page uses it: submit a file, poll its status, fetch its result or a
// download, cancel it. A job's upload is kept on the server only while the job lives.

import { ApiError } from "./api.js";

async function answerOf(response, fallback) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const sentence = body && typeof body.error === "string" ? body.error : null;
    throw new ApiError(response.status, sentence || `${fallback} (HTTP status ${response.status}).`);
  }
  return body;
}

async function send(url, options, fallback) {
  try {
    return await fetch(url, { headers: { Accept: "application/json" }, ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server could not be reached. Check the connection and try again.");
  }
}

/** POST the file as a job; resolve to {id, state, status_url}. */
export async function submitJob(url, model, file, fields = {}) {
  const form = new FormData();
  form.append("model", model);
  form.append("file", file, file.name);
  form.append("include", "figures");
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  const response = await send(url, { method: "POST", body: form }, "");
  return answerOf(response, "The job could not be sent");
}

export async function jobStatus(url, id, signal) {
  const response = await send(`${url}/${id}`, { signal });
  return answerOf(response, "The job's state could not be read");
}

export async function jobResult(url, id, signal) {
  const response = await send(`${url}/${id}/result`, { signal });
  return answerOf(response, "The job's result could not be read");
}

export async function cancelJob(url, id) {
  const response = await send(`${url}/${id}`, { method: "DELETE" });
  if (!response.ok && response.status !== 404) await answerOf(response, "The job could not be cancelled");
}

/** GET one of the finished job's downloads: {blob, filename}. */
export async function fetchJobDownload(url, id, format) {
  const response = await send(`${url}/${id}/download/${format}`, {});
  if (!response.ok) await answerOf(response, "The download could not be made");
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = disposition.match(/filename="([^"]+)"/);
  return { blob: await response.blob(), filename: match ? match[1] : "devolearn-download" };
}

/** "about 40 s left" from the progress seen since the job started running; "" until known. */
export function timeLeft(first, done, total, now) {
  if (!first || done <= first.done || !total) return "";
  const perFrame = (now - first.at) / (done - first.done);
  const seconds = Math.round(((total - done) * perFrame) / 1000);
  return seconds >= 90 ? ` · about ${Math.round(seconds / 60)} min left` : ` · about ${seconds} s left`;
}
