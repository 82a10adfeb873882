"""Pipelines on the tiny models: upload-size outputs, counting, splitting, lineage counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from devolearn_web import scale
from devolearn_web.analysis import predict_file
from devolearn_web.errors import BadParameter
from devolearn_web.imaging import decode_image
from devolearn_web.model_cards import ModelCard, parse_card
from devolearn_web.pipelines import (
    LineageResult,
    SegmentationResult,
    build_input_tensor,
    predict,
)
from devolearn_web.registry import ModelRegistry

TOUCHING_PAIR = [(80, 70), (104, 70)]  # radius 13: the disks overlap by 2 pixels


@pytest.fixture
def registry(tiny_models_dir):
    return ModelRegistry(tiny_models_dir)


def disks_image(image_maker, centres, shape=(140, 200), radius=12):
    return decode_image(
        image_maker.encode(image_maker.uint8(image_maker.disks(shape, centres, radius)))
    )


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_segmentation_is_at_the_upload_size(registry, image_maker, name):
    image = disks_image(image_maker, image_maker.five_disks)
    result = predict(registry, name, image)
    assert isinstance(result, SegmentationResult)
    assert (result.width, result.height) == (200, 140)
    # Compact at the upload's size: the 8-bit map (the PNG's) and 16-bit labels.
    assert result.probability.shape == (140, 200) and result.probability.dtype == np.uint8
    assert result.labels.shape == (140, 200) and result.labels.dtype == np.uint16


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_five_separate_disks_are_five_objects_at_their_centres(registry, image_maker, name):
    result = predict(registry, name, disks_image(image_maker, image_maker.five_disks))
    assert result.count == 5
    found = sorted((round(obj.x), round(obj.y)) for obj in result.objects)
    assert found == sorted(image_maker.five_disks)
    for obj in result.objects:
        assert abs(obj.area - np.pi * 12**2) < 0.25 * np.pi * 12**2  # measured in upload pixels


def test_touching_objects_are_split_for_both_segmentation_models(registry, image_maker):
    image = disks_image(image_maker, TOUCHING_PAIR, radius=13)
    assert predict(registry, "nucleus", image).count == 2
    assert predict(registry, "membrane", image).count == 2


def test_threshold_changes_what_counts(registry, image_maker):
    image = disks_image(image_maker, image_maker.five_disks)
    assert predict(registry, "membrane", image, threshold=0.0).count == 1  # everything is one blob
    assert predict(registry, "membrane", image, threshold=1.0).count == 0
    assert predict(registry, "membrane", image).threshold == 0.5  # the card's default


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_outside_zero_to_one_is_refused(registry, image_maker, threshold):
    with pytest.raises(BadParameter):
        predict(
            registry,
            "nucleus",
            disks_image(image_maker, image_maker.five_disks),
            threshold=threshold,
        )


def test_large_upload_keeps_its_own_size(registry, image_maker):
    centres = [(x, y) for x in (100, 300, 500) for y in (100, 300)]
    image = disks_image(image_maker, centres, shape=(420, 640), radius=40)
    result = predict(registry, "nucleus", image)
    assert result.labels.shape == (420, 640)
    assert result.count == 6


def test_segmentation_json_matches_the_contract(registry, image_maker):
    answer = predict(
        registry, "nucleus", disks_image(image_maker, image_maker.five_disks)
    ).to_json()
    assert list(answer) == [
        "model",
        "width",
        "height",
        "threshold",
        "count",
        "objects",
        "probability",
        "scale",
        "scale_source",
        "diameter",
        "embryo",
        "notes",
        "warnings",
        "timings_ms",
    ]
    assert answer["probability"].startswith("data:image/png;base64,")
    assert list(answer["timings_ms"]) == [
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "total",
    ]
    json.dumps(answer)  # plain JSON types only


def test_lineage_counts_are_integers_in_lineage_order(registry, image_maker):
    result = predict(registry, "lineage", disks_image(image_maker, image_maker.five_disks))
    assert isinstance(result, LineageResult)
    assert list(result.populations) == ["A", "E", "M", "P", "C", "D", "Z"]
    assert all(isinstance(count, int) and count >= 0 for count in result.populations.values())
    assert result.total == sum(result.populations.values())
    assert result.populations["P"] <= 1 and result.populations["Z"] <= 2  # bounded by the maxima
    assert result.outside_training_range is False


def test_lineage_past_the_training_range_is_flagged(models_copy, image_maker):
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text())
    card["output"]["training_range"] = {"A": 5}
    card_path.write_text(json.dumps(card))
    result = predict(
        ModelRegistry(models_copy), "lineage", disks_image(image_maker, image_maker.five_disks)
    )
    assert result.populations["A"] > 5
    assert result.outside_training_range is True
    assert "extrapolation" in result.notes[-1]


def test_lineage_at_the_end_of_the_training_range_is_flagged(models_copy, image_maker):
    image = disks_image(image_maker, image_maker.five_disks)
    a_count = predict(ModelRegistry(models_copy), "lineage", image).populations["A"]
    assert a_count > 0
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text())
    # The count sits at the range's end (the limit itself), as an older embryo's would.
    card["output"]["training_range"] = {"A": a_count}
    card_path.write_text(json.dumps(card))
    result = predict(ModelRegistry(models_copy), "lineage", image)
    assert result.at_end_of_training_range is True
    assert result.outside_training_range is False
    assert "may be too low" in result.notes[-1]
    assert result.to_json()["at_end_of_training_range"] is True
    # Well inside the range: no word.
    card["output"]["training_range"] = {"A": a_count * 2}
    card_path.write_text(json.dumps(card))
    result = predict(ModelRegistry(models_copy), "lineage", image)
    assert not result.at_end_of_training_range and not result.outside_training_range


def test_lineage_counts_go_through_the_card_calibration(models_copy, image_maker):
    image = disks_image(image_maker, image_maker.five_disks)
    plain = predict(ModelRegistry(models_copy), "lineage", image)
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text())
    # Every network count of E is read as 7 cells; the other lineages are left alone.
    card["output"]["calibration"] = {"knots": {"E": {"network": [0, 16], "count": [7, 7]}}}
    card_path.write_text(json.dumps(card))
    calibrated = predict(ModelRegistry(models_copy), "lineage", image)
    assert calibrated.populations["E"] == 7
    assert {k: v for k, v in calibrated.populations.items() if k != "E"} == {
        k: v for k, v in plain.populations.items() if k != "E"
    }


def test_input_tensor_follows_the_card(tiny_models_dir):
    shipped = json.loads((tiny_models_dir / "lineage.json").read_text())

    def card_with(**model_input) -> ModelCard:
        return parse_card("lineage", {**shipped, "input": {**shipped["input"], **model_input}})

    pixels = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    unit_card = card_with(size=[16, 24], channels=1, normalisation="unit")
    tensor = build_input_tensor(pixels, unit_card)
    assert tensor.shape == (1, 1, 16, 24) and tensor.dtype == np.float32
    assert tensor.min() == 0.0 and tensor.max() == 1.0
    symmetric_card = card_with(size=[8, 8], channels=3, normalisation="symmetric")
    tensor = build_input_tensor(pixels, symmetric_card)
    assert tensor.shape == (1, 3, 8, 8)
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    np.testing.assert_array_equal(tensor[0, 0], tensor[0, 2])


def test_predict_file_returns_the_api_answer(tiny_models_dir, tmp_path, five_disks_png):
    path = tmp_path / "disks.png"
    path.write_bytes(five_disks_png)
    answer = predict_file("membrane", path, tiny_models_dir)
    assert answer["model"] == "membrane" and answer["count"] == 5


def test_counts_do_not_depend_on_the_upload_size(registry, image_maker):
    centres = [(80, 80), (126, 80), (300, 200), (100, 210)]  # the first two touch
    small = predict(registry, "nucleus", disks_image(image_maker, centres, (280, 400), radius=24))
    big_centres = [(3 * x, 3 * y) for x, y in centres]
    big = predict(
        registry, "nucleus", disks_image(image_maker, big_centres, (840, 1200), radius=72)
    )
    assert small.count == big.count == 4
    assert big.labels.shape == (840, 1200) and big.labels.dtype == np.uint16
    # Every labelled pixel is above the threshold at the upload's own size (to the 8-bit map's
    # rounding: the labels are clipped with the map before it is rounded).
    assert (big.probability[big.labels > 0] >= round(255 * big.threshold)).all()
    for one in small.objects:  # label order may differ: match each object by position
        other = min(big.objects, key=lambda obj: abs(3 * one.x - obj.x) + abs(3 * one.y - obj.y))
        assert abs(3 * one.x - other.x) < 4 and abs(3 * one.y - other.y) < 4
        assert abs(9 * one.area - other.area) < 0.1 * other.area


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
@pytest.mark.parametrize("shape", [(3, 3), (2, 400)])
def test_an_image_too_small_for_the_network_says_so(registry, image_maker, name, shape):
    pixels = np.full(shape, 20, dtype=np.uint8)
    pixels[shape[0] // 2, shape[1] // 2] = 200  # something to find, so lineage has an embryo
    tiny = decode_image(image_maker.encode(pixels))
    notes = " ".join(predict(registry, name, tiny).notes)
    assert f"only {shape[1]} x {shape[0]} pixels" in notes


def test_an_image_of_ordinary_size_gets_no_size_note(registry, image_maker):
    result = predict(registry, "nucleus", disks_image(image_maker, image_maker.five_disks))
    assert not any("This image is only" in note for note in result.notes)


def test_a_working_grid_past_the_limit_is_coarsened_and_says_so(registry, image_maker, monkeypatch):
    image = disks_image(image_maker, image_maker.five_disks)
    monkeypatch.setattr(scale, "MAX_WORKING_PIXELS", 10_000)
    result = predict(registry, "nucleus", image)
    assert result.scale.source.endswith(", limited")
    assert "limited" in " ".join(result.notes)
    assert result.scale.scale**2 * 140 * 200 <= 10_000 * 1.01


def test_the_working_pixel_limit_is_read_from_the_environment():
    script = "from devolearn_web import scale; print(scale.MAX_WORKING_PIXELS)"
    environment = {**os.environ, "MAX_WORKING_PIXELS": "123456"}
    printed = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "123456"


def test_a_wide_margin_around_the_embryo_costs_the_network_nothing(
    registry, image_maker, monkeypatch
):
    """The network runs on a window around the embryo: padding the picture to 4x its sides
    (16x its pixels) changes neither the count nor the pixels the network sees."""
    from devolearn_web import pipelines

    seen: list[int] = []
    real_run = pipelines.run_model

    def counting_run(model, tensor, deadline=pipelines.NO_DEADLINE):
        seen.append(tensor.shape[-2] * tensor.shape[-1])
        return real_run(model, tensor, deadline)

    monkeypatch.setattr(pipelines, "run_model", counting_run)
    pixels = image_maker.uint8(image_maker.disks((140, 200), image_maker.five_disks, 12))
    canvas = np.zeros((560, 800), np.uint8)
    canvas[210:350, 300:500] = pixels
    counts, network_pixels = [], []
    for picture in (pixels, canvas):
        seen.clear()
        image = decode_image(image_maker.encode(picture))
        counts.append(
            predict(
                registry, "nucleus", image, scale_request=scale.ScaleRequest(diameter=24.0)
            ).count
        )
        network_pixels.append(sum(seen))
    assert counts == [5, 5]
    assert network_pixels[1] <= 1.5 * network_pixels[0], network_pixels


def test_objects_found_by_the_first_look_are_not_found_again(registry, image_maker, monkeypatch):
    """When the first look's grid is kept, its objects are the answer's: one labelling."""
    from devolearn_web import pipelines

    calls: list[float] = []
    real_label = pipelines.label_instances

    def counting_label(name, probability, threshold, **kwargs):
        calls.append(threshold)
        return real_label(name, probability, threshold, **kwargs)

    monkeypatch.setattr(pipelines, "label_instances", counting_label)
    pixels = image_maker.uint8(image_maker.disks((140, 200), image_maker.five_disks, 12))
    image = decode_image(image_maker.encode(pixels))
    result = predict(registry, "nucleus", image)
    assert result.count == 5
    assert len(calls) == 1
