// The one call the pages make: POST /api/v1/predict/<model>, answered as JSON.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * Send the file (kept in memory by the page) with an optional threshold and extra form fields;
 * resolve to the JSON. With onProgress, a stack or movie is answered as NDJSON progress lines
 * (onProgress(done, total) for each) before the answer itself.
 */
export async function predict(
  url,
  file,
  { threshold = null, signal = undefined, fields = {}, onProgress = null } = {},
) {
  const form = new FormData();
  // No file: `fields.result` names a result the server holds (held.js).
  if (file) form.append("file", file, file.name);
  form.append("include", "figures");
  if (threshold !== null) form.append("threshold", threshold.toFixed(3));
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  if (onProgress) form.append("progress", "ndjson");

  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      body: form,
      signal,
      headers: { Accept: "application/json" },
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server could not be reached. Check the connection and try again.");
  }

  const type = response.headers.get("Content-Type") || "";
  if (response.ok && type.startsWith("application/x-ndjson")) {
    return readProgressLines(response, onProgress || (() => {}));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const sentence = body && typeof body.error === "string" ? body.error : null;
    throw new ApiError(
      response.status,
      sentence || `The server could not analyse the image (HTTP status ${response.status}).`,
    );
  }
  if (!body) throw new ApiError(response.status, "The server's answer could not be read.");
  return body;
}

/** Read {"progress"} lines until the {"result"} line (or an {"error"} line, thrown). */
async function readProgressLines(response, onProgress) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += value || "";
    const lines = pending.split("\n");
    pending = done ? "" : lines.pop();
    for (const line of lines.filter((text) => text.trim())) {
      const event = JSON.parse(line);
      if (event.progress) onProgress(event.progress.done, event.progress.total);
      if (event.error) throw new ApiError(event.status || 500, event.error);
      if (event.result) return event.result;
    }
    if (done) throw new ApiError(response.status, "The server's answer ended before the result.");
  }
}
