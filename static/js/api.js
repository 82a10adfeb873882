// The one call the pages make: POST /api/v1/predict/<model>, answered as JSON.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** Send the file (kept in memory by the page) with an optional threshold; resolve to the JSON. */
export async function predict(url, file, { threshold = null, signal = undefined } = {}) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("include", "figures");
  if (threshold !== null) form.append("threshold", threshold.toFixed(3));

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
