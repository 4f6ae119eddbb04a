"""The keras-hyper command, run in-process through `cli.main(argv)`.

Real exports are tested in tests/export; here only the export command's argument checks run.
(conftest.py points KERAS_HYPER_HOME at a temporary folder for every test.)
"""

import re
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_hyper import cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def images(tmp_path):
    """Two small images: a wide RGB one and a tall grayscale one."""
    rng = np.random.default_rng(0)
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(wide)
    Image.fromarray(rng.integers(0, 256, (90, 40), dtype=np.uint8)).save(tall)
    return wide, tall


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "predict", "export", "benchmark", "demo"):
        assert command in out


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code == 2


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "params", "input", "paper", "top-1", "weights"]
    tiny = next(line for line in out.splitlines() if line.startswith("inceptionnext_tiny "))
    assert tiny.split()[:5] == ["inceptionnext_tiny", "28.06M", "224", "82.508", "sail_in1k"]


def test_list_pretrained_with_a_pattern(capsys):
    code, out, _ = run(capsys, "list", "*atto*", "--pretrained")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["name.tag", "params", "input", "metric", "license"]
    assert all(row.startswith("inceptionnext_atto.") for row in rows)
    sail = next(row for row in rows if row.startswith("inceptionnext_atto.sail_in1k "))
    assert sail.split() == ["inceptionnext_atto.sail_in1k", "4.16M", "224", "imagenet_top1=75.348", "Apache-2.0"]


def test_list_without_match(capsys):
    code, out, err = run(capsys, "list", "nothing*")
    assert (code, out) == (2, "")
    assert err.startswith("error: No registered model matches 'nothing*'")


def test_info(capsys):
    code, out, _ = run(capsys, "info", "inceptionnext_tiny")
    assert code == 0
    for expected in (
        "timm name       inception_next_tiny",
        "num params      28,055,680",
        "arXiv:2303.16900",
        "weights inceptionnext_tiny.sail_in1k",
        "https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth",
        "imagenet_top1=82.508",
    ):
        assert expected in out


def test_info_of_a_tag_shows_that_tag(capsys):
    code, out, _ = run(capsys, "info", "inceptionnext_base.sail_in1k_384")
    assert code == 0
    assert "input size      384" in out
    assert "weights inceptionnext_base.sail_in1k_384" in out
    assert "weights inceptionnext_base.sail_in1k\n" not in out


def test_list_and_info_show_a_non_image_models_own_kind_and_head(capsys):
    """Graph, audio and CIFAR models were listed with 224 px, ImageNet statistics and a 1000-class head."""
    code, out, _ = run(capsys, "list", "*_cora")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["hgnn_cora"][2] == "hypergraph" and rows["lighthgnn_mlp_cora"][2] == "vertex-features"
    code, out, _ = run(capsys, "info", "hgnn_cora")
    assert code == 0
    assert "num params      46,119 (7-class head)" in out and "kind            hypergraph" in out
    for field in ("input size", "mean", "std", "crop pct", "interpolation"):
        assert f"\n{field.ljust(15)} -\n" in out, field
    code, out, _ = run(capsys, "info", "d3net_aec_paper")
    assert "num params      355,204\n" in out and "kind            audio" in out
    code, out, _ = run(capsys, "info", "shallow_cifar10_deep")
    assert "(10-class head)" in out and "input size      32" in out and "0.4914" in out


def test_predict_refuses_a_non_image_model(capsys, images):
    code, out, err = run(capsys, "predict", "hgnn_cora", str(images[0]))
    assert (code, out) == (2, "")
    assert err.startswith("error: predict classifies image files, and hgnn_cora is a hypergraph model")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="one real CLI export, in-process under TensorFlow")
def test_export_a_non_image_model(capsys, tmp_path):
    """It failed with "takes no argument(s) ['input_shape']"; the vertex count is the problem size (--size)."""
    out_path = tmp_path / "mlp.tflite"
    argv = ["export", "lighthgnn_mlp_cora", "--format", "litert", "--out", str(out_path), "--size", "50"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "batch any, inputs features, outputs layer1" in out and "inputs: features (None, 50, 1433) float32" in out
    assert out_path.stat().st_size > 0


def test_unknown_model(capsys):
    code, out, err = run(capsys, "info", "inceptionnext_tinny")
    assert (code, out) == (2, "")
    assert err.startswith("error: Unknown model 'inceptionnext_tinny'. Did you mean 'inceptionnext_tiny'")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--debug", "info", "nope"], ["info", "nope", "--debug"]])
def test_debug_shows_the_traceback(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: Unknown model 'nope'")


def test_predict_with_random_weights_prints_class_indices(capsys, images):
    argv = ["predict", "inceptionnext_atto", *map(str, images), "--size", "64", "--top", "3", "--random-weights"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "random weights" not in err  # asked for: nothing to warn about
    lines = out.splitlines()
    assert [lines[0], lines[4]] == [str(images[0]), str(images[1])]
    for block in (lines[1:4], lines[5:8]):
        scores = [float(line.split()[0]) for line in block]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert all(line.split()[1] == "class" and 0 <= int(line.split()[2]) < 1000 for line in block)


def test_predict_with_a_tag_prints_its_labels(capsys, images):
    """The shipped digits weights: no download, real labels."""
    argv = ["predict", "inceptionnext_atto.digits", str(images[0]), "--top", "2"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 3
    assert all(line.split(None, 1)[1] in [str(d) for d in range(10)] for line in lines[1:])


@pytest.mark.once
def test_predict_refuses_random_weights_unless_asked(capsys, images):
    code, out, err = run(capsys, "predict", "inceptionnext_atto", str(images[0]))
    assert (code, out) == (2, "")
    tags = "inceptionnext_atto.sail_in1k, inceptionnext_atto.digits"
    assert err.startswith(f"error: predict needs trained weights: name a tag ({tags}) or pass --weights FILE;")
    assert "--random-weights" in err
    code, _, err = run(capsys, "predict", "inceptionnext_atto.digits", str(images[0]), "--random-weights")
    assert code == 2 and err.startswith("error: --random-weights contradicts the weights 'digits'")


@pytest.mark.once
def test_export_warns_about_random_weights(capsys, tmp_path, monkeypatch):
    import keras_hyper.export

    # the export itself is tested in tests/export; here only what the command says before it
    monkeypatch.setattr(keras_hyper.export, "export_onnx", lambda model, out, **options: f"exported {model.name}")
    argv = ["export", "inceptionnext_atto", "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--size", "32"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert out.startswith("exported inceptionnext_atto")
    assert err.startswith("warning: export runs inceptionnext_atto with random weights (its pretrained weights: ")


def test_predict_names_a_missing_image(capsys, images, tmp_path):
    missing = tmp_path / "missing.png"
    code, out, err = run(capsys, "predict", "inceptionnext_atto", str(images[0]), str(missing), "--random-weights")
    assert (code, out) == (2, "")
    assert err == f"error: Image '{missing}' does not exist.\n"


def test_predict_names_an_unreadable_image(capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    code, _, err = run(capsys, "predict", "inceptionnext_atto", str(broken), "--random-weights")
    assert code == 2
    assert err.startswith(f"error: Cannot read image '{broken}'")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "onnx", "--quantize", "float16"], "--quantize applies to --format litert"),
        (["--format", "litert", "--quantize", "int8"], "--quantize int8 needs calibration images"),
        (["--format", "litert", "--representative", "x.png"], "--representative calibrates --quantize int8"),
    ],
)
def test_export_argument_errors(capsys, tmp_path, extra, message):
    code, _, err = run(capsys, "export", "inceptionnext_atto", "--out", str(tmp_path / "m.bin"), *extra)
    assert code == 2
    assert err.startswith(f"error: {message}")


def test_export_needs_an_existing_output_folder(capsys, tmp_path):
    out = tmp_path / "absent" / "m.tflite"
    code, _, err = run(capsys, "export", "inceptionnext_atto", "--format", "litert", "--out", str(out))
    assert code == 2
    assert err == f"error: Output folder '{out.parent}' does not exist.\n"


@pytest.mark.parametrize("extra", [["--format", "tflite"], ["--format", "litert", "--quantize", "int4"], []])
def test_export_rejects_bad_choices(capsys, tmp_path, extra):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "inceptionnext_atto", "--out", str(tmp_path / "m"), *extra])
    assert exit_.value.code == 2


def test_benchmark_records_in_the_card(capsys, tmp_path):
    card = tmp_path / "inceptionnext.md"
    card.write_text("# InceptionNeXt\n")
    argv = ["benchmark", "inceptionnext_atto", "--batch", "1", "--size", "64", "--iters", "1", "--warmup", "0"]
    code, out, err = run(capsys, *argv, "--no-train", "--card", str(card))
    assert code == 0, err
    assert "| inference img/s |" in out and f"recorded in {card}" in out
    assert "keras-hyper inceptionnext_atto" in err  # progress goes to stderr
    assert err.startswith("warning: benchmark runs inceptionnext_atto with random weights")
    backend = keras.backend.backend()
    speed = card.read_text().split("## Speed", 1)[1]
    assert f"| inceptionnext_atto | {backend} | 1 | 64 |" in speed
    assert f"`KERAS_BACKEND={backend} keras-hyper benchmark inceptionnext_atto --batch 1 --size 64 --warmup 0 " in speed


def test_benchmark_checks_the_card_before_running(capsys, tmp_path):
    card = tmp_path / "absent.md"
    code, _, err = run(capsys, "benchmark", "inceptionnext_atto", "--card", str(card))
    assert code == 2
    assert err.startswith(f"error: Model card '{card}' does not exist")


def test_backend_option_runs_a_child_process(capfd):
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    code = cli.main(["list", "*atto", "--backend", other])
    out = capfd.readouterr().out
    assert code == 0
    assert "inceptionnext_atto" in out


def test_demo_runs_the_demo_module(capsys, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "keras_hyper.demo", types.SimpleNamespace(main=lambda: calls.append(1)))
    code, _, _ = run(capsys, "demo")
    assert (code, calls) == (0, [1])


def test_parity_against_the_reference_fixtures(capsys):
    from testutil import reference_dir

    folder = reference_dir("inceptionnext")
    code, out, err = run(capsys, "parity", "inceptionnext_atto", "--reference", str(folder.parent))
    assert code == 0, err
    assert "tiny_strong" in out and "FAIL" not in out


def test_parity_names_a_missing_reference_folder(capsys, tmp_path):
    code, _, err = run(capsys, "parity", "inceptionnext_atto", "--reference", str(tmp_path))
    assert code == 2 and f"'{tmp_path / 'inceptionnext'}' does not exist" in err
    code, _, err = run(capsys, "parity", "inceptionnext_atto", "--reference", str(tmp_path / "absent"))
    assert code == 2 and err == f"error: Reference folder '{tmp_path / 'absent'}' (from --reference) does not exist.\n"


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="backend-independent: checked once, in the torch run")
def test_reference_folder_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """--reference, then $KERAS_HYPER_REFERENCE, then shared/reference beside the repository, not the working
    directory's ../shared/reference (the command failed outside the repository root)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KERAS_HYPER_REFERENCE", raising=False)
    beside = Path(cli.__file__).resolve().parents[2] / "shared" / "reference"
    if beside.is_dir():
        assert cli.reference_root() == beside
    else:
        with pytest.raises(FileNotFoundError, match=f"'{re.escape(str(beside))}' \\(beside the repository\\)"):
            cli.reference_root()
    monkeypatch.setenv("KERAS_HYPER_REFERENCE", str(tmp_path))
    assert cli.reference_root() == tmp_path
    monkeypatch.setenv("KERAS_HYPER_REFERENCE", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="from \\$KERAS_HYPER_REFERENCE"):
        cli.reference_root()
    assert cli.reference_root(str(tmp_path)) == tmp_path  # --reference comes first


def test_parity_help_says_where_the_reference_is_looked_for(capsys):
    with pytest.raises(SystemExit):
        cli.main(["parity", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "$KERAS_HYPER_REFERENCE" in out and "../shared/reference" in out
