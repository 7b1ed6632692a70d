"""Makes the SDK importable on the build machine's Python: componentize-py's stub bindings of the
`command-module` world (whose host functions raise NotImplementedError, and which the tests
replace with fakes) go on the path, in a temporary folder."""

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMPONENTIZE_PY = ROOT / ".tools/python/bin/componentize-py"


def _stub_bindings() -> str:
    if not COMPONENTIZE_PY.is_file():
        sys.exit(f"{COMPONENTIZE_PY} is missing: run scripts/build-modules, which installs it")
    folder = tempfile.mkdtemp(prefix="modelhost-bindings-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    subprocess.run(
        [COMPONENTIZE_PY, "-q", "-d", ROOT / "wit", "-w", "command-module",
         "--import-interface-name", "modelhost:models/types@0.1.0=modelhost_types",
         "bindings", folder],
        check=True)
    return folder


sys.path[:0] = [_stub_bindings(), str(ROOT / "guest-sdk/python")]
