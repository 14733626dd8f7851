"""The project's folder: where template.yaml, samconfig.toml and the local runtime's state (``.reviewtune``) are.

reviewtune's commands find it from the working folder up, as git finds a repository, so that they work from any
folder inside the project (``reviewtune runs list`` from ``tests/``, ``reviewtune drop`` from a data folder kept in
it); outside any project the working folder is taken, as before, and a command that needs the template says so.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE = "template.yaml"
MARKERS = (TEMPLATE, "training_code/train.py")  # reviewtune's own: any SAM project has a template.yaml
SAMCONFIG = "samconfig.toml"
STATE_FOLDER = ".reviewtune"


def project_folder(start: Path | None = None) -> Path:
    """The nearest folder, from ``start`` (default: the working folder) up, that holds reviewtune's template.yaml
    and training code; ``start`` itself when none does."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if all((folder / marker).is_file() for marker in MARKERS):
            return folder
    return start
