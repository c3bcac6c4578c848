"""Download registered data sets into the user's cache folder, checksum verified.

The cache folder is ``--cache`` / ``cache_dir`` if given, else ``$MLPOT_CACHE``, else
``$XDG_CACHE_HOME/mlpot``, else ``~/.cache/mlpot``; each data set goes into its own
sub-folder. A file is downloaded to a temporary file in that sub-folder, its SHA-256 checked,
and only then moved to its final name (``os.replace``), so a failed or refused download leaves
nothing behind. Only the standard library (``urllib``) is used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlpot.datasets.registry import Dataset, DatasetFile, get_dataset
from mlpot.errors import MlpotError

CHUNK_BYTES = 1 << 20


def default_cache_dir() -> Path:
    """``$MLPOT_CACHE``, else ``$XDG_CACHE_HOME/mlpot``, else ``~/.cache/mlpot``."""
    if os.environ.get("MLPOT_CACHE"):
        return Path(os.environ["MLPOT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mlpot"
    return Path.home() / ".cache" / "mlpot"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _download(url: str, target: Path, timeout: float) -> str:
    """Download ``url`` to the temporary file ``target``; return its SHA-256."""
    digest = hashlib.sha256()
    host = urllib.parse.urlparse(url).netloc or url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        raise MlpotError(
            f"{host} answered HTTP {exc.code} ({exc.reason}) for {url}; the file may have moved: "
            "download it by hand"
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MlpotError(f"cannot reach {host} ({reason})") from exc
    return digest.hexdigest()


def fetch_file(
    dataset: Dataset,
    entry: DatasetFile,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = _stderr,
    timeout: float = 60.0,
) -> Path:
    """The cached path of one file of ``dataset``, downloading and verifying it if needed."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / dataset.name
    final = folder / entry.filename

    if final.is_file():
        checksum = sha256_of(final)
        if entry.sha256 is None:
            log(
                f"warning: {dataset.name}/{entry.filename}: no recorded checksum; computed "
                f"sha256 {checksum} of the cached file {final} (not verified)"
            )
            return final
        if checksum == entry.sha256.lower():
            log(f"{dataset.name}/{entry.filename}: cached at {final} (sha256 verified)")
            return final
        log(
            f"warning: cached {final} has sha256 {checksum}, expected {entry.sha256}; "
            "downloading again"
        )

    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        dir=folder, prefix=f".{entry.filename}.", suffix=".part"
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        try:
            checksum = _download(entry.url, temporary, timeout)
        except MlpotError as exc:
            if str(exc).startswith("cannot reach"):
                raise MlpotError(
                    f"{exc}: offline? download {entry.url} by hand and put it at {final}"
                ) from exc
            raise
        if entry.sha256 is None:
            log(
                f"warning: {dataset.name}/{entry.filename}: no recorded checksum; computed "
                f"sha256 {checksum} (not verified; record it in mlpot/datasets/registry.py)"
            )
        elif checksum != entry.sha256.lower():
            raise MlpotError(
                f"checksum mismatch for {entry.url}: got sha256 {checksum}, expected "
                f"{entry.sha256}; the file was refused and not kept (the server's copy changed, "
                "or the download was corrupted: try again, or check the source)"
            )
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()
    if entry.sha256 is not None:
        log(f"{dataset.name}/{entry.filename}: downloaded to {final} (sha256 verified)")
    else:
        log(f"{dataset.name}/{entry.filename}: downloaded to {final}")
    return final


def fetch_dataset(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    registry: dict[str, Dataset] | None = None,
    log: Callable[[str], None] = _stderr,
    timeout: float = 60.0,
) -> list[Path]:
    """Download (or find in the cache) every file of the data set ``name``; their paths.

    ``registry`` replaces the built-in :data:`mlpot.datasets.registry.REGISTRY` (tests).
    Raises :class:`MlpotError` when a host cannot be reached (offline) or a checksum differs.
    """
    dataset = get_dataset(name, registry)
    return [
        fetch_file(dataset, entry, cache_dir, log=log, timeout=timeout) for entry in dataset.files
    ]
