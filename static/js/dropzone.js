// The drop zone: drag and drop, or click / keyboard to browse. Files of the wrong type are
// refused here, before any request, with a message the page shows as plain text.

export function hasAcceptedExtension(file, extensions) {
  const name = file.name.toLowerCase();
  return extensions.some((extension) => name.endsWith(extension));
}

/** `formats` is the server's own list (imaging.ACCEPTED_FORMATS), so the two cannot differ;
 * `microscope` names a microscope maker's file and says how to make a TIFF of it (the server's
 * imaging.MICROSCOPE_FORMATS and MICROSCOPE_FORMAT_ADVICE). */
export function rejectionMessage(file, extensions, formats, microscope = {}) {
  const dot = file.name.lastIndexOf(".");
  const vendor = dot >= 0 && (microscope.formats || {})[file.name.slice(dot).toLowerCase()];
  if (vendor) return `“${file.name}” is ${vendor}, ${microscope.advice}`;
  const endings = `${extensions.slice(0, -1).join(", ")} or ${extensions[extensions.length - 1]}`;
  return (
    `“${file.name}” is not an image this page can analyse. Please choose a ${formats}: ` +
    `a file ending in ${endings}.`
  );
}

/**
 * Calls onFile(file, {ignored}) for an accepted file, onReject(file) for any other.
 * `ignored` counts the extra files of a multi-file drop (only the first is analysed).
 */
export function attachDropZone(zone, input, { extensions, onFile, onReject }) {
  const take = (files) => {
    if (!files || files.length === 0) return;
    const file = files[0];
    if (hasAcceptedExtension(file, extensions)) {
      onFile(file, { ignored: files.length - 1 });
    } else {
      onReject(file);
    }
  };

  input.addEventListener("change", () => {
    take(input.files);
    // Choosing the same file again should run it again.
    input.value = "";
  });

  const setDragging = (on) => zone.classList.toggle("is-dragging", on);
  zone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    setDragging(true);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    setDragging(true);
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) setDragging(false);
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    setDragging(false);
    take(event.dataTransfer ? event.dataTransfer.files : null);
  });

  // A file dropped just beside the zone would otherwise replace the page with the file.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (!zone.contains(event.target)) event.preventDefault();
    });
  }
}
