"""Schemathesis drives every operation in /api/v1/openapi.json: no server error, answers as written.

The document is loaded from the app itself; the requests go to an app with the tiny test models
(schemathesis' lazy pytest fixture loader does not work with this pytest, so the schema is
loaded at import from an app whose models folder is empty: the document does not need models).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in requirements-dev.txt")
from hypothesis import HealthCheck, settings  # noqa: E402

from devolearn_web import create_app  # noqa: E402
from devolearn_web.openapi import openapi_document  # noqa: E402

# A schema cannot say "bytes that decode as an image": schema-valid random bytes are rightly
# refused as undecodable (400), unsupported (415) or too large (413), never with a 5xx.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        # Positive and negative (schema-violating) requests: both must never cost a 5xx.
        "generation": {"mode": "all"},
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", 400, 413, 415]},
        },
        # A job id the schema allows names no job until one is made (404), or one not yet
        # finished (409): valid requests, rightly refused.
        "operations": [
            {
                "include-path-regex": "^/api/v1/jobs/",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 400, 404, 409, 413, 415]
                    },
                },
            }
        ],
    }
)
DOCUMENT_APP = create_app({"TESTING": True, "MODELS_DIR": "/nonexistent-models", "SECRET_KEY": "t"})
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", DOCUMENT_APP, config=CONFIG)


@pytest.fixture(scope="module")
def app_with_models(tiny_models_dir):
    """The app that answers: the three tiny models, no rate limit."""
    return create_app({"TESTING": True, "MODELS_DIR": tiny_models_dir, "SECRET_KEY": "t"})


def test_the_served_document_is_the_one_tested():
    served = DOCUMENT_APP.test_client().get("/api/v1/openapi.json").get_json()
    assert served == openapi_document()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_openapi_document(case, app_with_models):
    case.call_and_validate(app=app_with_models)
