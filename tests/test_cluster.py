"""cluster.yaml is a Ray autoscaler config that Ray 2.60 itself accepts, and it keeps to the project's rules.

Ray checks a config in two steps when ``ray up`` reads it: ``prepare_config`` merges it with the provider's defaults
(``ray/autoscaler/aws/defaults.yaml``) and fills each node type's worker counts, then ``validate_config`` checks the
result against ``ray/autoscaler/ray-schema.json``. These tests run the same two functions, offline; nothing talks to
AWS. Both are private Ray API, so the test pins the Ray release it was written against (pyproject pins the same).
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from spaces import GPU
from trainables.weights import models_with_weights

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_the_ray_release_these_checks_are_written_for() -> None:
    # prepare_config/validate_config live in ray.autoscaler._private: re-check cluster.yaml when Ray is bumped.
    assert ray.__version__.startswith("2.60."), f"cluster.yaml was checked with Ray 2.60, this is {ray.__version__}"


def test_cluster_yaml_passes_rays_own_schema(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head"


def test_the_schema_check_is_live(raw: dict[str, Any]) -> None:
    """A misspelt top-level key is refused: the validation above is not vacuous."""
    broken = copy.deepcopy(raw)
    broken["max_worker"] = broken.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(broken))


def test_cpu_head_and_gpu_workers_spot_with_on_demand_fallback(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    assert all(t["resources"]["GPU"] >= 1 for t in workers.values())
    gpus = {t["resources"]["GPU"] for t in workers.values()}
    assert 1 in gpus and max(gpus) > 1, "a single-GPU and a multi-GPU worker type"
    market = {n: t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") for n, t in workers.items()}
    spot = {n for n, m in market.items() if m == "spot"}
    on_demand = set(workers) - spot
    assert spot and on_demand
    # The on-demand type can take the trials a spot type was launched for.
    assert any(workers[o]["resources"] == workers[s]["resources"] for o in on_demand for s in spot)
    for t in workers.values():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= prepared["max_workers"]


def test_setup_installs_this_project_and_the_head_gets_the_data(prepared: dict[str, Any]) -> None:
    assert "~/cxr-search" in prepared["file_mounts"] and prepared["file_mounts"]["~/cxr-search"] == "."
    setup = " ".join(prepared["setup_commands"])
    assert "pip install" in setup and "-e ~/cxr-search" in setup
    assert any("s3://" in c and "chest_xray" in c for c in prepared["head_setup_commands"])


def test_only_ssh_is_open_and_the_dashboard_stays_on_loopback(prepared: dict[str, Any]) -> None:
    # No extra inbound rules: Ray's default security group then opens 22/tcp and intra-cluster traffic only.
    assert not prepared["provider"].get("security_group", {}).get("IpPermissions")
    head_start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    assert "--include-dashboard" not in head_start


def test_no_credentials_in_the_repository() -> None:
    text = CLUSTER_YAML.read_text()
    for pattern in (r"AKIA[0-9A-Z]{16}", r"aws_secret_access_key", r"aws_access_key_id", r"BEGIN [A-Z ]*PRIVATE KEY"):
        assert not re.search(pattern, text, re.IGNORECASE), pattern
    assert "ssh_private_key" not in yaml.safe_load(text)["auth"]


def test_setup_fetches_the_gpu_profiles_imagenet_weights_on_every_node(prepared: dict[str, Any]) -> None:
    # Trials read the weights from each node's torch hub cache; a fresh node's is empty.
    fetches = [c for c in prepared["setup_commands"] if "-m trainables.weights fetch" in c]
    assert len(fetches) == 1, prepared["setup_commands"]
    models = itertools.takewhile(lambda word: not word.startswith("-"), fetches[0].split("fetch", 1)[1].split())
    assert sorted(models) == sorted(models_with_weights(GPU.models))
