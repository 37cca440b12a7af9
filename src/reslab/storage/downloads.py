"""Files fetched from the web, checked against their published digest, and the cache
folder they (and decoded data) are kept in."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path


class DownloadError(ValueError):
    """A download failed or its digest did not match; the message says what to do."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("RESLAB_CACHE") or Path.home() / ".cache" / "reslab")


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_matches(got: str, expected: str) -> bool:
    """Whole digest, or the prefix that published file names carry (torch.hub's check:
    torchvision's resnet50-0676ba61.pth), at least 8 hex digits."""
    return len(expected) >= 8 and got.startswith(expected.lower())


def download(url: str, dest: Path, md5: str, timeout: float = 30.0, algo: str = "md5") -> Path:
    """Download url to dest (atomically), checking the published digest (MD5 or SHA-256)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"could not download {url} ({e}). If this machine is offline, download the file "
            f"elsewhere and put it at {dest} (or in your data_dir)."
        ) from e
    got = file_digest(tmp, algo)
    if not digest_matches(got, md5):
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: {algo.upper()} mismatch (got {got}, expected {md5}); file discarded"
        )
    os.replace(tmp, dest)
    return dest
