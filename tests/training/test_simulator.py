"""The digital embryo: lineage rules, geometry, label conventions and the on-disk formats."""

from __future__ import annotations

import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from devolearn_web.training.simulator import (
    LINEAGE_KEYS,
    simulate_embryo,
    write_lineage_dataset,
    write_membrane_dataset,
    write_nucleus_dataset,
)
from devolearn_web.training.simulator.render_membrane import (
    MembraneLook,
    membrane_labels,
    random_membrane_view,
    render_membrane_slice,
    slice_geometry,
)
from devolearn_web.training.simulator.render_nucleus import (
    NucleusLook,
    cell_dimming,
    label_visible_caps,
    random_projection_view,
    random_stack_view,
    render_nucleus_projection,
    render_nucleus_stack,
)
from devolearn_web.training.specs import LINEAGE_MAXIMA


@pytest.fixture(scope="module")
def embryo():
    return simulate_embryo(7)


def _different_labels_touch(labels: np.ndarray) -> bool:
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        first, second = a[:-1], a[1:]
        if np.any((first > 0) & (second > 0) & (first != second)):
            return True
    return False


def test_same_seed_same_embryo_other_seed_other_embryo(embryo):
    again = simulate_embryo(7)
    other = simulate_embryo(8)
    assert np.array_equal(again.times, embryo.times)
    assert all(np.array_equal(a, b) for a, b in zip(again.centres, embryo.centres, strict=True))
    assert again.cells.names == embryo.cells.names
    assert not np.array_equal(other.centres[-1][:5], embryo.centres[-1][:5])


def test_development_runs_from_one_cell_to_a_little_past_a_250(embryo):
    assert embryo.populations_at(embryo.times[0]) == {**dict.fromkeys(LINEAGE_KEYS, 0), "P": 1}
    assert list(embryo.populations_at(0.0)) == list(LINEAGE_KEYS)
    reached = embryo.time_when_a_reaches(250)
    assert 180 < reached < 270  # about 3.5-4 hours after the first cleavage
    assert embryo.populations_at(reached)["A"] >= 250
    assert reached < embryo.times[-1] <= reached + 15


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_lineage_passes_its_output_maximum_until_a_reaches_250(seed):
    embryo = simulate_embryo(seed)
    end = embryo.time_when_a_reaches(250)
    births = np.unique(embryo.cells.birth)
    # The lineage model outputs counts / maxima (A 250, E 16, M 78, P 1, C 31, D 16, Z 2, the
    # original training data's peaks); a simulated count above its maximum could not be learnt.
    maxima = dict(zip(LINEAGE_KEYS, LINEAGE_MAXIMA, strict=True))
    for t in births[births <= end]:
        counts = embryo.populations_at(t)
        assert all(counts[key] <= maxima[key] for key in LINEAGE_KEYS), (t, counts)
    counts = embryo.populations_at(end)
    # E and C come close to their maxima by A = 250 (Sulston's lineage: E 14, C 27); M and D stay
    # well short (M 45, D 8; test_simulator_lineage_timing.py compares every lineage).
    assert counts["E"] >= 8 and counts["C"] >= 16
    assert counts["P"] == 0 and counts["Z"] == 2


def test_founder_rules_hold_at_every_minute(embryo):
    p4_divided = False
    for index, t in enumerate(embryo.times):
        counts = embryo.populations_at(t)
        assert sum(counts.values()) == len(embryo.alive_ids[index])
        assert counts["Z"] in (0, 2) and counts["P"] <= 1
        p4_divided = p4_divided or counts["Z"] == 2
        if p4_divided:
            assert counts["P"] == 0 and counts["Z"] == 2
    assert p4_divided
    names = embryo.cells.names
    for name, daughters in [("P0", {"AB", "P1"}), ("P1", {"EMS", "P2"}), ("EMS", {"MS", "E"})]:
        mother = names.index(name)
        assert {names[d] for d in embryo.cells.daughters[mother]} == daughters
    z2 = names.index("Z2")
    assert np.all(embryo.cells.daughters[z2] == -1)


def test_daughters_have_half_the_mothers_volume(embryo):
    cells = embryo.cells
    children = np.flatnonzero(cells.parent >= 0)
    ratio = embryo.radii[children] / embryo.radii[cells.parent[children]]
    assert np.allclose(ratio, 2.0 ** (-1.0 / 3.0))
    nucleus_fraction = embryo.nucleus_radii / embryo.radii
    assert np.all((nucleus_fraction >= 0.4) & (nucleus_fraction <= 0.5))


def test_every_nucleus_lies_in_its_own_cell(embryo):
    for index in range(0, len(embryo.times), 7):
        ids, centres = embryo.alive_ids[index], embryo.centres[index].astype(np.float64)
        weights = embryo.radii[ids] ** 2
        power = np.sum((centres[:, None, :] - centres[None, :, :]) ** 2, axis=2) - weights[None, :]
        # Row i: power distance from nucleus i to every cell; its own cell must be nearest.
        assert np.all(np.diag(power) <= power.min(axis=1) + 1e-6)
        rho = np.sum((centres / embryo.shell_semi_axes) ** 2, axis=1)
        assert np.all(rho < 1.0)


def test_projection_labels_keep_touching_nuclei_apart(embryo):
    rng = np.random.default_rng(0)
    t = embryo.grid_time_with_total(100)
    view = random_projection_view(rng, embryo, (160, 300))
    image, labels = render_nucleus_projection(embryo, t, view, NucleusLook.draw(rng), rng)
    assert image.dtype == np.uint8 and labels.dtype == np.uint16
    assert image.shape == labels.shape == (160, 300)
    assert not _different_labels_touch(labels)
    assert 50 < len(np.unique(labels)) - 1 <= 110
    assert image[labels > 0].mean() > 4 * image[labels == 0].mean()


def test_membrane_labels_leave_gaps_along_membranes(embryo):
    rng = np.random.default_rng(0)
    t = embryo.grid_time_with_total(24)
    view = random_membrane_view(rng, embryo, (9, 128, 178))
    geometry = slice_geometry(embryo, t, view, 4)
    labels = membrane_labels(geometry, view)
    image = render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng)
    assert labels.dtype == np.uint16 and labels.shape == image.shape == (128, 178)
    assert len(np.unique(labels)) - 1 >= 4
    assert not _different_labels_touch(labels)
    on_membrane = np.abs(geometry.membrane_distance) < 0.5 * view.um_per_px
    assert np.all(labels[on_membrane] == 0)


# Wall-clock: behind the slow marker, with a margin ten times the quiet machine's time, so only
# a real regression (a slice taking a second or more) fails it.
MEMBRANE_SLICE_MAX_SECONDS = 1.0


@pytest.mark.slow
def test_membrane_slice_renders_fast(embryo):
    rng = np.random.default_rng(0)
    t = embryo.grid_time_with_total(300)
    view = random_membrane_view(rng, embryo, (40, 256, 356))
    look = MembraneLook.draw(rng)
    durations = []
    for z in (15, 20, 25):
        start = time.perf_counter()
        render_membrane_slice(slice_geometry(embryo, t, view, z), view, look, rng)
        durations.append(time.perf_counter() - start)
    # Well under 100 ms on a quiet machine.
    assert np.median(durations) < MEMBRANE_SLICE_MAX_SECONDS


def _read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_nucleus_dataset_has_the_cell_tracking_challenge_layout(tmp_path):
    out = write_nucleus_dataset(tmp_path / "nuc", seeds=[5, 6], timepoints=2, shape=(3, 40, 56))
    rows = _read_csv(out / "sequences.csv")
    assert list(rows[0]) == ["sequence", "seed", "time_index", "minutes", *LINEAGE_KEYS]
    assert [(r["sequence"], r["seed"], r["time_index"]) for r in rows] == [
        ("01", "5", "0"),
        ("01", "5", "1"),
        ("02", "6", "0"),
        ("02", "6", "1"),
    ]
    assert rows[0]["P"] == "1" and int(rows[1]["A"]) in range(240, 251)
    stack = tifffile.imread(out / "02" / "t001.tif")
    assert stack.shape == (3, 40, 56) and stack.dtype == np.uint16
    for z in range(3):
        labels = tifffile.imread(out / "02_GT" / "SEG" / f"man_seg_001_{z:03d}.tif")
        assert labels.shape == (40, 56) and labels.dtype == np.uint16
    image = np.asarray(Image.open(out / "projections" / "images" / "6_001.png"))
    labels = tifffile.imread(out / "projections" / "labels" / "6_001.tif")
    assert image.dtype == np.uint8 and image.shape == labels.shape == (40, 56)
    assert labels.dtype == np.uint16 and labels.max() > 0


@pytest.mark.parametrize(
    ("writer", "kwargs"),
    [
        (
            write_nucleus_dataset,
            {"timepoints": 2, "shape": (3, 40, 56), "projection_only_seeds": [500]},
        ),
        (write_membrane_dataset, {"timepoints": 1, "shape": (2, 32, 44)}),
        (write_lineage_dataset, {"frames": 2, "shape": (48, 88)}),
    ],
)
def test_simulating_in_several_processes_writes_the_same_files(tmp_path, writer, kwargs):
    alone = writer(tmp_path / "alone", seeds=[5, 6], **kwargs)
    together = writer(tmp_path / "together", seeds=[5, 6], processes=2, **kwargs)
    files = {p.relative_to(alone): p.read_bytes() for p in alone.rglob("*") if p.is_file()}
    assert len(files) > 3
    assert files == {
        p.relative_to(together): p.read_bytes() for p in together.rglob("*") if p.is_file()
    }


def test_projection_only_seeds_add_projections_and_no_stacks(tmp_path):
    out = write_nucleus_dataset(
        tmp_path / "nuc", seeds=[5], timepoints=2, shape=(3, 40, 56), projection_only_seeds=[500]
    )
    names = sorted(path.name for path in (out / "projections" / "images").glob("*.png"))
    assert names == ["500_000.png", "500_001.png", "5_000.png", "5_001.png"]
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == [
        "01",
        "01_GT",
        "projections",
    ]
    labels = tifffile.imread(out / "projections" / "labels" / "500_001.tif")
    assert labels.shape == (40, 56) and labels.max() > 0
    # Adding them leaves the stack embryo's own projections as they were.
    plain = write_nucleus_dataset(tmp_path / "plain", seeds=[5], timepoints=2, shape=(3, 40, 56))
    for name in ("5_000.png", "5_001.png"):
        assert (out / "projections" / "images" / name).read_bytes() == (
            plain / "projections" / "images" / name
        ).read_bytes()


def test_projection_only_seeds_go_to_the_training_split_only():
    from devolearn_web.training.simulate import (
        SimulationPlan,
        plan_seeds,
        projection_only_seeds,
    )

    plan = SimulationPlan("nucleus", plan_seeds(2, 1, 1), 2, projection_seeds=3)
    assert projection_only_seeds(plan, "train") == [500, 501, 502]
    assert projection_only_seeds(plan, "validation") == projection_only_seeds(plan, "test") == []
    assert plan.to_record()["projection_seeds"] == 3
    assert "projection_seeds" not in SimulationPlan("nucleus", plan.seeds, 2).to_record()
    with pytest.raises(ValueError, match="overlap"):
        projection_only_seeds(
            SimulationPlan("nucleus", plan_seeds(600, 1, 1), 2, projection_seeds=3), "train"
        )


def test_an_uneven_look_dims_each_nucleus_and_its_glow_and_keeps_the_labels(embryo):
    minutes = float(embryo.times[embryo.time_index(embryo.time_when_a_reaches(16))])
    view = random_stack_view(np.random.default_rng(2), embryo, (12, 96, 132))
    look = NucleusLook.draw(np.random.default_rng(1))
    even, labels = render_nucleus_stack(embryo, minutes, view, look, np.random.default_rng(5))
    uneven, uneven_labels = render_nucleus_stack(
        embryo, minutes, view, replace(look, dimmest=0.1), np.random.default_rng(5)
    )
    assert np.array_equal(labels, uneven_labels)
    # Each cell keeps one factor: the ratio of its pixels' sums (noise aside) is that factor.
    ids = np.unique(labels[labels > 0])
    factors = cell_dimming(embryo, ids.astype(int) - 1, 0.1)
    ratios = np.array(
        [uneven[labels == i].sum() / max(even[labels == i].sum(), 1) for i in ids], float
    )
    assert len(ids) >= 10 and factors.min() < 0.3 and factors.max() <= 1.0
    assert np.corrcoef(np.log(factors), np.log(np.clip(ratios, 1e-3, None)))[0, 1] > 0.8
    # The glow just outside a dim nucleus is dimmed with it: no bright ring is left behind.
    dimmest = ids[np.argmin(factors)]
    ring = ndi.binary_dilation(labels == dimmest, iterations=2) & (labels == 0)
    assert uneven[ring].mean() < 0.7 * even[ring].mean()
    assert np.array_equal(cell_dimming(embryo, ids, 1.0), np.ones(len(ids)))


def test_visible_caps_add_only_lit_pieces_of_a_neighbouring_slices_nucleus(embryo):
    minutes = float(embryo.times[embryo.time_index(embryo.time_when_a_reaches(16))])
    view = random_stack_view(np.random.default_rng(2), embryo, (12, 96, 132))
    look = NucleusLook.draw(np.random.default_rng(1))
    stack, labels = render_nucleus_stack(embryo, minutes, view, look, np.random.default_rng(5))
    before = stack.copy()
    capped = label_visible_caps(stack, labels)
    assert np.array_equal(stack, before)
    assert np.array_equal(capped[labels > 0], labels[labels > 0])
    added = (capped > 0) & (labels == 0)
    caps = 0
    for z in range(len(stack)):
        here = set(np.unique(labels[z]).tolist())
        for label in set(np.unique(capped[z][added[z]]).tolist()):
            piece = added[z] & (capped[z] == label)
            neighbours = [labels[n][piece] for n in (z - 1, z + 1) if 0 <= n < len(stack)]
            assert label not in here
            assert any(np.all(near == label) for near in neighbours)
            assert stack[z][piece].mean() > 1.5 * np.median(stack[z])  # lit, not background
            caps += 1
    assert caps >= 3
    assert np.array_equal(label_visible_caps(np.zeros_like(stack), labels), labels)


def test_visible_caps_change_only_the_labels_and_are_recorded(tmp_path):
    kwargs = {"seeds": [5], "timepoints": 2, "shape": (4, 48, 64), "projections": False}
    plain = write_nucleus_dataset(tmp_path / "plain", **kwargs)
    capped = write_nucleus_dataset(tmp_path / "caps", visible_caps=True, **kwargs)
    files = sorted(p.relative_to(plain) for p in plain.rglob("*.tif"))
    changed = {p for p in files if (plain / p).read_bytes() != (capped / p).read_bytes()}
    assert changed and all("GT" in str(p) for p in changed)
    from devolearn_web.training.simulate import SimulationPlan, plan_seeds

    plan = SimulationPlan("nucleus", plan_seeds(1, 1, 1), 2, visible_caps=True)
    assert plan.to_record()["visible_caps"] is True
    assert "visible_caps" not in SimulationPlan("nucleus", plan.seeds, 2).to_record()


def test_uneven_nuclei_change_only_their_share_of_the_images(tmp_path):
    kwargs = {"seeds": [5], "timepoints": 4, "shape": (3, 40, 56)}
    even = write_nucleus_dataset(tmp_path / "even", **kwargs)
    uneven = write_nucleus_dataset(tmp_path / "uneven", uneven_share=0.5, **kwargs)
    files = sorted(p.relative_to(even) for p in even.rglob("*") if p.suffix in (".tif", ".png"))
    changed = {p for p in files if (even / p).read_bytes() != (uneven / p).read_bytes()}
    labels = {p for p in files if "GT" in str(p) or "labels" in str(p)}
    assert labels and not changed & labels
    # Projections draw from their own streams: those left even are byte for byte the same.
    projections = {p for p in files if p.suffix == ".png"}
    assert 0 < len(changed & projections) < len(projections) == 4


def test_uneven_projections_only_leave_every_slice_even(tmp_path):
    kwargs = {"seeds": [5], "timepoints": 4, "shape": (3, 40, 56)}
    even = write_nucleus_dataset(tmp_path / "even", **kwargs)
    both = write_nucleus_dataset(tmp_path / "both", uneven_share=0.5, **kwargs)
    only = write_nucleus_dataset(tmp_path / "only", uneven_share=0.5, uneven_stacks=False, **kwargs)
    files = sorted(p.relative_to(even) for p in even.rglob("*") if p.suffix in (".tif", ".png"))

    def changed(root: Path) -> set[Path]:
        return {p for p in files if (even / p).read_bytes() != (root / p).read_bytes()}

    projections = {p for p in files if p.suffix == ".png"}
    assert changed(both) - projections  # the uneven share reaches the stacks ...
    assert changed(only) and changed(only) == changed(both) & projections  # ... or not

    from devolearn_web.training.simulate import SimulationPlan, plan_seeds

    plan = SimulationPlan(
        "nucleus", plan_seeds(1, 1, 1), 2, uneven_nuclei=0.5, uneven_projections_only=True
    )
    assert plan.to_record()["uneven_projections_only"] is True
    assert "uneven_projections_only" not in SimulationPlan("nucleus", plan.seeds, 2).to_record()
    with pytest.raises(ValueError, match="above 0"):
        SimulationPlan("nucleus", plan.seeds, 2, uneven_projections_only=True)


def test_uneven_nuclei_go_to_the_training_split_only(tmp_path, monkeypatch):
    from devolearn_web.training import simulate as simulating
    from devolearn_web.training.layout import Workspace
    from devolearn_web.training.simulate import SimulationPlan, plan_seeds

    shares = {}
    monkeypatch.setattr(
        simulating,
        "_writer",
        lambda model: (
            lambda out_dir, seeds, **kwargs: shares.update({out_dir.name: kwargs["uneven_share"]})
        ),
    )
    plan = SimulationPlan("nucleus", plan_seeds(2, 1, 1), 2, uneven_nuclei=0.5)
    workspace = Workspace(model="nucleus", data_root=tmp_path / "data")
    simulating.simulate(workspace, plan)
    assert shares == {"train": 0.5, "validation": 0.0, "test": 0.0}
    assert plan.to_record()["uneven_nuclei"] == 0.5
    assert "uneven_nuclei" not in SimulationPlan("nucleus", plan.seeds, 2).to_record()
    with pytest.raises(ValueError, match="share"):
        SimulationPlan("nucleus", plan.seeds, 2, uneven_nuclei=1.5)


def test_writers_are_deterministic_for_a_seed(tmp_path):
    first = write_membrane_dataset(tmp_path / "a", seeds=[3], timepoints=1, shape=(2, 32, 44))
    second = write_membrane_dataset(tmp_path / "b", seeds=[3], timepoints=1, shape=(2, 32, 44))
    for relative in ["01/t000.tif", "01_GT/SEG/man_seg_000_001.tif"]:
        assert np.array_equal(tifffile.imread(first / relative), tifffile.imread(second / relative))
    assert (first / "sequences.csv").read_text() == (second / "sequences.csv").read_text()


def test_membrane_dataset_spans_four_cells_to_about_350(tmp_path):
    out = write_membrane_dataset(tmp_path / "mem", seeds=[2], timepoints=2, shape=(4, 32, 44))
    rows = _read_csv(out / "sequences.csv")
    totals = [sum(int(row[key]) for key in LINEAGE_KEYS) for row in rows]
    assert totals[0] == 4 or 4 <= totals[0] <= 6
    assert 350 <= totals[-1] <= 380
    stack = tifffile.imread(out / "01" / "t001.tif")
    labels = tifffile.imread(out / "01_GT" / "SEG" / "man_seg_001_002.tif")
    assert stack.shape == (4, 32, 44) and stack.dtype == np.uint16
    assert labels.dtype == np.uint16 and labels.max() > 0


def test_lineage_dataset_spans_one_cell_to_a_250(tmp_path):
    out = write_lineage_dataset(tmp_path / "lin", seeds=[4], frames=3, shape=(48, 88))
    rows = _read_csv(out / "populations.csv")
    assert list(rows[0]) == ["file", "seed", "frame", "minutes", *LINEAGE_KEYS]
    assert rows[0]["P"] == "1" and rows[0]["A"] == "0"
    assert 240 <= int(rows[-1]["A"]) <= 250
    minutes = [float(row["minutes"]) for row in rows]
    assert minutes == sorted(minutes)
    image = np.asarray(Image.open(out / "images" / rows[1]["file"]))
    assert image.shape == (48, 88) and image.dtype == np.uint8


def test_held_out_uneven_slices_are_the_same_slices_with_dim_nuclei():
    from devolearn_web.training.simulator.held_out import held_out_samples

    even = list(held_out_samples("nucleus", 4, 29))
    uneven = list(held_out_samples("nucleus", 4, 29, uneven=True))
    for (_, truth, labels), (_, dim_truth, dim_labels) in zip(even, uneven, strict=True):
        assert truth == dim_truth and np.array_equal(labels, dim_labels)

    # Stretched to its own maximum, a slice's dimmest nuclei fall well below the even render's.
    def darkest_nucleus(image, labels):
        return min(image[labels == i].mean() for i in np.unique(labels[labels > 0]))

    late_image, _, late_labels = even[-1]
    assert darkest_nucleus(uneven[-1][0], late_labels) < 0.5 * darkest_nucleus(
        late_image, late_labels
    )


def test_held_out_uneven_projections_are_the_same_projections_with_dim_nuclei():
    from devolearn_web.training.simulator.held_out import held_out_projections

    even = list(held_out_projections(4, 29))
    uneven = list(held_out_projections(4, 29, uneven=True))
    assert len(even) == 4 and 50 < even[-1][1] <= 110  # up to about 100 cells
    for (_, truth, labels), (_, dim_truth, dim_labels) in zip(even, uneven, strict=True):
        assert truth == dim_truth and np.array_equal(labels, dim_labels)

    def nucleus_means(image, labels):
        return np.array([image[labels == i].mean() for i in np.unique(labels[labels > 0])])

    late_image, _, late_labels = even[-1]
    ratios = nucleus_means(uneven[-1][0], late_labels) / nucleus_means(late_image, late_labels)
    assert np.percentile(ratios, 10) < 0.5 * np.percentile(ratios, 90)  # each its own factor


def test_held_out_slices_with_visible_caps_add_out_of_focus_nuclei_to_the_same_labels():
    from devolearn_web.training.simulator.held_out import held_out_images, held_out_samples

    plain = list(held_out_samples("nucleus", 4, 29))
    capped = list(held_out_samples("nucleus", 4, 29, visible_caps=True))
    for (image, truth, labels), (same, more, capped_labels) in zip(plain, capped, strict=True):
        assert np.array_equal(image, same)
        assert np.array_equal(capped_labels[labels > 0], labels[labels > 0])
        assert more >= truth
    assert sum(sample[1] for sample in capped) > sum(sample[1] for sample in plain)
    counts = [truth for _, truth in held_out_images("nucleus", 4, 29, visible_caps=True)]
    assert counts == [sample[1] for sample in capped]
