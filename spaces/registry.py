"""Name -> search space registry, like timm's model registry and Ray Tune's scheduler table.

A space is registered with :func:`register_space` under its function's name, together with the task its labels come
from and the metric a search should optimise (:class:`SpaceInfo`). :func:`get_space` binds it to a profile (``cpu``
or ``gpu``, decided by the search from the hardware) and to the set of models whose ImageNet weights are on this
machine, and returns a :class:`Space`: a picklable ``(trial) -> dict`` that Ray Tune's ``OptunaSearch`` (define-by-run)
or a plain Optuna study calls directly.

How Ray 2.60's ``OptunaSearch`` turns a define-by-run function into a trial config (``optuna_search.py``,
``_suggest_from_define_by_run_func``): it wraps the Optuna trial in a captor that records the value of every
``suggest_*`` call *by parameter name*, calls the function, and returns ``unflatten_dict({**captured, **returned})``.
So every suggested parameter name becomes a config key, next to the returned constants (which win on a clash), and a
name containing ``/`` becomes a nested dict. Because :meth:`TrialConfig.from_dict` rejects unknown keys, every
``suggest_*`` name in these spaces *is* a ``TrialConfig`` field name (``lr``, ``width``, ``rotate``, ...); there are no
helper parameters such as ``rotate_on`` or ``lr_sgd``. Conditional parameters keep one name with a branch-dependent
*float* range (``lr`` per optimiser, ``width`` per model), which Optuna allows (only the float/int kind and the
``log`` flag must agree across trials); categorical choice lists never change within a study.

The same naming makes the seed recipes usable as ``points_to_evaluate``: Ray enqueues each point with
``study.enqueue_trial(point)``, and when the space suggests a name the point holds, Optuna returns the point's value.
A :class:`Space` also recognises its profile's recipes in what it produced and sets ``recipe`` to the recipe's label
(``""`` for every other config), so an enqueued recipe arrives in the trainable, and in Tune's results, labelled.
Optuna ignores the points' keys the space never suggests (``recipe`` itself, ``momentum`` of an Adam recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import BaseTrial

from spaces.profiles import Profile, check_pretrained_available, get_profile
from spaces.recipes import recipes_for
from trainables.cache import ImageSpec
from trainables.index import TASKS
from trainables.registry import Registry

__all__ = [
    "Space",
    "SpaceFunction",
    "SpaceInfo",
    "get_space",
    "image_specs",
    "list_spaces",
    "register_space",
    "space_info",
]

#: A registered space: ``(trial, profile, pretrained_available) -> config dict`` of TrialConfig keys.
SpaceFunction = Callable[[BaseTrial, Profile, frozenset[str]], dict[str, Any]]

_MODES = ("max", "min")


@dataclass(frozen=True)
class SpaceInfo:
    """Registry entry: the space function and what a search needs to know about it.

    ``task`` is the labelling ``trainables.data.DataCatalog`` indexes the data with; ``metric``/``mode`` are what the
    search optimises (class-balanced validation accuracy by default: on 3:1 imbalanced X-ray sets plain accuracy
    rewards always answering "pneumonia").
    """

    name: str
    task: str
    description: str
    fn: SpaceFunction = field(repr=False, compare=False)
    metric: str = "val_balanced_acc"
    mode: str = "max"


SPACES: Registry[SpaceInfo] = Registry("space")


def register_space(
    name: str | None = None,
    *,
    task: str,
    description: str,
    metric: str = "val_balanced_acc",
    mode: str = "max",
) -> Callable[[SpaceFunction], SpaceFunction]:
    """Decorator registering a space function under ``name`` (default: the function's name); returns it unchanged."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(sorted(TASKS))}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")

    def decorator(fn: SpaceFunction) -> SpaceFunction:
        space_name = name if name is not None else fn.__name__
        SPACES.register(space_name, SpaceInfo(space_name, task, description, fn, metric, mode))
        return fn

    return decorator


def list_spaces() -> list[str]:
    """Sorted names of every registered space."""
    return SPACES.list()


def space_info(name: str) -> SpaceInfo:
    """Registry entry for ``name``; ``ValueError`` listing the valid names if it is unknown."""
    return SPACES.get(name)


@dataclass(frozen=True)
class Space:
    """A registered space bound to a profile and to the models with local pretrained weights: ``(trial) -> dict``.

    Calling it only calls ``trial.suggest_*`` and returns constants, so Optuna and Ray's ``OptunaSearch`` may call
    it as often as they like. It pickles (Ray checkpoints its searcher, space included, to resume a search).
    ``recipes`` maps each of the profile's recipe configs (as sorted items, without ``recipe``) to its label.
    """

    info: SpaceInfo
    profile: Profile
    pretrained_available: frozenset[str]
    recipes: dict[tuple[tuple[str, Any], ...], str] = field(default_factory=dict, hash=False, repr=False)

    def __call__(self, trial: BaseTrial) -> dict[str, Any]:
        config = self.info.fn(trial, self.profile, self.pretrained_available)
        config["recipe"] = self.recipes.get(_recipe_key(config), "")
        return config

    @property
    def name(self) -> str:
        return self.info.name

    def image_specs(self) -> tuple[ImageSpec, ...]:
        """Every image spec this space can propose; the search decodes each once before trials start."""
        return image_specs(self.info.name, self.profile.name)

    def describe(self) -> str:
        """Human summary of what this space searches here and what the profile leaves out; for the search's log."""
        p = self.profile
        pretrained = sorted(self.pretrained_available & set(p.models))
        lines = [
            f"space {self.name} (task {self.info.task}; optimising {self.info.metric}, {self.info.mode}) "
            f"with the {p.name} profile:",
            f"  models: {', '.join(p.models)}; pretrained weights found for: {', '.join(pretrained) or 'none'}",
            f"  image sizes: {', '.join(p.image_sizes)}; channels: {', '.join(map(str, p.channels))}; "
            f"resize: {', '.join(p.resize)} ({len(self.image_specs())} image specs to decode)",
            f"  batch sizes: {', '.join(map(str, p.batch_sizes))}",
        ]
        if p.note:
            lines.append(f"  {p.note}")
        return "\n".join(lines)


def get_space(name: str, profile: str = "cpu", pretrained_available: Iterable[str] = frozenset()) -> Space:
    """The space ``name`` bound to ``profile`` ("cpu" or "gpu").

    ``pretrained_available`` names the torchvision models whose ImageNet weights are on this machine (see
    ``trainables.models.pretrained_available``); only those may be proposed with ``pretrained=True``.
    """
    info = space_info(name)
    bound_profile = get_profile(profile)
    available = check_pretrained_available(pretrained_available)
    recipes = {_recipe_key(r.config): r.config["recipe"] for r in recipes_for(profile, available)}
    return Space(info, bound_profile, available, recipes)


def image_specs(name: str, profile: str = "cpu") -> tuple[ImageSpec, ...]:
    """The finite set of image specs space ``name`` can propose with ``profile`` (its recipes' included), sorted.

    Every space draws ``image_size``, ``channels`` and ``resize`` independently from the profile's lists, so this is
    their product; the recipes are adapted to lie inside it (checked by the tests) and are added for safety.
    """
    space_info(name)
    specs = set(get_profile(profile).image_specs())
    for r in recipes_for(profile):
        specs.add(_spec_of(r.config))
    return tuple(sorted(specs, key=lambda s: (s.height, s.width, s.channels, s.resize)))


def _spec_of(config: dict[str, Any]) -> ImageSpec:
    h, w = ImageSpec.parse_size(config["image_size"])
    return ImageSpec(h, w, config["channels"], config["resize"])


def _recipe_key(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in config.items() if k not in ("recipe", "epochs", "seed")))
