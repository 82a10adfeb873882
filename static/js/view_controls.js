// How the figures are drawn, not what they say: overlay opacity and the input's contrast.
// Both are CSS on the drawn SVG, so they hold through every redraw (slider, new frame) and
// cost no Plotly call; Plotly's PNG export draws the figure as the server sent it.

/** CSS filter mapping display level `low` to black and `high` to white, linearly (0..255). */
export function contrastFilter(low, high) {
  const span = Math.max(1, high - low) / 255;
  const gain = 1 / span; // out = gain * in + offset
  const offset = -(low / 255) / span;
  // brightness(k) then contrast(c) gives c*k*in + (1 - c)/2: solve for gain and offset.
  const c = 1 - 2 * offset;
  return `brightness(${(gain / c).toFixed(4)}) contrast(${c.toFixed(4)})`;
}

export function attachViewControls(root) {
  const opacity = document.getElementById("overlay-opacity");
  const low = document.getElementById("contrast-min");
  const high = document.getElementById("contrast-max");
  const reset = document.getElementById("view-reset");
  const apply = () => {
    if (opacity) root.style.setProperty("--overlay-opacity", opacity.value);
    let [min, max] = [Number(low.value), Number(high.value)];
    if (min >= max) [min, max] = [Math.min(min, 254), Math.max(min + 1, max)];
    root.style.setProperty("--input-filter", min === 0 && max === 255 ? "none" : contrastFilter(min, max));
  };
  for (const control of [opacity, low, high]) if (control) control.addEventListener("input", apply);
  reset.addEventListener("click", () => {
    if (opacity) opacity.value = "1";
    low.value = "0";
    high.value = "255";
    apply();
  });
  apply();
}
