"""(5) A 389-frame movie through the lineage model and a 35-slice stack through the nucleus one."""

from __future__ import annotations

from contextlib import ExitStack

from bench.context import BenchContext
from bench.inputs import (
    MOVIE_FRAMES,
    STACK_SLICES,
    drifting_frames,
    embryo_plane,
    movie_bytes,
    png_bytes,
    stack_tiff_bytes,
)
from bench.report import Row, format_ms
from bench.server import running_server
from bench.stats import alternate

SECTION = "5 movie / stack"
MAX_MOVIE_S = 8.0


def measure_frames(context: BenchContext) -> list[Row]:
    """Whole API requests (the page's NDJSON progress for the movie), served vs float32 models."""
    plane = embryo_plane(context.samples_dir)
    movie = movie_bytes(drifting_frames(plane, MOVIE_FRAMES))
    stack_file = stack_tiff_bytes(plane, STACK_SLICES)
    rows = []
    with ExitStack() as stack:
        servers = {"as shipped": stack.enter_context(running_server(context.models_dir))}
        if context.has_int8:
            servers["float32 models"] = stack.enter_context(running_server(context.baseline_dir))
        clients = {label: server.client() for label, server in servers.items()}
        warm_up = png_bytes(plane)
        for client in clients.values():  # models loaded before the clock starts
            client.predict("lineage", warm_up, "warm.png")
            client.predict("nucleus", warm_up, "warm.png")
        frame_counts = {}

        def movie_call(label):
            def call():
                answer = clients[label].predict("lineage", movie, "movie.mp4", progress="ndjson")
                frame_counts["movie"] = answer["frame_count"]

            return call

        def stack_call(label):
            def call():
                answer = clients[label].predict("nucleus", stack_file, "stack.tif")
                frame_counts["stack"] = answer["frame_count"]

            return call

        movie_timing = alternate(
            {label: movie_call(label) for label in servers}, context.rounds, warmup=0
        )
        stack_timing = alternate(
            {label: stack_call(label) for label in servers}, context.rounds, warmup=0
        )
    for label in servers:
        rows.append(
            _timing_row(
                f"{frame_counts['movie']}-frame 708x512 MP4 -> lineage ({label})",
                movie_timing,
                label,
                target=f"<= {MAX_MOVIE_S:g} s",
                met=movie_timing[label].median <= MAX_MOVIE_S * 1000,
            )
        )
    for label in servers:
        rows.append(
            _timing_row(
                f"{frame_counts['stack']}-slice 16-bit 708x512 TIFF -> nucleus ({label})",
                stack_timing,
                label,
            )
        )
    return rows


def _timing_row(measurement: str, timings: dict, label: str, **target) -> Row:
    """One server's row, compared with the folder as shipped when it is another one."""
    timing, shipped = timings[label], timings["as shipped"]
    other = label != "as shipped"
    return Row(
        SECTION,
        measurement,
        format_ms(timing.median),
        format_ms(timing.p95) if timing.count > 1 else "",
        compared_with="as shipped" if other else "",
        ratio=timing.median / shipped.median if other else None,
        **target,
    )
