// Re-thresholding in the browser: the probability map (8-bit PNG, probability * 255, at the
// upload's size) is decoded once; each slider move repaints the mask from it with one tight
// loop over a typed array, with no request to the server.

export class ThresholdMask {
  /** rgba: [r, g, b, a] of a masked pixel (the server's figures use the same colour). */
  constructor(rgba) {
    const [r, g, b, a] = rgba;
    // Canvas pixel data is RGBA bytes; read as little-endian 32-bit words that is 0xAABBGGRR.
    this.packedColour = ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
    this.littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
    if (!this.littleEndian) this.packedColour = ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
    this.probability = null;
  }

  /** Decode the probability PNG (a data: URL) once into one byte per pixel. */
  async load(probabilityUrl) {
    const image = new Image();
    image.src = probabilityUrl;
    await image.decode();
    const width = image.naturalWidth;
    const height = image.naturalHeight;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0);
    const rgba = context.getImageData(0, 0, width, height).data;
    const probability = new Uint8Array(width * height);
    for (let i = 0, j = 0; i < probability.length; i += 1, j += 4) probability[i] = rgba[j];

    this.width = width;
    this.height = height;
    this.probability = probability;
    this.canvas = canvas;
    this.context = context;
    this.output = context.createImageData(width, height);
    this.words = new Uint32Array(this.output.data.buffer);
  }

  get ready() {
    return this.probability !== null;
  }

  /** Paint the mask for a threshold in 0..1 and return it as a PNG data: URL. */
  render(threshold) {
    // The server keeps probability >= threshold; the PNG holds round(probability * 255).
    const cutoff = threshold * 255;
    const probability = this.probability;
    const words = this.words;
    const colour = this.packedColour;
    for (let i = 0; i < probability.length; i += 1) {
      words[i] = probability[i] >= cutoff ? colour : 0;
    }
    this.context.putImageData(this.output, 0, 0);
    return this.canvas.toDataURL("image/png");
  }
}
