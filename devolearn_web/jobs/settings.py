"""What the job steps need, as plain values: from the app's config or the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devolearn_web.config import limit_default


@dataclass(frozen=True)
class JobSettings:
    """Limits and places for jobs (see config.py for each setting's reason)."""

    jobs_dir: Path
    models_dir: Path
    chunk_frames: int = limit_default("JOB_CHUNK_FRAMES")
    chunk_timeout_s: int = limit_default("JOB_CHUNK_TIMEOUT_SECONDS")
    prepare_timeout_s: int = limit_default("JOB_PREPARE_TIMEOUT_SECONDS")
    retries: int = limit_default("JOB_RETRIES")
    result_ttl_s: int = limit_default("JOB_RESULT_TTL_SECONDS")
    max_lifetime_s: int = limit_default("JOB_MAX_LIFETIME_SECONDS")
    max_pixels: int = limit_default("MAX_IMAGE_PIXELS")
    max_stack_voxels: int = limit_default("JOB_MAX_STACK_VOXELS")
    max_frames: int = limit_default("JOB_MAX_FRAMES")
    max_assembly_voxels: int = limit_default("JOB_MAX_ASSEMBLY_VOXELS")
    max_frames_with_images: int = limit_default("MAX_FRAMES_WITH_IMAGES")
    intra_op_threads: int = 1
    optimized_cache_dir: Path | None = None

    @classmethod
    def from_config(cls, config) -> JobSettings:
        """From a mapping of config keys (Flask's app.config or Config().as_dict())."""
        cache = config.get("ORT_OPTIMIZED_CACHE_DIR")
        return cls(
            jobs_dir=Path(config["JOBS_DIR"]),
            models_dir=Path(config["MODELS_DIR"]),
            chunk_frames=max(1, int(config["JOB_CHUNK_FRAMES"])),
            chunk_timeout_s=int(config["JOB_CHUNK_TIMEOUT_SECONDS"]),
            prepare_timeout_s=int(config["JOB_PREPARE_TIMEOUT_SECONDS"]),
            retries=max(0, int(config["JOB_RETRIES"])),
            result_ttl_s=int(config["JOB_RESULT_TTL_SECONDS"]),
            max_lifetime_s=int(config["JOB_MAX_LIFETIME_SECONDS"]),
            max_pixels=int(config["MAX_IMAGE_PIXELS"]),
            max_stack_voxels=int(config["JOB_MAX_STACK_VOXELS"]),
            max_frames=int(config["JOB_MAX_FRAMES"]),
            max_assembly_voxels=int(config["JOB_MAX_ASSEMBLY_VOXELS"]),
            max_frames_with_images=int(config["MAX_FRAMES_WITH_IMAGES"]),
            intra_op_threads=int(config.get("ORT_INTRA_OP_THREADS", 1)),
            optimized_cache_dir=Path(cache) if cache else None,
        )

    @classmethod
    def from_environment(cls) -> JobSettings:
        """What a worker process uses: the same environment variables as the web app."""
        from devolearn_web.config import Config

        return cls.from_config(Config().as_dict())
