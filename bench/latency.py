"""(1) One request end to end over HTTP vs the bare ONNX Runtime and PyTorch forwards."""

from __future__ import annotations

from contextlib import ExitStack

from bench.context import BenchContext
from bench.forwards import ort_forward, torch_forward
from bench.inputs import model_upload
from bench.models import float_file, quantized_file
from bench.report import Row, format_ms
from bench.server import running_server
from bench.stats import alternate
from devolearn_web.catalogue import MODEL_NAMES

SECTION = "1 latency 708x512"
MAX_RATIO_TO_ORT = 1.25
MAX_RATIO_TO_TORCH = 0.6


def measure_latency(context: BenchContext) -> list[Row]:
    """Per model: HTTP (served file, and float32 when int8 is served), ORT and torch forwards."""
    rows: list[Row] = []
    with ExitStack() as stack:
        served = stack.enter_context(running_server(context.models_dir))
        baseline = None
        if context.has_int8:
            baseline = stack.enter_context(running_server(context.baseline_dir))
        for name in MODEL_NAMES:
            rows += _model_rows(context, name, served, baseline)
    return rows


def _model_rows(context: BenchContext, name: str, served, baseline) -> list[Row]:
    upload = model_upload(name, context.samples_dir)
    served_client = served.client()
    int8_path = quantized_file(context.models_dir, name)
    contenders = {
        "http": lambda: served_client.predict(name, upload, f"{name}.png"),
        "http_figures": lambda: served_client.predict(
            name, upload, f"{name}.png", include="figures"
        ),
    }
    if baseline is not None and int8_path:
        baseline_client = baseline.client()
        contenders["http_float"] = lambda: baseline_client.predict(name, upload, f"{name}.png")
    contenders["ort_float"] = ort_forward(
        float_file(context.models_dir, name), name, context.threads
    )
    if int8_path:
        contenders["ort_int8"] = ort_forward(int8_path, name, context.threads)
    torch_call = torch_forward(name, context.threads)
    if torch_call is not None:
        contenders["torch"] = torch_call
    timing = alternate(contenders, context.repeats, context.warmup)
    label = context.served_label(name)
    http = timing["http"]
    ort_same = timing["ort_int8" if int8_path else "ort_float"]
    rows = [
        Row(
            SECTION, f"{name}: HTTP request ({label})", format_ms(http.median), format_ms(http.p95)
        ),
        Row(
            SECTION,
            f"{name}: bare ORT forward, same file ({label}, {context.threads} threads)",
            format_ms(ort_same.median),
            format_ms(ort_same.p95),
        ),
        Row(
            SECTION,
            f"{name}: HTTP / bare ORT forward of the same file",
            "",
            compared_with=f"ORT {label}",
            ratio=http.median / ort_same.median,
            target=f"<= {MAX_RATIO_TO_ORT}x",
            met=http.median <= MAX_RATIO_TO_ORT * ort_same.median,
        ),
    ]
    figures = timing["http_figures"]
    rows.append(
        Row(
            SECTION,
            f"{name}: HTTP request with Plotly figures, as the page asks ({label})",
            format_ms(figures.median),
            format_ms(figures.p95),
            compared_with="HTTP, JSON only",
            ratio=figures.median / http.median,
        )
    )
    if int8_path:
        ort_float = timing["ort_float"]
        rows.append(
            Row(
                SECTION,
                f"{name}: bare ORT forward, float32 file",
                format_ms(ort_float.median),
                format_ms(ort_float.p95),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{name}: HTTP ({label}) / bare ORT float32 forward",
                "",
                compared_with="ORT float32",
                ratio=http.median / ort_float.median,
            )
        )
    if "http_float" in timing:
        http_float = timing["http_float"]
        rows.append(
            Row(
                SECTION,
                f"{name}: HTTP request (float32 models)",
                format_ms(http_float.median),
                format_ms(http_float.p95),
                compared_with="HTTP as served",
                ratio=http_float.median / http.median,
            )
        )
    if "torch" in timing:
        torch_timing = timing["torch"]
        rows.append(
            Row(
                SECTION,
                f"{name}: PyTorch eager forward ({context.threads} threads)",
                format_ms(torch_timing.median),
                format_ms(torch_timing.p95),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{name}: HTTP ({label}) / PyTorch eager forward",
                "",
                compared_with="PyTorch eager",
                ratio=http.median / torch_timing.median,
                target=f"<= {MAX_RATIO_TO_TORCH}x",
                met=http.median <= MAX_RATIO_TO_TORCH * torch_timing.median,
            )
        )
    else:
        rows.append(Row(SECTION, f"{name}: PyTorch eager forward", "skipped: torch absent"))
    return rows
