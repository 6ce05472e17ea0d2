# SPDX-License-Identifier: AGPL-3.0-only
"""Sample packages: reproducible to the byte, runnable, and carrying lineage."""

from __future__ import annotations

import difflib
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_digits, load_iris

from mercato.models import ModelPackage, load_package

BUILD = "import sys; from mercato.models.samples import build_samples; build_samples(sys.argv[1])"


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _explain(dirs: list[Path], first: dict[str, str], second: dict[str, str]) -> str:
    """Which fields of a differing ONNX file differ (weights left out), to find the cause."""
    lines = []
    for name in sorted(k for k in first if first[k] != second.get(k) and k.endswith(".onnx")):
        protos = [
            str(onnx.load(str(d / name), load_external_data=False)).splitlines() for d in dirs
        ]
        lines += [name, *list(difflib.unified_diff(*protos, lineterm=""))[:60]]
    return "\n".join(lines)


def test_builds_in_fresh_processes_are_byte_identical(tmp_path: Path) -> None:
    dirs = [tmp_path / "first", tmp_path / "second"]
    # Two interpreters at once: nothing may leak between builds through process state.
    builds = [subprocess.Popen([sys.executable, "-c", BUILD, str(d)]) for d in dirs]
    assert [b.wait(timeout=300) for b in builds] == [0, 0]
    first, second = (_digests(d) for d in dirs)
    assert len(first) >= 9  # 4 packages x (model + card) + external data
    assert first == second, _explain(dirs, first, second)
    for name in ("iris-logreg", "iris-logreg-tuned", "digits-mlp", "diabetes-gbr"):
        a = load_package(dirs[0] / name).manifest_bytes()
        b = load_package(dirs[1] / name).manifest_bytes()
        assert a == b


def test_sample_manifests(samples: dict[str, ModelPackage]) -> None:
    assert set(samples) == {"iris-logreg", "iris-logreg-tuned", "digits-mlp", "diabetes-gbr"}
    digits = samples["digits-mlp"]
    assert {f.role for f in digits.files} == {"model", "external_data", "card"}
    assert digits.manifest["inputs"][0]["shape"] == ["N", 64]
    assert samples["diabetes-gbr"].manifest["card"]["pipeline_tag"] == "tabular-regression"
    for package in samples.values():
        assert package.card.license == "cc0-1.0"
        assert package.card.missing_sections() == ()
        assert package.manifest["producer"]["name"] == "skl2onnx"


def _accuracy(package: ModelPackage, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(package.entry_path), providers=["CPUExecutionProvider"])
    label = session.run(["label"], {"X": x.astype(np.float32)})[0]
    return float((label == y).mean())


def test_derived_model_names_its_parent_and_improves_on_it(
    samples: dict[str, ModelPackage],
) -> None:
    parent, child = samples["iris-logreg"], samples["iris-logreg-tuned"]
    assert child.manifest["card"]["base_model"] == ["iris-logreg"]
    assert child.manifest["card"]["base_model_relation"] == "finetune"
    assert child.manifest["inputs"] == parent.manifest["inputs"]
    assert child.manifest["outputs"] == parent.manifest["outputs"]
    assert child.model_sha256 != parent.model_sha256
    iris = load_iris()
    assert _accuracy(child, iris.data, iris.target) > _accuracy(parent, iris.data, iris.target)


def test_digits_sample_recognises_digits(samples: dict[str, ModelPackage]) -> None:
    digits = load_digits()
    assert _accuracy(samples["digits-mlp"], digits.data, digits.target) > 0.9
