"""Finding or building a dataset file: a generated district (cached) or a loaded fixture.

Sits above ``store`` (the tables and reads), ``generator`` and ``fixture`` (which write
through ``store``), so none of them imports another in a circle. Generated and loaded
datasets are cached under ``.sandbox/datasets`` (``SANDBOX_DATASET_DIR``) and built under a
file lock, so parallel test workers build each once.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import Any

from sandbox.powerschool import fixture, generator, store


def resolve_dataset(
    dataset: str | Path, *, seed: int = 1, directory: Path | None = None, irregularities: bool | None = None
) -> Path:
    """Turn a dataset argument into a SQLite dataset file, generating or loading it if needed.

    ``dataset`` is a generator size (tiny, demo, S, M, L), a fixture ``.json`` file, or a
    ``.sqlite`` dataset file. Generated and loaded datasets are cached under ``directory``
    (default ``.sandbox/datasets``) by name, seed, generator version and whether the
    district has the irregularities of real ones (``irregularities``; default
    ``generator.irregularities_default()``).
    """
    directory = Path(directory or store.DEFAULT_DATASET_DIR)
    if isinstance(dataset, str) and dataset in generator.SIZES:
        if irregularities is None:
            irregularities = generator.irregularities_default()
        current = f"{dataset}-{seed}-v{generator.GENERATOR_VERSION}"
        target = directory / f"{current}{'-irregular' if irregularities else ''}.sqlite"
        if not target.exists():
            _build_atomically(
                target, lambda path: generator.generate(path, size=dataset, seed=seed, irregularities=irregularities)
            )
            # Datasets of older generator versions are never read again (an L one is 200 MB).
            for stale in directory.glob(f"{dataset}-{seed}-v*.sqlite"):
                if not stale.name.startswith(f"{current}.") and not stale.name.startswith(f"{current}-"):
                    stale.unlink(missing_ok=True)
        return target
    path = Path(dataset)
    if not path.exists():
        raise store.DatasetError(
            f"dataset {dataset!r} is neither a size ({', '.join(generator.SIZES)}) nor an existing file"
        )
    if path.suffix == ".json":
        digest = fixture.fixture_digest(path)
        target = directory / f"fixture-{path.stem}-{digest[:16]}-v{generator.GENERATOR_VERSION}.sqlite"
        if not target.exists():
            _build_atomically(target, lambda built: fixture.load_fixture(path, built))
        return target
    if path.suffix in (".sqlite", ".db", ".sqlite3"):
        return path
    raise store.DatasetError(f"dataset file {path} must be a fixture (.json) or a dataset (.sqlite)")


def _build_atomically(target: Path, build: Any) -> None:
    """Build ``target`` once even when several processes (pytest-xdist workers) ask at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            if target.exists():  # another process built it while this one waited
                return
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(descriptor)
            temporary_path = Path(temporary)
            temporary_path.unlink()
            try:
                build(temporary_path)
                temporary_path.replace(target)
            finally:
                temporary_path.unlink(missing_ok=True)
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
