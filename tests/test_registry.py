"""The one name -> entry lookup behind models, spaces and profiles: the same error everywhere."""

from __future__ import annotations

import pytest

from spaces import get_profile, space_info
from trainables.models import model_info
from trainables.registry import Registry


def test_lookup_register_and_list() -> None:
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1)
    reg.register("blue", 2)
    assert reg.get("red") == 1 and reg.list() == ["blue", "red"] and "blue" in reg and len(reg) == 2
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        reg.register("red", 3)
    assert reg.get("red") == 1


def test_unknown_name_is_one_error_naming_the_valid_ones() -> None:
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1)
    with pytest.raises(ValueError, match=r"^unknown colour 'green'; valid colours: red$"):
        reg.get("green")
    with pytest.raises(ValueError, match=r"unknown colour \['red'\]"):
        reg.get(["red"])  # unhashable: still the one error, not a TypeError


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (model_info, "unknown model 'x'; valid models: alexnet_gray, cifar_cnn, densenet121"),
        (space_info, "unknown space 'x'; valid spaces: cxr4class"),
        (get_profile, "unknown profile 'x'; valid profiles: cpu, gpu"),
    ],
)
def test_models_spaces_and_profiles_share_it(lookup, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lookup("x")
