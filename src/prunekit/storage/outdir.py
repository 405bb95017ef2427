"""Checks on an output directory before any work: can it be written, and does it already
hold another run (a different config, other data, or files prunekit did not write)?"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import PrunekitError
from .atomic import recover
from .saving import RUN_FILES


def check_writable(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be created or written:
    a file on the way (``--out FILE/x``), a read-only or virtual file system."""
    out = Path(out)
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    for p in [*reversed(out.parents), out]:
        if p.exists() and not p.is_dir():
            raise PrunekitError(f"cannot use output directory {out}: {p} is not a directory")
    if not anc.exists() or not anc.is_dir():
        raise PrunekitError(f"cannot use output directory {out}: {anc} is not a directory")
    try:
        probe = tempfile.mkdtemp(dir=anc, prefix=".prunekit-probe-")
        os.rmdir(probe)
    except OSError as e:
        raise PrunekitError(
            f"cannot write output directory {out}: {e.strerror or e} ({anc})"
        ) from None


def check_out_dir(out: Path, config_hash: str | None, *, overwrite: bool) -> None:
    """Refuse an output directory that holds a different run (unless ``overwrite``),
    holds files prunekit did not write, or cannot be written."""
    out = Path(out)
    check_writable(out)
    recover(out)
    if not out.exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if foreign:
        # The commit replaces the folder as a whole: never take files it did not write.
        raise PrunekitError(
            f"{out} holds files that are not part of a prunekit run "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "choose a new or empty --out"
        )
    if overwrite:
        return
    result = out / "result.json"
    if result.exists():
        try:
            old = json.loads(result.read_text()).get("config_hash")
        except (OSError, ValueError, AttributeError):
            old = None
        if old is None or old != config_hash:
            raise PrunekitError(
                f"{out} already holds a different run (config {old}); "
                "choose another --out or pass --overwrite"
            )
    elif any((out / f).exists() for f in RUN_FILES):
        raise PrunekitError(f"{out} holds a partial run; pass --overwrite to replace it")


def check_same_data(out: Path, fingerprint: str, *, overwrite: bool) -> None:
    """The same flags on other data are another run: refuse to replace a finished run
    of the same config whose data fingerprint differs (unless ``overwrite``)."""
    result = Path(out) / "result.json"
    if overwrite or not result.is_file():
        return
    try:
        old = json.loads(result.read_text()).get("data_fingerprint")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != fingerprint:
        raise PrunekitError(
            f"{out} holds a run of the same config on other data (data fingerprint "
            f"{old}, this data is {fingerprint}); choose another --out or pass --overwrite"
        )
