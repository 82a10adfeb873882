"""Run the app locally: `python app.py` serves http://127.0.0.1:$PORT (default 5000)."""

from __future__ import annotations

import os

from devolearn_web import create_app

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    host = os.environ.get("HOST", "127.0.0.1")
    create_app().run(host=host, port=port, debug=False, threaded=True)
