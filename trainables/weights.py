"""ImageNet weights of the torchvision models: where each file lives, whether it is there, and fetching it once.

``pretrained=True`` only ever reads the torch hub cache (``$TORCH_HOME/hub/checkpoints/``, torchvision's own file
names); this module is what fills it. A search or a retrain takes a weights policy (:data:`POLICIES`):

* ``auto``: the cache, else a download from torchvision's URL (or the mirror in ``$CXR_SEARCH_WEIGHTS_URL``) with a
  short timeout; with no network it gives up within seconds, says so in one line and goes on as ``local``;
* ``local``: the cache only;
* ``none``: no weights at all, every model from scratch.

A download streams into a temporary file in the cache directory, is checked against the hash prefix in its file name
(as ``torch.hub.check_hash`` does) and only then renamed into place, so the cache never holds a half-written or
corrupt file under the name ``pretrained=True`` reads. ``torch.hub.download_url_to_file`` is not used because it has
no timeout: on a machine without a network it can hang. Each model ends with a :class:`WeightsRecord` (file, sha256,
where it came from) for the log and ``run.json``.

``python -m trainables.weights fetch resnet18 resnet50`` fills the cache from the command line (cluster.yaml runs it
on every node); ``python -m trainables.weights show`` lists what the cache holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.client
import logging
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch

from runstore.errors import UserError, cli

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MIRROR_ENV",
    "POLICIES",
    "NoNetwork",
    "PretrainedWeightsMissing",
    "WeightsDownloadError",
    "WeightsRecord",
    "check_policy",
    "download_weights",
    "ensure_weights",
    "models_with_weights",
    "official_url",
    "pretrained_available",
    "pretrained_weights_path",
    "summary",
    "weights_url",
]

log = logging.getLogger("trainables.weights")

#: The weights policies of search.run and search.retrain (``--weights``); the first is the default.
POLICIES: tuple[str, ...] = ("auto", "local", "none")

#: Seconds to wait for a server to answer (connect, and each read) before a download gives up.
DEFAULT_TIMEOUT_S = 5.0

#: Environment variable naming a mirror: ``<mirror>/<torchvision's file name>`` is downloaded instead of the official
#: URL (an internal server or bucket holding the same files; the hash check still applies).
MIRROR_ENV = "CXR_SEARCH_WEIGHTS_URL"

Source = Literal["cache", "downloaded", "none"]

_CHUNK = 1 << 20


class PretrainedWeightsMissing(FileNotFoundError, UserError):
    """``pretrained=True`` for a model whose ImageNet weights are not in the local torch hub cache."""

    def __init__(self, model_name: str, path: Path, url: str) -> None:
        self.model_name = model_name
        self.path = path
        self.url = url
        super().__init__(
            f"pretrained weights for {model_name} not found at {path}; fetch them with "
            f"`python -m trainables.weights fetch {model_name}`, or copy that file there (from {url}), or set "
            f"TORCH_HOME to a directory whose hub/checkpoints/ holds it"
        )


class WeightsDownloadError(UserError):
    """A download failed (HTTP error, truncated, wrong hash); nothing was written to the cache."""


class NoNetwork(WeightsDownloadError):
    """The weights server could not be reached at all (no route, refused, no DNS, no answer within the timeout)."""


@dataclasses.dataclass(frozen=True)
class WeightsRecord:
    """One model's ImageNet weights in a search: the file, its sha256, and where it came from (``none``: absent)."""

    model: str
    file: str | None
    sha256: str | None
    source: Source

    def describe(self) -> str:
        """One line for the log."""
        if self.source == "none":
            return f"{self.model}: no ImageNet weights (from scratch)"
        origin = "from the cache" if self.source == "cache" else "downloaded"
        return f"{self.model}: {origin}, {self.file} (sha256 {self.sha256})"


def check_policy(policy: str, flag: str = "--weights") -> str:
    """``policy`` if it is one of :data:`POLICIES`, else ``UserError`` naming ``flag`` and the valid ones."""
    if policy not in POLICIES:
        raise UserError(f"{flag}: unknown weights policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    return policy


def official_url(name: str) -> str:
    """torchvision's URL of ``name``'s ImageNet weights (its ``Weights.DEFAULT``); ``ValueError`` for other models."""
    # Imported here: trainables.models imports this module, and the table of models lives there.
    from trainables.models.registry import model_info
    from trainables.models.torchvision_models import TORCHVISION_MODELS

    row = TORCHVISION_MODELS.get(name)
    if row is None:
        model_info(name)  # unknown name -> ValueError listing the valid ones
        raise ValueError(f"model {name!r} has no pretrained weights (only torchvision models do)")
    return row.weights.DEFAULT.url


def _file_name(name: str) -> str:
    return os.path.basename(urllib.parse.urlsplit(official_url(name)).path)


def weights_url(name: str) -> str:
    """Where ``name``'s weights are downloaded from: torchvision's URL, or the same file name under ``$MIRROR_ENV``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{_file_name(name)}" if mirror else official_url(name)


def pretrained_weights_path(name: str) -> Path:
    """Where ``pretrained=True`` looks for ``name``'s ImageNet weights: ``<torch hub dir>/checkpoints/<file>``.

    Honours ``TORCH_HOME`` (the hub dir is ``$TORCH_HOME/hub``) and ``torch.hub.set_dir``. ``ValueError`` for models
    without pretrained weights.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / _file_name(name)


def pretrained_available(name: str) -> bool:
    """True if ``name`` has pretrained weights and the file is in the local hub cache."""
    from trainables.models.registry import model_info

    if model_info(name).family != "torchvision":
        return False
    return pretrained_weights_path(name).is_file()


def models_with_weights(names: Iterable[str]) -> list[str]:
    """The models among ``names`` that have ImageNet weights to fetch (the torchvision ones), in order."""
    from trainables.models.registry import model_info

    return [n for n in names if model_info(n).family == "torchvision"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, timeout_s: float) -> Any:
    """``urlopen(url)``, giving up after ``timeout_s`` in all (the socket timeout does not bound a DNS lookup)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["response"] = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 - http(s) URLs only
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    opener = threading.Thread(target=target, name="weights-open", daemon=True)
    opener.start()
    opener.join(timeout_s)
    host = urllib.parse.urlsplit(url).netloc
    if opener.is_alive():
        raise NoNetwork(f"no answer from {host} within {timeout_s:g}s")
    error = box.get("error")
    if isinstance(error, urllib.error.HTTPError):
        raise WeightsDownloadError(f"{url} answered HTTP {error.code} {error.reason}") from error
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        raise NoNetwork(f"cannot reach {host} ({type(reason).__name__}: {reason})") from error
    if isinstance(error, (socket.timeout, TimeoutError)):
        raise NoNetwork(f"no answer from {host} within {timeout_s:g}s") from error
    if isinstance(error, OSError):
        raise NoNetwork(f"cannot reach {host} ({type(error).__name__}: {error})") from error
    if error is not None:
        raise error
    return box["response"]


def download_weights(name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Download ``name``'s weights into the hub cache and return the file; checked, then renamed into place.

    ``NoNetwork`` if the server cannot be reached; ``WeightsDownloadError`` for an HTTP error, a truncated body or a
    hash that does not match the file name's prefix. On any failure the cache is left as it was.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    url = weights_url(name)
    path = pretrained_weights_path(name)
    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None or not match.group(1):
        raise WeightsDownloadError(f"{path.name} has no hash prefix in its name to check a download against")
    prefix = match.group(1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise WeightsDownloadError(f"cannot write to the torch hub cache {path.parent}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            response = _open(url, timeout_s)
            with response:
                expected = response.headers.get("Content-Length")
                digest, size = hashlib.sha256(), 0
                try:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                    raise WeightsDownloadError(f"{url} broke off after {size} bytes ({type(exc).__name__})") from exc
        if expected is not None and size != int(expected):
            raise WeightsDownloadError(f"{url} broke off after {size} of {expected} bytes")
        sha = digest.hexdigest()
        if not sha.startswith(prefix):
            raise WeightsDownloadError(
                f"{url} does not match its name: sha256 {sha[: len(prefix)]}..., expected {prefix}... ({size} bytes)"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is read by every process of the user
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def ensure_weights(
    models: Iterable[str],
    policy: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    warn: Callable[[str], None] = log.warning,
) -> list[WeightsRecord]:
    """One :class:`WeightsRecord` per model of ``models`` (torchvision ones only) under ``policy``.

    With ``auto`` each missing file is downloaded; a failed download is one ``warn`` line naming the model, and the
    first failure to reach the server at all is one ``warn`` line after which no other download is tried (the search
    goes on as ``local``).
    """
    check_policy(policy)
    records: list[WeightsRecord] = []
    offline = policy != "auto"
    for name in models_with_weights(models):
        if policy == "none":
            records.append(WeightsRecord(name, None, None, "none"))
            continue
        path = pretrained_weights_path(name)
        source: Source = "cache"
        if not path.is_file() and not offline:
            try:
                download_weights(name, timeout_s)
                source = "downloaded"
            except NoNetwork as exc:
                offline = True
                warn(f"weights: {exc}; going on with the local cache only (as --weights local)")
            except WeightsDownloadError as exc:
                warn(f"weights: {name} not downloaded: {exc}; the cache is unchanged")
        if path.is_file():
            records.append(WeightsRecord(name, str(path), _sha256(path), source))
        else:
            records.append(WeightsRecord(name, None, None, "none"))
    return records


def summary(records: Iterable[WeightsRecord], policy: str) -> str:
    """One line for the console: which models have ImageNet weights under ``policy``, and from where."""
    by_source: dict[str, list[str]] = {"cache": [], "downloaded": [], "none": []}
    for record in records:
        by_source[record.source].append(record.model)
    parts = [
        f"{label} {', '.join(by_source[key])}"
        for key, label in (("cache", "cached"), ("downloaded", "downloaded"))
        if by_source[key]
    ]
    if by_source["none"]:
        parts.append(f"none for {', '.join(by_source['none'])} (from scratch)")
    return f"ImageNet weights (--weights {policy}): {'; '.join(parts) or 'no model of this search has any'}"


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainables.weights", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the named models' weights into the torch hub cache if absent")
    fetch.add_argument("models", nargs="+", help="model names, e.g. resnet18 resnet50 densenet121 efficientnet_b0")
    fetch.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the server")
    show = sub.add_parser("show", help="list the models' weights in the cache")
    show.add_argument("models", nargs="*", help="model names (default: every model with weights)")
    args = p.parse_args(argv)
    from trainables.models import list_models

    with_weights = models_with_weights(list_models())
    names = args.models or with_weights
    unknown = [n for n in names if n not in with_weights]
    if unknown:
        raise UserError(f"no ImageNet weights for {', '.join(unknown)}; models with weights: {', '.join(with_weights)}")
    policy = "auto" if args.command == "fetch" else "local"
    records = ensure_weights(names, policy, getattr(args, "timeout", DEFAULT_TIMEOUT_S), warn=print)
    for record in records:
        print(record.describe() if record.file else f"{record.model}: not in {pretrained_weights_path(record.model)}")
    return 1 if args.command == "fetch" and any(r.source == "none" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
