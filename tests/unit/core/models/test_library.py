"""The local library: register/resolve, import (copy, in place, split models), remove, bad input."""

from __future__ import annotations

import json
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
