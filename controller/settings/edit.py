"""Changes the commissioning commands make to `site.toml`: checked first, written atomically.

The file is the electrician's: its comments and layout stay as they are. A new table is appended as
text, the whole result is loaded with every cross-check the daemon applies, and only then does it
replace the file (with the previous version kept beside it as `<name>.bak`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from controller.settings.checks import SiteCheck
from controller.settings.loader import load_settings
from controller.settings.model import SiteSettings


def with_table(text: str, array: str, entry: Mapping[str, Any], *, comment: str) -> str:
    """`text` with one more `[[array]]` table at its end, preceded by a comment line."""
    # Written as a plain `[[array]]` header over `key = value` lines (tomli-w would inline a short
    # array of tables), the way the rest of a hand-written site file looks.
    scalars = {k: v for k, v in entry.items() if not isinstance(v, Mapping)}
    table = f"[[{array}]]\n" + tomli_w.dumps(scalars)
    for key, value in entry.items():
        if isinstance(value, Mapping):  # a sub-table of this entry: [array.key]
            table += f"\n[{array}.{key}]\n" + tomli_w.dumps(dict(value))
    body = text.rstrip("\n")
    return (body + "\n\n" if body else "") + f"# {comment}\n" + table


def check_text(
    text: str, beside: Path, env: Mapping[str, str], *, failsafe_budget_check: SiteCheck | None
) -> SiteSettings:
    """Load `text` as the site file at `beside` would be loaded (relative paths resolve the same);
    raises ConfigError exactly as the daemon would refuse it."""
    fd, name = tempfile.mkstemp(prefix=f".{beside.name}.", suffix=".check", dir=beside.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return load_settings(Path(name), env, failsafe_budget_check=failsafe_budget_check)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def replace_file(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a crash leaves the old or the new file, never half of one),
    keeping the old file as `<name>.bak` and its permissions. Returns the backup's path."""
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, name)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return backup
