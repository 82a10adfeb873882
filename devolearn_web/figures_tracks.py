"""Plotly figures (plain dicts) for 3D nuclei and tracks: a 3D view of nucleus centres, the
lineage tree (time downward, a branch at each division, founder names) and the number of nuclei
over time. Time points are shown counted from 1, as the page's slider and Fiji count them; the
answer's tracks keep the challenge's 0-based times."""

from __future__ import annotations

import math
from collections.abc import Sequence

from devolearn_web.catalogue import LINEAGE_FOUNDERS, LINEAGE_ORDER
from devolearn_web.figures import OBJECT_PALETTE
from devolearn_web.tracking import Track

# Marker diameters (px) of the smallest and largest nucleus in the 3D view.
MARKER_SIZES = (4.0, 18.0)
# The 3D box's shortest side, as a fraction of its longest: nuclei all in one slice (or a thin
# layer) would otherwise draw as a flat sheet.
MIN_ASPECT = 0.25
# At most about this many time ticks; each at a whole time point.
MAX_TIME_TICKS = 10


def shown_time(index: int) -> int:
    """The time point the page shows for a 0-based index (counted from 1, as in Fiji)."""
    return index + 1


def time_axis(title: str, count: int, **extra) -> dict:
    """An axis of time points: ticks at whole time points counted from 1."""
    step = max(1, math.ceil(count / MAX_TIME_TICKS))
    return {"title": {"text": title}, "tickmode": "linear", "tick0": 1, "dtick": step, **extra}


def box_aspect(objects: Sequence[dict], keys: Sequence[str], calibrated: bool) -> dict:
    """The 3D box: true proportions when calibrated (no side under MIN_ASPECT of the longest);
    a cube when z is in slices and x, y in pixels, whose ratio is unknown."""
    if not calibrated or not objects:
        return {"aspectmode": "cube"}
    spans = [
        max(found[key] for found in objects) - min(found[key] for found in objects) for key in keys
    ]
    longest = max(spans) or 1.0
    x, y, z = (max(span / longest, MIN_ASPECT) for span in spans)
    return {"aspectmode": "manual", "aspectratio": {"x": x, "y": y, "z": z}}


def _colour(label: int) -> str:
    """The label's colour in the slice overlays (figures._palette_index), so they match."""
    red, green, blue = OBJECT_PALETTE[(label - 1) % len(OBJECT_PALETTE)]
    return f"rgb({red},{green},{blue})"


def nuclei_3d_figure(objects: Sequence[dict], title: str = "Nuclei in 3D") -> dict:
    """Scatter3d of nucleus centres (um when calibrated, else pixels), sized by volume."""
    calibrated = bool(objects) and "x_um" in objects[0]
    keys = ("x_um", "y_um", "z_um", "volume_um3") if calibrated else ("x", "y", "z", "volume")
    volumes = [found[keys[3]] for found in objects] or [1]
    low, high = min(volumes), max(volumes)
    span = (high - low) or 1
    sizes = [
        MARKER_SIZES[0] + (MARKER_SIZES[1] - MARKER_SIZES[0]) * (found[keys[3]] - low) / span
        for found in objects
    ]
    unit = " (um)" if calibrated else ""
    volume_unit = "um³" if calibrated else "voxels"
    return {
        "data": [
            {
                "type": "scatter3d",
                "mode": "markers",
                "x": [found[keys[0]] for found in objects],
                "y": [found[keys[1]] for found in objects],
                "z": [found[keys[2]] for found in objects],
                "marker": {
                    "size": sizes,
                    "color": [_colour(found["label"]) for found in objects],
                    "opacity": 0.85,
                },
                "customdata": [[found["label"], found[keys[3]]] for found in objects],
                "hovertemplate": "Nucleus %{customdata[0]}<br>volume %{customdata[1]} "
                + volume_unit
                + "<extra></extra>",
                "name": "nuclei",
            }
        ],
        "layout": {
            "title": {"text": f"{title} · {len(objects)} nuclei"},
            "scene": {
                "xaxis": {"title": {"text": f"x{unit}"}},
                "yaxis": {"title": {"text": f"y{unit}"}, "autorange": "reversed"},
                "zaxis": {"title": {"text": f"z{unit if calibrated else ' (slice)'}"}},
                **box_aspect(objects, keys[:3], calibrated),
            },
            "margin": {"l": 0, "r": 0, "t": 40, "b": 0},
        },
    }


def tree_columns(tracks: Sequence[Track]) -> dict[int, float]:
    """x position of each track: leaves side by side, a mother between her daughters."""
    children: dict[int, list[int]] = {}
    for track in tracks:
        children.setdefault(track.parent, []).append(track.track)
    columns: dict[int, float] = {}
    next_leaf = 0.0

    def place(track_id: int) -> float:
        nonlocal next_leaf
        kids = children.get(track_id, [])
        if not kids:
            columns[track_id] = next_leaf
            next_leaf += 1.0
        else:
            columns[track_id] = sum(place(kid) for kid in kids) / len(kids)
        return columns[track_id]

    # Iterative depth would only matter past Python's recursion limit: trees here are ~10 deep.
    for root in children.get(0, []):
        place(root)
    return columns


def lineage_tree_figure(
    tracks: Sequence[Track],
    volumes: dict[int, float] | None = None,
    names: dict[int, str] | None = None,
) -> dict:
    """The lineage tree: one vertical line per track, time downward, a bar at each division,
    founder names beside their tracks and in the hover."""
    volumes = volumes or {}
    names = names or {}
    columns = tree_columns(tracks)
    by_id = {track.track: track for track in tracks}
    xs: list = []
    ys: list = []
    for track in tracks:
        x = columns[track.track]
        xs += [x, x, None]
        ys += [shown_time(track.begin), shown_time(track.end), None]
        if track.parent in by_id:
            parent = by_id[track.parent]
            xs += [columns[parent.track], x, None]
            ys += [shown_time(parent.end), shown_time(parent.end), None]
            xs += [x, x, None]
            ys += [shown_time(parent.end), shown_time(track.begin), None]
    divided = {track.parent for track in tracks}
    hover = [
        [
            track.track,
            shown_time(track.begin),
            shown_time(track.end) if track.track in divided else "none seen",
            track.parent or "none",
            volumes.get(track.track, "n/a"),
            names.get(track.track, "not named"),
        ]
        for track in tracks
    ]
    last = max((track.end for track in tracks), default=0)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ys,
                "line": {"color": "#555", "width": 1.5},
                "hoverinfo": "skip",
                "name": "tracks",
            },
            {
                "type": "scatter",
                "mode": "markers+text",
                "x": [columns[track.track] for track in tracks],
                "y": [shown_time(track.begin) + (track.end - track.begin) / 2 for track in tracks],
                "marker": {"size": 7, "color": [_colour(track.track) for track in tracks]},
                "text": [names.get(track.track, "") for track in tracks],
                "textposition": "middle right",
                "customdata": hover,
                "hovertemplate": "%{customdata[5]} · track %{customdata[0]}"
                "<br>born at time point %{customdata[1]}"
                "<br>divides at time point %{customdata[2]}<br>parent %{customdata[3]}"
                "<br>mean nucleus volume %{customdata[4]}<extra></extra>",
                "name": "nuclei",
            },
        ],
        "layout": {
            "title": {"text": f"Lineage tree · {len(tracks)} tracks"},
            "xaxis": {"visible": False},
            "yaxis": time_axis("time point", shown_time(last), autorange="reversed"),
            "showlegend": False,
            "margin": {"l": 50, "r": 10, "t": 40, "b": 10},
        },
    }


def nuclei_over_time_figure(counts: Sequence[int]) -> dict:
    """The number of tracked nuclei at each time point."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [shown_time(index) for index in range(len(counts))],
                "y": list(counts),
                "name": "nuclei",
                "hovertemplate": "time point %{x}: %{y} nuclei<extra></extra>",
            }
        ],
        "layout": {
            "title": {"text": "Nuclei over time"},
            "xaxis": time_axis("time point", len(counts)),
            "yaxis": {"title": {"text": "nuclei"}, "rangemode": "tozero"},
            "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        },
    }


def founder_counts_figure(rows: Sequence[dict]) -> dict:
    """Per lineage, the tree's count (solid) beside the lineage model's estimate (dashed) over
    time points counted from 1; lineages that are zero or unknown throughout are left out."""
    x = [shown_time(row["t"]) for row in rows]
    data = []
    for index, key in enumerate(LINEAGE_ORDER):
        tree = [row["tree"].get(key) for row in rows]
        model = [(row["model"] or {}).get(key) for row in rows]
        if not any(tree) and not any(model):
            continue
        colour = _colour(index + 1)
        founder = LINEAGE_FOUNDERS[key]
        for source, values, dash in (("tree", tree, "solid"), ("model", model, "dash")):
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": x,
                    "y": values,
                    "name": f"{key} ({source})",
                    "legendgroup": key,
                    "line": {"color": colour, "dash": dash},
                    "hovertemplate": f"time point %{{x}}: %{{y}} {founder} cells ({source})"
                    "<extra></extra>",
                }
            )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Cells per founder lineage: tree (solid), lineage model (dashed)"},
            "xaxis": time_axis("time point", len(rows)),
            "yaxis": {"title": {"text": "cells"}, "rangemode": "tozero"},
            "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        },
    }


def assembly_figures(extra: dict) -> dict:
    """The 3D view (last time point), the lineage tree and nuclei over time, as Plotly dicts."""
    figures = {}
    objects = extra.get("objects_3d", [])
    if objects:
        last = max(found.get("time", 0) for found in objects)
        shown = [found for found in objects if found.get("time", 0) == last]
        figures["nuclei_3d"] = nuclei_3d_figure(shown)
    if "tracks" in extra:
        tracks = [
            Track(track["track"], track["begin"], track["end"], track["parent"])
            for track in extra["tracks"]
        ]
        names = {track["track"]: track["name"] for track in extra["tracks"] if track.get("name")}
        volumes: dict[int, list[float]] = {}
        for found in objects:
            volumes.setdefault(found["label"], []).append(found["volume"])
        means = {label: round(sum(v) / len(v), 1) for label, v in volumes.items()}
        figures["lineage_tree"] = lineage_tree_figure(tracks, means, names)
        figures["nuclei_over_time"] = nuclei_over_time_figure(extra["nuclei_per_time"])
    if extra.get("founder_counts"):
        counts = founder_counts_figure(extra["founder_counts"])
        if counts["data"]:  # not when every lineage is zero or unknown throughout
            figures["founder_counts"] = counts
    return figures
