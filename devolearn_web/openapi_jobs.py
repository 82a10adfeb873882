"""The jobs endpoints' part of the OpenAPI document (devolearn_web.openapi adds it)."""

from __future__ import annotations

from devolearn_web.catalogue import MODEL_NAMES

JOB_STATES = ["queued", "running", "finished", "failed", "cancelled"]
DOWNLOAD_FORMATS = [
    "csv",
    "tiff",
    "probability-tiff",
    "png",
    "zip",
    "ctc",
    "tracks-csv",
    "founder-counts-csv",
]


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _job_id() -> dict:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


NOT_FOUND = _error("No job with this id (never existed, or expired and deleted).")
UNREACHABLE = _error("The job queue (Redis) is unreachable; predict still works.")
NOT_FINISHED = _error("The job has not finished (queued, running), or failed or was cancelled.")


def job_schemas() -> dict:
    """Components: JobAccepted and Job."""
    return {
        "JobAccepted": {
            "type": "object",
            "required": ["id", "state", "status_url"],
            "properties": {
                "id": {"type": "string"},
                "state": {"const": "queued"},
                "status_url": {"type": "string"},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "model", "state", "progress", "error", "result_url", "expires_at"],
            "properties": {
                "id": {"type": "string"},
                "model": {"type": "string", "enum": list(MODEL_NAMES)},
                "state": {"type": "string", "enum": JOB_STATES},
                "progress": {
                    "type": "object",
                    "required": ["done", "total"],
                    "properties": {
                        "done": {"type": "integer", "description": "Frames analysed."},
                        "total": {
                            "type": ["integer", "null"],
                            "description": "Frames in all; null until the upload is decoded.",
                        },
                    },
                },
                "error": {"type": ["string", "null"], "description": "Why it failed."},
                "result_url": {"type": "string"},
                "expires_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "When the job and its results are deleted (once it ended).",
                },
            },
        },
    }


def job_paths(upload_fields: dict) -> dict:
    """Paths: submit, status, result, download, cancel."""
    return {
        "/api/v1/jobs": {
            "post": {
                "summary": "Analyse a large upload (a whole recording) as a job",
                "description": "The same fields and refusals as predict, plus `model`. The "
                "upload (up to JOB_MAX_UPLOAD_BYTES, 2 GB by default) is kept only while the "
                "job runs; results are deleted JOB_RESULT_TTL_SECONDS after it ends. Besides "
                "predict's formats, `file` may be a ZIP of per-time-point TIFFs named tTTT.tif "
                "(the Cell Tracking Challenge's layout), each one z-stack. With `assemble=3d` "
                "and `track=true` (nucleus model) a whole recording is linked in 3D and tracked "
                "through time by the functions predict uses, once every chunk is segmented: the "
                "result adds count_3d, objects_3d, tracks and nuclei_per_time as predict's does; "
                "a combination predict refuses (a model other than nucleus, tracks of one "
                "z-stack, 3D of single planes, `frame`) is a 400 here before anything is queued.",
                "operationId": "submitJob",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "model": {"type": "string", "enum": list(MODEL_NAMES)},
                                    **upload_fields,
                                },
                                "required": ["model", "file"],
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "Queued; the Location header is the status URL.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/JobAccepted"}
                            }
                        },
                    },
                    "400": _error(
                        "A field is missing, unknown or out of range, or the file cannot be read."
                    ),
                    "413": _error("The file or its stack is larger than jobs take."),
                    "415": _error("The file is not an image, stack or movie this site reads."),
                    "503": UNREACHABLE,
                },
            }
        },
        "/api/v1/jobs/{id}": {
            "get": {
                "summary": "A job's state and progress",
                "operationId": "getJob",
                "parameters": [_job_id()],
                "responses": {
                    "200": {
                        "description": "The job.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Job"}}
                        },
                    },
                    "404": NOT_FOUND,
                    "503": UNREACHABLE,
                },
            },
            "delete": {
                "summary": "Cancel a job and delete its input and results",
                "operationId": "cancelJob",
                "parameters": [_job_id()],
                "responses": {
                    "204": {"description": "Cancelled."},
                    "404": NOT_FOUND,
                    "503": UNREACHABLE,
                },
            },
        },
        "/api/v1/jobs/{id}/result": {
            "get": {
                "summary": "A finished job's answer (as predict answers a stack)",
                "operationId": "getJobResult",
                "parameters": [_job_id()],
                "responses": {
                    "200": {
                        "description": "Frames.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Frames"}}
                        },
                    },
                    "404": NOT_FOUND,
                    "409": NOT_FINISHED,
                    "503": UNREACHABLE,
                },
            }
        },
        "/api/v1/jobs/{id}/download/{format}": {
            "get": {
                "summary": "A finished job's results as a file",
                "operationId": "downloadJobResult",
                "parameters": [
                    _job_id(),
                    {
                        "name": "format",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": DOWNLOAD_FORMATS},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The file (lineage: csv only). tiff holds 3D labels "
                        "(assemble=3d) or track ids (track=true); ctc (the Cell Tracking "
                        "Challenge's result layout, ZIP) and tracks-csv need a job sent with "
                        "track=true.",
                        "content": {
                            "application/octet-stream": {
                                "schema": {
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                }
                            }
                        },
                    },
                    "400": _error(
                        "A format this model does not give, or a track download of a job "
                        "sent without track=true."
                    ),
                    "404": NOT_FOUND,
                    "409": NOT_FINISHED,
                    "413": _error("Too many pixels for an image download here: ask for csv."),
                    "503": UNREACHABLE,
                },
            }
        },
    }
