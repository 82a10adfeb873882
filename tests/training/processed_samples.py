"""A processed segmentation index of hand-made samples, for tests of steps that read one."""

from __future__ import annotations

import numpy as np


def write_processed_samples(workspace, samples) -> None:
    """Write (split, image, labels) samples as a processed index, as `preprocess` would."""
    from devolearn_web.training.images import write_image_png, write_labels_png
    from devolearn_web.training.index import SEGMENTATION_COLUMNS, write_index

    rows = []
    for index, (split, image, labels) in enumerate(samples):
        sample_id = f"s{index:02d}"
        write_image_png(workspace.processed_dir / "images" / f"{sample_id}.png", image)
        write_labels_png(workspace.processed_dir / "labels" / f"{sample_id}.png", labels)
        row = dict.fromkeys(SEGMENTATION_COLUMNS, "")
        row.update(id=sample_id, split=split, kind="slice", image=f"images/{sample_id}.png")
        row.update(label=f"labels/{sample_id}.png", objects=str(len(np.unique(labels)) - 1))
        rows.append(row)
    write_index(workspace.index_csv, rows, SEGMENTATION_COLUMNS)
