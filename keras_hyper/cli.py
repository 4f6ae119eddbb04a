"""The `keras-hyper` command: list, inspect, run, export and benchmark the registered models.

    keras-hyper list '*atto*' --pretrained
    keras-hyper info inceptionnext_tiny
    keras-hyper predict inceptionnext_tiny.sail_in1k cat.jpg dog.png --top 3
    keras-hyper export inceptionnext_tiny --weights sail_in1k --format litert --out tiny.tflite
    keras-hyper benchmark inceptionnext_tiny --batch 8 --vs-timm

Random weights are a visible choice: `predict` refuses to run without a tag or `--weights` unless
`--random-weights` is given, and `export` and `benchmark` warn on stderr when they run random weights that
`--random-weights` did not ask for.

The Keras backend is the one of `KERAS_BACKEND`; `--backend` runs the command again in a child process with
that backend. User errors print `error: <message>` and exit with status 2 (`--debug` shows the traceback).
Export, benchmark, Pillow and the demo are imported only by the commands that need them.
"""

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
import traceback
from pathlib import Path

import keras
import numpy as np

from keras_hyper import applications
from keras_hyper.applications import registry
from keras_hyper.applications.preprocessing import _a
from keras_hyper.weights import files as weights_lib
from keras_hyper.weights.store import DownloadError

BACKENDS = ("jax", "tensorflow", "torch")
# Errors that describe a wrong argument, a missing file or package or an unsupported request, not a bug.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError, NotImplementedError, DownloadError)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def main(argv=None):
    """Runs the command line `argv` (default `sys.argv[1:]`) and returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.backend and args.backend != keras.backend.backend():
        # The backend is fixed when keras is imported, which happened before main() ran.
        env = {**os.environ, "KERAS_BACKEND": args.backend}
        return subprocess.run([sys.executable, "-m", "keras_hyper.cli", *argv], env=env).returncode
    try:
        return args.run(args) or 0
    except USER_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser():
    # --debug and --backend go before or after the command; SUPPRESS keeps a subcommand's default from
    # overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument(
        "--backend", choices=BACKENDS, default=argparse.SUPPRESS, help="run with this Keras backend (a child process)"
    )
    parser = argparse.ArgumentParser(
        prog="keras-hyper", description="A Keras 3 model zoo for the TensorFlow, JAX and PyTorch backends."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--backend", choices=BACKENDS, help="run with this Keras backend (a child process)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help_text):
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    sub = command("list", _list, "list the registered models")
    sub.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. '*tiny*'")
    sub.add_argument("--pretrained", action="store_true", help="list the weights tags, as name.tag")

    sub = command("info", _info, "show what keras-hyper knows of a model and its weights")
    sub.add_argument("name", help="a model name or name.tag")

    sub = command("predict", _predict, "classify images (image classifiers)")
    sub.add_argument("name", help="a model name or name.tag")
    sub.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    _weights_options(sub, "without weights, predict refuses unless --random-weights is given")
    sub.add_argument("--top", type=_positive, default=5, help="classes shown per image (default 5)")
    sub.add_argument("--size", type=_positive, help="input size (default: the model's)")

    sub = command("export", _export, "export a model to LiteRT (.tflite) or ONNX")
    sub.add_argument("name", help="a model name or name.tag")
    sub.add_argument("--format", required=True, choices=("litert", "onnx"))
    sub.add_argument("--out", required=True, help="the file to write")
    _weights_options(sub, "without weights, random weights with a warning")
    sub.add_argument("--quantize", choices=("float16", "dynamic", "int8"), help="LiteRT quantization")
    sub.add_argument("--batch-size", type=_positive, help="fix the batch size (default: any)")
    sub.add_argument(
        "--representative", nargs="+", metavar="IMAGE", help="calibration images (or folders) for --quantize int8"
    )
    sub.add_argument(
        "--size",
        type=_positive,
        help="static input size (default: the model's), or a non-image model's problem size (e.g. graph vertices)",
    )

    sub = command("benchmark", _benchmark, "measure inference and train-step speed")
    sub.add_argument("name", help="a model name or name.tag")
    sub.add_argument("--batch", type=_positive, default=8, help="batch size (default 8)")
    sub.add_argument(
        "--size", type=_positive, help="input size, or a non-image model's problem size (default: the model's)"
    )
    sub.add_argument("--no-train", dest="train", action="store_false", help="skip the train step")
    sub.add_argument("--vs-timm", action="store_true", help="also measure the timm implementation")
    sub.add_argument("--iters", type=_positive, default=10, help="timed runs; the median counts (default 10)")
    sub.add_argument("--warmup", type=_non_negative, default=2, help="untimed runs first (default 2)")
    _weights_options(sub, "without weights, random weights with a warning")
    sub.add_argument("--fused", action="store_true", help="time inference on the re-parameterised (deploy) model")
    sub.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a builder argument for this run, e.g. --set incidence=sparse (repeatable)",
    )
    sub.add_argument("--write-card", action="store_true", help="record the result in the model card zoo/<arch>.md")
    sub.add_argument("--card", help="the model card to record the result in (implies --write-card)")

    sub = command("parity", _parity, "compare with the official implementation's reference outputs")
    sub.add_argument("name", help="a model name (its architecture's fixtures are checked)")
    sub.add_argument(
        "--reference",
        help="the folder holding each architecture's reference outputs (default: $KERAS_HYPER_REFERENCE, else "
        "shared/reference beside the repository this package is in: <repository>/../shared/reference)",
    )

    command("demo", _demo, "run the keras-hyper demo")
    return parser


def _weights_options(sub, without):
    sub.add_argument("--weights", help=f"a weights tag, 'imagenet' or a weights file ({without})")
    sub.add_argument(
        "--random-weights", action="store_true", help="run random weights on purpose (no tag, no --weights)"
    )


def _check_weights_choice(args):
    """Random weights only by choice: `predict` refuses to run them unless `--random-weights` asks for them, and
    the other commands warn on stderr."""
    model_name, _, tag = args.name.partition(".")
    given = tag or args.weights
    if given and args.random_weights:
        raise ValueError(f"--random-weights contradicts the weights {given!r}; pass one or the other.")
    if given or args.random_weights:
        return
    tags = applications.model_info(model_name).weight_tags
    named = ", ".join(f"{model_name}.{t}" for t in tags)
    if args.command == "predict":
        where = f"name a tag ({named}) or pass --weights FILE"
        if not tags:
            where = f"no pretrained weights are registered for {model_name}, so pass --weights FILE"
        raise ValueError(
            f"predict needs trained weights: {where}; --random-weights runs random weights on purpose (the scores "
            "then mean nothing)."
        )
    known = f"its pretrained weights: {named}" if tags else f"no pretrained weights are registered for {model_name}"
    print(
        f"warning: {args.command} runs {model_name} with random weights ({known}). Name a tag or pass --weights "
        "for trained weights, or --random-weights to choose random weights without this warning.",
        file=sys.stderr,
    )


def _positive(text):
    return _integer(text, 1)


def _non_negative(text):
    return _integer(text, 0)


def _integer(text, low):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return value


def _table(header, rows):
    """Plain-text columns, left-aligned."""
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _millions(count):
    return f"{count / 1e6:.2f}M"


def _list(args):
    names = applications.list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        kind = "pretrained model" if args.pretrained else "model"
        raise ValueError(f"No registered {kind} matches {args.pattern!r}; `keras-hyper list` shows them all.")
    rows = []
    if args.pretrained:
        for name in names:
            info = applications.model_info(name)
            entry = weights_lib.manifest()[name]
            # the first numeric metric is the headline one (ImageNet top-1 for ImageNet weights)
            metric = next((f"{k}={v}" for k, v in entry.metrics.items() if isinstance(v, (int, float))), "-")
            rows.append([name, _millions(info.num_params), _input(info), metric, entry.license])
        print(_table(["name.tag", "params", "input", "metric", "license"], rows))
    else:
        for name in names:
            info = applications.model_info(name)
            tags = ", ".join(info.weight_tags) or "-"
            rows.append([name, _millions(info.num_params), _input(info), _opt(info.paper_top1), tags])
        print(_table(["name", "params", "input", "paper top-1", "weights"], rows))


def _input(info):
    """An image model's input size, else its kind (a hypergraph, audio, ... model takes its own inputs)."""
    return str(info.input_size) if info.kind == "image" else info.kind.split(" (")[0].replace(" ", "-")


def _opt(value):
    return "-" if value is None else str(value)


def _info(args):
    info = applications.model_info(args.name)
    _, _, only_tag = args.name.partition(".")
    fields = []
    for field in dataclasses.fields(info):
        value = getattr(info, field.name)
        if field.name == "paper":
            value = f"{value.title} (arXiv:{value.arxiv}, PAPERS.md #{value.number})"
        elif field.name == "num_params":
            value = f"{value:,}" + (f" ({info.num_classes}-class head)" if info.num_classes else "")
        elif field.name == "builder_kwargs":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif field.name == "weight_tags":
            value = ", ".join(value) or "none"
        fields.append((field.name.replace("_", " "), _opt(value)))
    width = max(len(label) for label, _ in fields)
    print("\n".join(f"{label.ljust(width)}  {value}" for label, value in fields))
    for tag in (only_tag,) if only_tag else info.weight_tags:
        entry = weights_lib.entry(info.name, tag)
        print(f"\nweights {entry.name}")
        details = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry) if f.name not in ("model", "tag")}
        details["metrics"] = ", ".join(f"{k}={v}" for k, v in entry.metrics.items()) or None
        if isinstance(entry.labels, (list, tuple)):
            shown = ", ".join(map(str, entry.labels[:10]))
            details["labels"] = shown + (f", ... ({len(entry.labels)} in all)" if len(entry.labels) > 10 else "")
        width = max(map(len, details))
        for key, value in details.items():
            if value is not None:
                print(f"  {key.replace('_', ' ').ljust(width)}  {value}")


def _tagged(name, weights):
    """`(model name, weights tag or None)` of a command's NAME and --weights, for labels and input size."""
    model_name, _, tag = name.partition(".")
    if tag or weights is None or weights_lib.is_path(weights):
        return model_name, tag or None
    if weights == "imagenet":
        found = [t for t in weights_lib.tags(model_name) if weights_lib.entry(model_name, t).num_classes == 1000]
        return model_name, found[0] if found else None
    return model_name, weights


def _image_files(items):
    """The image files named by IMAGE arguments: files as given, folders expanded to their images."""
    files = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"Folder '{item}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"Image '{item}' does not exist.")
    return files


def _prepared(name, weights, size, items):
    """What a command taking images needs: `(model info, input size, tag or None, files, preprocessed batch)`;
    no files and a None batch without `items`."""
    model_name, tag = _tagged(name, weights)
    info = applications.model_info(f"{model_name}.{tag}" if tag else model_name)
    if info.kind != "image":
        return info, size, tag, [], None
    size = size or info.input_size
    if not items:
        return info, size, tag, [], None
    files = _image_files(items)
    return info, size, tag, files, applications.eval_transform(info.name + (f".{tag}" if tag else ""), size)(files)


def _predict(args):
    info, size, tag, files, batch = _prepared(args.name, args.weights, args.size, [])
    if info.kind != "image":
        raise ValueError(
            f"predict classifies image files, and {info.name} is {_a(info.kind)} model, whose inputs are no image "
            f"file: build them as its card says and call applications.load({info.name!r}).predict(inputs)."
        )
    _check_weights_choice(args)
    info, size, tag, files, batch = _prepared(args.name, args.weights, args.size, args.images)
    model = applications.load(args.name, weights=args.weights, input_shape=(size, size, 3), progress=True)
    scores = np.asarray(model.predict_on_batch(batch))
    entry = weights_lib.entry(info.name, tag) if tag else None
    labels = applications.labels(entry.name) if entry is not None and entry.labels else None
    for path, best in zip(files, applications.decode_predictions(scores, labels, min(args.top, scores.shape[-1]))):
        print(path)
        for label, score in best:
            print(f"  {score:.4f}  {label}")


def _export(args):
    if args.quantize and args.format != "litert":
        raise ValueError(f"--quantize applies to --format litert; {args.format} export is float32.")
    if args.representative and args.quantize != "int8":
        raise ValueError("--representative calibrates --quantize int8 and is used with it only.")
    if args.quantize == "int8" and not args.representative:
        raise ValueError("--quantize int8 needs calibration images: --representative IMAGE [IMAGE ...].")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"Output folder '{out.parent}' does not exist.")
    _check_weights_choice(args)
    info, size, _, _, calibration = _prepared(args.name, args.weights, args.size, args.representative)
    from keras_hyper.export import export_litert, export_onnx

    batch = args.batch_size or (registry.lookup(info.name)[0].litert_batch if args.format == "litert" else None)
    if info.kind == "image":
        model = applications.load(args.name, weights=args.weights, input_shape=(size, size, 3), progress=True)
        sample = None
    else:
        model, sample = _non_image_model(args, info)
    if args.format == "litert":
        report = export_litert(
            model, out, quantize=args.quantize, representative_data=calibration, sample=sample, batch_size=batch
        )
    else:
        report = export_onnx(model, out, sample=sample, batch_size=batch)
    print(report)
    if info.kind == "image":
        quantized = ", then quantized with the input tensor's scale and zero point" if args.quantize == "int8" else ""
        print(f"input: {size}x{size} RGB normalised by keras_hyper.applications.eval_transform{quantized}")
    else:
        # LiteRT fixes the dimensions other than the batch to the sample's; ONNX keeps the model's
        fixed = args.format == "litert" and sample is not None
        samples = sample if isinstance(sample, list) else [sample] * len(model.inputs)
        shapes = ", ".join(
            f"{n} {(None, *x.shape[1:]) if fixed else tuple(t.shape)} {t.dtype}"
            for n, t, x in zip(report.inputs, model.inputs, samples)
        )
        print(f"inputs: {shapes} (None: any size)")


def _non_image_model(args, info):
    """`(model, sample or None)` of a non-image model: built with its own inputs; where its architecture makes
    realistic inputs (`sample_inputs`, as the benchmark uses), a batch-1 sample of `--size` (its problem size, e.g.
    vertices) verifies the export, and fixes the sizes LiteRT needs static."""
    if args.quantize == "int8":
        raise ValueError(f"--quantize int8 calibrates on images; {info.name} is {_a(info.kind)} model.")
    arch = registry.lookup(info.name)[0]
    if arch.sample_inputs is None:
        if args.size:
            raise ValueError(f"--size sets an image model's input size; {info.name} is {_a(info.kind)} model.")
        return applications.load(args.name, weights=args.weights, progress=True), None
    sample, _, needed = arch.sample_inputs(dict(info.builder_kwargs), 1, args.size, np.random.default_rng(0))
    model = applications.load(args.name, weights=args.weights, progress=True, **needed)
    return model, list(sample) if isinstance(sample, tuple) else sample


def _benchmark(args):
    from keras_hyper import benchmark as bench

    card = (args.card or bench.card_for(args.name)) if args.write_card or args.card else None
    if card is not None and not Path(card).is_file():
        # checked before the run, which takes minutes, rather than after it
        raise FileNotFoundError(f"Model card '{card}' does not exist; write the card before recording speed in it.")
    _check_weights_choice(args)
    result = bench.benchmark(
        args.name,
        batch=args.batch,
        size=args.size,
        train=args.train,
        vs_timm=args.vs_timm,
        warmup=args.warmup,
        iters=args.iters,
        weights=args.weights,
        fused=args.fused,
        options=dict(bench.parse_option(text) for text in args.options),
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(bench.format_report(result))
    if card is not None:
        print(f"recorded in {bench.write_card(result, card)}")


def reference_root(explicit=None):
    """The reference fixtures' folder: `explicit` (--reference), else $KERAS_HYPER_REFERENCE, else
    `shared/reference` beside the repository this package lives in (its parent folder), wherever the command runs.

    Raises:
        FileNotFoundError: naming every place looked at, where none exists.
    """
    repository = Path(__file__).resolve().parents[1]
    env = os.environ.get("KERAS_HYPER_REFERENCE")
    if explicit or env:
        # an explicit choice is final: a wrong one is an error, not a reason to look elsewhere
        how, root = ("--reference", explicit) if explicit else ("$KERAS_HYPER_REFERENCE", env)
        if not Path(root).is_dir():
            raise FileNotFoundError(f"Reference folder '{root}' (from {how}) does not exist.")
        return Path(root)
    root = repository.parent / "shared" / "reference"
    if not root.is_dir():
        raise FileNotFoundError(
            f"No reference folder: --reference not given, $KERAS_HYPER_REFERENCE not set, and '{root}' (beside the "
            "repository) does not exist. Pass --reference FOLDER."
        )
    return root


def _parity(args):
    from keras_hyper.convert import reference

    arch, _ = registry.lookup(args.name.partition(".")[0])
    if arch.reference is None:
        raise ValueError(f"Architecture {arch.name!r} has no reference fixtures.")
    root = reference_root(args.reference)
    folder = root / arch.reference.folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Reference folder '{folder}' does not exist ({arch.name}'s fixtures under '{root}'); pass --reference "
            "or set KERAS_HYPER_REFERENCE to the folder that holds them."
        )
    results = reference.check(arch, folder)
    rows = [(r.case, f"{r.max_abs_diff:.2e}", f"{r.tolerance:.2e}", "ok" if r.ok else "FAIL") for r in results]
    print(f"{arch.name} against {folder} on the {keras.backend.backend()} backend")
    print(_table(("case", "max |keras - official|", "tolerance", ""), rows))
    return 0 if all(r.ok for r in results) else 1


def _demo(args):
    importlib.import_module("keras_hyper.demo").main()


if __name__ == "__main__":
    sys.exit(main())
