"""Driving the modelhost binary: its configuration, the probe guest as a long-lived process
(one JSON command per line, one JSON answer per line), the load-generator guest (timed inside
the guest), and `modelhost serve` with its admin API's /status."""

import glob
import json
import lzma
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


class CheckError(Exception):
    """A failure the report states in one line."""


def prepare_binary(path, workdir):
    """The runnable binary at `path`; a `.xz` file is unpacked into `workdir` first (with
    Python's lzma, so the machine needs no xz tool)."""
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"no modelhost binary at {path} (run scripts/gpu-kit, or pass --binary)")
    if path.suffix != ".xz":
        return path
    out = Path(workdir) / "modelhost"
    with lzma.open(path) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    out.chmod(0o755)
    return out


def needed_libraries(binary):
    """The binary's NEEDED entries (readelf; without it, every library ldd lists)."""
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True).stdout
        return re.findall(r"\(NEEDED\).*\[(.*)\]", out)
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        return [line.split()[0] for line in out.splitlines() if "=>" in line]
    return []


def cuda_library_path():
    """Folders holding the CUDA 13 libraries of PyTorch's nvidia wheels (cu130): libcudart,
    libcublas, libcublasLt, libnvrtc, libcurand. Never a stub libcuda: the driver's own
    libcuda.so.1 comes from the system."""
    folders = set()
    try:
        import nvidia  # namespace package of the nvidia-* wheels
        roots = list(nvidia.__path__)
    except ImportError:
        roots = []
    try:
        import torch
        roots.append(str(Path(torch.__file__).parent))
    except ImportError:
        pass
    for root in roots:
        for lib in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True):
            if "/stubs/" in lib or os.path.basename(lib).startswith("libcuda.so"):
                continue
            folders.add(os.path.dirname(lib))
    return sorted(folders)


def unresolved_libraries(binary, env):
    """NEEDED libraries the dynamic loader cannot find with `env` (ldd), or None without ldd."""
    if not shutil.which("ldd"):
        return None
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


class Host:
    """One binary, guest folder, model store and scratch folder; writes configurations and
    starts processes."""

    def __init__(self, binary, modules, store, workdir, env, deadline):
        # Absolute: configuration files resolve module paths relative to their own folder.
        self.binary = Path(binary).resolve()
        self.modules = Path(modules).resolve()
        self.store = Path(store).resolve()
        self.workdir = Path(workdir).resolve()
        self.env = env
        self.deadline = deadline
        self.configs = 0
        for guest in ("probe.wasm", "load-generator.wasm"):
            if not (self.modules / guest).is_file():
                raise CheckError(f"no {guest} in {self.modules} (pass --modules DIR)")

    def guest(self, name):
        return str(self.modules / name)

    def config(self, devices, num_workers=0, modules=(), max_batch_tokens=65536):
        """Writes a configuration file and returns its path."""
        self.configs += 1
        lines = [
            "[models]",
            f"cache_dir = {toml_value(str(self.store))}",
            "download = false",
            "[worker_pool]",
            f"devices = {toml_value(list(devices))}",
            f"num_workers = {num_workers}",
            f"max_batch_tokens = {max_batch_tokens}",
            "queue_timeout = 300",
            "[runtime]",
            f"compile_cache_dir = {toml_value(str(self.workdir / 'compiled'))}",
            "[limits]",
            "cpu_seconds_per_call = 0",
            "memory_mb = 4096",
            "[serve]",
            'address = "127.0.0.1:0"',
            'admin_address = "127.0.0.1:0"',
        ]
        for module in modules:
            lines.append("[[modules]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in module.items()]
        path = self.workdir / f"config-{self.configs}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def log_path(self, what):
        return self.workdir / f"{self.configs:02d}-{what}.log"

    def run_load_generator(self, config, requirement, texts_file, per_call, rounds, timeout):
        """`modelhost run load-generator.wasm PER_CALL ROUNDS < texts`: the guest registers
        `requirement`, sends the texts `per_call` at a time, `rounds` times over, and reports the
        time inside the guest. Returns seconds."""
        log = self.log_path("load-generator")
        argv = [str(self.binary), "--config", str(config), "run", "--settings",
                json.dumps(requirement), self.guest("load-generator.wasm"), str(per_call),
                str(rounds)]
        timeout = self.deadline.clamp(timeout)
        with open(texts_file, "rb") as stdin, open(log, "wb") as stderr:
            try:
                done = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                                      env=self.env, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise CheckError(f"load-generator ran past {timeout:.0f} s (log: {log})")
        lines = done.stdout.decode().strip().splitlines()
        if done.returncode != 0 or not lines:
            raise CheckError(f"load-generator failed (exit {done.returncode}): {tail(log)}")
        return json.loads(lines[-1])["elapsed_ms"] / 1000.0


def stop(process, ask):
    """Stops `process` if it still runs: `ask` it to, then kill it after 30 s."""
    if process.poll() is None:
        ask()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(path, lines=3):
    """The last lines of a log, for an error message."""
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    wanted = [line for line in text if "ERROR" in line or "error" in line.lower()] or text
    return " | ".join(strip_log_prefix(line) for line in wanted[-lines:])


def strip_log_prefix(line):
    return re.sub(r"^\S+Z\s+(INFO|WARN|ERROR|DEBUG)\s+", "", line)[:400]


class Lines:
    """A process's output lines, read by a thread, so that waiting for one can time out."""

    def __init__(self, stream):
        self._queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line)
        self._queue.put("")

    def get(self, timeout):
        """The next line; "" at the end of the output; None after `timeout` seconds."""
        try:
            return self._queue.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None


class Probe:
    """`modelhost run probe.wasm` kept running: commands in, answers out, one JSON line each."""

    def __init__(self, host, config):
        self.host = host
        self.log = host.log_path("probe")
        self._stderr = open(self.log, "wb")
        self.process = subprocess.Popen(
            [str(host.binary), "--config", str(config), "run", "--settings", "{}",
             host.guest("probe.wasm")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=host.env,
            text=True, bufsize=1)
        self.lines = Lines(self.process.stdout)

    def ask(self, command, timeout=120):
        """The answer's `ok` value; a guest error raises CheckError with its code and message."""
        if self.process.poll() is not None:
            raise CheckError(f"the probe process exited ({self.process.returncode}): {tail(self.log)}")
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        timeout = self.host.deadline.clamp(timeout)
        line = self.lines.get(timeout)
        if line is None:
            self.close(kill=True)
            raise CheckError(f"no answer to {command['op']} within {timeout:.0f} s")
        if not line:
            code = self.process.wait()
            raise CheckError(f"the probe process exited ({code}): {tail(self.log)}")
        answer = json.loads(line)
        if "error" in answer:
            error = answer["error"]
            raise CheckError(f"{error['code']}: {error['message']}")
        return answer["ok"]

    def timed(self, command, timeout=120):
        start = time.perf_counter()
        answer = self.ask(command, timeout)
        return answer, time.perf_counter() - start

    def close(self, kill=False):
        stop(self.process, self.process.kill if kill else self.process.stdin.close)
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(kill=exc[0] is not None)


class Served:
    """`modelhost serve` with the given configuration, up until closed; its admin API's
    /status as JSON."""

    def __init__(self, host, config, timeout=120):
        self.host = host
        self.log = host.log_path("serve")
        self._stderr = open(self.log, "wb")
        self.process = subprocess.Popen(
            [str(host.binary), "--config", str(config), "serve"], stdout=subprocess.PIPE,
            stderr=self._stderr, env=host.env, text=True, bufsize=1)
        self.admin = None
        lines = Lines(self.process.stdout)
        end = time.monotonic() + host.deadline.clamp(timeout)
        try:
            while self.admin is None:
                line = lines.get(end - time.monotonic())
                if not line:
                    raise CheckError(f"modelhost serve did not start: {tail(self.log)}")
                found = re.search(r"admin API on (http://\S+)", line)
                if found:
                    self.admin = found.group(1)
            while True:
                status = self.status()
                if status.get("ready"):
                    break
                if self.process.poll() is not None:
                    raise CheckError(f"modelhost serve exited: {tail(self.log)}")
                if time.monotonic() > end:
                    raise CheckError(f"modelhost serve not ready within {timeout} s")
                time.sleep(0.1)
        except BaseException:
            self.close()
            raise

    def status(self):
        with urllib.request.urlopen(self.admin + "/status", timeout=30) as answer:
            return json.loads(answer.read())

    def rss_bytes(self):
        """The serving process's resident memory."""
        try:
            for line in open(f"/proc/{self.process.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def close(self):
        stop(self.process, lambda: self.process.send_signal(signal.SIGTERM))
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
