"""Objects from probability maps: the split of touching objects, scaling labels up, measuring."""

from dataclasses import asdict

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import regionprops

from devolearn_web.segmentation import (
    SegmentedObject,
    SplitSettings,
    _local_maxima,
    bright_blobs,
    label_instances,
    measure_objects,
    split_touching_objects,
    upscale_labels,
    whole_round_blobs,
)


def disks(shape, centres, radius):
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for x, y in centres:
        mask |= (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
    return mask


def test_two_touching_disks_become_two_objects_and_one_disk_stays_one():
    mask = disks((256, 256), [(60, 60), (78, 60), (180, 180)], radius=10)
    labels = split_touching_objects(mask)
    assert labels.max() == 3
    assert set(np.unique(labels[mask])) == {1, 2, 3}  # every mask pixel belongs to an object
    # The touching pair is cut between the centres, not across a disk.
    assert labels[60, 60] != labels[60, 78]


def test_a_round_blob_cut_into_pieces_is_made_whole_for_sizing():
    labels = np.zeros((120, 120), dtype=np.int32)
    labels[disks(labels.shape, [(60, 60)], radius=40)] = 1
    labels[:60][labels[:60] == 1] = 2  # a disc cut in four quarters, as a split cuts it up
    labels[:, :60][labels[:, :60] == 1] = 3
    labels[:60, :60][labels[:60, :60] == 2] = 4
    whole = whole_round_blobs(labels)
    assert len(np.unique(whole[whole > 0])) == 1
    assert labels.max() == 4  # the labels given are not changed


def test_a_round_bright_blob_cut_into_pieces_that_do_not_touch_is_one_with_its_image():
    """A grainy nucleus shown far too large: its pieces are islands, but the picture is one
    bright disc with no dark valley where the pieces part."""
    image = np.where(disks((200, 200), [(100, 100)], radius=60), 1.0, 0.0).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.int32)
    for number, (row, col) in enumerate(
        (row, col) for row in range(50, 150, 14) for col in range(50, 150, 14)
    ):
        labels[row : row + 10, col : col + 10] = number + 1  # 10 px pieces, 4 px apart
    labels[image == 0] = 0
    assert np.array_equal(whole_round_blobs(labels), labels)  # islands: no blob holds several
    whole = whole_round_blobs(labels, image)
    assert len(np.unique(whole[whole > 0])) == 1
    assert labels.max() > 40  # the labels given are not changed


def test_a_dense_embryo_blurred_into_one_round_blob_keeps_its_nuclei():
    """Small nuclei packed in an embryo blur into one round bright blob too, but the cuts
    between them run through the dark cytoplasm."""
    from scipy import ndimage

    from devolearn_web.segmentation import _round_cut_blobs

    centres = [
        (100 + 12 * col + 6 * (row % 2), 100 + 10 * row)
        for row in range(-5, 6)
        for col in range(-5, 6)
        if (12 * col + 6 * (row % 2)) ** 2 + (10 * row) ** 2 <= 44**2
    ]
    nuclei = disks((200, 200), centres, radius=4)
    embryo = disks((200, 200), [(100, 100)], radius=50)
    image = ndimage.gaussian_filter(np.where(nuclei, 1.0, 0.4 * embryo), 1.0).astype(np.float32)
    labels = ndimage.label(nuclei)[0]
    assert len(list(_round_cut_blobs(labels, bright_blobs(image)))) == 1  # one round blob
    assert np.array_equal(whole_round_blobs(labels, image), labels)


def test_two_overlapping_nuclei_keep_their_pieces_though_their_blob_is_convex():
    mask = disks((120, 160), [(60, 60), (80, 60)], radius=40)  # fills 97% of its hull
    labels = np.where(mask, 1, 0).astype(np.int32)
    labels[:, 70:][mask[:, 70:]] = 2
    assert np.array_equal(whole_round_blobs(labels), labels)  # two pieces are not a cut-up one


def test_touching_and_overlapping_rows_of_nuclei_keep_their_pieces():
    touching = disks((120, 160), [(30, 60), (50, 60), (70, 60), (90, 60)], radius=10)
    overlapping = disks((100, 140), [(40, 50), (56, 50), (72, 50)], radius=16)  # 93% of hull
    for mask in (touching, overlapping):
        labels = split_touching_objects(mask)
        assert labels.max() >= 3
        assert np.array_equal(whole_round_blobs(labels), labels)


def test_an_elongated_blob_is_not_cut_into_pieces():
    rows, cols = np.indices((256, 256))
    ellipse = ((cols - 128) / 30.0) ** 2 + ((rows - 128) / 12.0) ** 2 <= 1
    assert split_touching_objects(ellipse, settings=SplitSettings(peak_window=3)).max() == 1


def test_a_dip_in_the_probability_parts_what_the_distance_map_sees_as_one():
    # Two nuclei the threshold joins into one smooth ellipse: its distance map has a single
    # ridge, but the network is less sure of the pixels between them.
    rows, cols = np.indices((256, 256))
    ellipse = ((cols - 128) / 24.0) ** 2 + ((rows - 128) / 12.0) ** 2 <= 1
    probability = np.where(ellipse, 0.95, 0.0).astype(np.float32)
    probability[:, 124:133] = np.where(ellipse[:, 124:133], 0.6, 0.0)
    tie_breaker = SplitSettings(peak_window=2, smoothing_sigma=1.0, probability_weight=0.01)
    guided = SplitSettings(peak_window=2, smoothing_sigma=1.0, probability_weight=16.0)
    assert split_touching_objects(ellipse, probability, tie_breaker).max() == 1
    labels = split_touching_objects(ellipse, probability, guided)
    assert labels.max() == 2 and labels[128, 112] != labels[128, 144]


def test_a_small_object_beside_a_big_one_keeps_its_own_label():
    # Apart, but the small disk's highest point lies within the big one's peak window.
    mask = disks((256, 256), [(100, 100)], radius=20) | disks((256, 256), [(126, 100)], 3)
    labels = split_touching_objects(mask, settings=SplitSettings(peak_window=30))
    assert labels.max() == 2 and labels[100, 100] != labels[100, 126] > 0


def test_pieces_under_the_min_split_area_are_dropped_at_any_scale():
    # A disk of about 13 model pixels (radius 2) beside one of about 314 (radius 10).
    for scale in (1, 3):
        mask = disks((256 * scale, 256 * scale), [(60 * scale, 60 * scale)], radius=10 * scale)
        mask |= disks(mask.shape, [(120 * scale, 60 * scale)], radius=2 * scale)
        assert split_touching_objects(mask, settings=SplitSettings()).max() == 2
        for min_area, expected in ((10, 2), (20, 1)):
            settings = SplitSettings(min_split_area=min_area)
            labels = split_touching_objects(mask, settings=settings)
            assert labels.max() == expected, (scale, min_area)
            assert labels[60 * scale, 60 * scale] == 1  # the big one stays, numbered from 1


def test_settings_scale_with_the_map():
    small = disks((256, 256), [(60, 60), (78, 60)], radius=10)
    big = disks((768, 768), [(180, 180), (234, 180)], radius=30)
    assert split_touching_objects(small).max() == split_touching_objects(big).max() == 2


def test_models_without_split_settings_count_connected_blobs():
    probability = disks((256, 256), [(60, 60), (78, 60)], radius=10).astype(np.float32)
    assert label_instances("lineage", probability, 0.5).max() == 1
    assert label_instances("nucleus", probability, 0.5).max() == 2


def test_upscaled_labels_follow_the_larger_mask_and_drop_emptied_objects():
    labels = np.zeros((4, 4), dtype=np.int32)
    labels[0:2, 0:2] = 1
    labels[3, 3] = 2
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:3, 0:3] = True  # object 2's pixels are all outside the mask
    scaled = upscale_labels(labels, mask)
    assert scaled.shape == (8, 8) and scaled.dtype == np.uint16
    assert scaled.max() == 1
    np.testing.assert_array_equal(scaled[0:3, 0:3], 1)
    assert not scaled[~mask].any()


@pytest.mark.parametrize("seed", [0, 1])
def test_measures_match_scikit_image(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((90, 130), dtype=np.int32)
    for label in range(1, 8):
        top, left = rng.integers(0, 70), rng.integers(0, 110)
        labels[top : top + rng.integers(2, 20), left : left + rng.integers(2, 20)] = label
    labels = split_touching_objects(labels > 0)
    objects = measure_objects(labels)
    expected = regionprops(labels)
    assert [obj.label for obj in objects] == [region.label for region in expected]
    for obj, region in zip(objects, expected, strict=True):
        assert obj.area == region.area
        assert obj.y == pytest.approx(region.centroid[0], abs=0.006)
        assert obj.x == pytest.approx(region.centroid[1], abs=0.006)


def test_an_empty_map_has_no_objects():
    assert measure_objects(np.zeros((10, 10), dtype=np.int32)) == []
    assert split_touching_objects(np.zeros((10, 10), dtype=bool)).max() == 0


def _maxima_one_filter_per_window(distance, inside, windows):
    """The plain definition: one full-image maximum filter per window size."""
    peaks = np.zeros(distance.shape, dtype=bool)
    for window in np.unique(windows[inside]):
        here = inside & (windows == window)
        peaks |= here & (distance == ndi.maximum_filter(distance, size=2 * int(window) + 1))
    return peaks


@pytest.mark.parametrize("seed", range(6))
def test_local_maxima_match_one_filter_per_window(seed):
    rng = np.random.default_rng(seed)
    probability = ndi.gaussian_filter(rng.random((96, 128)), 3).astype(np.float32)
    probability = (probability - probability.min()) / np.ptp(probability)
    inside = probability > 0.45
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(inside), 1.0).astype(np.float32)
    # Windows from 1 to 6 pixels, growing with the thickness as the membrane settings do.
    windows = np.clip(np.rint(distance), 1, 6).astype(np.intp)
    expected = _maxima_one_filter_per_window(distance, inside, windows)
    assert expected.sum() > 3
    np.testing.assert_array_equal(_local_maxima(distance, inside, windows), expected)


def test_local_maxima_of_an_empty_mask():
    shape = (8, 8)
    found = _local_maxima(np.zeros(shape, np.float32), np.zeros(shape, bool), np.ones(shape, int))
    assert not found.any()


@pytest.mark.parametrize("seed", range(4))
def test_connected_components_match_scikit_image_speck_removal(seed):
    from skimage.morphology import remove_small_objects

    from devolearn_web.segmentation import _min_area, label_connected_components, scale_factor

    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random((300, 420)), 1.5) > 0.53  # blobs and specks
    expected, _ = ndi.label(
        remove_small_objects(mask, max_size=_min_area(scale_factor(mask.shape)) - 1)
    )
    found = label_connected_components(mask)
    assert 0 < found.max() < ndi.label(mask)[1]  # some specks were dropped, some blobs kept
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize("seed", range(6))
def test_distance_to_background_is_scipys_euclidean_distance(seed):
    from devolearn_web.segmentation import distance_to_background

    rng = np.random.default_rng(seed)
    # Blobs of every size, some cut by the image's edge, on a non-square grid.
    inside = ndi.gaussian_filter(rng.random((256, 300)), 3 + seed) > 0.5
    expected = ndi.distance_transform_edt(inside).astype(np.float32)
    found = distance_to_background(inside)
    assert found.dtype == np.float32 and found.max() > 3
    np.testing.assert_array_equal(found, expected)


def test_a_mask_without_background_still_splits_into_finite_objects():
    probability = np.ones((64, 64), np.float32)  # a threshold of 0 takes every pixel
    labels = label_instances("nucleus", probability, 0.0)
    assert labels.min() >= 1 and 1 <= labels.max() <= 4


def test_object_dict_has_every_field_of_the_object():
    obj = SegmentedObject(label=3, x=12.5, y=7.25, area=41)
    assert obj.to_dict() == asdict(obj)
    assert list(obj.to_dict()) == ["label", "x", "y", "area"]  # the API's column order


def test_bright_blobs_see_each_textured_nucleus_whole():
    """A frame-sized grid's nuclei, textured as a network might cut them: one blob each."""
    image = disks((150, 400), [(100, 75), (290, 75)], 35).astype(np.float32) * 0.6
    image += np.random.default_rng(0).random(image.shape).astype(np.float32) * 0.4 * (image > 0)
    blobs = bright_blobs(image)
    assert blobs.max() == 2
    diameters = 2 * np.sqrt(np.bincount(blobs.ravel())[1:] / np.pi)
    assert np.all(np.abs(diameters - 70) < 6)
    assert bright_blobs(np.full((50, 50), 0.3, np.float32)).max() == 0
