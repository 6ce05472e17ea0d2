# SPDX-License-Identifier: AGPL-3.0-only
"""File paths in a browser upload: only plain relative paths inside the package pass."""

from __future__ import annotations

import pytest

from mercato.errors import UploadError, UploadPathError
from mercato.gateway.api.uploads import UploadFile, UploadIn, _package_paths, upload_path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("model\x00.onnx", "NUL"),  # was a 500: ValueError from the file system call
        ("a" * 300 + ".onnx", "longer than 255"),  # was a 500: ENAMETOOLONG
        ("d/" * 600 + "x", "longer than 1024"),
        ("/" * 33 + "x/" * 33 + "y", "absolute"),
        ("/etc/passwd", "absolute"),
        ("../outside", "leaves the package"),
        ("a/../../outside", "leaves the package"),
        ("a\\..\\b", "backslash"),
        ("line\nbreak", "control"),
        ("\ud800.onnx", "not valid Unicode"),
        ("", "empty"),
        ("./", "empty"),
        ("/".join(["d"] * 40), "folders deep"),
    ],
)
def test_odd_paths_are_refused_with_a_typed_400_error(path: str, reason: str) -> None:
    with pytest.raises(UploadPathError, match=reason) as caught:
        upload_path(path)
    assert caught.value.code == "upload_path_invalid"
    assert isinstance(caught.value, ValueError)


def test_plain_paths_pass() -> None:
    assert str(upload_path("model.onnx")) == "model.onnx"
    assert str(upload_path("assets/labels.txt")) == "assets/labels.txt"
    assert str(upload_path("d\u00e9j\u00e0/\u00e9t\u00e9.md")) == "d\u00e9j\u00e0/\u00e9t\u00e9.md"


@pytest.mark.parametrize(
    ("paths", "reason"),
    [
        (["a", "a/b"], "both a file and a folder"),  # was a 500: NotADirectoryError
        (["a/b", "a"], "both a file and a folder"),  # was a 500: IsADirectoryError
        (["x.onnx", "./x.onnx"], "sent twice"),
    ],
)
def test_paths_that_collide_are_refused(paths: list[str], reason: str) -> None:
    body = UploadIn(name="m", files=[UploadFile(path=p, data="") for p in paths], encrypt=False)
    with pytest.raises(UploadError, match=reason):
        _package_paths(body)
