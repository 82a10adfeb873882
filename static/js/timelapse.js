// The home page's time-lapse player: frames listed in static/home/timelapse.json (embedded in
// the page), input and model overlay stacked, with play/pause, a frame slider and an overlay
// toggle.

const root = document.getElementById("timelapse");
if (root) startPlayer(root);

function startPlayer(container) {
  const manifest = JSON.parse(document.getElementById("timelapse-data").textContent);
  const frames = manifest.frames;
  const baseUrl = container.dataset.baseUrl;
  const interval = Math.max(50, Number(manifest.frame_interval_ms) || 400);
  const input = document.getElementById("timelapse-input");
  const overlay = document.getElementById("timelapse-overlay");
  const play = document.getElementById("timelapse-play");
  const slider = document.getElementById("timelapse-frame");
  const toggle = document.getElementById("timelapse-overlay-toggle");
  const caption = document.getElementById("timelapse-caption");
  let index = 0;
  let timer = null;

  // Fetch every frame up front so playback does not stutter on the first loop.
  for (const frame of frames) {
    for (const name of [frame.input, frame.overlay]) new Image().src = baseUrl + name;
  }

  const describe = (frame) => {
    const parts = [];
    if (typeof frame.time_min === "number") parts.push(`${frame.time_min} min`);
    for (const [name, value] of Object.entries(frame.counts || {})) parts.push(`${name}: ${value}`);
    return parts.join(" · ");
  };

  const show = (next) => {
    index = (next + frames.length) % frames.length;
    const frame = frames[index];
    input.src = baseUrl + frame.input;
    overlay.src = baseUrl + frame.overlay;
    input.alt = `${manifest.title || "Time-lapse"}, frame ${index + 1} of ${frames.length}`;
    slider.value = String(index);
    caption.textContent = `Frame ${index + 1} of ${frames.length} · ${describe(frame)}`;
  };

  const setPlaying = (on) => {
    clearInterval(timer);
    timer = on ? setInterval(() => show(index + 1), interval) : null;
    play.textContent = on ? "Pause" : "Play";
    play.setAttribute("aria-pressed", String(on));
    container.dataset.playing = String(on);
  };

  play.addEventListener("click", () => setPlaying(timer === null));
  slider.addEventListener("input", () => {
    setPlaying(false);
    show(Number(slider.value));
  });
  toggle.addEventListener("change", () => {
    overlay.hidden = !toggle.checked;
  });

  show(0);
  // Motion only for those who have not asked their system for less of it.
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  setPlaying(!reduceMotion && frames.length > 1);
}
