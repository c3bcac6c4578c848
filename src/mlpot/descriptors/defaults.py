"""A default symmetry-function set from only the elements and the cutoff.

The radial and angular parameters follow Imbalzano et al., J. Chem. Phys. 148, 241730 (2018),
with the grids of n2p2's ``sfparamgen`` (rule "imbalzano2018"):

* "center" mode (R_s = 0): η_m = (N^(m/N) / r_c)², m = 0..N, N = n − 1: Gaussians centred on
  the atom whose widths shrink geometrically from r_c to r_c/N;
* "shift" mode: R_s,m = r_c / n^(m/n), m = 1..n, with η_m = 1/(R_s,m−1 − R_s,m)²: Gaussians
  whose centres are denser at short distances, each as wide as its spacing.

The default set, per centre element:

* radial G2, per neighbour element: n_c centred + n_s shifted functions;
* angular G5 ("wide", n2p2 type 9; no R_jk cutoff, so no triplet is lost at large angles),
  per unordered pair of neighbour elements, within a shorter angular cutoff r_a = 0.75 r_c
  (4.5 Å for r_c = 6 Å) unless given: the centred η grid of r_a with n_a values × ζ ∈ Z ×
  λ = ±1.

One element: n_c = n_s = 8, n_a = 4, Z = {1, 2, 4, 16}: 16 + 32 = 48 functions.
Several elements: n_c = n_s = 6, n_a = 3, Z = {1, 4, 16}: 12 per neighbour element +
18 per element pair (2 elements: 78 per centre element; 3 elements: 144).

Why r_a < r_c: angular terms cost per neighbour *pair*, so r_a sets the cost of the descriptor
(Si: 28 instead of 46 neighbours, 378 instead of 1035 pairs per atom); shorter angular than
radial cutoffs are common practice (ANI: 3.5 and 5.2 Å). On mlearn Si (defaults otherwise,
seeds 0 and 1, four runs) the test errors were 3.5–4.6 meV/atom and 0.123–0.142 eV/Å with
r_a = 4.5 Å against 4.4–5.0 and 0.121–0.131 with r_a = r_c = 6 Å (TiO2: 5.12 / 0.121 against
6.41 / 0.137), and an MD step costs 1.4–2× less (benchmarks/README.md, session 6). With the
later defaults r_a = 6 Å lowers mlearn Si's test forces by 7 % but raises its energy error and
the validation force errors of n2p2's water and Cu2S by 13 % and 8 % (sessions 9 and 10).

All use the cosine cutoff f_c(r) = ½[cos(πr/r_c) + 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlpot.errors import ParameterError

ANGULAR_CUTOFF_RATIO = 0.75  # default angular cutoff / radial cutoff


def imbalzano_center(r_cut: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(r_shift, eta) of sfparamgen's imbalzano2018 "center" grid with ``n`` pairs (Å, Å⁻²)."""
    if n < 2:
        raise ParameterError("a radial grid needs at least 2 functions")
    intervals = n - 1
    m = np.arange(n)
    eta = (intervals ** (m / intervals) / r_cut) ** 2
    return np.zeros(n), eta


def imbalzano_shift(r_cut: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(r_shift, eta) of sfparamgen's imbalzano2018 "shift" grid with ``n`` pairs (Å, Å⁻²)."""
    if n < 2:
        raise ParameterError("a radial grid needs at least 2 functions")
    m = np.arange(n + 1)
    rs_extended = r_cut / n ** (m / n)
    eta = 1.0 / (rs_extended[:-1] - rs_extended[1:]) ** 2
    r_shift = rs_extended[1:]
    return r_shift[::-1].copy(), eta[::-1].copy()


def default_functions(
    elements: Sequence[int | str], r_cut: float = 6.0, angular_cutoff: float | None = None
) -> list:
    """The default list of :class:`~mlpot.descriptors.acsf.SymmetryFunction` (see module doc).

    ``r_cut``: radial cutoff (Å); ``angular_cutoff``: cutoff of the angular functions (Å, at
    most ``r_cut``; default ``ANGULAR_CUTOFF_RATIO * r_cut``).
    """
    from mlpot.descriptors.acsf import SymmetryFunction, _atomic_number

    if not r_cut > 0:
        raise ParameterError(f"r_cut must be positive (Å), got {r_cut}")
    if angular_cutoff is None:
        angular_cutoff = ANGULAR_CUTOFF_RATIO * r_cut
    if not 0 < angular_cutoff <= r_cut:
        raise ParameterError(
            f"angular_cutoff must lie in (0, r_cut = {r_cut}] Å, got {angular_cutoff}"
        )
    zs = sorted({_atomic_number(z) for z in elements})
    if not zs:
        raise ParameterError("default ACSF: give at least one element")
    if len(zs) == 1:
        n_center, n_shift, n_angular, zetas = 8, 8, 4, (1.0, 2.0, 4.0, 16.0)
    else:
        n_center, n_shift, n_angular, zetas = 6, 6, 3, (1.0, 4.0, 16.0)
    rs_c, eta_c = imbalzano_center(r_cut, n_center)
    rs_s, eta_s = imbalzano_shift(r_cut, n_shift)
    _, eta_a = imbalzano_center(angular_cutoff, n_angular)
    functions = []
    for center in zs:
        for nb in zs:
            for rs, eta in zip(
                np.concatenate([rs_c, rs_s]), np.concatenate([eta_c, eta_s]), strict=True
            ):
                functions.append(
                    SymmetryFunction("G2", center, (nb,), r_cut, eta=float(eta), r_shift=float(rs))
                )
        for hi in range(len(zs)):
            for lo in range(hi + 1):
                for eta in eta_a:
                    for zeta in zetas:
                        for lam in (1.0, -1.0):
                            functions.append(
                                SymmetryFunction(
                                    "G5",
                                    center,
                                    (zs[lo], zs[hi]),
                                    angular_cutoff,
                                    eta=float(eta),
                                    zeta=zeta,
                                    lambda_=lam,
                                )
                            )
    return functions
