"""A recursive NUTS tree in plain Python, following PyMC's ``_Tree``, as a test oracle.

Given the start point, the doubling directions and a leapfrog step, it
returns the trajectory's statistics and the exact probability of each leaf
being the proposal (multinomial within subtrees, biased progressive when a
subtree is merged into the trajectory). ``subtree_extra=False`` and
``merge_extra=False`` drop Stan's U-turn checks across the halves of a
subtree, or of the trajectory merged with a new subtree, to find cases
where they matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Point:
    position: np.ndarray
    momentum: np.ndarray
    logdensity: float
    grad: np.ndarray


@dataclass
class Subtree:
    first: Point | None = None
    last: Point | None = None
    momentum_sum: np.ndarray | None = None
    leaves: list = field(default_factory=list)  # (position, log_weight)
    log_weight: float = -math.inf
    diverging: bool = False
    turning: bool = False


@dataclass
class Result:
    n_steps: int = 0
    depth: int = 0
    diverging: bool = False
    turning: bool = False
    accept_sum: float = 0.0
    max_energy_error: float = 0.0
    leaves: list = field(default_factory=list)  # (position, probability)


class ReferenceTree:
    """Build one NUTS trajectory recursively."""

    def __init__(
        self, leapfrog, inverse_mass, max_energy_error=1000.0, subtree_extra=True, merge_extra=True
    ):
        self.leapfrog = leapfrog  # leapfrog(point, signed_step) -> Point
        self.imm = np.asarray(inverse_mass)
        self.max_energy_error = max_energy_error
        self.subtree_extra = subtree_extra
        self.merge_extra = merge_extra

    def energy(self, point: Point) -> float:
        return 0.5 * float(np.sum(self.imm * point.momentum**2)) - point.logdensity

    def turns(self, a: Point, b: Point, rho) -> bool:
        return bool(rho @ (self.imm * a.momentum) <= 0 or rho @ (self.imm * b.momentum) <= 0)

    def _leaf(self, point: Point, step) -> Subtree:
        new = self.leapfrog(point, step)
        error = self.energy(new) - self.h0
        error = math.inf if math.isnan(error) else error
        self.result.n_steps += 1
        self.result.accept_sum += math.exp(min(0.0, -error))
        if abs(error) > abs(self.result.max_energy_error):
            self.result.max_energy_error = error
        if error >= self.max_energy_error:
            return Subtree(diverging=True)
        return Subtree(new, new, new.momentum.copy(), [(new.position, -error)], -error)

    def _subtree(self, point: Point, depth: int, step) -> Subtree:
        if depth == 0:
            return self._leaf(point, step)
        one = self._subtree(point, depth - 1, step)
        if one.diverging or one.turning:
            return one
        two = self._subtree(one.last, depth - 1, step)
        if two.diverging or two.turning:
            return two
        rho = one.momentum_sum + two.momentum_sum
        turning = self.turns(one.first, two.last, rho)
        if not turning and depth > 1 and self.subtree_extra:
            turning = self.turns(one.first, two.first, one.momentum_sum + two.first.momentum)
            turning = turning or self.turns(
                one.last, two.last, one.last.momentum + two.momentum_sum
            )
        return Subtree(
            one.first, two.last, rho, one.leaves + two.leaves,
            float(np.logaddexp(one.log_weight, two.log_weight)), False, turning,
        )

    def build(self, start: Point, directions, step_size, max_treedepth) -> Result:
        self.h0 = self.energy(start)
        self.result = res = Result()
        left = right = start
        rho = start.momentum.copy()
        probs = [(start.position, 1.0)]
        log_weight = 0.0
        for depth in range(max_treedepth):
            forward = directions[depth] > 0
            step = step_size if forward else -step_size
            sub = self._subtree(right if forward else left, depth, step)
            res.depth += 1
            if sub.diverging or sub.turning:
                res.diverging, res.turning = sub.diverging, sub.turning
                break
            take = min(1.0, math.exp(sub.log_weight - log_weight))
            probs = [(q, (1 - take) * pr) for q, pr in probs] + [
                (q, take * math.exp(w - sub.log_weight)) for q, w in sub.leaves
            ]
            log_weight = float(np.logaddexp(log_weight, sub.log_weight))
            if forward:
                lb, le, lsum, rb, re, rsum = left, right, rho, sub.first, sub.last, sub.momentum_sum
                right = sub.last
            else:
                lb, le, lsum, rb, re, rsum = sub.last, sub.first, sub.momentum_sum, left, right, rho
                left = sub.last
            rho = lsum + rsum
            turning = self.turns(lb, re, rho)
            if self.merge_extra:
                turning = turning or self.turns(lb, rb, lsum + rb.momentum)
                turning = turning or self.turns(le, re, le.momentum + rsum)
            if turning:
                res.turning = True
                break
        res.leaves = probs
        return res
