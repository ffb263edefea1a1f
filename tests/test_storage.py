import json

import pytest

from storage import atomic_directory, atomic_write_json, atomic_write_jsonl


def test_jsonl_appears_only_when_complete(tmp_path):
    target = tmp_path / "data.jsonl"

    def rows():
        yield {"a": 1}
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write_jsonl(target, rows())
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write_jsonl(target, ({"a": i} for i in range(3)))
    assert [json.loads(line)["a"] for line in target.read_text().splitlines()] == [0, 1, 2]


def test_a_failed_rewrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})

    def rows():
        yield {"v": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(target, rows())
    assert json.loads(target.read_text()) == {"v": 1}


def test_atomic_directory(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
