"""Behaviour of the search-space registry, the profiles and the seed recipes; nothing is trained.

Spaces are driven the way a search drives them: a real Optuna study (TPE, seeded) asking for trials, and Ray Tune's
``OptunaSearch`` in define-by-run mode with the recipes as points to evaluate.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import optuna
import pytest

from spaces import (
    ADAPTATIONS,
    CPU,
    GPU,
    RECIPES,
    Profile,
    Space,
    get_profile,
    get_space,
    image_specs,
    list_spaces,
    recipes_for,
    space_info,
)
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.models import list_models

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACES = ["cxr4class", "pneumonia2class", "pneumonia3class"]
PROFILES = ["cpu", "gpu"]
#: What a space returns: every TrialConfig field except the two the search sets for all trials.
SPACE_KEYS = {f.name for f in dataclasses.fields(TrialConfig)} - {"epochs", "seed"}
SEEDS = ["seed_tinyvgg", "seed_resnet50_frozen", "seed_resnet50_onecycle", "seed_alexnet_gray"]


def _sample(space: Space, n: int, sampler: optuna.samplers.BaseSampler) -> list[tuple[dict, dict]]:
    """(config, Optuna params) of ``n`` trials of a study told a deterministic objective (the learning rate)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        config = space(trial)
        study.tell(trial, config["lr"])
        out.append((config, dict(trial.params)))
    return out


def _check_conditionals(config: dict, profile: Profile) -> None:
    """lr range by optimiser, momentum only for SGD, width only (and in range) where the model takes it."""
    low, high = {"sgd": (1e-3, 0.3), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)}[config["optimizer"]]
    assert low <= config["lr"] <= high
    if config["optimizer"] != "sgd":
        assert (config["momentum"], config["nesterov"]) == (0.9, False)
    if config["model"] in profile.widths:
        assert profile.widths[config["model"]][0] <= config["width"] <= profile.widths[config["model"]][1]
    else:
        assert config["width"] is None


# -- registry ----------------------------------------------------------------------------------------------------


def test_registry_lists_the_three_spaces_with_their_tasks_and_metric():
    assert list_spaces() == SPACES
    tasks = {name: space_info(name).task for name in SPACES}
    assert tasks == {"pneumonia3class": "pneumonia3class", "pneumonia2class": "pneumonia2class", "cxr4class": "folders"}
    for name in SPACES:
        info = space_info(name)
        assert (info.metric, info.mode) == ("val_balanced_acc", "max")
        assert info.description


@pytest.mark.parametrize("call", [space_info, get_space, image_specs])
def test_unknown_space_names_the_valid_ones(call):
    with pytest.raises(ValueError) as err:
        call("pneumonia")
    assert str(err.value) == "unknown space 'pneumonia'; valid spaces: cxr4class, pneumonia2class, pneumonia3class"


def test_unknown_profile_names_the_valid_ones():
    for call in (lambda: get_space("pneumonia3class", "tpu"), lambda: recipes_for("tpu"), lambda: get_profile("tpu")):
        with pytest.raises(ValueError, match="unknown profile 'tpu'; valid profiles: cpu, gpu"):
            call()


def test_pretrained_available_must_name_torchvision_models():
    with pytest.raises(ValueError, match="'tinyvgg', which has no pretrained weights"):
        get_space("pneumonia3class", "gpu", {"tinyvgg"})
    with pytest.raises(ValueError, match="unknown model 'resnet99'"):
        get_space("pneumonia3class", "gpu", {"resnet99"})
    with pytest.raises(TypeError, match="collection of model names"):
        get_space("pneumonia3class", "gpu", "resnet50")


# -- sampling ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", SPACES)
def test_tpe_trials_are_valid_trial_configs_inside_the_profile(name, profile):
    space = get_space(name, profile)
    specs = set(image_specs(name, profile))
    prof = get_profile(profile)
    for config, params in _sample(space, 30, optuna.samplers.TPESampler(seed=0)):
        cfg = TrialConfig.from_dict(config)  # raises on an unknown key or a bad value
        assert set(config) == SPACE_KEYS
        # Ray's OptunaSearch builds the trial config as {**suggested params, **returned dict}: that must add nothing.
        assert {**params, **config} == config
        assert cfg.image_spec in specs
        assert cfg.model in prof.models
        assert cfg.batch_size in prof.batch_sizes
        assert not cfg.pretrained  # no weights were declared available
        assert config["recipe"] == ""
        _check_conditionals(config, prof)
        if profile == "cpu":
            assert cfg.model in {"tinyvgg", "cifar_cnn", "alexnet_gray", "resnet18"}
            assert cfg.channels == 1 and cfg.image_spec.height * cfg.image_spec.width <= 128 * 150
            assert cfg.batch_size >= 8


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_multivariate_group_tpe_handles_the_conditional_space():
    """The sampler a parallel search would pick for a conditional space: joint TPE per branch, constant liar."""
    sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, constant_liar=True, n_startup_trials=5)
    space = get_space("cxr4class", "gpu", {"resnet50"})
    for config, _ in _sample(space, 25, sampler):
        TrialConfig.from_dict(config)
        _check_conditionals(config, GPU)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_choice_and_exactly_the_declared_image_specs_are_reachable(profile):
    space = get_space("pneumonia3class", profile, {"resnet18", "resnet50"})
    configs = [c for c, _ in _sample(space, 400, optuna.samplers.RandomSampler(seed=0))]
    prof = get_profile(profile)
    assert {c["model"] for c in configs} == set(prof.models)
    assert {c["optimizer"] for c in configs} == {"sgd", "adam", "adamw"}
    assert {c["schedule"] for c in configs} == {"none", "onecycle", "cosine", "plateau"}
    assert {TrialConfig.from_dict(c).image_spec for c in configs} == set(image_specs("pneumonia3class", profile))
    assert {c["vflip"] for c in configs} == {0.0, 0.5}
    assert {c["rotate"] > 0 for c in configs} == {False, True}
    for c in configs:
        _check_conditionals(c, prof)
    pretrained = {c["model"] for c in configs if c["pretrained"]}
    assert pretrained == ({"resnet18"} if profile == "cpu" else {"resnet18", "resnet50"})
    assert any(c["freeze_backbone"] for c in configs)
    assert all(c["pretrained"] for c in configs if c["freeze_backbone"])


def test_gpu_profile_is_the_full_space_and_cpu_stays_small():
    assert set(GPU.models) == set(list_models())
    assert {"224", "256x300"} <= set(GPU.image_sizes) and set(GPU.channels) == {1, 3}
    assert {1, 35, 300} <= set(GPU.batch_sizes)
    assert len(image_specs("pneumonia3class", "cpu")) <= 6
    assert "resnet50" not in CPU.models and max(CPU.batch_sizes) >= 128 and min(CPU.batch_sizes) <= 8
    text = get_space("pneumonia3class", "cpu").describe()
    assert "no GPU" in text and "full space" in text


def test_space_pickles_for_ray_checkpoints():
    space = get_space("cxr4class", "gpu", {"resnet50"})
    clone = pickle.loads(pickle.dumps(space))
    fixed = recipes_for("gpu", {"resnet50"})[1].config
    assert clone(optuna.trial.FixedTrial(fixed)) == space(optuna.trial.FixedTrial(fixed)) == fixed


# -- recipes -----------------------------------------------------------------------------------------------------


def test_seed_recipes_are_named_complete_configs():
    assert list(RECIPES) == SEEDS
    for name, config in RECIPES.items():
        assert config["recipe"] == name
        assert set(config) == SPACE_KEYS
        TrialConfig.from_dict(config)
    tiny, alex = RECIPES["seed_tinyvgg"], RECIPES["seed_alexnet_gray"]
    assert (tiny["batch_size"], tiny["image_size"], tiny["hflip"], tiny["trivial_augment"]) == (32, "64", 0.5, True)
    assert (alex["channels"], alex["image_size"], alex["batch_size"]) == (1, "256x300", 35)
    onecycle = RECIPES["seed_resnet50_onecycle"]
    assert (onecycle["schedule"], onecycle["grad_clip"], onecycle["weight_decay"]) == ("onecycle", 0.1, 1e-4)
    assert (
        RECIPES["seed_resnet50_frozen"]["freeze_backbone"] and RECIPES["seed_resnet50_frozen"]["schedule"] == "plateau"
    )


@pytest.mark.parametrize("pretrained", [frozenset(), frozenset({"resnet18", "resnet50"})])
@pytest.mark.parametrize("profile", PROFILES)
def test_each_space_reproduces_its_profiles_recipes_exactly(profile, pretrained):
    """A recipe enqueued as a point fixes every parameter the space suggests, each inside its distribution."""
    recipes = recipes_for(profile, pretrained)
    assert [r.name for r in recipes] == SEEDS
    specs = set(image_specs("pneumonia3class", profile))
    for name in SPACES:
        space = get_space(name, profile, pretrained)
        for recipe in recipes:
            assert TrialConfig.from_dict(recipe.config).image_spec in specs
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Optuna warns when a fixed value lies outside its distribution
                assert space(optuna.trial.FixedTrial(recipe.config)) == recipe.config


def test_recipes_fall_back_to_training_from_scratch_without_weights():
    gpu = {r.name: r for r in recipes_for("gpu")}
    frozen = gpu["seed_resnet50_frozen"]
    assert (frozen.config["pretrained"], frozen.config["freeze_backbone"]) == (False, False)
    assert frozen.config["recipe"] == "seed_resnet50_frozen@scratch"
    assert len(frozen.notes) == 1 and "no ImageNet weights for resnet50" in frozen.notes[0]
    assert "frozen pretrained backbone" in frozen.notes[0]
    assert gpu["seed_tinyvgg"].notes == () and gpu["seed_tinyvgg"].config == RECIPES["seed_tinyvgg"]

    with_weights = {r.name: r for r in recipes_for("gpu", {"resnet50"})}
    assert with_weights["seed_resnet50_frozen"].config == RECIPES["seed_resnet50_frozen"]
    assert with_weights["seed_resnet50_onecycle"].notes == ()


def test_cpu_recipes_are_scaled_down_and_say_so():
    cpu = {r.name: r for r in recipes_for("cpu", {"resnet18"})}
    assert set(ADAPTATIONS["cpu"]) == set(SEEDS)
    for name, recipe in cpu.items():
        assert recipe.config["recipe"] == f"{name}@cpu"
        assert recipe.notes and recipe.notes[0].startswith(f"{name} on cpu: ")
        assert recipe.config["model"] in CPU.models
    assert cpu["seed_alexnet_gray"].config["image_size"] == "96x112"  # 256x300 scaled down, same aspect ratio
    assert cpu["seed_resnet50_frozen"].config["pretrained"] and cpu["seed_resnet50_frozen"].config["freeze_backbone"]
    assert recipes_for("cpu")[1].config["recipe"] == "seed_resnet50_frozen@cpu+scratch"


# -- Ray Tune --------------------------------------------------------------------------------------------------------


def test_ray_optuna_search_runs_recipes_first_then_clean_configs(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    space = get_space("pneumonia3class", "cpu")
    recipes = recipes_for("cpu")
    search = OptunaSearch(
        space=space, metric="val_balanced_acc", mode="max", seed=0, points_to_evaluate=[r.config for r in recipes]
    )
    configs = []
    for i in range(8):
        config = search.suggest(f"trial_{i}")
        TrialConfig.from_dict(config)
        assert set(config) == SPACE_KEYS
        search.on_trial_result(f"trial_{i}", {"val_balanced_acc": 0.5, "training_iteration": 1})
        search.on_trial_complete(f"trial_{i}", {"val_balanced_acc": 0.5 + i / 100})
        configs.append(config)
    assert configs[:4] == [r.config for r in recipes]
    assert [c["recipe"] for c in configs[4:]] == [""] * 4

    # Tune checkpoints the searcher (space included) by pickling it; a restored one keeps going.
    search.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    TrialConfig.from_dict(restored.suggest("trial_8"))


def test_image_specs_are_image_specs_sorted_by_size():
    specs = image_specs("pneumonia2class", "gpu")
    assert all(isinstance(s, ImageSpec) for s in specs)
    assert list(specs) == sorted(specs, key=lambda s: (s.height, s.width, s.channels, s.resize))
    assert ImageSpec(256, 300, 1, "stretch") in specs and ImageSpec(64, 64, 3, "stretch") in specs


def test_the_epoch_cost_estimate_follows_the_measured_cpu_table() -> None:
    """Rows of the README's "CPU epoch times" table (seconds per epoch): the estimate is within 30% of each, and
    ranks the dear corners (full-width cifar_cnn, resnet18 at small batches) above the cheap ones."""
    from spaces.cost import estimate_epoch_s

    measured = [
        ("tinyvgg", "64", 1.0, 32, 2.3),
        ("tinyvgg", "128", 3.0, 32, 32.7),
        ("cifar_cnn", "96", 0.25, 32, 7.2),
        ("cifar_cnn", "96", 1.0, 32, 96.1),
        ("alexnet_gray", "96x112", 1.0, 35, 29.3),
        ("resnet18", "96", None, 8, 29.8),
        ("resnet18", "128x150", None, 8, 51.2),
        ("resnet50", "96", None, 32, 56.7),
    ]
    for model, size, width, batch, seconds in measured:
        config = {"model": model, "image_size": size, "width": width, "batch_size": batch}
        assert estimate_epoch_s(config) == pytest.approx(seconds, rel=0.3), config
    with pytest.raises(ValueError, match="no cost estimate for model 'vit'"):
        estimate_epoch_s({"model": "vit", "image_size": "64", "batch_size": 32})
