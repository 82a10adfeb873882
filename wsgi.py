"""The WSGI entry point for gunicorn: `gunicorn --config gunicorn.conf.py wsgi:app`."""

from __future__ import annotations

from devolearn_web import create_app

app = create_app()
