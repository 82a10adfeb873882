"""The OpenAPI 3.1 description of the JSON API, as data (served at /api/v1/openapi.json)."""

from __future__ import annotations

from devolearn_web.catalogue import (
    LINEAGE_MODELS,
    LINEAGE_ORDER,
    MODEL_NAMES,
    SEGMENTATION_MODELS,
    TASKS,
    training_range_sentence,
)
from devolearn_web.imaging import ACCEPTED_FORMATS, TIFF_BIT_DEPTHS
from devolearn_web.openapi_jobs import job_paths, job_schemas
from devolearn_web.options import FORMATS

TIMING_STAGES = ("decode", "preprocess", "inference", "postprocess", "total")

ERROR_RESPONSES = {
    "400": "The image cannot be decoded, or a field is missing, unknown or out of range, or sent "
    "in the query string instead of the form.",
    "404": "No model by that name (the message lists the valid names).",
    "413": "The file has too many bytes or too many pixels (decompression bombs included), or "
    "analysing it would need more memory than the server has for analyses at a time "
    "(MEMORY_BUDGET_MB).",
    "415": f"The file is not a {ACCEPTED_FORMATS}.",
    "429": "Too many images from this client; the Retry-After header says how many seconds to "
    "wait.",
    "503": "The model is not installed, damaged, or does not match its card; or the job ran "
    "past the server's time budget (JOB_TIME_BUDGET_SECONDS) and was stopped; or the server's "
    "memory for analyses is taken by other images (the Retry-After header says how many "
    "seconds to wait).",
}


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _schemas() -> dict:
    timings = {
        "type": "object",
        "description": "Milliseconds spent in each stage of the request.",
        "properties": {stage: {"type": "number"} for stage in TIMING_STAGES},
        "required": list(TIMING_STAGES),
    }
    notes = {
        "type": "array",
        "items": {"type": "string"},
        "description": "Plain sentences on how the image was read (channel used, pages...).",
    }
    warnings = {
        "type": "array",
        "items": {"type": "string"},
        "description": "Sentences when the image is unlike the training data (objects outside "
        "the trained size band, no single embryo found): the answer may be wrong.",
    }
    box = {
        "type": "object",
        "properties": {side: {"type": "integer"} for side in ("left", "top", "right", "bottom")},
    }
    embryo = {
        "type": ["object", "null"],
        "description": "Where the embryo was found, upload pixels: centre, the fitted ellipse's "
        "length and width, its long axis' angle from x (degrees, counter-clockwise as seen) "
        "and its box (right and bottom exclusive); null when none was found.",
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "number"},
            "length": {"type": "number"},
            "width": {"type": "number"},
            "angle_deg": {"type": "number"},
            "box": box,
        },
    }
    return {
        "Error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status again."},
                "error": {"type": "string", "description": "A sentence saying what went wrong."},
            },
            "required": ["status", "error"],
        },
        "ModelCard": {
            "type": "object",
            "description": "The model card (docs/model-cards.md) plus its status on this server.",
            "properties": {
                "name": {"type": "string", "enum": list(MODEL_NAMES)},
                "title": {"type": "string"},
                "version": {"type": "string"},
                "task": {"type": "string", "enum": list(TASKS)},
                "ready": {"type": "boolean"},
                "problem": {"type": ["string", "null"]},
            },
            "required": ["name", "ready", "problem"],
            "additionalProperties": True,
        },
        "SegmentedObject": {
            "type": "object",
            "properties": {
                "label": {"type": "integer", "description": "Its value in the label image."},
                "x": {"type": "number", "description": "Centroid column, upload pixels."},
                "y": {"type": "number", "description": "Centroid row, upload pixels."},
                "area": {"type": "integer", "description": "Pixels, at the upload's size."},
            },
            "required": ["label", "x", "y", "area"],
        },
        "Calibration": {
            "type": "object",
            "description": "The pixel size a TIFF upload declares (resolution tags, ImageJ "
            "unit and spacing); absent when it declares none. The label and probability TIFFs "
            "keep it, and the objects CSV adds x_<unit>, y_<unit>[, z_<unit>], area_<unit>2 "
            "(unit spelt nm, um, mm, cm or m).",
            "properties": {
                "unit": {"type": "string", "enum": ["nm", "µm", "mm", "cm", "m"]},
                "pixel_width": {"type": "number", "description": "One pixel's width, in unit."},
                "pixel_height": {"type": "number", "description": "One pixel's height, in unit."},
                "z_spacing": {
                    "type": ["number", "null"],
                    "description": "The step between z-slices, in unit (stacks only).",
                },
            },
            "required": ["unit", "pixel_width", "pixel_height", "z_spacing"],
        },
        "Segmentation": {
            "type": "object",
            "properties": {
                "model": {"type": "string", "enum": list(SEGMENTATION_MODELS)},
                "width": {"type": "integer", "description": "The upload's width in pixels."},
                "height": {"type": "integer", "description": "The upload's height in pixels."},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "count": {"type": "integer"},
                "objects": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/SegmentedObject"},
                },
                "probability": {
                    "type": "string",
                    "description": "data:image/png;base64 URL of an 8-bit grayscale PNG, "
                    "probability x 255, at the upload's size.",
                },
                "calibration": {"$ref": "#/components/schemas/Calibration"},
                "scale": {
                    "type": "number",
                    "description": "Working-grid pixels per upload pixel the model ran at.",
                },
                "scale_source": {
                    "type": "string",
                    "description": "Where the scale came from: diameter, pixel size, embryo or "
                    "frame, and 'and object size' when the objects found set it.",
                },
                "diameter": {
                    "type": ["number", "null"],
                    "description": "Median diameter of the objects found, upload pixels.",
                },
                "embryo": embryo,
                "warnings": warnings,
                "notes": notes,
                "timings_ms": timings,
                "figures": {"type": "object", "description": "Only with include=figures."},
                "input": {"type": "string", "description": "Only with include=figures."},
            },
            "required": [
                "model",
                "width",
                "height",
                "threshold",
                "count",
                "objects",
                "probability",
                "notes",
                "timings_ms",
            ],
        },
        "Lineage": {
            "type": "object",
            "properties": {
                "model": {"type": "string", "enum": list(LINEAGE_MODELS)},
                "populations": {
                    "type": "object",
                    "description": "Cells per founder lineage, in the order "
                    f"{', '.join(LINEAGE_ORDER)}.",
                    "properties": {key: {"type": "integer"} for key in LINEAGE_ORDER},
                    "required": list(LINEAGE_ORDER),
                },
                "total": {"type": "integer"},
                "outside_training_range": {
                    "type": "boolean",
                    "description": f"True when {training_range_sentence('exceeds')}, past the "
                    "training data.",
                },
                "at_end_of_training_range": {
                    "type": "boolean",
                    "description": f"True when {training_range_sentence('is within 4% of')} or at "
                    "it: the model's counts stop rising there, so an older embryo reads the same.",
                },
                "embryo": embryo,
                "warnings": warnings,
                "notes": notes,
                "timings_ms": timings,
                "figures": {"type": "object", "description": "Only with include=figures."},
                "input": {"type": "string", "description": "Only with include=figures."},
            },
            "required": [
                "model",
                "populations",
                "total",
                "outside_training_range",
                "at_end_of_training_range",
                "notes",
                "timings_ms",
            ],
        },
        "Frames": _frames_schema(),
        "ModelStatus": {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "loaded": {"type": "boolean"},
                "problem": {"type": ["string", "null"]},
                "file": {
                    "type": ["string", "null"],
                    "description": "The model file served on this server: the int8 file where "
                    "its card allows it on this CPU, else the float32 file; null when the card "
                    "cannot be read.",
                },
            },
            "required": ["ready", "loaded", "problem", "file"],
        },
    }


def _predict_operation() -> dict:
    return {
        "summary": "Run a model on one image",
        "description": "Every option is a multipart form field sent with the file. The query "
        "string is not read: an option sent there (?threshold=0.9) is answered 400, naming it. "
        "A form field this endpoint does not read (a misspelt thresold=0.9) is answered 400, "
        "naming it and the nearest field it reads, never ignored while the default runs.",
        "operationId": "predict",
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": list(MODEL_NAMES)},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": _upload_fields(),
                        "required": ["file"],
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": f"Segmentation ({', '.join(SEGMENTATION_MODELS)}) or lineage "
                "counts; a stack or movie as Frames; a file for any format but json (made in "
                "memory from this request, nothing is stored).",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Segmentation"},
                                {"$ref": "#/components/schemas/Lineage"},
                                {"$ref": "#/components/schemas/Frames"},
                            ]
                        }
                    },
                    **_download_contents(),
                },
            },
            **{status: _error_response(text) for status, text in ERROR_RESPONSES.items()},
        },
    }


def _upload_fields() -> dict:
    """The file and the options predict and jobs read from the form."""
    return {
        "file": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": f"PNG, JPEG, TIFF ({TIFF_BIT_DEPTHS}; a "
            "multi-page TIFF or ImageJ hyperstack is a stack), BMP, GIF "
            "(animated: a movie), MP4, MOV or AVI movie.",
        },
        "threshold": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Segmentation only; default from the card.",
        },
        "diameter": {
            "type": "number",
            "minimum": 2,
            "maximum": 2000,
            "description": "Segmentation only: the typical object (nucleus "
            "or cell) diameter in pixels of the upload. The model then runs "
            "where objects have the size it was trained at. Blank or absent: "
            "found from the embryo and the objects (answer: scale, diameter).",
        },
        "pixel_size_um": {
            "type": "number",
            "minimum": 0.001,
            "maximum": 100,
            "description": "Segmentation only: micrometres per pixel of the "
            "upload, used for the scale when no diameter is given (a TIFF's "
            "own pixel size is read without it).",
        },
        "include": {
            "type": "string",
            "enum": ["figures"],
            "description": "Add Plotly figures and the input as a PNG.",
        },
        **_frames_request_fields(),
    }


def openapi_document() -> dict:
    """The whole OpenAPI 3.1 document as a dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DevoLearn Web API",
            "version": "1.0.0",
            "description": "C. elegans embryo models (cell membrane and nucleus segmentation, "
            "lineage populations) run on the server's CPU.",
        },
        "paths": {
            "/api/v1/models": {
                "get": {
                    "summary": "List the models and their cards",
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "Every model's card.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "models": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/ModelCard"},
                                            }
                                        },
                                        "required": ["models"],
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/api/v1/predict/{name}": {"post": _predict_operation()},
            **job_paths(_upload_fields()),
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON."}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Which models are ready",
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "'ok' when every model is ready, else 'degraded'.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "status": {
                                                "type": "string",
                                                "enum": ["ok", "degraded"],
                                            },
                                            "models": {
                                                "type": "object",
                                                "additionalProperties": {
                                                    "$ref": "#/components/schemas/ModelStatus"
                                                },
                                            },
                                        },
                                        "required": ["status", "models"],
                                    }
                                }
                            },
                        }
                    },
                }
            },
        },
        "components": {"schemas": {**_schemas(), **job_schemas()}},
    }


def _frames_request_fields() -> dict:
    """Form fields for stacks, movies and downloads (devolearn_web.views.frames)."""
    return {
        "format": {
            "type": "string",
            "enum": list(FORMATS),
            "default": "json",
            "description": "json, or a file: csv (objects, or lineage per frame), tiff (16-bit "
            "labels; multi-page ImageJ for stacks; 3D labels with assemble=3d, track ids with "
            "track=true), probability-tiff (float32), png (mask at the threshold; one image "
            "only), zip (all of them, a mask PNG per frame). Lineage: csv. With track=true: ctc "
            "(ZIP in the Cell Tracking Challenge's result layout: res_track.txt and maskTTT.tif) "
            "and tracks-csv (time, track, parent, name, x, y, z, volume per nucleus and time "
            "point), founder-counts-csv (per time point t, 0-based: tree_A... and model_A..., "
            "as founder_counts; empty where unknown).",
        },
        "assemble": {
            "type": "string",
            "enum": ["2d", "3d"],
            "default": "2d",
            "description": "Nucleus model, z-stacks (ZYX, or each time point of TZYX): 3d links "
            "each nucleus through the slices (one label per nucleus in every slice) and adds "
            "count_3d and objects_3d. A single image, a stack without z or another model: 400.",
        },
        "track": {
            "type": "string",
            "enum": ["true", "false"],
            "default": "false",
            "description": "Nucleus model, time series (TYX or TZYX): follow nuclei through "
            "time with divisions and short gaps (laptrack); adds tracks (CTC man_track meaning), "
            "nuclei_per_time and divisions; labels carry track ids. Without a time axis: 400.",
        },
        "z_step_um": {
            "type": "number",
            "minimum": 0.01,
            "maximum": 100,
            "description": "With assemble=3d or track=true: the z step in micrometres (default: "
            "the TIFF's ImageJ spacing, else 1). It bounds how many slices a link may skip.",
        },
        "axes": {
            "type": "string",
            "pattern": "^[TZCtzc]{1,3}$",
            "description": "Stacks: override the guessed axes, outermost first (T time, Z slice, "
            "C channel), e.g. T or TZC.",
        },
        "channel": {
            "type": "integer",
            "minimum": 0,
            "description": "Colour images, stacks with channels and colour movies (0 red, 1 green, "
            "2 blue): the channel to analyse (default: the one carrying the most signal, else "
            "brightness); a note names the channel used; one the file lacks (channel=1 on a "
            "grayscale image) is a 400.",
        },
        "frame": {
            "type": "integer",
            "minimum": 0,
            "description": "Analyse only this frame of a stack or movie (a single-image answer "
            "with its index and position).",
        },
        "result": {
            "type": "string",
            "description": "Instead of `file`: the `result_id` of an earlier answer. The server "
            "holds that answer's network output (probability maps on the working grid, never the "
            "upload) in one worker's memory for `result_held_s` seconds after its last use, so a "
            "new threshold, min_area, exclude or download needs no upload and no network run. "
            "410 when it is no longer held there (expired, or another worker): send the file.",
        },
        "min_area": {
            "type": "number",
            "minimum": 0,
            "description": "Segmentation: drop objects smaller than this many upload pixels "
            "(the rest renumbered 1..n); applies to the count, objects and every download.",
        },
        "exclude": {
            "type": "string",
            "description": "Segmentation: drop the object under each point 'x,y' (upload "
            "pixels; 'x,y,frame' in a stack), points separated by ';'.",
        },
        "projection": {
            "type": "string",
            "enum": ["max", "none"],
            "description": "Lineage model, z-stacks: max (the default) projects each time "
            "point's z-slices (brightest value through z) into one whole-embryo image, as its "
            "training images were; none analyses every slice alone. A note says which.",
        },
        "progress": {
            "type": "string",
            "enum": ["ndjson"],
            "description": "Stacks and movies: answer application/x-ndjson, one "
            '{"progress": {"done", "total"}} line per batch, then {"result": Frames} (or '
            '{"error", "status"}).',
        },
    }


def _download_contents() -> dict:
    binary = {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    return {
        "text/csv": {"schema": {"type": "string"}},
        "image/tiff": binary,
        "image/png": binary,
        "application/zip": binary,
        "application/x-ndjson": {"schema": {"type": "string"}},
    }


def _frames_schema() -> dict:
    """A stack or movie: the single-image answer for every frame, in order, plus summaries."""
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string", "enum": list(MODEL_NAMES)},
            "kind": {"type": "string", "enum": ["stack", "movie"]},
            "axes": {
                "type": "object",
                "description": "guessed and used axes (e.g. TZCYX), where the guess came from, "
                "the file's shape, the frame count, the slider axes and the channel used.",
                "properties": {
                    "guessed": {"type": "string"},
                    "used": {"type": "string"},
                    "source": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "frames": {"type": "integer"},
                    "slider": {"type": "array", "items": {"type": "string"}},
                    "channel": {"type": ["integer", "null"]},
                    "channels": {"type": "integer"},
                },
                "required": ["guessed", "used", "source", "frames"],
            },
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "frame_count": {"type": "integer"},
            "frames": {
                "type": "array",
                "description": "Segmentation or Lineage per frame, with index and position "
                "({'z': 3}, {'time': 2, 'seconds': 0.4}); probability PNGs and figures only for "
                "stacks of up to 64 frames.",
                "items": {"type": "object"},
            },
            "count_per_frame": {"type": "array", "items": {"type": "integer"}},
            "threshold": {"type": "number"},
            "populations_per_frame": {
                "type": "object",
                "properties": {
                    key: {"type": "array", "items": {"type": "integer"}} for key in LINEAGE_ORDER
                },
            },
            "total_per_frame": {"type": "array", "items": {"type": "integer"}},
            "outside_training_range_frames": {"type": "array", "items": {"type": "integer"}},
            "at_end_of_training_range_frames": {"type": "array", "items": {"type": "integer"}},
            "calibration": {"$ref": "#/components/schemas/Calibration"},
            "z_step_um": {"type": "number", "description": "assemble=3d: the z step used."},
            "count_3d": {
                "type": "integer",
                "description": "assemble=3d on one z-stack: nuclei in 3D.",
            },
            "count_3d_per_time": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "assemble=3d on z-stacks over time: nuclei in 3D per time point.",
            },
            "objects_3d": {
                "type": "array",
                "description": "assemble=3d: one entry per 3D nucleus (and time point): label "
                "(the track id with track=true), centre x, y (pixels) and z (slices), volume "
                "(voxels); x_um, y_um, z_um, volume_um3 when the TIFF is calibrated.",
                "items": {
                    "type": "object",
                    "properties": {
                        key: {"type": "number"}
                        for key in ("time", "label", "x", "y", "z", "volume", "x_um", "y_um")
                        + ("z_um", "volume_um3")
                    },
                    "required": ["label", "x", "y", "z", "volume"],
                },
            },
            "tracks": {
                "type": "array",
                "description": "track=true: the Cell Tracking Challenge's man_track.txt lines: "
                "track id, first and last time point (0-based), parent track (0: none), and the "
                "founder cell's name (AB, P1, EMS, ...) when the recording starts at 4 nuclei or "
                "fewer and "
                "the divisions tell it (null otherwise; a note says why).",
                "items": {
                    "type": "object",
                    "properties": {
                        **{key: {"type": "integer"} for key in ("track", "begin", "end", "parent")},
                        "name": {"type": ["string", "null"]},
                    },
                    "required": ["track", "begin", "end", "parent"],
                },
            },
            "nuclei_per_time": {"type": "array", "items": {"type": "integer"}},
            "divisions": {"type": "integer"},
            "founder_counts": {
                "type": "array",
                "description": "track=true: per time point t (0-based), cells per founder "
                "lineage (the lineage model's keys) from the named tree (`tree`: the nuclei "
                "descending from each named founder; null for a lineage when a nucleus could be "
                "of it but its founder is not named, for instance a recording past 4 cells; a "
                "note says why) and the shipped lineage model's estimate on that time point's "
                "image, the brightest value through z for z-stacks (`model`; null when it finds "
                "no embryo). docs/tracking.md.",
                "items": {
                    "type": "object",
                    "properties": {
                        "t": {"type": "integer"},
                        "tree": {
                            "type": "object",
                            "properties": {
                                key: {"type": ["integer", "null"]} for key in LINEAGE_ORDER
                            },
                        },
                        "model": {
                            "type": ["object", "null"],
                            "properties": {key: {"type": "integer"} for key in LINEAGE_ORDER},
                        },
                    },
                    "required": ["t", "tree", "model"],
                },
            },
            "figures_3d": {
                "type": "object",
                "description": "include=figures with assemble or track: Plotly figures "
                "nuclei_3d, lineage_tree, founder_counts, nuclei_over_time.",
            },
            "notes": {"type": "array", "items": {"type": "string"}},
            "timings_ms": {"type": "object"},
        },
        "required": ["model", "kind", "axes", "frame_count", "frames", "notes", "timings_ms"],
    }
