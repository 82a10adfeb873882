"""What the browser tests and the browser benchmark do to a page: drop a file, move the slider."""

from __future__ import annotations

import base64

# A file dropped on the drop zone as a visitor's drag and drop delivers it.
DROP_FILE_JS = """([base64Bytes, name, type]) => {
    const text = atob(base64Bytes);
    const bytes = new Uint8Array(text.length);  // a plain loop: Uint8Array.from's callback is slow
    for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type }));
    const zone = document.getElementById("dropzone");
    for (const kind of ["dragenter", "dragover", "drop"]) {
        const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
        zone.dispatchEvent(new DragEvent(kind, init));
    }
}"""

# Move the threshold slider as a visitor does (input events), timing each move: the handler's
# own time, the time to the next animation frame, and what the page itself reported.
SLIDE_JS = """async (thresholds) => {
    const slider = document.getElementById("threshold");
    const timings = [];
    for (const value of thresholds) {
        const started = performance.now();
        slider.value = String(value);
        slider.dispatchEvent(new Event("input", { bubbles: true }));
        const handled = performance.now() - started;
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        timings.push({ inputAt: started, handled, nextFrame: performance.now() - started,
                       reported: Number(slider.dataset.lastRepaintMs) });
    }
    return timings;
}"""


def drop_file(page, data: bytes, name: str, mime: str = "image/png") -> None:
    """Drop `data` on the page's drop zone as a file called `name` of type `mime`."""
    page.evaluate(DROP_FILE_JS, [base64.b64encode(data).decode("ascii"), name, mime])
