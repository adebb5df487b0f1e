"""`CocoInstanceDataset` as it was before the AnnotationStore, for side-by-side measurements and checks.

The old class (a pycocotools index plus a dict of per-image Python dicts) is not kept in msr: it is
read from git history, `git show OLD_COMMIT:msr/data/coco.py`, and imported as a module of its own.
It uses today's `msr.data.coco_json` and `msr.data.segmentation`, as it did then.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

#: The last commit whose msr/data/coco.py kept the pycocotools index and per-image Python dicts.
OLD_COMMIT = "3020009"
REPO = Path(__file__).resolve().parents[2]


def old_coco_module() -> ModuleType | None:
    """Return the old `msr.data.coco` module as `msr_old_coco`, or None when git or the commit is missing."""
    if "msr_old_coco" in sys.modules:
        return sys.modules["msr_old_coco"]
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:msr/data/coco.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="msr_old_coco_"))
    path = folder / "msr_old_coco.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("msr_old_coco", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["msr_old_coco"] = module  # workers started by fork find it; pickling finds it by name
    spec.loader.exec_module(module)
    return module
