"""Settings come from the environment, with safe defaults, when the app is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from devolearn_web.config import (
    DEFAULT_MODELS_DIR,
    LIMITS,
    Config,
    limits_markdown,
    request_size_limit,
)

README = Path(__file__).parent.parent / "README.md"
LIMITS_START, LIMITS_END = "<!-- limits: start -->\n", "<!-- limits: end -->"

ENVIRONMENT = (
    "SECRET_KEY",
    "DEVOLEARN_MODELS_DIR",
    "ORT_INTRA_OP_THREADS",
    "ORT_INTER_OP_THREADS",
    "ORT_OPTIMIZED_CACHE_DIR",
    "ORT_ALLOW_SPINNING",
    "MAX_UPLOAD_BYTES",
    "MAX_IMAGE_PIXELS",
    "PRELOAD_MODELS",
    "LOG_LEVEL",
    "JOB_TIME_BUDGET_SECONDS",
    "RATE_LIMIT_ENABLED",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_BURST",
    "TRUSTED_PROXY_COUNT",
    "MEMORY_BUDGET_MB",
    "MEMORY_WAIT_SECONDS",
    "REDIS_URL",
    "JOB_MAX_UPLOAD_BYTES",
    "JOBS_DIR",
    "JOB_CHUNK_FRAMES",
    "JOB_CHUNK_TIMEOUT_SECONDS",
    "JOB_PREPARE_TIMEOUT_SECONDS",
    "JOB_RETRIES",
    "JOB_RESULT_TTL_SECONDS",
    "JOB_MAX_LIFETIME_SECONDS",
    "JOB_THREADS",
    "JOB_MAX_STACK_VOXELS",
    "JOB_MAX_FRAMES",
    "JOB_MAX_ASSEMBLY_VOXELS",
    "PAGE_JOB_BYTES",
    "RESULT_CACHE_MB",
    "RESULT_CACHE_SECONDS",
    "MAX_STACK_VOXELS",
    "MAX_STACK_FRAMES",
    "MAX_WORKING_PIXELS",
    "MAX_DOWNLOAD_VOXELS",
    "STACK_BATCH_SIZE",
    "MAX_FRAMES_WITH_IMAGES",
)


@pytest.fixture
def clean_environment(monkeypatch):
    for name in (*ENVIRONMENT, "DYNO"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean_environment):
    config = Config()
    assert config.MODELS_DIR == DEFAULT_MODELS_DIR == Path(__file__).parent.parent / "models"
    assert config.MAX_UPLOAD_BYTES == 40_000_000
    assert config.MAX_IMAGE_PIXELS == 40_000_000
    assert (config.ORT_INTRA_OP_THREADS, config.ORT_INTER_OP_THREADS) == (1, 1)
    assert config.ORT_OPTIMIZED_CACHE_DIR == ""  # the files themselves, unless gunicorn sets one
    assert config.ORT_ALLOW_SPINNING is False
    assert config.PRELOAD_MODELS is False
    assert config.LOG_LEVEL == "INFO"
    assert len(config.SECRET_KEY) >= 32
    assert config.JOB_TIME_BUDGET_SECONDS == 20.0
    assert config.RATE_LIMIT_ENABLED is True
    assert (config.RATE_LIMIT_PER_MINUTE, config.RATE_LIMIT_BURST) == (60.0, 20)
    assert config.TRUSTED_PROXY_COUNT == 0
    assert (config.MEMORY_BUDGET_MB, config.MEMORY_WAIT_SECONDS) == (240.0, 10.0)
    assert config.REDIS_URL == ""  # jobs in-process
    assert config.JOB_RESULT_TTL_SECONDS == 3600  # results kept one hour
    assert config.JOB_MAX_UPLOAD_BYTES == 2_000_000_000
    assert not Path(config.JOBS_DIR).is_relative_to(Path(__file__).parent.parent / "static")


def test_every_setting_is_read_from_the_environment(clean_environment, tmp_path):
    clean_environment.setenv("SECRET_KEY", "s3cret")
    clean_environment.setenv("DEVOLEARN_MODELS_DIR", str(tmp_path))
    clean_environment.setenv("ORT_INTRA_OP_THREADS", "2")
    clean_environment.setenv("ORT_INTER_OP_THREADS", "3")
    clean_environment.setenv("ORT_OPTIMIZED_CACHE_DIR", str(tmp_path / "cache"))
    clean_environment.setenv("ORT_ALLOW_SPINNING", "1")
    clean_environment.setenv("MAX_UPLOAD_BYTES", "1000")
    clean_environment.setenv("MAX_IMAGE_PIXELS", "2000")
    clean_environment.setenv("PRELOAD_MODELS", "1")
    clean_environment.setenv("LOG_LEVEL", "debug")
    clean_environment.setenv("JOB_TIME_BUDGET_SECONDS", "12.5")
    clean_environment.setenv("RATE_LIMIT_ENABLED", "0")
    clean_environment.setenv("RATE_LIMIT_PER_MINUTE", "120")
    clean_environment.setenv("RATE_LIMIT_BURST", "4")
    clean_environment.setenv("TRUSTED_PROXY_COUNT", "1")
    clean_environment.setenv("MEMORY_BUDGET_MB", "150")
    clean_environment.setenv("MEMORY_WAIT_SECONDS", "2.5")
    clean_environment.setenv("REDIS_URL", "redis://example:6379/0")
    clean_environment.setenv("JOB_MAX_UPLOAD_BYTES", "5000")
    clean_environment.setenv("JOBS_DIR", "/srv/jobs")
    clean_environment.setenv("JOB_CHUNK_FRAMES", "8")
    clean_environment.setenv("JOB_CHUNK_TIMEOUT_SECONDS", "20")
    clean_environment.setenv("JOB_PREPARE_TIMEOUT_SECONDS", "300")
    clean_environment.setenv("JOB_RETRIES", "3")
    clean_environment.setenv("JOB_RESULT_TTL_SECONDS", "7200")
    clean_environment.setenv("JOB_MAX_LIFETIME_SECONDS", "86400")
    clean_environment.setenv("JOB_THREADS", "2")
    clean_environment.setenv("JOB_MAX_STACK_VOXELS", "1000000")
    clean_environment.setenv("JOB_MAX_FRAMES", "50")
    clean_environment.setenv("JOB_MAX_ASSEMBLY_VOXELS", "40000")
    clean_environment.setenv("PAGE_JOB_BYTES", "5000000")
    clean_environment.setenv("RESULT_CACHE_MB", "12")
    clean_environment.setenv("RESULT_CACHE_SECONDS", "60")
    clean_environment.setenv("MAX_STACK_VOXELS", "7000")
    clean_environment.setenv("MAX_STACK_FRAMES", "7")
    clean_environment.setenv("MAX_WORKING_PIXELS", "8000")
    clean_environment.setenv("MAX_DOWNLOAD_VOXELS", "6000")
    clean_environment.setenv("STACK_BATCH_SIZE", "5")
    clean_environment.setenv("MAX_FRAMES_WITH_IMAGES", "9")
    assert Config().as_dict() == {
        "SECRET_KEY": "s3cret",
        "MODELS_DIR": tmp_path,
        "ORT_INTRA_OP_THREADS": 2,
        "ORT_INTER_OP_THREADS": 3,
        "ORT_OPTIMIZED_CACHE_DIR": str(tmp_path / "cache"),
        "ORT_ALLOW_SPINNING": True,
        "MAX_UPLOAD_BYTES": 1000,
        "MAX_IMAGE_PIXELS": 2000,
        "PRELOAD_MODELS": True,
        "LOG_LEVEL": "DEBUG",
        "JOB_TIME_BUDGET_SECONDS": 12.5,
        "RATE_LIMIT_ENABLED": False,
        "RATE_LIMIT_PER_MINUTE": 120.0,
        "RATE_LIMIT_BURST": 4,
        "TRUSTED_PROXY_COUNT": 1,
        "MEMORY_BUDGET_MB": 150.0,
        "MEMORY_WAIT_SECONDS": 2.5,
        "REDIS_URL": "redis://example:6379/0",
        "JOB_MAX_UPLOAD_BYTES": 5000,
        "JOBS_DIR": "/srv/jobs",
        "JOB_CHUNK_FRAMES": 8,
        "JOB_CHUNK_TIMEOUT_SECONDS": 20,
        "JOB_PREPARE_TIMEOUT_SECONDS": 300,
        "JOB_RETRIES": 3,
        "JOB_RESULT_TTL_SECONDS": 7200,
        "JOB_MAX_LIFETIME_SECONDS": 86400,
        "JOB_THREADS": 2,
        "JOB_MAX_STACK_VOXELS": 1000000,
        "JOB_MAX_FRAMES": 50,
        "JOB_MAX_ASSEMBLY_VOXELS": 40000,
        "PAGE_JOB_BYTES": 5_000_000,
        "RESULT_CACHE_MB": 12.0,
        "RESULT_CACHE_SECONDS": 60.0,
        "MAX_STACK_VOXELS": 7000,
        "MAX_STACK_FRAMES": 7,
        "MAX_WORKING_PIXELS": 8000,
        "MAX_DOWNLOAD_VOXELS": 6000,
        "STACK_BATCH_SIZE": 5,
        "MAX_FRAMES_WITH_IMAGES": 9,
    }


def test_every_limit_is_a_setting_read_from_the_environment(clean_environment):
    defaults = Config().as_dict()
    for limit in LIMITS:
        assert limit.name in ENVIRONMENT, f"{limit.name} is missing from this file's list"
        assert defaults[limit.name] == limit.default
        assert type(defaults[limit.name]) is limit.type
        clean_environment.setenv(limit.name, "3")
        assert Config().as_dict()[limit.name] == limit.type(3)
        clean_environment.delenv(limit.name)


def test_the_readme_lists_every_limit_as_the_settings_do():
    """README.md's limits table is LIMITS (`python -m devolearn_web.config` prints it)."""
    text = README.read_text(encoding="utf-8")
    assert text.count(LIMITS_START) == 1 and text.count(LIMITS_END) == 1
    listed = text.split(LIMITS_START)[1].split(LIMITS_END)[0]
    assert listed == limits_markdown(), (
        "README.md's limits table differs from LIMITS in devolearn_web/config.py; "
        "replace it with the output of `python -m devolearn_web.config`"
    )


def test_the_app_config_holds_every_limit(app):
    """The app reads each limit from its config, which has every one."""
    for limit in LIMITS:
        assert limit.name in app.config


def test_a_malformed_number_names_the_variable(clean_environment):
    clean_environment.setenv("MAX_UPLOAD_BYTES", "25MB")
    with pytest.raises(ValueError, match="MAX_UPLOAD_BYTES"):
        Config()


def test_the_app_reads_the_environment_when_created(clean_environment, tiny_models_dir):
    from devolearn_web import create_app

    clean_environment.setenv("DEVOLEARN_MODELS_DIR", str(tiny_models_dir))
    clean_environment.setenv("MAX_UPLOAD_BYTES", "5000")
    app = create_app()
    assert app.config["MODELS_DIR"] == tiny_models_dir
    assert app.config["MAX_CONTENT_LENGTH"] == request_size_limit(5000) > 5000
    assert app.extensions["devolearn_registry"].models_dir == tiny_models_dir


def test_importing_the_package_loads_no_model_runtime():
    import subprocess
    import sys

    code = "import sys, devolearn_web.segmentation; print('onnxruntime' in sys.modules)"
    root = Path(__file__).parent.parent
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"


def test_heroku_dynos_trust_the_router_for_client_addresses(clean_environment):
    clean_environment.setenv("DYNO", "web.1")
    assert Config().TRUSTED_PROXY_COUNT == 1
    clean_environment.setenv("TRUSTED_PROXY_COUNT", "0")
    assert Config().TRUSTED_PROXY_COUNT == 0
