"""The local library: register/resolve, import (copy, in place, split models), remove, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from localchat.core.models.library import (
    Library,
    LibraryEntry,
    ensure_starter_registered,
    import_file,
    remove_model,
    slug,
)
from localchat.errors import InvalidModelFile, LocalChatError, ModelNotFound
from localchat.paths import machine_cache_dir


@pytest.fixture
def library(isolated_home: Path) -> Library:
    return Library(isolated_home / "data" / "library.json", isolated_home / "models")


@pytest.fixture(scope="module")
def split_parts(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from model_shapes import split_gguf

    out = tmp_path_factory.mktemp("split")
    return split_gguf(starter_model, out)


def test_slug() -> None:
    assert slug("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf") == "deepseek-r1-distill-qwen-7b-q4_k_m"
    assert slug("My Model (v2).GGUF") == "my-model-v2"
    assert slug("../..") == "model"


def test_register_get_resolve_and_persist(library: Library, starter_model: Path, tmp_path: Path) -> None:
    library.register(LibraryEntry(name="a", path=str(starter_model), size=1, in_place=True))
    again = Library(library.library_file, library.models_dir)  # another process reading the same file
    assert [e.name for e in again.entries()] == ["a"] and again.get("a").in_place  # type: ignore[union-attr]
    assert again.resolve("a") == starter_model
    assert again.resolve(str(starter_model)) == starter_model  # a path works too
    with pytest.raises(ModelNotFound, match=r"no model named 'b'.*library: a"):
        again.resolve("b")
    library.register(LibraryEntry(name="gone", path=str(tmp_path / "gone.gguf"), size=1))
    with pytest.raises(ModelNotFound, match=r"its file .* is missing"):
        library.resolve("gone")
    with pytest.raises(LocalChatError, match="invalid model name"):
        library.register(LibraryEntry(name="../x", path="x", size=1))


def test_corrupt_library_file_is_kept_aside_not_lost(library: Library) -> None:
    library.library_file.parent.mkdir(parents=True)
    library.library_file.write_text("{not json", encoding="utf-8")
    assert library.entries() == []
    assert list(library.library_file.parent.glob("library.json.corrupt-*"))


def test_entries_written_by_a_newer_version_still_load(library: Library, starter_model: Path) -> None:
    library.library_file.parent.mkdir(parents=True)
    library.library_file.write_text(json.dumps({"version": 2, "models": [
        {"name": "m", "path": str(starter_model), "size": 5, "future_field": [1, 2]}]}), encoding="utf-8")
    assert library.get("m") is not None and library.get("m").present  # type: ignore[union-attr]


def test_starter_registered_in_place(library: Library) -> None:
    e = ensure_starter_registered(library, machine_cache_dir())
    assert e.name == "smollm2-135m" and e.in_place and e.source == "starter"
    _, deleted = remove_model(library, e.name)
    assert deleted == [] and e.file.is_file()  # the shared starter is never deleted


def test_import_copy_reads_metadata_and_rm_deletes(library: Library, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "DeepSeek-R1-Distill-Mine-Q4_1.gguf"
    src.write_bytes(starter_model.read_bytes())
    e = import_file(library, src, library.models_dir)
    assert e.name == "deepseek-r1-distill-mine-q4_1" and Path(e.path).parent == library.models_dir
    assert e.extra["architecture"] == "llama" and e.extra["r1_distill"] is True  # recognised by its name
    assert e.extra["context_length"] == 8192
    assert not list(library.models_dir.glob("*.importing"))
    with pytest.raises(LocalChatError, match="already installed"):
        import_file(library, src, library.models_dir)
    with pytest.raises(LocalChatError, match="already exists in the models folder"):
        import_file(library, src, library.models_dir, name="other")
    _, deleted = remove_model(library, e.name)
    assert deleted == [Path(e.path)] and not Path(e.path).exists() and src.exists()
    with pytest.raises(ModelNotFound):
        remove_model(library, e.name)


def test_import_in_place_keeps_the_users_file(library: Library, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "mine.gguf"
    src.write_bytes(starter_model.read_bytes())
    e = import_file(library, src, library.models_dir, name="kept", in_place=True)
    assert e.path == str(src) and e.in_place and not library.models_dir.exists()
    with pytest.raises(LocalChatError, match="already in the library as 'kept'"):
        import_file(library, src, library.models_dir, name="twice", in_place=True)
    _, deleted = remove_model(library, "kept")
    assert deleted == [] and src.exists()


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"hello, not a model" * 10, "not a GGUF model"),
                                              (b"GGUF\x03\x00\x00\x00" + b"\xff" * 8, "truncated")])
def test_import_refuses_bad_files_and_copies_nothing(library: Library, tmp_path: Path, content: bytes,
                                                     message: str) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(InvalidModelFile, match=message):
        import_file(library, bad, library.models_dir)
    assert library.entries() == [] and not library.models_dir.exists()
    with pytest.raises(InvalidModelFile):
        import_file(library, tmp_path / "missing.gguf", library.models_dir)


def test_import_split_model_takes_every_part(library: Library, split_parts: list[Path]) -> None:
    e = import_file(library, split_parts[0], library.models_dir)
    assert [Path(p).name for p in e.parts] == [p.name for p in split_parts]
    assert e.size == sum(p.stat().st_size for p in split_parts) and e.present
    assert all((library.models_dir / p.name).read_bytes() == p.read_bytes() for p in split_parts)
    _, deleted = remove_model(library, e.name)
    assert len(deleted) == 3 and not any(library.models_dir.iterdir())


def test_import_split_model_refuses_a_middle_part_or_a_missing_one(library: Library, split_parts: list[Path],
                                                                   tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="part 2 of a split model: import its first part"):
        import_file(library, split_parts[1], library.models_dir)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / split_parts[0].name).write_bytes(split_parts[0].read_bytes())
    with pytest.raises(InvalidModelFile, match=r"split in 3 parts and .*00002-of-00003.gguf, .* are missing"):
        import_file(library, lone / split_parts[0].name, library.models_dir)
    assert library.entries() == []


# -- damaged entries, safe removal, import checks (issue 11 items 2, 4, 5, 12) --------------------------------

def _write_library(library: Library, models: object) -> None:
    library.library_file.parent.mkdir(parents=True, exist_ok=True)
    library.library_file.write_text(json.dumps({"version": 1, "models": models}), encoding="utf-8")


def test_damaged_entries_are_set_aside_one_by_one(library: Library, starter_model: Path) -> None:
    good = {"name": "good", "path": str(starter_model), "size": 5, "in_place": True}
    damaged = [
        {"name": "no-fields"},
        {"name": "path-5", "path": 5, "size": 1},
        {"name": "size-big", "path": str(starter_model), "size": "big"},
        {"name": "extra-list", "path": str(starter_model), "size": 1, "extra": [1]},
        {"name": "parts-text", "path": "/x/a", "size": 1, "parts": "abc"},
        {"name": "relative", "path": "a.gguf", "size": 1},
        {"name": "Bad Name", "path": str(starter_model), "size": 1},
        {**good, "size": 6},  # a second "good"
        "not an object",
    ]
    _write_library(library, [good, *damaged])
    assert [e.name for e in library.entries()] == ["good"]
    [aside] = list(library.library_file.parent.glob("library.rejected-*.json"))
    rejected = json.loads(aside.read_text(encoding="utf-8"))["rejected"]
    assert [r["entry"] for r in rejected] == damaged and all(r["reason"] for r in rejected)
    assert "parts is not a list of absolute file paths: 'abc'" in rejected[4]["reason"]
    [notice] = library.take_notices()
    assert f"9 damaged library entries set aside in {aside}" in notice and "\n" not in notice
    # the library file now holds only the good entry: nothing is set aside twice
    assert [m["name"] for m in json.loads(library.library_file.read_text())["models"]] == ["good"]
    assert library.entries()[0].size == 5 and library.take_notices() == []
    assert not list(library.library_file.parent.glob("library.json.corrupt-*"))


@pytest.mark.parametrize("content", ["[]", '{"models": 5}', "null", '"text"', "\xff\xfe"])
def test_a_library_that_is_not_an_object_is_kept_aside(library: Library, content: str) -> None:
    library.library_file.parent.mkdir(parents=True)
    library.library_file.write_bytes(content.encode("latin-1"))
    assert library.entries() == [] and library.get("x") is None
    assert list(library.library_file.parent.glob("library.json.corrupt-*"))
    library.register(LibraryEntry(name="fresh", path="/nowhere/fresh.gguf", size=1))
    assert [e.name for e in library.entries()] == ["fresh"]


def test_rm_never_deletes_outside_the_models_folder(library: Library, tmp_path: Path) -> None:
    outside = tmp_path / "precious.gguf"
    outside.write_bytes(b"mine")
    escape = library.models_dir / "sub"
    escape.parent.mkdir(parents=True)
    escape.symlink_to(tmp_path)  # a folder inside the models folder that leads out of it
    _write_library(library, [{"name": "hand-edited", "path": str(outside), "size": 4},
                             {"name": "via-link", "path": str(escape / "precious.gguf"), "size": 4},
                             {"name": "dotdot", "path": str(library.models_dir / ".." / "precious.gguf"),
                              "size": 4}])
    for name in ("hand-edited", "via-link", "dotdot"):
        _entry, deleted = remove_model(library, name)
        assert deleted == [] and outside.read_bytes() == b"mine"
    assert library.entries() == []


def test_rm_of_damaged_parts_touches_no_relative_path(library: Library, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for n in "abc":
        (tmp_path / n).write_text(n)
    inside = library.models_dir / "m.gguf"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    _write_library(library, [{"name": "m", "path": str(inside), "size": 1, "parts": "abc"}])
    with pytest.raises(ModelNotFound):
        remove_model(library, "m")
    assert all((tmp_path / n).read_text() == n for n in "abc") and inside.exists()


def test_import_checks_the_name_before_copying(library: Library, starter_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "model.gguf"
    src.write_bytes(starter_model.read_bytes())
    for bad in ("Bad Name", "../x", "", "-x", "x" * 129):
        with pytest.raises(LocalChatError, match="invalid model name"):
            import_file(library, src, library.models_dir, name=bad)
    assert not library.models_dir.exists() and library.entries() == []


def test_a_failed_library_write_leaves_no_copy(library: Library, starter_model: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import localchat.core.models.library as lib_mod

    src = tmp_path / "model.gguf"
    src.write_bytes(starter_model.read_bytes())

    def disk_full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(lib_mod, "atomic_write_text", disk_full)
    with pytest.raises(LocalChatError, match=r"cannot save the model library .*: No space left on device"):
        import_file(library, src, library.models_dir)
    assert list(library.models_dir.iterdir()) == [] and not library.library_file.exists()
    with pytest.raises(LocalChatError, match="No space left on device"):
        library.register(LibraryEntry(name="x", path=str(src), size=1))


def test_a_name_taken_while_copying_removes_the_copy(library: Library, starter_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process registers the same name during the copy: the check under the lock refuses, the copy goes."""
    import shutil

    src = tmp_path / "model.gguf"
    src.write_bytes(starter_model.read_bytes())
    real_copy = shutil.copyfile

    def copy_then_race(a: str, b: str) -> str:
        out = real_copy(a, b)
        other = Library(library.library_file, library.models_dir)  # as another process would
        other.register(LibraryEntry(name="wanted", path=str(tmp_path / "other.gguf"), size=1))
        return out

    monkeypatch.setattr(shutil, "copyfile", copy_then_race)
    with pytest.raises(LocalChatError, match="'wanted' is already installed"):
        import_file(library, src, library.models_dir, name="wanted")
    assert list(library.models_dir.iterdir()) == []
    assert [e.path for e in library.entries()] == [str(tmp_path / "other.gguf")]


def test_import_refuses_what_is_not_a_regular_file(library: Library, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(InvalidModelFile, match="is a FIFO"):  # refused without opening it (that would block)
        import_file(library, fifo, library.models_dir)
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)
    with pytest.raises(InvalidModelFile, match=r"cannot read .*loop\.gguf: Too many levels of symbolic links"):
        import_file(library, loop, library.models_dir)
    with pytest.raises(InvalidModelFile, match="is a folder"):
        import_file(library, tmp_path, library.models_dir)
    assert library.entries() == [] and not library.models_dir.exists()


def test_split_name_messages_are_bounded(library: Library, split_parts: list[Path], tmp_path: Path) -> None:
    import gguf
    import numpy as np

    many = tmp_path / "big-00001-of-99999.gguf"  # a header without split keys: only the name says 99,999 parts
    w = gguf.GGUFWriter(str(many), "llama")
    w.add_tensor("t", np.zeros(16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(InvalidModelFile) as err:
        import_file(library, many, library.models_dir)
    assert len(str(err.value)) < 400 and "and 99993 more are missing" in str(err.value)
    zero = tmp_path / "z-00001-of-00000.gguf"
    zero.write_bytes(split_parts[0].read_bytes())
    with pytest.raises(InvalidModelFile, match=r"part 1 of 0\b"):
        import_file(library, zero, library.models_dir)
    fifo_dir = tmp_path / "with-fifo"
    fifo_dir.mkdir()
    names = [p.name for p in split_parts]
    (fifo_dir / names[0]).write_bytes(split_parts[0].read_bytes())
    (fifo_dir / names[1]).write_bytes(split_parts[1].read_bytes())
    os.mkfifo(fifo_dir / names[2])
    with pytest.raises(InvalidModelFile, match="is a FIFO"):
        import_file(library, fifo_dir / names[0], library.models_dir)
    assert library.entries() == []


def test_library_changes_from_threads_are_all_kept(library: Library) -> None:
    """Each change re-reads under the lock: forty writers, forty entries (each thread opens the lock anew)."""
    import threading

    def add(i: int) -> None:
        Library(library.library_file, library.models_dir).register(
            LibraryEntry(name=f"t{i}", path=f"/nowhere/t{i}.gguf", size=i))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.name for e in library.entries()) == sorted(f"t{i}" for i in range(40))
