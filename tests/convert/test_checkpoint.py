"""Tests of `read_checkpoint` on small torch, safetensors and npz files."""

import sys

import numpy as np
import pytest

from keras_hyper.convert.checkpoint import read_checkpoint

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

UNPICKLED = []


class Payload:
    """An arbitrary object; unpickling it would record the call in UNPICKLED."""

    def __setstate__(self, state):
        UNPICKLED.append(state)


def state_dict():
    return {
        "stem.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
        "stem.bias": torch.tensor([0.5, -1.5], dtype=torch.float16),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False]),
    }


def assert_same(weights, expected):
    assert list(weights) == list(expected)
    for name, tensor in expected.items():
        array = weights[name]
        assert isinstance(array, np.ndarray)
        assert array.dtype == tensor.numpy().dtype and np.array_equal(array, tensor.numpy()), name


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_plain_state_dict(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    torch.save(state_dict(), path)
    assert_same(read_checkpoint(path), state_dict())


def test_legacy_torch_format(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(state_dict(), path, _use_new_zipfile_serialization=False)
    assert_same(read_checkpoint(str(path)), state_dict())


@pytest.mark.parametrize(
    "wrapped",
    [
        {"model": state_dict(), "epoch": 3},
        {"state_dict": state_dict(), "optimizer": {"lr": 0.1}},
        {"state_dict_ema": {"x": torch.zeros(1)}, "state_dict": state_dict()},
        {"model_ema": state_dict(), "args": ["--lr", "0.1"]},
        {"module": state_dict()},
        {"model": {"module." + k: v for k, v in state_dict().items()}, "epoch": 3},
    ],
    ids=["model", "state_dict", "prefers-non-ema", "model_ema", "module", "wrapped-dataparallel"],
)
def test_wrapped_state_dict(tmp_path, wrapped):
    path = tmp_path / "w.pth"
    torch.save(wrapped, path)
    assert_same(read_checkpoint(path), state_dict())


def test_dataparallel_prefix(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"module." + k: v for k, v in state_dict().items()}, path)
    assert_same(read_checkpoint(path), state_dict())


def test_partial_module_prefix_kept(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, path)
    assert list(read_checkpoint(path)) == ["module.a", "b"]


def test_bfloat16_torch(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.tensor([1.5, -2.25], dtype=torch.bfloat16)}, path)
    weights = read_checkpoint(path)
    assert weights["w"].dtype == np.float32 and weights["w"].tolist() == [1.5, -2.25]


def test_non_tensor_in_state_dict(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(1), "epoch": 3}, path)
    with pytest.raises(ValueError, match="'epoch'"):
        read_checkpoint(path)


def test_no_state_dict(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"epoch": 3, "config": {"depth": 2}}, path)
    with pytest.raises(ValueError, match="no state dict"):
        read_checkpoint(path)


def test_arbitrary_object_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": state_dict(), "payload": Payload()}, path)
    with pytest.raises(ValueError, match="non-tensor Python objects") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "never unpickles" in str(info.value)
    assert UNPICKLED == []


def test_truncated_torch(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="could not read checkpoint") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    expected = {k: v for k, v in state_dict().items() if k != "mask"}
    safetensors_torch.save_file(expected, path)
    weights = read_checkpoint(path)
    assert sorted(weights) == sorted(expected)
    assert_same({k: weights[k] for k in expected}, expected)


def test_safetensors_bfloat16(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(
        {"w": torch.tensor([1.5, -2.25], dtype=torch.bfloat16), "h": torch.ones(2, dtype=torch.float16)}, path
    )
    weights = read_checkpoint(path)
    assert weights["w"].dtype == np.float32 and weights["w"].tolist() == [1.5, -2.25]
    assert weights["h"].dtype == np.float16


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file({"w": torch.ones(8)}, path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="could not read checkpoint") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "safetensors" in str(info.value)


def test_npz_prefix(tmp_path, monkeypatch):
    path = tmp_path / "ref.npz"
    arrays = {"sd/a.weight": np.ones((2, 3), np.float32), "sd/b": np.arange(4), "logits": np.zeros(5)}
    np.savez(path, **arrays)
    monkeypatch.setitem(sys.modules, "torch", None)  # npz needs neither torch nor safetensors
    weights = read_checkpoint(path, prefix="sd/")
    assert list(weights) == ["a.weight", "b"]
    assert np.array_equal(weights["a.weight"], arrays["sd/a.weight"])
    assert np.array_equal(weights["b"], arrays["sd/b"]) and weights["b"].dtype == arrays["sd/b"].dtype
    assert list(read_checkpoint(path)) == list(arrays)
    with pytest.raises(ValueError, match="'nope/'"):
        read_checkpoint(path, prefix="nope/")


def test_npz_refuses_pickles(tmp_path):
    path = tmp_path / "ref.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="could not read checkpoint"):
        read_checkpoint(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "w.ckpt"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth, \.pt, \.bin, \.npz") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize(("suffix", "module"), [(".pth", "torch"), (".safetensors", "safetensors")])
def test_missing_dependency(tmp_path, monkeypatch, suffix, module):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'pip install "keras-hyper\[convert\]"'):
        read_checkpoint(path)
