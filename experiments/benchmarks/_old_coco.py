"""`CocoInstanceDataset` as it was before the AnnotationStore, for side-by-side measurements and checks.

The old class (a pycocotools index plus a dict of per-image Python dicts) is not kept in msr: its module
is kept, as commit OLD_COMMIT left it, in old_coco_<OLD_COMMIT>.py.txt beside this file (a copy, so that
a shallow clone without that history has it too), and imported as a module of its own. It uses today's
`msr.data.coco_json` and `msr.data.segmentation`, as it did then.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

#: The last commit whose msr/data/coco.py kept the pycocotools index and per-image Python dicts.
OLD_COMMIT = "3020009"
#: That file's text (`git show 3020009:msr/data/coco.py`).
OLD_SOURCE = Path(__file__).resolve().parent / f"old_coco_{OLD_COMMIT}.py.txt"


def old_coco_module() -> ModuleType:
    """Return the old `msr.data.coco` module, imported as `msr_old_coco`."""
    if "msr_old_coco" in sys.modules:
        return sys.modules["msr_old_coco"]
    folder = Path(tempfile.mkdtemp(prefix="msr_old_coco_"))
    path = folder / "msr_old_coco.py"
    path.write_text(OLD_SOURCE.read_text())
    spec = importlib.util.spec_from_file_location("msr_old_coco", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["msr_old_coco"] = module  # workers started by fork find it; pickling finds it by name
    spec.loader.exec_module(module)
    return module
