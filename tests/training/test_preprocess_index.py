"""Preprocessing into lossless PNGs + CSV index, and the datasets that read them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.training

torch = pytest.importorskip("torch")


def test_index_lists_annotated_slices_and_projections_with_telling_ids(workspace_factory):
    from devolearn_web.training.index import read_index

    workspace = workspace_factory("nucleus")
    rows = read_index(workspace.index_csv)
    slices = [row for row in rows if row["kind"] == "slice"]
    projections = [row for row in rows if row["kind"] == "projection"]
    # 4 seeds x 2 time points, slices 1..4 kept (3 is empty but inside), 0 and 5 dropped.
    assert len(slices) == 4 * 2 * 4
    assert {int(row["slice"]) for row in slices} == {1, 2, 3, 4}
    assert len(projections) == 4 * 2
    # ids carry seed, time point and slice (or "proj")
    assert "s0000_t001_z002" in {row["id"] for row in slices}
    assert "s1000_t001_proj" in {row["id"] for row in projections}
    assert {row["split"] for row in rows if row["seed"] == "2000"} == {"test"}
    assert {row["split"] for row in rows} == {"train", "validation", "test"}
    assert all(row["id"].startswith(f"s{int(row['seed']):04d}_t") for row in rows)
    assert (workspace.processed_dir / slices[0]["image"]).suffix == ".png"


def test_label_pngs_are_16_bit_nearest_neighbour_and_images_lossless(workspace_factory, fake_facts):
    from devolearn_web.training.images import network_image, read_labels
    from devolearn_web.training.index import read_index

    workspace = workspace_factory("nucleus")
    row = next(r for r in read_index(workspace.index_csv) if r["id"] == "s0000_t000_z001")
    with Image.open(workspace.processed_dir / row["label"]) as label_png:
        assert label_png.mode.startswith("I;16")
        assert label_png.size == (64, 64)
        stored = np.asarray(label_png).astype(np.int32)
    # Nearest neighbour invents no value: only the original labels (>255, so 16-bit) and 0.
    first = fake_facts.first_label
    assert set(np.unique(stored)) == {0, first, first + 1}
    assert int(row["objects"]) == 2

    import tifffile

    source = workspace.simulated_split_dir("train")
    stack = tifffile.imread(source / "01" / "t000.tif")
    # The app's own preparation (resize, percentile stretch), stored as 8-bit PNG.
    expected = np.rint(network_image(stack[1], 64) * 255).astype(np.uint8)
    with Image.open(workspace.processed_dir / row["image"]) as image_png:
        assert image_png.format == "PNG" and image_png.mode == "L"
        assert np.array_equal(np.asarray(image_png), expected)  # lossless: bit for bit
    assert np.array_equal(read_labels(workspace.processed_dir / row["label"]), stored)


def test_empty_stack_ends_are_dropped(fake_facts):
    from devolearn_web.training.preprocess import trim_empty_ends

    empty, full = np.zeros((2, 2)), np.ones((2, 2))
    slices = {0: empty, 1: full, 2: empty, 3: full, 4: empty}
    assert trim_empty_ends(slices) == [1, 2, 3]
    assert trim_empty_ends({0: empty}) == []
    assert fake_facts.occupied_slices == (1, 2, 4)  # so the index keeps slices 1..4
    assert trim_empty_ends(slices, empty_ends=1) == [0, 1, 2, 3, 4]


def test_train_empty_ends_keep_empty_train_slices_only(workspace_factory):
    """A stack's empty ends (glow and noise only) join the train split, labelled empty; the
    validation and test splits keep none, so their figures stay comparable."""
    from devolearn_web.training.index import read_index
    from devolearn_web.training.preprocess import preprocess

    workspace = workspace_factory("nucleus")
    preprocess(workspace, size=64, force=True, train_empty_ends=1)
    slices = [row for row in read_index(workspace.index_csv) if row["kind"] == "slice"]
    by_split = {
        split: {int(row["slice"]) for row in slices if row["split"] == split}
        for split in ("train", "validation", "test")
    }
    inside = {1, 2, 3, 4}
    assert by_split == {"train": {0, *inside, 5}, "validation": inside, "test": inside}
    ends = [row for row in slices if row["split"] == "train" and row["slice"] in ("0", "5")]
    assert ends and all(int(row["objects"]) == 0 for row in ends)
    assert json.loads(workspace.sources_record.read_text())["train_empty_ends"] == 1


def test_touching_objects_stay_apart_after_resizing():
    from devolearn_web.training.images import separate_touching_labels

    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0]])
    separated = separate_touching_labels(labels)
    for a, b in ((separated[:, :-1], separated[:, 1:]), (separated[:-1], separated[1:])):
        touching = (a > 0) & (b > 0) & (a != b)
        assert not touching.any()
    assert set(np.unique(separated)) <= set(np.unique(labels))


def test_segmentation_dataset_yields_image_and_binary_target(workspace_factory):
    from devolearn_web.training.dataset import build_dataset

    workspace = workspace_factory("nucleus")
    dataset = build_dataset("nucleus", workspace.index_csv, "validation")
    assert len(dataset) == 2 * 4 + 2  # one seed: 2 time points x 4 slices + 2 projections
    image, target = dataset[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert target.shape == (1, 64, 64) and set(target.unique().tolist()) <= {0.0, 1.0}
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    # Bright pixels are the objects: the target marks where the image is bright.
    assert float(image[target > 0].mean()) > float(image[target == 0].mean()) + 0.4


def test_projection_repeats_list_each_projection_again_and_leave_slices_once(workspace_factory):
    from collections import Counter

    from devolearn_web.training.dataset import build_dataset

    workspace = workspace_factory("nucleus")
    plain = build_dataset("nucleus", workspace.index_csv, "train")
    weighed = build_dataset("nucleus", workspace.index_csv, "train", projection_repeats=3)
    listed = Counter(row["id"] for row in weighed.rows)
    kinds = {row["id"]: row["kind"] for row in plain.rows}
    assert set(listed) == set(kinds)
    assert {listed[i] for i, kind in kinds.items() if kind == "projection"} == {3}
    assert {listed[i] for i, kind in kinds.items() if kind == "slice"} == {1}


def test_dataset_subsets_are_reproducible(workspace_factory):
    from devolearn_web.training.dataset import build_dataset

    workspace = workspace_factory("membrane")
    first = build_dataset("membrane", workspace.index_csv, "train", fraction=0.25, seed=3)
    second = build_dataset("membrane", workspace.index_csv, "train", fraction=0.25, seed=3)
    full = build_dataset("membrane", workspace.index_csv, "train")
    assert [r["id"] for r in first.rows] == [r["id"] for r in second.rows]
    assert len(first) == round(len(full) * 0.25)


def test_lineage_dataset_yields_three_symmetric_channels_and_scaled_counts(workspace_factory):
    from devolearn_web.training.dataset import build_dataset
    from devolearn_web.training.index import read_index

    workspace = workspace_factory("lineage")
    rows = read_index(workspace.index_csv, "train")
    assert rows[0]["id"] == "s0000_t000_frame" and rows[0]["A"] == "2"
    dataset = build_dataset("lineage", workspace.index_csv, "train")
    image, target = dataset[0]
    assert image.shape == (3, 64, 64)
    assert torch.equal(image[0], image[2])
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    maxima = torch.tensor([250, 16, 78, 1, 31, 16, 2], dtype=torch.float32)
    assert torch.allclose(target * maxima, torch.tensor([2, 1, 1, 1, 0, 0, 0.0]))


def test_preprocess_skips_existing_index_unless_forced(workspace_factory):
    from devolearn_web.training.preprocess import preprocess

    workspace = workspace_factory("membrane")
    stamp = workspace.index_csv.stat().st_mtime_ns
    preprocess(workspace, size=64)
    assert workspace.index_csv.stat().st_mtime_ns == stamp
    preprocess(workspace, size=32, force=True)
    with Image.open(next((workspace.processed_dir / "images").iterdir())) as image:
        assert image.size == (32, 32)


@pytest.mark.parametrize("model", ["nucleus", "lineage"])
def test_preprocessing_in_several_processes_writes_the_same_files(workspace_factory, model):
    from devolearn_web.training.preprocess import preprocess

    workspace = workspace_factory(model)
    alone = _files(workspace.processed_dir)
    preprocess(workspace, size=64, force=True, processes=3)
    assert _files(workspace.processed_dir) == alone
    assert len(alone) > 10


def _files(folder) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "sources.json"
    }


def test_lineage_training_inputs_are_prepared_exactly_as_the_app_prepares_uploads():
    """The embryo cut out at its training framing, the same pixels in training and serving.

    (Segmentation is trained on 256x256 frames and served on a working grid that reproduces
    their framing; docs/framing.md says why the two differ.)"""
    import io

    import tifffile

    from devolearn_web.embryo import find_embryo
    from devolearn_web.imaging import decode_image
    from devolearn_web.model_cards import parse_card
    from devolearn_web.pipelines import lineage_input as served_input
    from devolearn_web.training.cards import LIMITATIONS, build_card
    from devolearn_web.training.dataset import lineage_input
    from devolearn_web.training.images import lineage_network_image
    from devolearn_web.training.specs import get_spec

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:180, :260]
    inside = ((rows - 95) / 60.0) ** 2 + ((cols - 120) / 95.0) ** 2 <= 1  # a tilted-free embryo
    raw = (rng.gamma(2.0, 300.0, (180, 260)) + 100 + 20000 * inside).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, raw)
    pixels = decode_image(buffer.getvalue()).pixels
    card = build_card(
        get_spec("lineage"),
        sha256="0" * 64,
        opset=17,
        activation="none",
        training_data={"simulated": True, "description": "x"},
        metrics={},
        hyperparameters={},
        reproduce="x",
        limitations=LIMITATIONS["lineage"],
    )
    # The first of its mirror images.
    served = served_input(pixels, find_embryo(pixels), parse_card("lineage", card))[0]
    trained = lineage_input(lineage_network_image(raw, 256))
    assert served.shape == trained.shape
    assert np.abs(served - trained).max() < 1e-5


def test_a_lineage_frame_without_one_embryo_is_left_out(tmp_path):
    """The app answers such a frame with a 422, so training does not learn counts for it."""
    from PIL import Image

    from devolearn_web.training.preprocess import _frame_rows

    blank, embryo = tmp_path / "blank.png", tmp_path / "embryo.png"
    Image.fromarray(np.zeros((60, 90), np.uint8)).save(blank)
    rows, cols = np.mgrid[:60, :90]
    inside = ((rows - 30) / 18.0) ** 2 + ((cols - 45) / 30.0) ** 2 <= 1
    Image.fromarray((inside * 200).astype(np.uint8)).save(embryo)
    fields = {"seed": "7", "time_index": 0, "minutes": "0", "A": 1}
    assert _frame_rows("train", tmp_path / "out", 64, blank, fields) == []
    (row,) = _frame_rows("train", tmp_path / "out", 64, embryo, fields)
    assert (tmp_path / "out" / row["image"]).exists()
