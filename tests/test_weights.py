"""ImageNet weights arrive, or fail to, without touching the internet: a real HTTP server on 127.0.0.1 serves a
resnet18-shaped checkpoint (random weights) and torchvision's weights enum is pointed at it for the test.

What a user would notice: the file lands in the torch hub cache under torchvision's name and a pretrained model loads
it; a wrong hash, a 404, a truncated body, a refused or silent server each give one clear line, leave nothing in the
cache, and (no network) stop within seconds with the search going on as ``--weights local``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from runstore.errors import UserError
from search.retrain import member_weights
from search.run import _parser, _pretrained_weights
from search.settings import SearchSettings, validate
from spaces import recipes_for
from trainables.config import TrialConfig
from trainables.models import PretrainedWeightsMissing, create_model, pretrained_available, pretrained_weights_path
from trainables.weights import MIRROR_ENV, WeightsRecord, ensure_weights, main


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A real-shaped resnet18 state dict (random weights, ~45 MB) as torch.save writes it, and the dict itself."""
    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.release = threading.Event()

    def url(self, route: str, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{route}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/files/NAME`` serves NAME; ``/truncate/NAME`` sends half and hangs up; ``/stall/...`` never answers."""

    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        route, _, name = self.path.strip("/").partition("/")
        body = self.server.files.get(name)
        if route == "stall":
            self.server.release.wait(10)
            return
        if body is None or route not in ("files", "truncate"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route == "files":
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; downloads go to the URLs the test gives (no mirror), proxies bypassed for 127.0.0.1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _point(monkeypatch: pytest.MonkeyPatch, model: str, url: str) -> None:
    """Point ``model``'s torchvision weights enum at ``url`` (in this process only)."""
    monkeypatch.setattr(torchvision.models.get_model_weights(model).DEFAULT.value, "url", url)


def _named(content: bytes, model: str = "resnet18") -> str:
    """A torchvision-style file name whose hash prefix matches ``content``."""
    return f"{model}-{hashlib.sha256(content).hexdigest()[:8]}.pth"


def _cache_files(hub: Path) -> list[str]:
    return sorted(p.name for p in hub.iterdir()) if hub.exists() else []


def test_a_download_is_checked_cached_and_then_loaded_by_a_pretrained_model(
    server: _Server, hub: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: tuple[bytes, dict[str, torch.Tensor]]
) -> None:
    content, state = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", server.url("files", name))
    assert not pretrained_available("resnet18")

    lines: list[str] = []
    records = ensure_weights(["tinyvgg", "resnet18"], "auto", timeout_s=3, warn=lines.append)
    sha = hashlib.sha256(content).hexdigest()
    assert records == [WeightsRecord("resnet18", str(hub / name), sha, "downloaded")]
    assert lines == []
    assert _cache_files(hub) == [name], "only the checked file, under torchvision's name, nothing temporary"
    assert (hub / name).read_bytes() == content and pretrained_weights_path("resnet18") == hub / name

    # The second time it comes from the cache: no request reaches the server.
    asked = len(server.requests)
    assert ensure_weights(["resnet18"], "auto", timeout_s=3, warn=lines.append)[0].source == "cache"
    assert len(server.requests) == asked and lines == []

    # A trial's model built with pretrained=True now starts from the served weights.
    rgb = create_model("resnet18", in_channels=3, num_classes=3, image_size=(64, 64), pretrained=True).state_dict()
    assert torch.equal(rgb["conv1.weight"], state["conv1.weight"])
    assert torch.equal(rgb["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    grey = create_model("resnet18", in_channels=1, num_classes=3, image_size=(64, 64), pretrained=True).state_dict()
    assert torch.equal(grey["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))


def test_a_file_whose_content_does_not_match_its_name_is_refused(
    server: _Server, hub: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: tuple[bytes, dict[str, torch.Tensor]]
) -> None:
    content, _ = checkpoint
    assert not hashlib.sha256(content).hexdigest().startswith("deadbeef")
    server.files["resnet18-deadbeef.pth"] = content
    _point(monkeypatch, "resnet18", server.url("files", "resnet18-deadbeef.pth"))

    lines: list[str] = []
    records = ensure_weights(["resnet18"], "auto", timeout_s=3, warn=lines.append)
    assert records == [WeightsRecord("resnet18", None, None, "none")]
    assert len(lines) == 1 and "does not match its name" in lines[0] and "expected deadbeef" in lines[0], lines
    assert "\n" not in lines[0]
    assert _cache_files(hub) == [], "nothing of the refused file is left in the cache"
    with pytest.raises(PretrainedWeightsMissing, match="trainables.weights fetch resnet18"):
        create_model("resnet18", in_channels=1, num_classes=3, image_size=(64, 64), pretrained=True)


@pytest.mark.parametrize(("route", "message"), [("missing", "HTTP 404"), ("truncate", "broke off after")])
def test_a_failed_or_truncated_download_leaves_the_cache_clean(
    route: str,
    message: str,
    server: _Server,
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, dict[str, torch.Tensor]],
) -> None:
    content, _ = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", server.url(route, name))

    lines: list[str] = []
    records = ensure_weights(["resnet18"], "auto", timeout_s=3, warn=lines.append)
    assert records[0].source == "none"
    assert len(lines) == 1 and message in lines[0] and "resnet18 not downloaded" in lines[0], lines
    assert _cache_files(hub) == []
    assert not pretrained_available("resnet18")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_one_line_and_the_search_goes_on_local(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    for model in ("resnet18", "resnet50"):
        _point(monkeypatch, model, f"http://127.0.0.1:{port}/{model}-00000000.pth")
    lines: list[str] = []
    t0 = time.perf_counter()
    records = ensure_weights(["resnet18", "resnet50"], "auto", timeout_s=3, warn=lines.append)
    assert time.perf_counter() - t0 < 3
    assert [r.source for r in records] == ["none", "none"]
    assert len(lines) == 1 and "cannot reach 127.0.0.1" in lines[0] and "as --weights local" in lines[0], lines
    assert _cache_files(hub) == []


def test_a_server_that_never_answers_is_given_up_within_the_timeout_once(
    server: _Server, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for model in ("resnet18", "resnet50"):
        _point(monkeypatch, model, server.url("stall", f"{model}-00000000.pth"))
    lines: list[str] = []
    t0 = time.perf_counter()
    records = ensure_weights(["resnet18", "resnet50"], "auto", timeout_s=1, warn=lines.append)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.9, f"gave up after {elapsed:.1f}s: the second model must not be tried once the first timed out"
    assert len(server.requests) == 1
    assert [r.source for r in records] == ["none", "none"]
    assert len(lines) == 1 and "within 1s" in lines[0] and "as --weights local" in lines[0], lines
    assert _cache_files(hub) == []


def test_local_never_downloads_and_none_ignores_the_cache(
    server: _Server, hub: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: tuple[bytes, dict[str, torch.Tensor]]
) -> None:
    content, _ = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", server.url("files", name))
    assert ensure_weights(["resnet18"], "local")[0].source == "none" and server.requests == []
    ensure_weights(["resnet18"], "auto", timeout_s=3)
    assert ensure_weights(["resnet18"], "local")[0].source == "cache"
    assert ensure_weights(["resnet18"], "none") == [WeightsRecord("resnet18", None, None, "none")]
    with pytest.raises(UserError, match="--weights: unknown weights policy 'sometimes'; valid policies: auto, local"):
        ensure_weights(["resnet18"], "sometimes")


def test_a_mirror_serves_torchvisions_file_names(
    server: _Server, hub: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: tuple[bytes, dict[str, torch.Tensor]]
) -> None:
    content, _ = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", f"http://weights.invalid/models/{name}")  # never resolved: the mirror is used
    monkeypatch.setenv(MIRROR_ENV, server.url("files", "").rstrip("/"))
    assert ensure_weights(["resnet18"], "auto", timeout_s=3)[0].source == "downloaded"
    assert server.requests == [f"/files/{name}"]


def test_the_fetch_command_for_a_node_setup(
    server: _Server,
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, dict[str, torch.Tensor]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    content, _ = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", server.url("files", name))
    assert main(["fetch", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert f"resnet18: downloaded, {hub / name} (sha256 {hashlib.sha256(content).hexdigest()})" in out
    _point(monkeypatch, "resnet50", f"http://127.0.0.1:{_closed_port()}/resnet50-00000000.pth")
    assert main(["fetch", "resnet18", "resnet50", "--timeout", "2"]) == 1, "a node without its weights fails setup"
    out = capsys.readouterr().out
    assert "resnet18: from the cache" in out and "cannot reach" in out
    assert main(["fetch", "tinyvgg"]) == 2
    assert "no ImageNet weights for tinyvgg" in capsys.readouterr().err


def test_the_driver_fetches_the_profile_weights_and_the_seed_recipes_run_as_written(
    server: _Server,
    hub: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, dict[str, torch.Tensor]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    content, _ = checkpoint
    name = _named(content)
    server.files[name] = content
    _point(monkeypatch, "resnet18", server.url("files", name))
    with caplog.at_level("INFO", logger="search.run"):
        records = _pretrained_weights("cpu", "auto")
    assert [(r.model, r.source) for r in records] == [("resnet18", "downloaded")]
    assert f"weights resnet18: downloaded, {hub / name}" in caplog.text
    # The CPU profile's transfer-learning recipes keep their pretrained, frozen backbone.
    cpu = {r.name: r for r in recipes_for("cpu", {r.model for r in records if r.source != "none"})}
    assert cpu["seed_resnet50_frozen"].config["recipe"] == "seed_resnet50_frozen@cpu"
    assert cpu["seed_resnet50_frozen"].config["pretrained"] and cpu["seed_resnet50_frozen"].config["freeze_backbone"]
    # --weights none: nothing is proposed pretrained, and the adaptation is logged as before.
    assert [r.source for r in _pretrained_weights("cpu", "none")] == ["none"]
    scratch = recipes_for("cpu", set())[1]
    assert scratch.config["recipe"] == "seed_resnet50_frozen@cpu+scratch" and not scratch.config["pretrained"]


def test_the_weights_flag_is_a_validated_setting_kept_in_run_json() -> None:
    assert _parser().parse_args(["--space", "pneumonia3class"]).weights == "auto"
    assert _parser().parse_args(["--space", "pneumonia3class", "--weights", "none"]).weights == "none"
    assert SearchSettings(space="pneumonia3class").weights == "auto"
    with pytest.raises(UserError, match="--weights: unknown weights policy 'always'"):
        validate(SearchSettings(space="pneumonia3class", weights="always"))


def test_retrain_trains_pretrained_members_from_scratch_only_when_asked(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point(monkeypatch, "resnet18", f"http://127.0.0.1:{_closed_port()}/resnet18-00000000.pth")
    frozen = TrialConfig(model="resnet18", pretrained=True, freeze_backbone=True)
    plain = TrialConfig(model="tinyvgg")
    configs, records = member_weights([frozen, plain], "none")
    assert [(c.pretrained, c.freeze_backbone) for c in configs] == [(False, False), (False, False)]
    assert records == [WeightsRecord("resnet18", None, None, "none")]
    for policy in ("auto", "local"):
        with pytest.raises(UserError, match=r"no ImageNet weights for resnet18.*--weights none"):
            member_weights([frozen, plain], policy)
