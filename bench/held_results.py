"""Times a first answer against answers from the held result (no upload, no network run), on
the shipped models: `PYTHONPATH=. .venv/bin/python bench/held_results.py`."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from devolearn_web import create_app

SAMPLE = Path("/work/shared/samples/seg_sample.jpg")


def timed(client, model: str, form: dict) -> tuple[float, object]:
    started = time.perf_counter()
    response = client.post(f"/api/v1/predict/{model}", data=form)
    assert response.status_code == 200, response.get_json()
    return (time.perf_counter() - started) * 1000, response


def main() -> None:
    app = create_app({"MODELS_DIR": Path("models"), "RATE_LIMIT_ENABLED": False})
    client = app.test_client()
    image = SAMPLE.read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("L"))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack([pixels] * 35))
    cases = {
        "seg_sample.jpg (one image)": (image, "x.jpg"),
        "35-slice stack": (buffer.getvalue(), "s.tif"),
    }
    for label, (data, name) in cases.items():
        first_ms, first = timed(
            client, "membrane", {"file": (io.BytesIO(data), name), "include": "figures"}
        )
        key = first.get_json()["result_id"]
        held = {"result": key, "include": "figures"}
        counts = [
            timed(client, "membrane", {**held, "threshold": f"{t:.2f}"})[0]
            for t in (0.3, 0.4, 0.6, 0.7)
        ]
        csv_ms, _ = timed(client, "membrane", {"result": key, "format": "csv"})
        zip_ms, _ = timed(client, "membrane", {"result": key, "format": "zip"})
        resend_ms, _ = timed(
            client, "membrane", {"file": (io.BytesIO(data), name), "format": "zip"}
        )
        print(
            f"{label}: first answer {first_ms:.0f} ms; held threshold answers (with figures) "
            f"{', '.join(f'{ms:.0f}' for ms in counts)} ms; held CSV {csv_ms:.0f} ms, held ZIP "
            f"{zip_ms:.0f} ms (ZIP with the file sent again: {resend_ms:.0f} ms)"
        )


if __name__ == "__main__":
    main()
