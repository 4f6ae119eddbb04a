"""keras_hyper.benchmark: sane figures on a small model, the Speed table of model cards, argument errors.

Never asserts speed: the figures depend on the machine and on what else runs on it.
(conftest.py points KERAS_HYPER_HOME at a temporary folder for every test.)
"""

import dataclasses

import keras
import pytest

from keras_hyper import benchmark as bench
from keras_hyper.applications import registry

HEADER = "| " + " | ".join(bench._titles("img")) + " |"
RULE = "| " + " | ".join("---" for _ in bench.COLUMNS) + " |"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One small run shared by the tests that read figures (it is the slow part of this file)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HYPER_HOME", str(tmp_path_factory.mktemp("keras_hyper_home")))
        return bench.benchmark("inceptionnext_atto", batch=1, size=64, warmup=0, iters=1, vs_timm=True)


def test_figures_are_sane(result):
    assert (result["model"], result["backend"], result["batch"], result["size"]) == (
        "inceptionnext_atto",
        keras.backend.backend(),
        1,
        64,
    )
    assert result["timm_name"] == "inception_next_atto"
    for prefix in ("", "timm_"):
        for key in ("infer_ms", "infer_img_s", "train_ms", "train_img_s", "peak_rss_mb"):
            assert result[prefix + key] > 0, prefix + key
        assert result[prefix + "infer_img_s"] == pytest.approx(1e3 / result[prefix + "infer_ms"], rel=0.02)
        if result[prefix + "base_rss_mb"] is not None:
            assert result[prefix + "peak_rss_mb"] >= result[prefix + "base_rss_mb"]
    for phase in ("infer", "train"):
        expected = result[f"{phase}_img_s"] / result[f"timm_{phase}_img_s"]
        assert result[f"{phase}_ratio"] == pytest.approx(expected, rel=0.02)
    assert result["cpus"] >= 1 and result["other_cpus"] >= 0
    assert result["command"] == (
        f"KERAS_BACKEND={keras.backend.backend()} keras-hyper benchmark inceptionnext_atto --batch 1 --size 64 "
        "--warmup 0 --iters 1 --vs-timm"
    )


def test_format_report(result):
    report = bench.format_report(result)
    assert f"inceptionnext_atto on {keras.backend.backend()}: batch 1, 64x64" in report
    assert "| inference img/s |" in report and "keras/timm" in report
    assert report.rstrip().endswith(result["command"])


def test_format_report_flags_a_busy_machine():
    assert "warning" not in bench.format_report(fake_result(other_cpus=0.01))
    assert "warning: other processes kept 1.00 of 2 CPUs busy" in bench.format_report(fake_result(other_cpus=1.0))


def test_vs_timm_needs_a_timm_name(monkeypatch):
    arch, variant = registry.lookup("inceptionnext_atto")
    orphan = dataclasses.replace(variant, name="inceptionnext_orphan", timm_name=None)
    monkeypatch.setitem(registry._MODELS, orphan.name, (arch, orphan))
    with pytest.raises(ValueError, match="inceptionnext_orphan has no timm counterpart"):
        bench.benchmark(orphan.name, batch=1, size=64, vs_timm=True)


def test_fused_times_the_reparameterized_model():
    result = bench.benchmark("inceptionnext_atto", batch=1, size=64, warmup=0, iters=1, train=False, fused=True)
    assert result["fused"] and result["infer_img_s"] > 0
    assert " --fused" in result["command"] and result["command"].endswith("--no-train")
    assert "inceptionnext_atto (fused) on" in bench.format_report(result)


def test_fused_needs_a_reparameterize(monkeypatch):
    arch, variant = registry.lookup("inceptionnext_atto")
    monkeypatch.setitem(registry._MODELS, variant.name, (dataclasses.replace(arch, reparameterize=None), variant))
    with pytest.raises(ValueError, match="inceptionnext_atto has no inference fusion"):
        bench.benchmark(variant.name, batch=1, size=64, fused=True)


def test_write_card_keeps_fused_rows_apart(tmp_path):
    card = tmp_path / "inceptionnext.md"
    card.write_text(CARD_HEAD + speed_section(row("inceptionnext_tiny", "jax", 8, 224, "1.0")) + CARD_TAIL)
    bench.write_card(fake_result(fused=True, infer_img_s=12.0), card)
    text = card.read_text()
    assert row("inceptionnext_tiny", "jax", 8, 224, "1.0") in text
    assert "| inceptionnext_tiny (fused) | jax | 8 | 224 | 12.0 |" in text


@pytest.mark.parametrize("name", ["hgnn_cora", "lighthgnn_mlp_cora"])
def test_non_image_models_run_on_their_sample_inputs(name, tmp_path):
    """The hypergraph teacher and its student: `size` is the number of vertices, rates count graphs."""
    result = bench.benchmark(name, batch=2, size=40, warmup=0, iters=1)
    assert (result["unit"], result["batch"], result["size"]) == ("sample", 2, 40)
    for key in ("infer_ms", "infer_img_s", "train_ms", "train_img_s"):
        assert result[key] > 0, key
    assert result["infer_img_s"] == pytest.approx(2e3 / result["infer_ms"], rel=0.02)
    report = bench.format_report(result)
    assert f"{name} on {keras.backend.backend()}: batch 2, size 40," in report
    assert "| inference sample/s |" in report
    assert result["command"].endswith(f"benchmark {name} --batch 2 --size 40 --warmup 0 --iters 1")
    card = tmp_path / "lighthgnn.md"
    card.write_text(CARD_HEAD + CARD_TAIL)
    bench.write_card(result, card)
    assert "| infer sample/s |" in card.read_text() and "| infer img/s |" not in card.read_text()


def test_options_reach_the_builder_and_name_the_row(tmp_path):
    """A sparse-incidence teacher: the option is built, its inputs made to fit, and it is its own card row."""
    result = bench.benchmark("hgnn_cora", batch=1, size=40, warmup=0, iters=1, options={"incidence": "sparse"})
    assert result["options"] == {"incidence": "sparse"} and result["infer_ms"] > 0 and result["train_ms"] > 0
    assert " --set incidence=sparse " in result["command"]
    assert f"hgnn_cora (incidence=sparse) on {keras.backend.backend()}: batch 1, size 40" in bench.format_report(result)
    card = tmp_path / "lighthgnn.md"
    card.write_text(CARD_HEAD + CARD_TAIL)
    bench.write_card(result, card)
    bench.write_card({**result, "options": {}}, card)
    text = card.read_text()
    assert "| hgnn_cora (incidence=sparse) | " in text and "| hgnn_cora | " in text
    with pytest.raises(ValueError, match="input size with `size`"):
        bench.benchmark("inceptionnext_atto", batch=1, options={"input_shape": (64, 64, 3)})
    with pytest.raises(ValueError, match=r"options \{'num_edges': 3\} contradict the sample inputs"):
        bench.benchmark("hgnn_cora", batch=1, size=40, options={"incidence": "sparse", "num_edges": 3})
    with pytest.raises(TypeError, match="no_such_argument"):
        bench.benchmark("hgnn_cora", batch=1, size=40, warmup=0, iters=1, options={"no_such_argument": 1})


@pytest.mark.parametrize(
    "text,expected",
    [("incidence=sparse", ("incidence", "sparse")), ("drop_rate=0.1", ("drop_rate", 0.1)), ("k=(7, 7)", ("k", (7, 7)))],
)
def test_parse_option(text, expected):
    assert bench.parse_option(text) == expected
    assert bench.parse_option(f"{expected[0]}={bench.option_text(expected[1])}") == expected


@pytest.mark.parametrize("text", ["sparse", "=1", "a b=1"])
def test_parse_option_rejects(text):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_option(text)


def test_card_for_finds_a_shared_card():
    assert bench.card_for("hgnn_cora").name == "lighthgnn.md" and bench.card_for("hgnn_cora").is_file()
    assert bench.card_for("inceptionnext_atto").name == "inceptionnext.md"


def test_non_image_models_keep_their_default_size():
    result = bench.benchmark("lighthgnn_mlp_cora", batch=1, warmup=0, iters=1, train=False)
    assert result["size"] == 2708


def test_non_image_model_without_sample_inputs(monkeypatch):
    arch, variant = registry.lookup("lighthgnn_mlp_cora")
    monkeypatch.setitem(registry._MODELS, variant.name, (dataclasses.replace(arch, sample_inputs=None), variant))
    with pytest.raises(ValueError, match="lighthgnn_mlp_cora is not an image model .* declares no `sample_inputs`"):
        bench.benchmark(variant.name, batch=1)


@pytest.mark.parametrize("kwargs", [dict(batch=0), dict(size=-1), dict(iters=0), dict(warmup=-1), dict(batch=2.0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="must be an integer"):
        bench.benchmark("inceptionnext_atto", **kwargs)


def fake_result(**overrides):
    """A benchmark() result without running one."""
    figures = dict(
        model="inceptionnext_tiny",
        options={},
        backend="jax",
        unit="img",
        batch=8,
        size=224,
        weights=None,
        fused=False,
        warmup=2,
        iters=10,
        cpus=2,
        other_cpus=0.01,
        malloc_pinned=True,
        timm_name="inception_next_tiny",
        infer_ms=800.0,
        infer_img_s=10.0,
        train_ms=4000.0,
        train_img_s=2.0,
        base_rss_mb=300.0,
        peak_rss_mb=1500.0,
        timm_infer_ms=400.0,
        timm_infer_img_s=20.0,
        timm_train_ms=2000.0,
        timm_train_img_s=4.0,
        timm_base_rss_mb=1500.0,
        timm_peak_rss_mb=2000.0,
        infer_ratio=0.5,
        train_ratio=0.5,
        command="KERAS_BACKEND=jax keras-hyper benchmark inceptionnext_tiny --batch 8 --size 224 --vs-timm",
    )
    figures.update(overrides)
    return figures


def row(model, backend, batch, size, value):
    cells = [model, backend, str(batch), str(size), value] + ["x"] * (len(bench.COLUMNS) - 5)
    return "| " + " | ".join(cells) + " |"


CARD_HEAD = "# InceptionNeXt\n\nIntro.\n\n## Variants\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
CARD_TAIL = "\n## Parity\n\nMeasured elsewhere.\n"


def speed_section(*rows):
    return "## Speed\n\nNotes kept as they are.\n\n" + "\n".join([HEADER, RULE, *rows]) + "\n"


def test_write_card_replaces_the_row_of_the_same_key(tmp_path):
    card = tmp_path / "inceptionnext.md"
    others = [row("inceptionnext_tiny", "torch", 8, 224, "7"), row("inceptionnext_atto", "jax", 8, 224, "50")]
    card.write_text(CARD_HEAD + speed_section(row("inceptionnext_tiny", "jax", 8, 224, "1"), *others) + CARD_TAIL)
    assert bench.write_card(fake_result(), card) == card
    text = card.read_text()
    assert text.startswith(CARD_HEAD + "## Speed\n\nNotes kept as they are.\n\n" + HEADER + "\n" + RULE + "\n")
    assert text.endswith("\n".join(others) + "\n" + CARD_TAIL)
    new = text.splitlines()[text.splitlines().index(RULE) + 1]
    assert new.startswith("| inceptionnext_tiny | jax | 8 | 224 | 10.0 | 800.0 | 2.00 | 1500.0 | 20.0 | 4.00 |")
    assert new.endswith(f"| `{fake_result()['command']}` |")
    assert text.count("| inceptionnext_tiny | jax |") == 1


def test_write_card_appends_a_new_key(tmp_path):
    card = tmp_path / "inceptionnext.md"
    old = row("inceptionnext_tiny", "jax", 8, 224, "1")
    card.write_text(CARD_HEAD + speed_section(old) + CARD_TAIL)
    bench.write_card(fake_result(batch=1, train_img_s=None, train_ratio=None), card)
    lines = card.read_text().splitlines()
    at = lines.index(old)
    assert lines[at + 1].startswith("| inceptionnext_tiny | jax | 1 | 224 | 10.0 | 800.0 | - |")
    assert lines[at + 2] == ""


def test_write_card_adds_a_missing_section(tmp_path):
    card = tmp_path / "inceptionnext.md"
    card.write_text(CARD_HEAD + CARD_TAIL.rstrip() + "\n\n\n")
    bench.write_card(fake_result(), card)
    text = card.read_text()
    assert text.startswith(CARD_HEAD + CARD_TAIL.rstrip() + "\n\n## Speed\n\n" + bench.INTRO + "\n\n" + HEADER + "\n")
    assert text.count("| inceptionnext_tiny | jax | 8 | 224 |") == 1


def test_write_card_adds_a_table_to_a_section_without_one(tmp_path):
    card = tmp_path / "inceptionnext.md"
    card.write_text(CARD_HEAD + "## Speed\n\nTo be measured.\n" + CARD_TAIL)
    bench.write_card(fake_result(), card)
    text = card.read_text()
    section = "## Speed\n\nTo be measured.\n\n" + HEADER + "\n" + RULE + "\n| inceptionnext_tiny"
    assert text.startswith(CARD_HEAD + section)
    assert text.endswith(" |\n" + CARD_TAIL)


def test_write_card_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.md' does not exist"):
        bench.write_card(fake_result(), tmp_path / "missing.md")
    card = tmp_path / "card.md"
    card.write_text("# Card\n\n## Speed\n\n| model | img/s |\n|---|---|\n| a | 1 |\n")
    with pytest.raises(ValueError, match="has columns"):
        bench.write_card(fake_result(), card)
    assert card.read_text() == "# Card\n\n## Speed\n\n| model | img/s |\n|---|---|\n| a | 1 |\n"
