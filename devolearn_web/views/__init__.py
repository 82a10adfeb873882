"""The app's blueprints: `pages` (HTML for people) and `api` (JSON for programs)."""
