"""Nuclei in 3D: per-slice labels linked through z on hand-made stacks of spheres."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from devolearn_web.assembly3d import assemble_3d, objects_3d, slice_reach

SHAPE = (16, 48, 64)


def spheres(*centres_radii: tuple[tuple[float, float, float], float]) -> np.ndarray:
    """Bool ZxHxW: balls at (z, y, x) with radii in voxels (isotropic)."""
    z, y, x = np.indices(SHAPE)
    volume = np.zeros(SHAPE, dtype=bool)
    for (cz, cy, cx), radius in centres_radii:
        volume |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    return volume


def per_slice_labels(volume: np.ndarray) -> list[np.ndarray]:
    """What the 2D pipeline gives: each slice labelled on its own, labels restarting at 1."""
    return [ndi.label(plane)[0] for plane in volume]


def test_one_sphere_across_slices_is_one_nucleus():
    volume = spheres(((8, 24, 32), 5))
    assembly = assemble_3d(per_slice_labels(volume))
    assert assembly.count == 1
    assert set(np.unique(assembly.labels)) == {0, 1}
    assert (assembly.labels > 0).sum() == volume.sum()


def test_spheres_touching_in_projection_but_apart_in_z_are_two():
    # Side by side in the image (their outlines touch when projected), at different depths.
    volume = spheres(((4, 24, 20), 3.5), ((11, 24, 27), 3.5))
    assert (volume.any(axis=0)).sum() > 0
    assembly = assemble_3d(per_slice_labels(volume))
    assert assembly.count == 2
    found = objects_3d(assembly.labels)
    assert sorted(round(obj["z"]) for obj in found) == [4, 11]


def test_two_nuclei_stacked_along_z_are_cut_at_the_waist():
    # One on top of the other: their sections overlap in every slice, but the area dips between.
    volume = spheres(((4, 24, 32), 4), ((11.5, 24, 32), 4))
    assembly = assemble_3d(per_slice_labels(volume))
    assert assembly.count == 2


def test_labels_are_the_same_nucleus_in_every_slice_and_lookups_map_slice_labels():
    volume = spheres(((5, 12, 12), 3), ((9, 36, 50), 4))
    slices = per_slice_labels(volume)
    assembly = assemble_3d(slices)
    for z, plane in enumerate(slices):
        assert np.array_equal(assembly.lookups[z][plane], assembly.labels[z])
    # The left ball keeps one label through all its slices, different from the right one's.
    left = set(np.unique(assembly.labels[:, :24, :24])) - {0}
    right = set(np.unique(assembly.labels[:, 24:, 24:])) - {0}
    assert len(left) == 1 and len(right) == 1 and left != right


@pytest.mark.parametrize(("z_step_um", "expected"), [(1.0, 2), (0.5, 1)])
def test_a_missed_slice_is_bridged_only_when_the_z_step_is_thin(z_step_um, expected):
    volume = spheres(((8, 24, 32), 5))
    volume[8] = False  # the model missed the nucleus in its middle slice
    assembly = assemble_3d(per_slice_labels(volume), z_step_um=z_step_um)
    assert assembly.count == expected


def test_reach_follows_the_z_step():
    assert slice_reach(1.0) == 1
    assert slice_reach(0.5) == 3
    assert slice_reach(4.0) == 1


def test_objects_carry_volume_and_microns_when_calibrated():
    volume = spheres(((8, 24, 32), 5))
    assembly = assemble_3d(per_slice_labels(volume))
    (plain,) = objects_3d(assembly.labels)
    assert plain["volume"] == volume.sum()
    assert (plain["x"], plain["y"], plain["z"]) == (32.0, 24.0, 8.0)
    (calibrated,) = objects_3d(assembly.labels, voxel_um=(1.0, 0.5, 0.5))
    assert calibrated["volume_um3"] == pytest.approx(volume.sum() * 0.25)
    assert calibrated["x_um"] == pytest.approx(16.0)


def test_an_empty_stack_has_no_nuclei():
    assembly = assemble_3d([np.zeros((8, 8), dtype=np.int32)] * 3)
    assert assembly.count == 0 and objects_3d(assembly.labels) == []
