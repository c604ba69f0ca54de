"""The recipe of a final model: which trials become its members, and how their opinions are combined.

``search.export`` writes it into best_config.json (key ``final``), ``search.retrain`` builds it. The defaults below
were set from ``benchmarks/final_model.py`` (README, "From search to a final model"); a best_config.json without a
``final`` section (written before ensembles existed) retrains as one model with plain argmax decisions, as it did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from runstore.errors import UserError
from trainables.config import TrialConfig, check_choice
from trainables.ensemble import TTA_MODES

__all__ = ["CALIBRATIONS", "DECISIONS", "FinalRecipe"]

CALIBRATIONS = ("temperature", "none")
#: ``balanced``: argmax of probabilities x 1/class frequency, the decision that maximises mean recall, which is what
#: the search ranks by; ``argmax``: the most probable class.
DECISIONS = ("balanced", "argmax")


@dataclass(frozen=True)
class FinalRecipe:
    """Members (best first, each a trial config with ``epochs`` at its best epoch) and how to combine them."""

    members: list[dict[str, Any]] = field(default_factory=list)
    tta: str = "none"
    calibration: str = "temperature"
    decision: str = "balanced"
    #: patient-level share of train + validation held out of training to fit the calibration on
    holdout_fraction: float = 0.1
    holdout_seed: int = 0

    #: How many distinct configurations ``search.export`` puts in a final model by default.
    DEFAULT_MEMBERS = 3
    #: Seconds of member training (at the pace the search measured) beyond which export adds no further member, so
    #: that a default final model on 2 CPU cores is built within about 15 minutes.
    MEMBER_BUDGET = 600.0

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a final model needs at least one member")
        check_choice("tta", self.tta, TTA_MODES)
        check_choice("calibration", self.calibration, CALIBRATIONS)
        check_choice("decision", self.decision, DECISIONS)
        f = self.holdout_fraction
        needs_holdout = self.calibration != "none"
        if not (isinstance(f, (int, float)) and math.isfinite(f) and (0.0 < f < 0.5 or (f == 0 and not needs_holdout))):
            raise ValueError(f"holdout_fraction must be in (0, 0.5) (0 only without calibration), got {f!r}")
        resize = {m.get("resize", "stretch") for m in self.members}
        if len(resize) > 1:
            raise ValueError(f"members must share one resize policy, got {', '.join(sorted(resize))}")

    def configs(self) -> list[TrialConfig]:
        return [TrialConfig.from_dict(m) for m in self.members]

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_best_config(cls, doc: dict[str, Any], source: str) -> FinalRecipe:
        """The recipe in a best_config.json document; an old one without ``final`` is one model, argmax, as before."""
        final = doc.get("final")
        try:
            if final is None:
                return cls(members=[doc["config"]], calibration="none", decision="argmax", holdout_fraction=0.0)
            if not isinstance(final, dict):
                raise ValueError('"final" must be an object')
            members = [m["config"] if isinstance(m, dict) and "config" in m else m for m in final.get("members", [])]
            if not all(isinstance(m, dict) for m in members):
                raise ValueError('"final.members" must be a list of trial configs')
            known = {k: v for k, v in final.items() if k in cls.__dataclass_fields__ and k != "members"}
            return cls(members=members, **known)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{source}: the final model recipe does not validate: {exc}") from exc
