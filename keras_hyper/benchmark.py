"""Speed of a registered model on the current Keras backend, optionally side by side with its timm twin.

How each figure is measured (CPU, threads left at each framework's default):

- Inference: `model.predict_on_batch(x)`, Keras' own predict path with its default `jit_compile="auto"`:
  one `jax.jit`-compiled XLA program under JAX; a `tf.function` graph under TensorFlow (Keras disables XLA
  on CPU-only machines, and `tf.function(jit_compile=True)` measured about 2x slower here); eager PyTorch
  under `torch.no_grad` (Keras' torch.compile path is opt-in, and timm is measured eager as well). This is
  what a user of the model gets; the numpy conversion of a (batch, H, W, 3) input and of the
  (batch, classes) output is part of it and small next to the network.
- Train step: `model.train_on_batch(x, y)` after `compile(SGD, sparse categorical crossentropy)`: forward,
  backward and update, compiled the same way per backend.
- Non-image models (graphs, sequences) run on the inputs their architecture's `sample_inputs` makes at its
  problem size (for hypergraphs, `size` is the number of vertices); their train step regresses the output onto
  random targets of its shape (mean squared error), which fits any output and costs next to nothing beside the
  network. Their rates count samples (batch elements: one graph each) rather than images.
- timm: `timm.create_model(model_info(name).timm_name, pretrained=False)`; inference in eval mode under
  `torch.inference_mode`, train step in train mode with `torch.optim.SGD` and cross-entropy.
- Timing: `warmup` untimed runs first (tracing and compilation happen there), then the median of `iters`
  timed runs; images/s is `batch / median`.
- Memory: the process' peak resident set size (VmHWM) while one implementation is built, run and trained,
  in MB, next to the RSS when it started. RSS covers the native allocators of XLA, TensorFlow, oneDNN and
  PyTorch, which tracemalloc does not see. On Linux the peak is reset per implementation through
  /proc/self/clear_refs; elsewhere it is the process' lifetime peak (`resource.getrusage`). timm runs
  after keras-hyper, so its starting RSS includes the memory the process kept from that run.
- Allocator: on glibc, `benchmark` fixes malloc's mmap and trim thresholds (1 GiB, 2 GiB) for the rest of
  the process. By default glibc maps large blocks from the OS and unmaps them when freed, above a threshold
  that adapts to what the process allocated before, so each call page-faults its activations in again:
  timm's inception_next_tiny inference ran 40% slower in a fresh process than after one training step.
  Fixed thresholds run every implementation in the same steady allocator state, whatever ran before it.
- Interference: the CPU time the machine spent outside this process during the run (/proc/stat), as an
  average number of busy CPUs. Thread pools that synchronise often (OpenMP in PyTorch, Eigen in XLA) slow
  down many times over when another process holds one of their cores, so the report flags busy runs.
"""

import ast
import ctypes
import gc
import os
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_hyper import applications
from keras_hyper.applications import catalog, registry
from keras_hyper.layers._args import check_at_least

# Row key and columns of the Speed table in a model card; `write_card` rewrites rows in this layout. "{unit}" is
# "img" for image models and "sample" for the others.
KEY = ("model", "backend", "batch", "size")
COLUMNS = (
    ("model", "model"),
    ("backend", "backend"),
    ("batch", "batch"),
    ("size", "size"),
    ("infer_img_s", "infer {unit}/s"),
    ("infer_ms", "infer ms/batch"),
    ("train_img_s", "train {unit}/s"),
    ("peak_rss_mb", "peak RSS MB"),
    ("timm_infer_img_s", "timm infer {unit}/s"),
    ("timm_train_img_s", "timm train {unit}/s"),
    ("infer_ratio", "infer keras/timm"),
    ("train_ratio", "train keras/timm"),
    ("cpus", "CPUs"),
    ("command", "command"),
)
# What _measure_keras and _measure_timm return; the timm ones are reported with a "timm_" prefix.
FIGURES = ("infer_ms", "infer_img_s", "train_ms", "train_img_s", "base_rss_mb", "peak_rss_mb")
# Above this share of the CPUs used by other processes, figures are flagged as unreliable.
BUSY = 0.1
SECTION = "## Speed"
INTRO = (
    "Measured on CPU with `keras-hyper benchmark` (random weights, median of timed batches after warm-up, "
    "threads at each framework's default, glibc malloc thresholds fixed: see keras_hyper/benchmark.py). "
    "keras/timm is the ratio of images/s: above 1, keras-hyper is faster. Peak RSS is the whole process' "
    "(framework runtime included)."
)
UNITS = {True: "img", False: "sample"}


def benchmark(
    name,
    *,
    batch=8,
    size=None,
    train=True,
    vs_timm=False,
    warmup=2,
    iters=10,
    weights=None,
    fused=False,
    options=None,
    log=None,
):
    """Measures inference and train-step speed and peak memory of a registered model.

    Args:
        name: a registered model name (optionally `name.tag`).
        batch, size: the batch of `size`x`size` RGB images to run (`size=None`: the model's input size); for a
            non-image model, `batch` samples at its architecture's problem size `size` (see the module docstring).
        train: also time a training step.
        vs_timm: also measure the timm implementation (`model_info(name).timm_name`) in the same process.
        warmup: untimed runs before timing each measurement.
        iters: timed runs; the median is reported.
        weights: as `keras_hyper.applications.load`; random initialisation by default.
        fused: time inference on the architecture's `reparameterize`d model (the deploy form: re-parameterised
            branches merged, BatchNorm folded); the train step always runs the training form.
        options: builder keyword arguments for this run (e.g. `{"incidence": "sparse"}` for a hypergraph
            teacher), passed to `keras_hyper.applications.load`; the card's model cell names them.
        log: called with a short progress message before each phase (e.g. `print`).

    Returns:
        A dict: `model, options, backend, unit ("img" or "sample"), batch, size, weights, warmup, iters, cpus,
        malloc_pinned, infer_ms, infer_img_s, train_ms, train_img_s, base_rss_mb, peak_rss_mb` (`*_img_s` count
        samples for a non-image model), the same `timm_*` figures with `timm_name`, the ratios
        `infer_ratio`, `train_ratio` (keras-hyper images/s over timm's), `other_cpus` (how many CPUs other
        processes kept busy on average during the run: the figures are only meaningful near 0) and the
        `command` that reproduces it. Figures that were not measured are None.
    """
    checks = [("batch", batch, 1), ("iters", iters, 1), ("warmup", warmup, 0)]
    for arg, value, low in checks + ([("size", size, 1)] if size is not None else []):
        check_at_least(low, **{f"benchmark {arg}": value})
    info = applications.model_info(name)
    if vs_timm and not info.timm_name:
        raise ValueError(f"{info.name} has no timm counterpart (its timm_name is not set); run without vs_timm.")
    options = dict(options or {})
    if not all(isinstance(key, str) for key in options):
        raise ValueError(f"benchmark options must map builder argument names to values, got {options!r}.")
    arch = registry.lookup(info.name)[0]
    image = arch.example_inputs is None
    if image and "input_shape" in options:
        raise ValueError(f"Set an image model's input size with `size`, not options={options!r}.")
    if not image and arch.sample_inputs is None:
        raise ValueError(
            f"{info.name} is not an image model and its architecture ({arch.name}) declares no `sample_inputs`, "
            "so the benchmark cannot make inputs for it."
        )
    reparameterize = arch.reparameterize
    if fused and reparameterize is None:
        raise ValueError(f"{info.name} has no inference fusion (its architecture declares no reparameterize).")
    log = log or (lambda message: None)
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    if image:
        size = size or info.input_size
        x = rng.standard_normal((batch, size, size, 3)).astype("float32")
        load_kwargs = dict(options, input_shape=x.shape[1:])
    else:
        x, size, needed = arch.sample_inputs({**info.builder_kwargs, **options}, batch, size, rng)
        clashes = {key: options[key] for key in needed if key in options and options[key] != needed[key]}
        if clashes:
            raise ValueError(f"options {clashes} contradict the sample inputs, which need {needed}.")
        load_kwargs = {**options, **needed}
    result = dict(
        model=name,
        options=options,
        backend=backend,
        unit=UNITS[image],
        batch=batch,
        size=size,
        weights=weights,
        fused=fused,
        warmup=warmup,
        iters=iters,
        cpus=os.cpu_count(),
        malloc_pinned=_pin_malloc(),
        timm_name=info.timm_name if vs_timm else None,
    )
    result.update({f"{prefix}{key}": None for prefix in ("", "timm_") for key in FIGURES})

    before = _cpu_counters()
    log(f"keras-hyper {_label(result)} on {backend}: batch {batch}, {_size_text(result)}")
    result.update(
        _measure_keras(
            name,
            x,
            rng,
            batch=batch,
            image=image,
            load_kwargs=load_kwargs,
            train=train,
            warmup=warmup,
            iters=iters,
            weights=weights,
            fuse=reparameterize if fused else None,
        )
    )
    gc.collect()
    if vs_timm:
        log(f"timm {info.timm_name}")
        timm_figures = _measure_timm(info.timm_name, x, rng, train=train, warmup=warmup, iters=iters)
        result.update({f"timm_{k}": v for k, v in timm_figures.items()})
    for phase in ("infer", "train"):
        ours, theirs = result[f"{phase}_img_s"], result[f"timm_{phase}_img_s"]
        result[f"{phase}_ratio"] = _round(ours / theirs) if ours and theirs else None
    result["other_cpus"] = _others_since(before)
    result["command"] = _command(result, train=train, vs_timm=vs_timm)
    return result


def _measure_keras(name, x, rng, *, batch, image, load_kwargs, train, warmup, iters, weights, fuse):
    base = _start_peak()
    model = applications.load(name, weights=weights, **load_kwargs)
    if isinstance(x, tuple):
        x = list(x)
    deployed = fuse(model) if fuse else model
    infer = _median_time(lambda: deployed.predict_on_batch(x), warmup, iters)
    figures = _rates("infer", infer, batch)
    if train:
        if image:
            y, loss = rng.integers(0, model.output_shape[-1], size=batch), "sparse_categorical_crossentropy"
        else:
            shape = np.shape(model.predict_on_batch(x))
            y, loss = rng.standard_normal(shape).astype("float32"), "mean_squared_error"
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss=loss)
        figures.update(_rates("train", _median_time(lambda: model.train_on_batch(x, y), warmup, iters), batch))
    figures.update(_memory(base))
    return figures


def _measure_timm(timm_name, x, rng, *, train, warmup, iters):
    try:
        import timm
        import torch
    except ImportError as err:
        raise ImportError(f"vs_timm needs timm and torch ({err}); pip install 'keras-hyper[convert]'.") from err

    base = _start_peak()
    model = timm.create_model(timm_name, pretrained=False).eval()
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def infer():
        with torch.inference_mode():
            model(images)

    figures = _rates("infer", _median_time(infer, warmup, iters), len(x))
    if train:
        model.train()
        labels = torch.from_numpy(rng.integers(0, model.num_classes, size=len(x)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()

        figures.update(_rates("train", _median_time(step, warmup, iters), len(x)))
    figures.update(_memory(base))
    return figures


def _median_time(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rates(phase, seconds, batch):
    return {f"{phase}_ms": _round(seconds * 1e3), f"{phase}_img_s": _round(batch / seconds)}


def _round(value):
    """Four significant digits: more than timing noise allows, whatever the magnitude."""
    return float(f"{value:.4g}")


def _pin_malloc():
    """Fixes glibc's mmap and trim thresholds (see the module docstring); False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    # musl has a mallopt that does nothing and returns 0
    return bool(mallopt(m_mmap_threshold, 2**30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _cpu_counters():
    """`(CPU-seconds the whole machine was busy, CPU-seconds of this process, wall seconds)`; None without
    /proc/stat."""
    try:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal, in clock ticks (guest time is inside user)
    ticks = [int(v) for v in cpu[1:9]]
    own = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def _others_since(before):
    """The average number of CPUs other processes kept busy since `before` (None where unknown)."""
    after = _cpu_counters()
    if before is None or after is None:
        return None
    busy, own, wall = (b - a for a, b in zip(before, after))
    return round(max(busy - own, 0.0) / wall, 2)


def _status_mb(field):
    """A memory field of /proc/self/status in MB, or None where there is no /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None


def _start_peak():
    """Starts a new peak-RSS window where the OS allows it; returns the current RSS in MB (None if unknown)."""
    try:
        # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return _status_mb("VmRSS")
    # The reset high-water mark is the window's base: the same counter as the peak read at the end, so the peak
    # cannot come out below it (VmRSS is kept per thread and lags the mark by a few pages).
    return _status_mb("VmHWM")


def _memory(base):
    """The window's start and peak RSS in MB."""
    peak = _peak_mb()
    # The kernel's RSS counters are cached per thread, so a window with no growth can read 0.1 MB below its start;
    # a peak cannot lie below the window's start.
    return dict(base_rss_mb=base, peak_rss_mb=peak if base is None else max(base, peak))


def _peak_mb():
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    # ru_maxrss is in kB on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


def _command(result, *, train, vs_timm):
    """The `keras-hyper benchmark` command line that measures `result` again."""
    parts = [f"KERAS_BACKEND={result['backend']} keras-hyper benchmark {result['model']}"]
    parts.append(f"--batch {result['batch']} --size {result['size']}")
    if result["weights"] is not None:
        parts.append(f"--weights {result['weights']}")
    if result["fused"]:
        parts.append("--fused")
    parts += [f"--set {shlex.quote(f'{key}={option_text(value)}')}" for key, value in result["options"].items()]
    if result["warmup"] != 2:
        parts.append(f"--warmup {result['warmup']}")
    if result["iters"] != 10:
        parts.append(f"--iters {result['iters']}")
    if not train:
        parts.append("--no-train")
    if vs_timm:
        parts.append("--vs-timm")
    return " ".join(parts)


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:#.3g}" if value < 10 else f"{value:.1f}"
    return str(value)


def _others(value):
    return "an unknown number of" if value is None else f"{value:.2f}"


def parse_option(text):
    """`KEY=VALUE` from the command line as `(key, value)`: VALUE a Python literal (`3`, `True`, `(7, 7)`), else the
    string itself (`incidence=sparse`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise ValueError(f"A builder option must read KEY=VALUE with KEY an argument name, got {text!r}.")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def option_text(value):
    """The VALUE text that `parse_option` reads back as `value`."""
    return value if isinstance(value, str) and parse_option(f"k={value}")[1] == value else repr(value)


def _label(result):
    """The model as the report and the card name it: a fused run and builder options are their own rows."""
    notes = (["fused"] if result["fused"] else []) + [f"{k}={option_text(v)}" for k, v in result["options"].items()]
    return f"{result['model']} ({', '.join(notes)})" if notes else result["model"]


def _size_text(result):
    size = result["size"]
    return f"{size}x{size}" if result["unit"] == "img" else f"size {size}"


def _titles(unit):
    return [title.format(unit=unit) for _, title in COLUMNS]


def format_report(result):
    """A readable markdown summary of a `benchmark()` result: one row per figure, keras-hyper next to timm."""
    timm = result["timm_name"]
    unit = result["unit"]

    def figure(prefix, key):
        if key == "peak_rss_mb":
            return f"{_fmt(result[prefix + key])} ({_fmt(result[prefix + 'base_rss_mb'])})"
        return _fmt(result[prefix + key])

    lines = [
        f"{_label(result)} on {result['backend']}: batch {result['batch']}, {_size_text(result)}, "
        f"{result['cpus']} CPUs, median of {result['iters']} runs after {result['warmup']} warm-up; other "
        f"processes kept {_others(result['other_cpus'])} CPUs busy on average; glibc malloc thresholds "
        + ("fixed" if result["malloc_pinned"] else "not fixed (not glibc)"),
        "",
        f"| | keras-hyper ({result['backend']}) |" + (f" timm {timm} (torch) | keras/timm |" if timm else ""),
        "|---|---:|" + ("---:|---:|" if timm else ""),
    ]
    for label, key, ratio in (
        (f"inference {unit}/s", "infer_img_s", "infer_ratio"),
        ("inference ms/batch", "infer_ms", None),
        (f"train step {unit}/s", "train_img_s", "train_ratio"),
        ("train step ms/batch", "train_ms", None),
        ("peak RSS MB (at start)", "peak_rss_mb", None),
    ):
        cells = [figure("", key)]
        if timm:
            cells += [figure("timm_", key), _fmt(result[ratio]) if ratio else ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    others, cpus = result["other_cpus"], result["cpus"]
    if others is not None and cpus and others > BUSY * cpus:
        lines += [
            "",
            f"warning: other processes kept {others:.2f} of {cpus} CPUs busy during the run. Multi-threaded "
            "runtimes slow down out of proportion when they share cores; measure on an idle machine.",
        ]
    lines += ["", f"reproduce: {result['command']}"]
    return "\n".join(lines)


def card_for(name):
    """The model card of a registered model in this checkout: `zoo/<arch>.md`, or where an architecture shares its
    module's card (LightHGNN's teachers and students, SLAB's Swin), `zoo/<module>.md`."""
    arch = registry.lookup(applications.model_info(name).name)[0]
    return catalog.card(arch, Path(__file__).resolve().parents[1] / "zoo")


def write_card(result, card_path):
    """Records a `benchmark()` result in the `## Speed` table of a model card.

    The row with the same (model, backend, batch, size) is replaced, other rows keep their place and a new
    key is appended; everything outside the table is left as it is. A card without a Speed section gets
    one at its end.

    Returns:
        The card's path.

    Raises:
        FileNotFoundError: the card does not exist.
        ValueError: the Speed section holds a table with other columns than `COLUMNS`.
    """
    path = Path(card_path)
    if not path.is_file():
        raise FileNotFoundError(f"Model card '{path}' does not exist; write the card before recording speed in it.")
    lines = path.read_text().splitlines()
    titles = _titles(result["unit"])
    cells = {**result, "model": _label(result)}
    new_row = _row([_cell(key, cells[key]) for key, _ in COLUMNS])
    table = [_row(titles), _row(["---"] * len(COLUMNS)), new_row]

    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", SECTION, "", INTRO, "", *table]
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"#{1,2} ", lines[i])), len(lines))
        first = next((i for i in range(start + 1, end) if lines[i].lstrip().startswith("|")), None)
        if first is None:
            at = end
            while at > start + 1 and not lines[at - 1].strip():
                at -= 1
            # a heading right after the new table needs a blank line; blank lines already there are kept
            lines[at:at] = ["", *table] + ([""] if at == end < len(lines) else [])
        elif _cells(lines[first]) != titles:
            raise ValueError(
                f"The {SECTION} table of '{path}' has columns {_cells(lines[first])}; write_card maintains a table "
                f"with columns {titles}. Rename or remove that table."
            )
        else:
            _put_row(lines, first, end, new_row)
    path.write_text("\n".join(lines) + "\n")
    return path


def _put_row(lines, first, end, new_row):
    """Replaces the row of `new_row`'s key in the table whose header is `lines[first]`, or appends it."""
    key_at = [i for i, (key, _) in enumerate(COLUMNS) if key in KEY]

    def row_key(line):
        cells = _cells(line)
        return [cells[i] if i < len(cells) else None for i in key_at]

    last = first
    while last + 1 < end and lines[last + 1].lstrip().startswith("|"):
        last += 1
    for i in range(first + 2, last + 1):
        if row_key(lines[i]) == row_key(new_row):
            lines[i] = new_row
            return
    lines.insert(last + 1, new_row)


def _cell(key, value):
    text = _fmt(value).replace("|", "\\|")
    return f"`{text}`" if key == "command" else text


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def _cells(line):
    """The cells of a markdown table row (escaped pipes stay inside their cell)."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [cell.strip() for cell in parts[1:-1]]
