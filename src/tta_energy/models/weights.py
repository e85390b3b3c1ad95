"""The one rule for a ``--weights`` value, shared by the commands and the experiments behind them: ``random``
(the architecture-faithful replica), a local weights path or a hub id. No torch: a refused command pays for no
heavy import."""

from __future__ import annotations

import re
from pathlib import Path

from tta_energy.errors import ModelError


def looks_like_hub_id(weights: str) -> bool:
    """``owner/name`` with one slash, starting with a letter or digit (so never ``./x``, ``../x``, ``/x`` or
    ``~/x``): a ``--weights`` value that is not a local folder may then be a hub repo in the local cache."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", weights))


#: what a weights value may be, said in every refusal
ALLOWED = "use 'random', a local weights folder or a hub id (owner/name)"


def check_weights(value: str) -> str:
    """``value`` when it is ``random``, an existing local folder or a hub id (read from the local cache when
    the model is built; the model's loader checks the folder's layout), else one line saying what is allowed.
    No model reads its weights from a single file."""
    if not value.strip():
        raise ModelError(f"weights is empty: {ALLOWED}")
    path = Path(value).expanduser()
    if value == "random" or (value.strip() and path.is_dir()):
        return value
    if value.strip() and path.exists():
        raise ModelError(f"weights path {value} is a file: {ALLOWED}")
    if looks_like_hub_id(value):
        return value
    raise ModelError(f"weights path {value} does not exist: {ALLOWED}")
