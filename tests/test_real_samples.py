"""The real samples in ../shared/samples decode as documented and run through every pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from devolearn_web.imaging import decode_image
from devolearn_web.pipelines import predict
from devolearn_web.registry import ModelRegistry


def test_embryo_sample_is_read_from_its_green_channel(real_sample):
    from PIL import Image

    path = real_sample("embryo_sample.png")
    decoded = decode_image(path.read_bytes(), path.name)
    assert decoded.mode == "RGBA"
    assert (decoded.width, decoded.height) == (585, 315)
    green = np.asarray(Image.open(path))[..., 1] / 255
    np.testing.assert_allclose(decoded.pixels, green, atol=1e-6)
    assert "green channel carries the signal" in " ".join(decoded.notes)


def test_membrane_sample_is_grayscale(real_sample):
    path = real_sample("seg_sample.jpg")
    decoded = decode_image(path.read_bytes(), path.name)
    assert decoded.mode == "L"
    assert (decoded.width, decoded.height) == (356, 256)
    assert decoded.notes == ()


@pytest.mark.parametrize(
    ("sample", "name"),
    [
        ("seg_sample.jpg", "membrane"),
        ("embryo_sample.png", "nucleus"),
        ("embryo_sample.png", "lineage"),
    ],
)
def test_samples_run_through_the_pipelines_at_their_own_size(
    tiny_models_dir, real_sample, sample, name
):
    path = real_sample(sample)
    image = decode_image(path.read_bytes(), path.name)
    result = predict(ModelRegistry(tiny_models_dir), name, image)
    answer = result.to_json()
    if name == "lineage":
        assert list(answer["populations"]) == ["A", "E", "M", "P", "C", "D", "Z"]
    else:
        assert (answer["width"], answer["height"]) == (image.width, image.height)
        assert result.labels.shape == (image.height, image.width)
        assert answer["count"] > 0
