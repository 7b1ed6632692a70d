"""gpu-check: what modelhost's CUDA build does on one NVIDIA GPU, in one prepared run.

See scripts/gpu-check for the usage. Sections, each timed and reported as it ends:
  a. parity CPU vs CUDA per model type, through the probe guest (and the CPU side vs PyTorch)
  b. embeddings/s at batch 32 and 256 through the load-generator guest vs sentence-transformers
  c. generation tokens/s through the probe guest vs transformers `generate`
  d. memory: the host's estimate vs what its allocator measured (`measured_bytes`), with
     torch.cuda.mem_get_info and the process's resident set as cross-checks
  e. embeddings/s with two workers on one GPU vs one
"""

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import checkpoints
from .host import CheckError, Host, Probe, Served, cuda_library_path, needed_libraries
from .host import prepare_binary, strip_log_prefix, tail, unresolved_libraries

ROOT = Path(__file__).resolve().parent.parent.parent
KIT = ROOT / ".gpu-kit"

# Sizes per mode: the GPU run must end within 8 minutes on an H200; the CPU dry run within a
# few minutes on 2 cores.
MODES = {
    "gpu": dict(budget=450, speed_texts=4096, min_timed=2.0, gen_tokens=128, parity_tokens=32,
                workers_per_call=1024, t5="base", batches=(32, 256)),
    "cpu": dict(budget=900, speed_texts=256, min_timed=1.0, gen_tokens=16, parity_tokens=12,
                workers_per_call=96, t5="small", batches=(32, 256)),
}

PARITY_TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Stocks fell sharply after the central bank raised interest rates.",
    "Café crème, naïve façade — déjà vu: 東京 is 🙂.",
    "x",
]
T5_PROMPTS = [
    "summarize: The quick brown fox jumps over the lazy dog near the river bank.",
    "translate English to German: How old are you?",
    "question: What is the capital of France? context: Paris is the capital of France.",
]
LLAMA_PROMPTS = ["The capital of France is", "def fibonacci(n):"]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


class Deadline:
    def __init__(self, seconds):
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self):
        return self.end - time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.start

    def clamp(self, timeout):
        return max(1.0, min(timeout, self.left()))


def log(message):
    print(message, file=sys.stderr, flush=True)


def mib(n):
    return "n/a" if n is None else f"{n / 2**20:,.1f} MiB"


def agnews(n):
    with open(ROOT / "tests/fixtures/data/agnews-test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[:n]
    return [f"{title}. {description}".replace("\n", " ") for _, title, description in rows]


class Check:
    """The run: options, the host, the checkpoints, the report."""

    def __init__(self, args):
        self.args = args
        self.mode = "cpu" if args.cpu_dry_run else "gpu"
        self.sizes = dict(MODES[self.mode])
        if args.budget:
            self.sizes["budget"] = args.budget
        self.deadline = Deadline(self.sizes["budget"])
        self.device = "cpu" if args.cpu_dry_run else "cuda:0"
        self.torch_device = "cpu" if args.cpu_dry_run else "cuda"
        self.report = []
        self.results = {"mode": self.mode}

    # ---------------------------------------------------------------- output

    def out(self, line=""):
        print(line, flush=True)
        self.report.append(line)

    def progress(self, message):
        log(f"[{self.deadline.elapsed():6.1f} s] {message}")

    # ---------------------------------------------------------------- setup

    def setup(self):
        import torch
        from . import anchors
        self.anchors = anchors
        if self.mode == "gpu" and not torch.cuda.is_available():
            raise CheckError("PyTorch sees no CUDA device (use --cpu-dry-run on a machine without one)")
        work = self.args.workdir or tempfile.mkdtemp(prefix="gpu-check-")
        self.workdir = Path(work)
        self.workdir.mkdir(parents=True, exist_ok=True)
        default_binary = KIT / ("modelhost-cuda.xz" if self.mode == "gpu" else "modelhost")
        binary = prepare_binary(self.args.binary or default_binary, self.workdir)
        env = dict(os.environ, RUST_LOG="modelhost=info,warn", HF_HUB_OFFLINE="1")
        env.pop("HF_HUB_CACHE", None)
        needed = needed_libraries(binary)
        cuda_needed = [n for n in needed if n.startswith(("libcu", "libnvrtc"))]
        if cuda_needed or self.mode == "gpu":
            folders = cuda_library_path()
            env["LD_LIBRARY_PATH"] = ":".join(folders + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
            missing = unresolved_libraries(binary, env)
            if missing:
                raise CheckError(f"the binary needs {', '.join(missing)}, which the loader cannot "
                                 f"find (PyTorch's nvidia libraries: {folders or 'none found'}; "
                                 "libcuda.so.1 comes with the NVIDIA driver)")
        started = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env)
        if started.returncode != 0:
            raise CheckError(f"{binary} does not start: {(started.stderr or started.stdout).strip()[:400]}")
        if self.mode == "gpu" and "libcuda.so.1" not in needed and needed:
            raise CheckError(f"{binary} is not a CUDA build (it does not link libcuda.so.1); "
                             "build it with scripts/build-cuda")
        self.store = self.workdir / "models"
        self.host = Host(binary, self.args.modules or KIT, self.store, self.workdir, env,
                         self.deadline)

        self.out(f"modelhost gpu-check ({'CPU dry run' if self.mode == 'cpu' else 'GPU'}), "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.out(f"  binary:  {self.args.binary or default_binary} ({mib(binary.stat().st_size)}); "
                 f"needs {', '.join(cuda_needed) or 'no CUDA library'}")
        self.out(f"  guests:  {self.host.modules}")
        versions = anchors.versions()
        self.out(f"  python:  {platform.python_version()}, torch {versions['torch']} "
                 f"(CUDA {versions['torch_cuda']}), transformers {versions['transformers']}, "
                 f"sentence-transformers {versions['sentence_transformers']}")
        if self.mode == "gpu":
            props = torch.cuda.get_device_properties(0)
            self.out(f"  GPU:     {props.name}, {props.total_memory / 2**30:.0f} GiB, compute "
                     f"capability {props.major}.{props.minor}, driver {driver_version()}")
        self.out(f"  CPU:     {os.cpu_count()} cores; scratch {self.workdir}")
        self.results["environment"] = dict(versions, binary=str(binary), needed=needed)

        # Preflight: the host starts with the device and reports its workers.
        with Probe(self.host, self.host.config([self.device])) as probe:
            try:
                workers = probe.ask({"op": "status"}, timeout=120)["worker_pool"]["workers"]
            except CheckError as e:
                raise CheckError(f"modelhost cannot start on {self.device}: {e}") from None
        self.out(f"  workers: {', '.join(w['worker_id'] + ' on ' + w['device'] for w in workers)} "
                 f"(preflight with devices = [\"{self.device}\"])")

        self.progress("making random-weight checkpoints")
        start = time.perf_counter()
        self.models = checkpoints.make_all(self.store, self.sizes["t5"], self.progress)
        # The baseline for the memory cross-check: a tiny model that makes the host create its
        # CUDA context, streams and library handles.
        tiny = checkpoints.snapshot_dir(self.store, "gpu-check/t5-tiny")
        if not tiny.is_dir():
            tiny.mkdir(parents=True)
            for f in (checkpoints.FIXTURES / "t5-tiny-random-realvocab").iterdir():
                shutil.copy2(f, tiny / f.name)
            (tiny.parent.parent / "refs").mkdir(exist_ok=True)
            (tiny.parent.parent / "refs/main").write_text(checkpoints.REVISION)
        self.models["tiny"] = ("gpu-check/t5-tiny", tiny)
        self.out(f"  models:  random weights (seed 0) of real shapes, made in "
                 f"{time.perf_counter() - start:.0f} s: " +
                 ", ".join(f"{k}={n.split('/')[1]}" for k, (n, _) in self.models.items()
                           if k != "tiny"))
        self.out()

    def requirement(self, kind, device, **extra):
        model_type = {"bert-cls": "classification", "distilbert-cls": "classification",
                      "tiny": "text2text"}.get(kind, kind)
        requirement = {"model_type": model_type, "name": self.models[kind][0], "device": device}
        if model_type == "embedding":
            requirement["cache_embeddings"] = False
        requirement.update(extra)
        return requirement

    # ---------------------------------------------------------------- a. parity

    def parity(self):
        sides = ("cpu", self.device)
        names = ("cpu", "cuda" if self.mode == "gpu" else "cpu(2)")
        devices = list(dict.fromkeys([self.device, "cpu"]))
        self.out(f"a. Parity, {names[0]} vs {names[1]} "
                 f"(requirement device {sides[0]!r} vs {sides[1]!r}), through the probe guest;")
        self.out("   'ref' compares with PyTorch on the CPU (sentence-transformers / transformers), "
                 "which validates the random checkpoints")
        texts = PARITY_TEXTS + agnews(10) + [" ".join(agnews(40))]  # the last one is truncated
        results = {}
        config = self.host.config(devices)
        with Probe(self.host, config) as probe:
            for kind in ("embedding", "bert-cls", "distilbert-cls", "text2text", "text-generation"):
                if self.deadline.left() < 60:
                    self.out(f"   {kind}: skipped (time budget)")
                    continue
                self.progress(f"parity: {kind}")
                sides_out = []
                for name, device in zip(names, sides):
                    model_id = f"{kind}@{name}"
                    try:
                        probe.ask({"op": "register", "id": model_id,
                                   "requirement": self.requirement(kind, device)})
                        sides_out.append(self.parity_outputs(probe, kind, model_id, texts))
                    except CheckError as e:
                        sides_out.append(e)
                results[kind] = sides_out
            try:
                status = probe.ask({"op": "status"})["loaded_models"]
            except CheckError as e:
                status = {}
                self.out(f"   (status failed: {e})")
        references = self.parity_references(texts)
        self.results["parity"] = {}
        for kind, (left, right) in results.items():
            placed = "/".join(status.get(f"{kind}@{n}", {}).get("device", "?") for n in names)
            line, data = self.compare(kind, left, right, references.get(kind))
            self.out(f"   {kind:<16} ran on {placed:<12} {line}")
            self.results["parity"][kind] = data
        self.out()

    def parity_outputs(self, probe, kind, model_id, texts):
        n = self.sizes["parity_tokens"]
        options = {"max_output_length": n, "temperature": 0}
        if kind == "embedding":
            return probe.ask({"op": "embed", "id": model_id, "texts": texts})["embeddings"]
        if kind.endswith("-cls"):
            answer = probe.ask({"op": "classify", "id": model_id, "texts": texts})
            return [{s["label"]: s["score"] for s in r["scores"]} for r in answer["results"]]
        prompts = T5_PROMPTS if kind == "text2text" else LLAMA_PROMPTS
        out = [probe.ask({"op": "generate", "id": model_id, "prompt": p, "options": options})["text"]
               for p in prompts]
        if kind == "text-generation":
            out.append(probe.ask({"op": "chat", "id": model_id, "messages": CHAT,
                                  "options": options})["text"])
        return out

    def parity_references(self, texts):
        """PyTorch CPU outputs for the same inputs (None where it failed)."""
        refs = {}
        a = self.anchors
        n = self.sizes["parity_tokens"]
        for kind in ("embedding", "bert-cls", "distilbert-cls", "text2text", "text-generation"):
            if self.deadline.left() < 60:
                break
            self.progress(f"parity: PyTorch reference for {kind}")
            folder = self.models[kind][1]
            try:
                if kind == "embedding":
                    model = a.sentence_transformer(folder, "cpu")
                    refs[kind] = a.st_embed(model, texts, 32).tolist()
                elif kind.endswith("-cls"):
                    refs[kind] = a.classify(folder, texts)
                else:
                    generator = a.Generator(folder, kind, "cpu")
                    prompts = T5_PROMPTS if kind == "text2text" else LLAMA_PROMPTS
                    refs[kind] = [generator.generate(p, n)[0] for p in prompts]
            except Exception as e:  # a reference that fails is reported, not fatal
                refs[kind] = CheckError(f"{type(e).__name__}: {e}")
            finally:
                a.free_memory()
        return refs

    def compare(self, kind, left, right, ref):
        """One report line and its data for two sides' outputs (and the reference)."""
        def failed(x):
            return isinstance(x, Exception)
        if failed(left) or failed(right):
            bad = [f"{side} failed: {x}" for side, x in (("cpu", left), ("cuda", right)) if failed(x)]
            return "; ".join(bad), {"error": "; ".join(bad)}
        if kind == "embedding":
            data = vector_diff(left, right)
            line = f"min cosine {data['min_cosine']:.7f}, max abs diff {data['max_abs_diff']:.2e}"
            if ref is not None and not failed(ref):
                r = vector_diff(left, ref)
                data["ref"] = r
                line += f"  | cpu vs ref: min cosine {r['min_cosine']:.7f}, max abs {r['max_abs_diff']:.1e}"
        elif kind.endswith("-cls"):
            data = score_diff(left, right)
            line = (f"max abs score diff {data['max_abs_diff']:.2e}, same top label "
                    f"{data['same_top']}/{data['texts']}")
            if ref is not None and not failed(ref):
                r = score_diff(left, ref)
                data["ref"] = r
                line += f"  | cpu vs ref: max abs {r['max_abs_diff']:.1e}, top {r['same_top']}/{r['texts']}"
        else:
            same = sum(a == b for a, b in zip(left, right))
            data = {"same_text": same, "outputs": len(left), "cpu": left, "other": right}
            line = f"greedy text equal {same}/{len(left)}"
            if same < len(left):
                first = next(i for i, (a, b) in enumerate(zip(left, right)) if a != b)
                prefix = len(os.path.commonprefix([left[first], right[first]]))
                line += (f" (output {first + 1} differs after {prefix} chars: "
                         f"{left[first][:40]!r} vs {right[first][:40]!r})")
            if ref is not None and not failed(ref):
                rsame = sum(a == b for a, b in zip(left, ref))
                data["ref_same"] = rsame
                line += f"  | cpu vs ref: {rsame}/{len(ref)} equal"
                if rsame < len(ref):
                    i = next(i for i, (a, b) in enumerate(zip(left, ref)) if a != b)
                    line += f" ({left[i][:30]!r} vs {ref[i][:30]!r})"
        if failed(ref):
            line += f"  | ref failed: {ref}"
        return line, data

    # ---------------------------------------------------------------- d. memory

    def memory(self):
        a = self.anchors
        self.out(f"d. Memory per model on {self.device}: the host's estimate (weights + working at the "
                 "largest batch), what it accounts, and measured_bytes (what the allocator gained "
                 "while loading);")
        self.out("   cross-checks over a host holding only a tiny model: "
                 + ("torch.cuda.mem_get_info (all processes) and " if self.mode == "gpu" else "")
                 + "the host's resident set")
        header = (f"   {'model':<16} {'estimated weights':>18} {'+ working':>12} {'accounted':>12} "
                  f"{'measured_bytes':>15} {'mem_get_info Δ':>15} {'RSS Δ':>11}")
        rows, data = [], {}
        baseline = None
        for kind in ("tiny", "embedding", "bert-cls", "distilbert-cls", "text2text", "text-generation"):
            if self.deadline.left() < 45:
                rows.append(f"   {kind:<16} skipped (time budget)")
                continue
            self.progress(f"memory: {kind}")
            requirement = self.requirement(kind, self.device, preload_workers=1)
            module = {"id": "probe", "path": self.host.guest("probe.wasm"), "required": False,
                      "settings": {"register": {kind: requirement}}}
            config = self.host.config([self.device], modules=[module])
            before = a.gpu_used_bytes()
            try:
                with Served(self.host, config) as served:
                    status = served.status()
                    used, rss = a.gpu_used_bytes(), served.rss_bytes()
                    log_file = served.log
            except CheckError as e:
                rows.append(f"   {kind:<16} failed: {e}")
                continue
            model = status.get("loaded_models", {}).get(kind)
            if kind == "tiny":
                baseline = {"gpu": used, "rss": rss, "gpu_before": before}
                if model is None or not model.get("loaded"):
                    rows.append(f"   (baseline: the tiny model did not load: {failure(status, log_file)})")
                continue
            if model is None or not model.get("loaded"):
                rows.append(f"   {kind:<16} not loaded: {failure(status, log_file)}")
                data[kind] = {"error": failure(status, log_file)}
                continue
            estimate = model.get("estimated_bytes", {})
            measured = model.get("measured_bytes")
            gpu_delta = used - baseline["gpu"] if baseline and used is not None and baseline["gpu"] is not None else None
            rss_delta = rss - baseline["rss"] if baseline and rss and baseline["rss"] else None
            rows.append(f"   {kind:<16} {mib(estimate.get('weights')):>18} {mib(estimate.get('working')):>12} "
                        f"{mib(model.get('accounted_bytes')):>12} {mib(measured):>15} "
                        f"{mib(gpu_delta):>15} {mib(rss_delta):>11}")
            data[kind] = {"estimated": estimate, "accounted": model.get("accounted_bytes"),
                          "measured_bytes": measured, "mem_get_info_delta": gpu_delta,
                          "rss_delta": rss_delta, "device": model.get("device")}
        self.out(header)
        for row in rows:
            self.out(row)
        if baseline:
            ctx = (baseline["gpu"] - baseline["gpu_before"]) if baseline["gpu"] is not None else None
            self.out(f"   (host with the tiny model only: {mib(ctx)} on the GPU over the idle device, "
                     f"RSS {mib(baseline['rss'])}; 'n/a' = not reported / not applicable)")
        self.results["memory"] = data
        self.out()

    # ---------------------------------------------------------------- b. embedding speed

    def guest_rate(self, config, requirement, texts_file, count, per_call):
        """Texts/s through the load-generator guest: runs of 1 and 1+R rounds in separate
        processes; the difference excludes start-up, model load and first-call warm-up."""
        min_s = self.sizes["min_timed"]
        t1 = self.host.run_load_generator(config, requirement, texts_file, per_call, 1, 300)
        rounds = max(1, math.ceil(min_s / max(t1, 1e-3)))
        for attempt in range(3):
            t2 = self.host.run_load_generator(config, requirement, texts_file, per_call,
                                              1 + rounds, 300)
            diff = t2 - t1
            if diff >= 0.5 * min_s or attempt == 2 or self.deadline.left() < 60:
                break
            rounds = math.ceil(rounds * 1.5 * min_s / max(diff, 0.05))
        if diff <= 0:
            return (1 + rounds) * count / t2, {"rounds": 1 + rounds, "seconds": t2, "lower_bound": True}
        return rounds * count / diff, {"rounds": rounds, "seconds": diff, "first_round_s": t1}

    def texts_file(self, count):
        texts = agnews(count)
        path = self.workdir / f"texts-{count}.txt"
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        return texts, path

    def embedding_speed(self):
        a = self.anchors
        count = self.sizes["speed_texts"]
        texts, path = self.texts_file(count)
        tokenizer = a.sentence_transformer(self.models["embedding"][1], "cpu").tokenizer
        tokens = sum(len(tokenizer(t, truncation=True, max_length=256).input_ids) for t in texts) / count
        self.out(f"b. Embeddings/s on {self.device}, {count} AG News texts ({tokens:.1f} tokens/text), "
                 "MiniLM-L6 shape: the load-generator guest (timed inside the guest, model loaded, "
                 "cache off, one call per batch) vs sentence-transformers encode on the same device")
        config = self.host.config([self.device])
        model = None
        rows, data = [], {}
        for batch in self.sizes["batches"]:
            if self.deadline.left() < 60:
                rows.append(f"   batch {batch:>4}: skipped (time budget)")
                continue
            self.progress(f"embeddings/s: modelhost, batch {batch}")
            requirement = self.requirement("embedding", self.device, batch_size=batch, preload_workers=1)
            try:
                rate, detail = self.guest_rate(config, requirement, path, count, batch)
            except CheckError as e:
                rows.append(f"   batch {batch:>4}: modelhost failed: {e}")
                continue
            self.progress(f"embeddings/s: sentence-transformers, batch {batch}")
            try:
                if model is None:
                    model = a.sentence_transformer(self.models["embedding"][1], self.torch_device)
                anchor = a.st_rate(model, texts, batch, self.sizes["min_timed"], self.torch_device)
            except Exception as e:
                anchor = None
                rows.append(f"   (sentence-transformers failed: {type(e).__name__}: {e})")
            bound = "≥" if detail.get("lower_bound") else " "
            ratio = f"{rate / anchor:5.2f}x" if anchor else "  n/a"
            rows.append(f"   batch {batch:>4}: modelhost {bound}{rate:10.1f}   sentence-transformers "
                        f"{anchor or float('nan'):10.1f}   ratio {ratio}   "
                        f"({detail['rounds']} rounds in {detail['seconds']:.2f} s)")
            data[batch] = {"modelhost": rate, "sentence_transformers": anchor, **detail}
        for row in rows:
            self.out(row)
        del model
        a.free_memory()
        self.results["embedding_speed"] = data
        self.out()

    # ---------------------------------------------------------------- c. generation speed

    def generation_speed(self):
        a = self.anchors
        n = self.sizes["gen_tokens"]
        self.out(f"c. Generation tokens/s on {self.device}, greedy, {n} new tokens per prompt, "
                 "prompt processing included: the probe guest (wall time of its call) vs "
                 "transformers generate (fp32) on the same device")
        config = self.host.config([self.device])
        data = {}
        with Probe(self.host, config) as probe:
            for kind in ("text-generation", "text2text"):
                if self.deadline.left() < 60:
                    self.out(f"   {kind}: skipped (time budget)")
                    continue
                prompts = LLAMA_PROMPTS if kind == "text-generation" else T5_PROMPTS[:2]
                self.progress(f"tokens/s: modelhost {kind}")
                line = f"   {kind:<16} ({self.models[kind][0].split('/')[1]}): "
                try:
                    probe.ask({"op": "register", "id": kind,
                               "requirement": self.requirement(kind, self.device, preload_workers=1)},
                              timeout=300)
                    probe.ask({"op": "generate", "id": kind, "prompt": prompts[0],
                               "options": {"max_output_length": 8, "temperature": 0}})
                    tokens, seconds = 0, 0.0
                    for prompt in prompts:
                        answer, elapsed = probe.timed(
                            {"op": "generate", "id": kind, "prompt": prompt,
                             "options": {"max_output_length": n, "temperature": 0}})
                        tokens += answer["tokens_generated"]
                        seconds += elapsed
                    ours = tokens / seconds
                    line += f"modelhost {ours:8.1f} ({tokens} tokens)"
                except CheckError as e:
                    ours = None
                    line += f"modelhost failed: {e}"
                self.progress(f"tokens/s: transformers {kind}")
                try:
                    generator = a.Generator(self.models[kind][1], kind, self.torch_device)
                    generator.generate(prompts[0], 8)
                    tokens, seconds = 0, 0.0
                    for prompt in prompts:
                        _, count, elapsed = generator.generate(prompt, n, exact=True)
                        tokens += count
                        seconds += elapsed
                    theirs = tokens / seconds
                    del generator
                    line += f"   transformers {theirs:8.1f}"
                    if ours:
                        line += f"   ratio {ours / theirs:5.2f}x"
                except Exception as e:
                    theirs = None
                    line += f"   transformers failed: {type(e).__name__}: {e}"
                a.free_memory()
                self.out(line)
                data[kind] = {"modelhost": ours, "transformers": theirs}
        self.results["generation_speed"] = data
        self.out()

    # ---------------------------------------------------------------- e. workers

    def workers(self):
        count = self.sizes["workers_per_call"]
        _, path = self.texts_file(count)
        self.out(f"e. Workers on one device: [worker_pool] devices = [\"{self.device}\"], num_workers = 1 "
                 f"vs 2 (each holds a copy: preload_workers = num_workers); the load-generator guest "
                 f"sends {count} texts per call, batch 32, so batches of one call run on both workers")
        data = {}
        for workers in (1, 2):
            if self.deadline.left() < 60:
                self.out(f"   {workers} worker(s): skipped (time budget)")
                continue
            self.progress(f"workers: {workers}")
            config = self.host.config([self.device], num_workers=workers)
            requirement = self.requirement("embedding", self.device, batch_size=32,
                                           preload_workers=workers)
            try:
                rate, detail = self.guest_rate(config, requirement, path, count, count)
            except CheckError as e:
                self.out(f"   {workers} worker(s): failed: {e}")
                continue
            data[workers] = {"rate": rate, **detail}
            speedup = f"   {rate / data[1]['rate']:.2f}x one worker" if workers == 2 and 1 in data else ""
            self.out(f"   {workers} worker(s): {rate:10.1f} embeddings/s{speedup}   "
                     f"({detail['rounds']} rounds in {detail['seconds']:.2f} s)")
        self.results["workers"] = data
        self.out()


def vector_diff(left, right):
    import numpy as np
    a, b = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return {"min_cosine": float(cos.min()), "max_abs_diff": float(np.abs(a - b).max()),
            "texts": len(a)}


def score_diff(left, right):
    diff, same = 0.0, 0
    for l, r in zip(left, right):
        diff = max(diff, max(abs(l[k] - r.get(k, float("nan"))) for k in l))
        same += max(l, key=l.get) == max(r, key=r.get)
    return {"max_abs_diff": diff, "same_top": same, "texts": len(left)}


def failure(status, log_file):
    """Why a model is not loaded: the module's state, else the host's log."""
    for module in status.get("modules", []):
        if module.get("state") not in (None, "ready"):
            return f"module {module.get('state')}: {module.get('error') or module}"
    lines = Path(log_file).read_text(errors="replace").splitlines()
    for line in reversed(lines):
        if "preload failed" in line or "ERROR" in line:
            return strip_log_prefix(line)
    return f"see {log_file}: {tail(log_file)}"


def driver_version():
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip().splitlines()[0]
    return "unknown"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="gpu-check", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run everything on this machine's CPU with a CPU binary (both parity "
                             "sides on cpu, smaller counts), to prove the script end to end")
    parser.add_argument("--binary", help="modelhost binary, or its .xz (default: "
                        ".gpu-kit/modelhost-cuda.xz; with --cpu-dry-run .gpu-kit/modelhost)")
    parser.add_argument("--modules", help="folder with probe.wasm and load-generator.wasm "
                        "(default: .gpu-kit)")
    parser.add_argument("--python", help="a Python with torch, transformers and "
                        "sentence-transformers (default: this one, else .venv-bench/bin/python)")
    parser.add_argument("--report", help="also write the report here (default: $OUT/gpu-check.txt "
                        "when $OUT is set), with the figures as JSON next to it")
    parser.add_argument("--workdir", help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 450 "
                        "on a GPU, 900 for the dry run); sections that would overrun are skipped")
    parser.add_argument("--only", help="comma-separated sections to run: parity,embeddings,"
                        "generation,memory,workers (default: all)")
    return parser.parse_args(argv)


SECTIONS = ["parity", "embeddings", "generation", "memory", "workers"]


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check = Check(args)
    wanted = args.only.split(",") if args.only else SECTIONS
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        sys.exit(f"gpu-check: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    status = 0
    report = args.report or (os.path.join(os.environ["OUT"], "gpu-check.txt") if os.environ.get("OUT") else None)
    try:
        check.setup()
    except CheckError as e:
        check.out(f"gpu-check: error: {e}")
        if report:
            Path(report).write_text("\n".join(check.report) + "\n", encoding="utf-8")
        return 1
    methods = {"parity": check.parity, "memory": check.memory, "embeddings": check.embedding_speed,
               "generation": check.generation_speed, "workers": check.workers}
    for name in SECTIONS:
        if name not in wanted:
            continue
        start = time.monotonic()
        try:
            methods[name]()
        except Exception as e:  # one broken section must not hide the others
            status = 1
            check.out(f"   {name} failed: {type(e).__name__}: {e}")
            log(traceback.format_exc())
            check.out()
        check.progress(f"{name} done in {time.monotonic() - start:.0f} s")
    if not args.workdir:
        shutil.rmtree(check.store, ignore_errors=True)  # GBs of random weights; logs stay
    check.out(f"Total {check.deadline.elapsed():.0f} s (budget {check.sizes['budget']:.0f} s). "
              f"Logs and configurations in {check.workdir}")
    if report:
        Path(report).write_text("\n".join(check.report) + "\n", encoding="utf-8")
        Path(report).with_suffix(".json").write_text(json.dumps(check.results, indent=1, default=str))
        if os.environ.get("OUT") and Path(report).parent == Path(os.environ["OUT"]):
            # The host's logs and the configurations, for a run whose machine is gone afterwards.
            import tarfile
            with tarfile.open(Path(os.environ["OUT"]) / "gpu-check-logs.tar.gz", "w:gz") as tar:
                for f in sorted(check.workdir.glob("*.log")) + sorted(check.workdir.glob("*.toml")):
                    tar.add(f, arcname=f.name)
        log(f"report written to {report}")
    return status
