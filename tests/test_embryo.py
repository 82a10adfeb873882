"""Finding the embryo: where it lies, its length and direction, one embryo or several."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from devolearn_web.embryo import (
    embryo_centred_view,
    faint_embryos,
    filled_convex_hull,
    find_embryo,
)


def ellipse(shape, centre, semi_axes, angle_deg=0.0) -> np.ndarray:
    """float32 image: 0.8 inside an ellipse whose long axis makes angle_deg with x (as seen)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    angle = np.radians(angle_deg)
    x, y = cols - centre[1], -(rows - centre[0])  # y up, as seen
    along = x * np.cos(angle) + y * np.sin(angle)
    across = -x * np.sin(angle) + y * np.cos(angle)
    inside = (along / semi_axes[0]) ** 2 + (across / semi_axes[1]) ** 2 <= 1
    return np.where(inside, 0.8, 0.05).astype(np.float32)


@pytest.mark.parametrize("angle", [0.0, 30.0, -45.0, 70.0])
def test_the_embryo_is_measured_where_it_lies(angle):
    image = ellipse((300, 400), (140, 210), (100, 60), angle)
    region = find_embryo(image).region
    assert region is not None
    assert abs(region.centre_row - 140) < 3 and abs(region.centre_col - 210) < 3
    assert abs(region.major - 200) < 10 and abs(region.minor - 120) < 8
    assert abs(region.angle_deg - angle) < 3
    assert region.lies_vertical == (abs(angle) > 45)


def test_an_early_embryos_scattered_nuclei_are_one_embryo():
    image = np.full((300, 500), 0.05, np.float32)
    for centre in [(150, 120), (150, 380)]:  # two nuclei far apart: the 2-cell stage
        image = np.maximum(image, ellipse((300, 500), centre, (30, 30)))
    search = find_embryo(image)
    assert search.region is not None and search.regions_found == 1
    assert search.region.major > 300  # spans both nuclei


def early_embryo_with_four_nuclei() -> np.ndarray:
    """float32 200x300: a dim embryo holding four bright nuclei, lightly blurred."""
    image = ellipse((200, 300), (100, 150), (95, 55)) * 0.2
    for centre in [(100, 90), (80, 160), (120, 170), (100, 215)]:
        image = np.maximum(image, ellipse((200, 300), centre, (18, 18)) / 0.8)
    return ndi.gaussian_filter(image, 2.0)


def on_a_canvas(image: np.ndarray, times: int) -> np.ndarray:
    """The image in the middle of a black canvas `times` as large on each side."""
    height, width = image.shape
    canvas = np.zeros((times * height, times * width), np.float32)
    top, left = (times - 1) * height // 2, (times - 1) * width // 2
    canvas[top : top + height, left : left + width] = image
    return canvas


def test_the_embryos_length_does_not_follow_the_margin_around_it():
    """Measured in one look at the frame, padding grew this embryo's length 164 -> 183 px."""
    image = early_embryo_with_four_nuclei()
    lengths = [
        find_embryo(framed).region.major
        for framed in (image, on_a_canvas(image, 2), on_a_canvas(image, 3), image[30:170, 40:260])
    ]
    assert max(lengths) / min(lengths) < 1.03, lengths


def test_a_padded_embryo_is_found_where_it_lies_in_the_upload():
    image = early_embryo_with_four_nuclei()
    alone, padded = find_embryo(image).region, find_embryo(on_a_canvas(image, 3)).region
    assert abs(padded.centre_row - 200 - alone.centre_row) < 1.5
    assert abs(padded.centre_col - 300 - alone.centre_col) < 1.5
    shifted = (alone.box[0] + 200, alone.box[1] + 300, alone.box[2] + 200, alone.box[3] + 300)
    assert np.abs(np.subtract(padded.box, shifted)).max() <= 3, (padded.box, shifted)
    assert not padded.touches_edge


def test_two_embryos_are_named_as_such():
    image = np.maximum(
        ellipse((300, 700), (150, 170), (140, 80)), ellipse((300, 700), (150, 530), (140, 80))
    )
    search = find_embryo(image)
    assert search.region is None and search.regions_found == 2
    assert "crop it to one embryo" in search.problem


def two_early_embryos_side_by_side() -> np.ndarray:
    """float32 220x620: two dim embryos, each holding two bright nuclei, a gap between them."""
    image = np.full((220, 620), 0.05, np.float32)
    for centre_col in (150, 470):
        image = np.maximum(image, ellipse((220, 620), (110, centre_col), (130, 75)) * 0.2)
        for offset in (-55, 55):
            nucleus = ellipse((220, 620), (110, centre_col + offset), (16, 16)) / 0.8
            image = np.maximum(image, nucleus)
    return ndi.gaussian_filter(image, 2.0)


def test_two_early_embryos_are_told_apart_by_their_cytoplasm():
    """Their four small nuclei alone read as one embryo's scattered nuclei."""
    search = find_embryo(two_early_embryos_side_by_side())
    assert search.region is None and search.regions_found == 2
    assert "each with its own cytoplasm" in search.problem


def test_one_early_embryo_with_its_cytoplasm_stays_one_embryo():
    image = two_early_embryos_side_by_side()[:, :310]
    search = find_embryo(image)
    assert search.region is not None and search.regions_found == 1


def test_bright_regions_filling_the_frame_leave_no_cytoplasm_to_count():
    assert faint_embryos(np.random.default_rng(0).random((20, 30)), np.ones((20, 30), bool)) == 0


def test_a_uniform_image_holds_no_embryo():
    search = find_embryo(np.full((64, 64), 0.3, np.float32))
    assert search.region is None and "uniform" in search.problem


def test_the_hull_matches_scikit_image():
    from skimage.morphology import convex_hull_image

    rng = np.random.default_rng(3)
    mask = np.zeros((140, 256), bool)
    for _ in range(6):
        row, col = rng.integers(20, 120), rng.integers(20, 230)
        mask[row - 5 : row + 5, col - 7 : col + 7] = True
    ours, theirs = filled_convex_hull(mask), convex_hull_image(mask)
    assert (ours | theirs).sum() - (ours & theirs).sum() < 0.01 * theirs.sum()


@pytest.mark.parametrize("seed", range(6))
def test_the_hull_holds_exactly_the_pixels_whose_centres_lie_in_it(seed):
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(seed)
    mask = np.zeros((90, 130), bool)
    for _ in range(rng.integers(2, 9)):
        row, col = rng.integers(0, 90), rng.integers(0, 130)
        mask[row : row + rng.integers(1, 25), col : col + rng.integers(1, 25)] = True
    rows, cols = np.nonzero(mask)
    corners = np.concatenate(
        [np.stack([rows + dr, cols + dc], 1) for dr in (0, 1) for dc in (0, 1)]
    )
    equations = ConvexHull(corners).equations
    grid_rows, grid_cols = np.mgrid[:90, :130]
    centres = np.stack([grid_rows.ravel() + 0.5, grid_cols.ravel() + 0.5], 1)
    inside = (centres @ equations[:, :2].T + equations[:, 2] <= 1e-9).all(axis=1)
    assert np.array_equal(filled_convex_hull(mask), inside.reshape(mask.shape) | mask)


def test_the_view_turns_the_embryo_along_x():
    image = ellipse((400, 400), (200, 200), (150, 100), 90.0)  # lying along y
    region = find_embryo(image).region
    view = embryo_centred_view(image, region, (0.6, 0.65), (256, 256))
    inside = view > 0.4
    rows, cols = np.nonzero(inside)
    # Filling 60% of the width and 65% of the height, centred: the framing of training.
    assert abs((cols.max() - cols.min()) / 256 - 0.6) < 0.04
    assert abs((rows.max() - rows.min()) / 256 - 0.65) < 0.04


def ring_image(shape=(200, 300)) -> np.ndarray:
    """Bright 2 px outlines of an embryo cut into four cells: a membrane image."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    radius = ((rows - 100) / 80.0) ** 2 + ((cols - 150) / 130.0) ** 2
    image = np.full(shape, 0.05, np.float32)
    image[np.abs(radius - 1) < 0.04] = 0.9
    image[(np.abs(rows - 100) < 2) & (radius < 1)] = 0.9
    image[(np.abs(cols - 150) < 2) & (radius < 1)] = 0.9
    return image


def test_outlines_and_solid_blobs_are_told_apart():
    assert find_embryo(ring_image()).shows_outlines
    solid = ellipse((200, 300), (100, 150), (130, 80))
    assert not find_embryo(solid).shows_outlines


@pytest.mark.slow
def test_simulated_images_of_each_kind_are_told_apart():
    from devolearn_web.training.simulator.embryo import simulate_embryo
    from devolearn_web.training.simulator.render_membrane import (
        MembraneLook,
        random_membrane_view,
        render_membrane_slice,
        slice_geometry,
    )
    from devolearn_web.training.simulator.render_nucleus import (
        NucleusLook,
        random_projection_view,
        render_nucleus_projection,
    )

    embryo = simulate_embryo(2000)
    rng = np.random.default_rng(5)
    for minutes in np.linspace(40, embryo.times[-1] * 0.8, 5):
        view = random_projection_view(rng, embryo, (315, 585))
        nuclei, _ = render_nucleus_projection(embryo, minutes, view, NucleusLook.draw(rng), rng)
        assert not find_embryo(nuclei.astype(np.float32) / 255).shows_outlines, minutes
        view = random_membrane_view(rng, embryo, (40, 256, 356))
        geometry = slice_geometry(embryo, minutes, view, 20.0)
        membranes = render_membrane_slice(geometry, view, MembraneLook.draw(rng), rng)
        assert find_embryo(membranes.astype(np.float32)).shows_outlines, minutes


@pytest.mark.parametrize("seed", range(3))
def test_closing_and_hole_filling_match_scipy(seed):
    from scipy import ndimage as ndi

    from devolearn_web.embryo import _close, fill_holes

    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random((120, 160)), 2.0) > 0.52
    radius = 4
    rows, cols = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disc = rows**2 + cols**2 <= radius**2
    padded = np.pad(mask, radius + 1)
    expected = ndi.binary_closing(padded, structure=disc)[
        radius + 1 : -radius - 1, radius + 1 : -radius - 1
    ]
    np.testing.assert_array_equal(_close(mask, radius), expected)
    np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))


def noise(shape, seed: int = 0) -> np.ndarray:
    """A camera's dark field: pixel noise around a dim level, nothing else (float32 0..1)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.08, 0.03, shape), 0.0, 1.0).astype(np.float32)


def with_disc(image: np.ndarray, centre, radius: float, rise: float) -> np.ndarray:
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    return np.where(inside, image + rise, image).astype(np.float32)


@pytest.mark.parametrize("shape", [(256, 354), (1500, 2100)])
def test_pixel_noise_alone_holds_no_embryo(shape):
    """A slice beyond the embryo is noise; contrast-stretched, it read as 23 nuclei."""
    search = find_embryo(noise(shape))
    assert search.noise_only and search.region is None
    assert "nothing that stands out from its own pixel noise" in search.problem


def test_noise_on_a_flat_margin_is_still_noise():
    """The flat canvas a picture is padded onto has no noise: it must not hide the picture's."""
    canvas = np.full((512, 708), 0.08, np.float32)
    canvas[128:384, 177:531] = noise((256, 354))
    assert find_embryo(canvas).noise_only


@pytest.mark.parametrize("shape", [(256, 354), (1500, 2100)])
def test_one_dim_nucleus_in_the_noise_is_not_noise(shape):
    """A nucleus twice as bright as the noise's own spread, a tenth of the frame's side."""
    centre = (shape[0] // 2, shape[1] // 3)
    image = with_disc(noise(shape), centre, radius=max(shape) / 20, rise=0.06)
    assert not find_embryo(image).noise_only


@pytest.mark.parametrize("shape", [(1, 4000), (2, 2), (300, 400)])
def test_pictures_without_noise_to_measure_are_not_called_noise(shape):
    """A line of pixels, a speck, and a smooth ramp (what a 1-px blur removes from it is 0)."""
    ramp = np.linspace(0.1, 0.9, shape[1], dtype=np.float32)
    assert not find_embryo(np.tile(ramp, (shape[0], 1))).noise_only
