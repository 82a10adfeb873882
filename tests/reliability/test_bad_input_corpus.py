"""Each bad input gets a clear 4xx JSON sentence or a correct result, never a 5xx, and the app
keeps serving afterwards (test_load.py sends the same corpus through gunicorn)."""

from __future__ import annotations

import pytest
from bad_inputs import CORPUS, CORPUS_MAX_UPLOAD_BYTES, PNG, BadInput

from devolearn_web import create_app

MINIMUM_CASES = 30


@pytest.fixture(scope="module")
def corpus_client(tiny_models_dir):
    """One app for the whole corpus, as one worker would see it (byte limit 3 MB)."""
    app = create_app(
        {
            "TESTING": True,
            "MODELS_DIR": tiny_models_dir,
            "SECRET_KEY": "t",
            "MAX_UPLOAD_BYTES": CORPUS_MAX_UPLOAD_BYTES,
        }
    )
    return app.test_client()


def allowed_statuses(case: BadInput) -> tuple[int, ...]:
    return case.status if isinstance(case.status, tuple) else (case.status,)


def check_result(answer: dict, case: BadInput) -> str:
    """Assert a 200 answer is a real result (one image, or every frame of a stack); its notes."""
    notes = " ".join(answer["notes"])
    if case.size is not None:
        assert (answer["width"], answer["height"]) == case.size
    if "frames" in answer:
        assert len(answer["frames"]) == case.frames
        for frame in answer["frames"]:
            assert "count" in frame or "populations" in frame
        return notes
    if case.frames is not None:  # the first frame only: the note must say how many there are
        assert str(case.frames) in notes and "only the first" in notes
    if "count" in answer:
        assert answer["count"] == len(answer["objects"])
    return notes


def check_sentence(answer: dict, status: int) -> str:
    """Assert a 4xx answer is the JSON error shape with a plain sentence; the sentence."""
    assert answer == {"status": status, "error": answer["error"]}
    text = answer["error"]
    # A sentence a biologist can read: it starts like one (or with the quoted file name),
    # ends with a full stop, and carries no traceback or exception name.
    assert text[:1].isupper() or text.startswith("'")
    assert text.rstrip().endswith((".", ")"))
    assert "Traceback" not in text and "Error:" not in text and "Exception" not in text
    assert len(text) < 600
    return text


def send(client, case: BadInput):
    method, path, body, content_type = case.http()
    headers = {"Content-Type": content_type} if content_type else {}
    return client.open(path, method=method, data=body, headers=headers)


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CORPUS) >= MINIMUM_CASES
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_bad_input_gets_a_sentence_or_a_result(corpus_client, case):
    response = send(corpus_client, case)
    assert response.status_code in allowed_statuses(case), response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    answer = response.get_json()
    if response.status_code == 200:
        text = check_result(answer, case)
    else:
        text = check_sentence(answer, response.status_code)
    for word in case.words:
        assert word.lower() in text.lower()


def test_the_app_still_answers_after_the_corpus(corpus_client):
    from reliability_support import multipart_body

    body, content_type = multipart_body({}, PNG)
    response = corpus_client.post(
        "/api/v1/predict/nucleus", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 200
    assert response.get_json()["count"] == 5


def test_lineage_and_membrane_also_survive_odd_sizes(corpus_client):
    odd = [case for case in CORPUS if case.id in ("1x1", "65535x1", "1x65535", "1x1-tiff")]
    for case in odd:
        response = send(corpus_client, BadInput(case.id, 200, file=case.file, model="membrane"))
        assert response.status_code == 200, ("membrane", case.id, response.get_json())
        # A line or a dot holds no embryo to count: a sentence saying so, not a made-up number.
        response = send(corpus_client, BadInput(case.id, 422, file=case.file, model="lineage"))
        assert response.status_code == 422, ("lineage", case.id, response.get_json())
        assert "one embryo" in response.get_json()["error"]
