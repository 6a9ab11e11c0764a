"""Budgets of the attacks in gradient evaluations per image, and the attack ensemble's members.

No TensorFlow and no other attack module is imported here (`config.py` validates an
ensemble's members and budget with it when an `AttackConfig` is built; `Objective.resolve`
fills in the default budgets with it):

* PGD's phases and their cost (`pgd_phases_of`, `pgd_cost`), from a config whose fields
  are resolved (`Objective.resolve`; `pgd.pgd_phases` takes an unresolved one);
* the ensemble's members (`Member`, `MEMBERS`, `DEFAULT_MEMBERS` per attack), their selection and
  the split of one budget among them (`select`, `allocate`), the smallest budget that
  covers every member (`minimum_evaluations`, `check`), and the default budget
  (`default_evaluations`: DEFAULT_BUDGET_FRACTION of PGD's default cost).

The ensemble itself (running the members, the per-image worst case) is `ensemble.py`.
"""

from __future__ import annotations

import dataclasses
import math

from robust_dae_tf.errors import ConfigError

# PGD's exploration phase: ceil(steps / EXPLORATION_STEPS_DIVISOR) steps per start; the
# refinement's first step is REFINE_STEP_FACTOR * initial_step_fraction * lambda.
EXPLORATION_STEPS_DIVISOR = 8
REFINE_STEP_FACTOR = 0.25


def pgd_phases_of(config) -> list[tuple[int, int, float]]:
    """[(starts per image, steps, first step as a fraction of lambda)] of each PGD phase of a
    RESOLVED config (steps and exploration_starts set)."""
    a, s, r = config.initial_step_fraction, config.steps, config.restarts
    if config.exploration_starts <= 1:
        return [(r, s, a)]
    return [(config.exploration_starts * r, max(1, -(-s // EXPLORATION_STEPS_DIVISOR)), a),
            (r, s, a * REFINE_STEP_FACTOR)]


def pgd_cost(config) -> int:
    """Gradient evaluations per image of PGD with a RESOLVED config: sum of starts x steps."""
    return int(sum(starts * steps for starts, steps, _ in pgd_phases_of(config)))


APGD_MIN_EVALUATIONS = 5  # per start; `apgd.MIN_EVALUATIONS`
PGD_MIN_EVALUATIONS = 16  # 8 exploration starts x 1 step + 8 refinement steps
DEFAULT_BUDGET_FRACTION = 0.25  # of today's PGD default cost
GEOMETRY_POWER_STEPS = 8  # orthogonal-iteration steps behind the geometry starts (`geometry.py`)


def geometry_evaluations(directions: int) -> int:
    """Gradient evaluations per image of the top `directions` eigenvectors of the pullback
    metric (`geometry.top_directions`: one per direction and power step)."""
    return int(directions) * GEOMETRY_POWER_STEPS


def geometry_directions(starts: int) -> int:
    """Eigenvectors behind `starts` geometry starts (each gives two: +lambda v and -lambda v)."""
    return (int(starts) + 1) // 2


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: `optimiser` "apgd" or "pgd"; `surrogate` "msssim" / "cosine"
    (`surrogates.py`) or None (the attack's own objective); `share` of the total budget;
    APGD's `restarts` (starts per image) and where they start: `starts` "random" (uniform
    in the ball; the latent attack: one start, the target-directed one), "towards" (start
    0 the objective's start direction if it has one, the others towards other images of the
    batch, `starts.towards_other_images`) or "geometry" (start 0 the objective's start
    direction if it has one, the others +-lambda along the top eigenvectors of the pullback
    metric, `geometry.py`; their power iteration is paid from the member's share)."""

    name: str
    optimiser: str
    surrogate: str | None
    share: float
    restarts: int = 1
    starts: str = "random"

    @property
    def min_evaluations(self) -> int:
        if self.optimiser == "pgd":
            return PGD_MIN_EVALUATIONS
        return APGD_MIN_EVALUATIONS * self.restarts + self.start_evaluations(self.restarts)

    def start_evaluations(self, starts: int) -> int:
        """Gradient evaluations per image the member spends on finding `starts` of its starts
        (the geometry starts' power iteration; 0 for random and towards starts)."""
        return geometry_evaluations(geometry_directions(starts)) if self.starts == "geometry" and starts > 0 else 0


# Members and shares: chosen by measured gain per gradient evaluation on models that are not
# reported (AutoAE's lesson; docs/attacks.md "Ensemble", benchmarks/ensemble_members/):
# first on the digits model (the latent attack's members), then on the 100-epoch MNIST
# robust and gmm_dae models of seed 1 (maximum damage): its strongest points are rare basins
# that APGD reaches far more often from starts towards other images of the batch than from
# random starts in the ball. The cosine member added nothing measurable; it is available
# (`ensemble_members`) but not a default.
MEMBERS = (
    Member("apgd", "apgd", None, 0.25, restarts=4),
    Member("apgd_geometry", "apgd", None, 0.25, restarts=4, starts="geometry"),
    Member("apgd_towards", "apgd", None, 0.5, restarts=4, starts="towards"),
    Member("apgd_towards_long", "apgd", None, 0.25, restarts=2, starts="towards"),
    Member("apgd_msssim", "apgd", "msssim", 0.25),
    Member("apgd_cosine", "apgd", "cosine", 0.25),
    Member("pgd", "pgd", None, 0.5),
)
MEMBER_NAMES = tuple(m.name for m in MEMBERS)
# The default members of each of the paper's attacks (any other objective: GENERIC_MEMBERS).
DEFAULT_MEMBERS = {
    "latent": ("apgd", "apgd_msssim", "pgd"),
    "max_damage": ("apgd", "apgd_towards", "apgd_towards_long"),
}
GENERIC_MEMBERS = ("apgd", "pgd")  # members for objectives other than the paper's two


def default_members(attack: str | None = None) -> tuple[str, ...]:
    """The default member names for the attack named `attack` (GENERIC_MEMBERS for others)."""
    return DEFAULT_MEMBERS.get(attack, GENERIC_MEMBERS)


def select(names=None, attack: str | None = None) -> tuple[Member, ...]:
    """The members named (None = `default_members(attack)`), in `MEMBERS` order; ConfigError
    for an unknown or repeated name or an empty selection."""
    names = default_members(attack) if names is None else tuple(names)
    unknown = [n for n in names if n not in MEMBER_NAMES]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"ensemble members must be distinct names from {', '.join(MEMBER_NAMES)}; got "
                          f"{list(names)}" + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else "") + ".")
    return tuple(m for m in MEMBERS if m.name in names)


def minimum_evaluations(members) -> int:
    """The smallest total budget that gives every member its minimum at its share."""
    total = sum(m.share for m in members)
    return int(max(math.ceil(m.min_evaluations * total / m.share - 1e-9) for m in members))


def check(evaluations, names=None) -> None:
    """ConfigError unless `evaluations` (total gradient evaluations per image, None =
    default) covers the minimum of the selected members (names None: of every attack's
    default members, since a config serves every attack of a protocol)."""
    selections = [select(names)] if names is not None else [select(None, a) for a in (*DEFAULT_MEMBERS, None)]
    for members in selections:
        minimum = minimum_evaluations(members)
        if evaluations is not None and evaluations < minimum:
            raise ConfigError(f"the attack ensemble needs at least {minimum} gradient evaluations per image for its "
                              f"members ({', '.join(m.name for m in members)}), got {evaluations}.")


def allocate(total: int, members) -> dict[str, int]:
    """Gradient evaluations per image each member may spend: floor(share * total) with the
    shares renormalised over `members`; "pgd" rounded down to a multiple of 16 (2 S, S a
    multiple of 8). The sum never exceeds `total`."""
    norm = sum(m.share for m in members)
    out = {}
    for m in members:
        value = int(math.floor(total * m.share / norm + 1e-9))
        if m.optimiser == "pgd":
            value -= value % PGD_MIN_EVALUATIONS
        out[m.name] = value
    return out


def default_evaluations(pgd_defaults, attack: str | None = None) -> int:
    """DEFAULT_BUDGET_FRACTION of what PGD spends with an objective's defaults, at least the
    minimum of the attack's default members; `pgd_defaults` is that resolved PGD config
    (`Objective.resolve(AttackConfig())`: 2000 maximum damage, 3200 latent -> 500, 800)."""
    return max(minimum_evaluations(select(None, attack)), int(pgd_cost(pgd_defaults) * DEFAULT_BUDGET_FRACTION))
