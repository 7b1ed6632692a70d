"""Shared by the bench scripts: long-lived measuring processes, the model store, the anchor venv."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """A long-lived process answering one JSON line per JSON command."""

    def __init__(self, argv, env):
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def ask(self, command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.readline()

    def readline(self):
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"{self.process.args[0]} stopped (exit status {self.process.wait()})")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def snapshot_dir(model):
    """The snapshot folder of `model` in the model store."""
    store = os.environ.get("HF_HUB_CACHE") or (
        os.environ.get("HF_HOME") and os.path.join(os.environ["HF_HOME"], "hub")
    ) or ROOT / "data/models"
    repo = Path(store) / ("models--" + model.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs/main").read_text().strip()


def find_anchor(path):
    """The anchor's Python: `path`, else .venv-bench/bin/python when it exists."""
    if path:
        return path
    default = ROOT / ".venv-bench/bin/python"
    return str(default) if default.exists() else None
