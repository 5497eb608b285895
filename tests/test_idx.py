"""IDX files (Debian's dataset-fashion-mnist) read with NumPy, and a small real-data run when the
package is installed."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from maskshift.data import load_dataset
from maskshift.data.idx import DEBIAN_DIRS, IDX_FILES, IDXFormatError, find_idx_dir, read_idx


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """``array`` (uint8) as an IDX file, the way the MNIST files are laid out."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if compress else path
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def fake_idx_dir(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = IDX_FILES[split]
        write_idx(root / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        # plain (not gzipped) labels: both forms are read
        write_idx(root / labels, (np.arange(n) % 10).astype(np.uint8), compress=False)
    return root


def test_read_idx_round_trips_gzipped_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (True, False):
        path = write_idx(tmp_path / f"a{compress}", a, compress=compress)
        np.testing.assert_array_equal(read_idx(path), a)


def test_read_idx_refuses_bad_magic_and_truncated_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(IDXFormatError, match="bad magic"):
        read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "short", np.zeros((4, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IDXFormatError, match="truncated"):
        read_idx(path)


def test_fashion_mnist_from_an_idx_directory_uses_the_tfds_split_rules(tmp_path):
    fake_idx_dir(tmp_path)
    assert find_idx_dir("fashion_mnist", tmp_path) == tmp_path
    data = load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert dict(data.config)["data"] == "idx"
    assert data.class_names[7] == "Sneaker" and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 20)
    assert data.input_shape == (28, 28, 1) and data.train.x.dtype == np.float32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    # the same seeded 90/10 permutation as the TFDS path, so the same data gives the same split
    assert data.fingerprint() == load_dataset("fashion_mnist", data_dir=str(tmp_path)).fingerprint()
    # a fashion-mnist subdirectory of --data-dir is found too
    assert find_idx_dir("fashion_mnist", tmp_path.parent) is None
    sub = tmp_path / "sub"
    (sub / "fashion-mnist").mkdir(parents=True)
    fake_idx_dir(sub / "fashion-mnist")
    assert find_idx_dir("fashion_mnist", sub) == sub / "fashion-mnist"


def test_missing_dataset_names_the_debian_package(tmp_path, capsys):
    from maskshift.cli import train as cli_train

    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli_train.main(["--dataset", "fashion_mnist", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "run").exists()


REAL = DEBIAN_DIRS["fashion_mnist"]
needs_real = pytest.mark.skipif(
    find_idx_dir("fashion_mnist") is None,
    reason=f"Fashion-MNIST IDX files not in {REAL} (apt-get install dataset-fashion-mnist)")


@pytest.mark.slow
@needs_real
def test_debian_fashion_mnist_is_read_whole():
    data = load_dataset("fashion_mnist")
    assert dict(data.config)["data"] == "idx"
    assert (len(data.train) + len(data.val), len(data.test)) == (60000, 10000)
    # Fashion-MNIST is balanced: 6,000 train and 1,000 test images per class
    assert np.bincount(data.test.y).tolist() == [1000] * 10
    assert np.bincount(np.concatenate([data.train.y, data.val.y])).tolist() == [6000] * 10


@pytest.mark.slow
@needs_real
def test_gradient_unlearning_on_real_fashion_mnist_subset(tmp_path):
    """A small real-data run: 3,000 train images, the built-in 28x28 CNN, the gradient controller
    forgetting "Sneaker"; the report comes from 1,000 real test images."""
    from maskshift.run import RunConfig, train_and_evaluate
    from maskshift.tasks import unlearning_task

    data = load_dataset("fashion_mnist", max_train=3000, max_test=1000)
    task = unlearning_task(7, dataset=data)
    cfg = RunConfig(env="mask", task="unlearn", dataset="fashion_mnist", algo="gradient",
                    forget_classes=(7,))
    train_and_evaluate(cfg, tmp_path / "run", task=task, log=lambda *_: None)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    before, after = saved["before"], saved["after"]
    assert before["forget_acc"] > 0.8          # the pretrained CNN knows sneakers
    assert after["forget_acc"] <= 0.05 and after["retain_acc"] >= before["retain_acc"] - 0.05


@pytest.mark.long
def test_real_data_benchmark_on_a_small_idx_directory(tmp_path):
    """benchmarks/real_data.py end to end on tiny IDX files: the compare run per class, the table
    with the retrained model's MIA beside each method's, and the target counts."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "idx").mkdir()
    data = fake_idx_dir(tmp_path / "idx", n_train=300, n_test=60)
    out = tmp_path / "bench"
    cmd = [sys.executable, str(root / "benchmarks" / "real_data.py"), "--data-dir", str(data),
           "--classes", "3", "--seeds", "0", "--methods", "MaskWorld-gradient",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((out / "real_data.json").read_text())
    assert saved["methods"] == ["retrain", "MaskWorld-gradient"]
    rows = {r["method"]: r for r in saved["rows"]}
    assert set(rows) == {"original", "retrain", "MaskWorld-gradient"}
    assert rows["MaskWorld-gradient"]["retrain_mia"] == rows["retrain"]["mia"]
    k, n = saved["meets"]["MaskWorld-gradient"]
    assert n == 1 and k == rows["MaskWorld-gradient"]["meets"]
    md = (out / "real_data.md").read_text()
    assert "| 3 | MaskWorld-gradient |" in md
    sm = saved["summary"]["MaskWorld-gradient"]
    assert sm["mia_gap_to_retrain"] == pytest.approx(abs(rows["MaskWorld-gradient"]["mia"]
                                                         - rows["retrain"]["mia"]))
    assert sm["retain_change"] == pytest.approx(rows["MaskWorld-gradient"]["retain_acc"]
                                                - rows["original"]["retain_acc"])
    assert f"| MaskWorld-gradient | {k}/1 | " in md
    # a class outside the labels is one line and exit 2
    proc = subprocess.run([*cmd[:4], "--classes", "10"], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert proc.returncode == 2 and "outside 0..9" in proc.stderr.strip().splitlines()[-1]
