"""Atom-centred symmetry functions (Behler, J. Chem. Phys. 134, 074106 (2011)) in PyTorch.

For a centre atom i with neighbours j, k inside the cutoff (R in Å, η in Å⁻², κ in Å⁻¹):

* G1 = Σ_j f_c(R_ij)
* G2 = Σ_j exp(−η (R_ij − R_s)²) f_c(R_ij)
* G3 = Σ_j cos(κ R_ij) f_c(R_ij)                                   (DScribe's G3)
* G4 = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η [(R_ij−R_s)² + (R_ik−R_s)² + (R_jk−R_s)²])
  f_c(R_ij) f_c(R_ik) f_c(R_jk)                                 ("narrow", n2p2 type 3)
* G5 = the same without the R_jk terms                            ("wide", n2p2 type 9)

Angular sums run over each unordered pair of neighbours {j, k} once, as in DScribe and n2p2;
R_s of angular functions is n2p2's optional shift (DScribe has none: R_s = 0). Functions are
element resolved: a radial one per neighbour element, an angular one per unordered pair of
neighbour elements. f_c is any of n2p2's cutoff types (see :mod:`mlpot.descriptors.cutoffs`).

The computation is vectorised over the pairs of a neighbour list and over the triplets built
from it (pairs of pairs with the same centre, R_jk from the difference of the two pair
vectors, so periodic images are right for any cell). Autograd through it gives forces, stress
(by straining the pair vectors) and second derivatives. Triplets are processed in chunks of
centres, so memory stays linear in the number of atoms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import ase
import numpy as np
import torch
from ase.data import chemical_symbols

from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors
from mlpot.descriptors import _fused
from mlpot.descriptors.cutoffs import cutoff_function, cutoff_type_name
from mlpot.errors import DataError, ParameterError

RADIAL_KINDS = ("G1", "G2", "G3")
ANGULAR_KINDS = ("G4", "G5")

#: Upper bound on the (centre, triplet slot) × feature-block entries of one chunk of centres
#: (× 8 bytes): small enough that the per-slot temporaries stay cache- and allocator-friendly.
MAX_TRIPLETS_PER_CHUNK = 1 << 21
#: Above this many entries in all chunks together, chunks are checkpointed when gradients are
#: needed (recomputed in the backward pass instead of kept), so memory stays linear in atoms.
CHECKPOINT_ENTRIES = 1 << 25


def is_tracing(tensor: torch.Tensor | None = None) -> bool:
    """Whether the code runs under a graph tracer (``make_fx``, ``torch.compile``/export).

    Forward passes then avoid data-dependent Python control flow (``.item()``, ``.tolist()``,
    ``bool(tensor)``) and skip input checks (call ``check_elements`` before tracing).
    """
    if torch.compiler.is_compiling():
        return True
    if tensor is not None and isinstance(tensor, torch._subclasses.fake_tensor.FakeTensor):
        return True
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is not None


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def _atomic_number(x) -> int:
    if isinstance(x, str):
        if x not in chemical_symbols[1:]:
            raise ParameterError(f"unknown chemical symbol {x!r}")
        return chemical_symbols.index(x)
    z = int(x)
    if not 0 < z < len(chemical_symbols):
        raise ParameterError(f"invalid atomic number {x!r}")
    return z


@dataclass(frozen=True)
class SymmetryFunction:
    """One symmetry function (see the module docstring for the formulas).

    Attributes:
        kind: "G1" | "G2" | "G3" | "G4" | "G5".
        center: atomic number of the centre atom.
        neighbors: (Z_j,) for radial kinds; (Z_j, Z_k) with Z_j <= Z_k for angular kinds.
        r_cut: cutoff radius, Å.
        eta: Gaussian width parameter η, Å⁻².
        r_shift: R_s of G2, Å; for G4/G5 n2p2's optional shift in exp(−η (r − R_s)²).
        zeta: angular exponent ζ ≥ 1.
        lambda_: +1 or −1.
        kappa: κ of G3, Å⁻¹.
        cutoff_type: n2p2 cutoff type by name ("hard", "cos", "tanhu", "tanh", "exp",
            "poly1".."poly4"; n2p2 numbers 0-8 are accepted and turned into names).
        cutoff_alpha: n2p2's inner-cutoff fraction α: f_c = 1 below α·r_cut.
    """

    kind: str
    center: int
    neighbors: tuple[int, ...]
    r_cut: float
    eta: float = 0.0
    r_shift: float = 0.0
    zeta: float = 1.0
    lambda_: float = 1.0
    kappa: float = 0.0
    cutoff_type: str = "cos"
    cutoff_alpha: float = 0.0

    def __post_init__(self):
        kind = str(self.kind).upper()
        if kind not in RADIAL_KINDS + ANGULAR_KINDS:
            raise ParameterError(f"unknown symmetry function kind {self.kind!r} (use G1..G5)")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "center", _atomic_number(self.center))
        neighbors = self.neighbors
        if isinstance(neighbors, (int, str, np.integer)):
            neighbors = (neighbors,)
        neighbors = tuple(sorted(_atomic_number(z) for z in neighbors))
        expected = 1 if kind in RADIAL_KINDS else 2
        if len(neighbors) != expected:
            raise ParameterError(
                f"{kind} needs {expected} neighbour element(s), got {self.neighbors!r}"
            )
        object.__setattr__(self, "neighbors", neighbors)
        for name in ("r_cut", "eta", "r_shift", "zeta", "lambda_", "kappa", "cutoff_alpha"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ParameterError(f"{kind}: {name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if not self.r_cut > 0:
            raise ParameterError(f"{kind}: r_cut must be positive (Å), got {self.r_cut}")
        if self.eta < 0:
            raise ParameterError(f"{kind}: eta must be >= 0 (Å^-2), got {self.eta}")
        if kind in ANGULAR_KINDS:
            if self.zeta < 1:
                raise ParameterError(f"{kind}: zeta must be >= 1, got {self.zeta}")
            if self.lambda_ not in (1.0, -1.0):
                raise ParameterError(f"{kind}: lambda must be +1 or -1, got {self.lambda_}")
        object.__setattr__(self, "cutoff_type", cutoff_type_name(self.cutoff_type))
        if not 0.0 <= self.cutoff_alpha < 1.0:
            raise ParameterError(
                f"{kind}: cutoff_alpha must satisfy 0 <= alpha < 1, got {self.cutoff_alpha}"
            )

    @property
    def is_angular(self) -> bool:
        return self.kind in ANGULAR_KINDS

    @property
    def cutoff_key(self) -> tuple[str, float, float]:
        return (self.cutoff_type, self.r_cut, self.cutoff_alpha)

    def describe(self) -> str:
        """A one-line human description."""
        nb = "-".join(_symbol(z) for z in self.neighbors)
        text = f"{self.kind} {_symbol(self.center)}:{nb} rc={self.r_cut:g}"
        if self.kind in ("G2", "G4", "G5"):
            text += f" eta={self.eta:g} rs={self.r_shift:g}"
        if self.is_angular:
            text += f" zeta={self.zeta:g} lambda={self.lambda_:+g}"
        if self.kind == "G3":
            text += f" kappa={self.kappa:g}"
        if self.cutoff_type != "cos" or self.cutoff_alpha:
            text += f" fc={self.cutoff_type}(alpha={self.cutoff_alpha:g})"
        return text


@dataclass
class _Plan:
    """Index tables of the computation, built once from the function list."""

    elements: list[int]  # centre elements (sorted)
    species: list[int]  # all elements appearing as centre or neighbour (sorted)
    cutoff_keys: list[tuple[str, float, float]]
    # radial shapes: (kind, eta, r_shift, kappa, cutoff index)
    radial_shapes: list[tuple] = field(default_factory=list)
    # angular radial parts: (kind, eta, r_shift, cutoff index); narrow (G4) first
    angular_parts: list[tuple] = field(default_factory=list)
    n_narrow: int = 0
    # angular parts (zeta, lambda)
    zeta_lambda: list[tuple[float, float]] = field(default_factory=list)
    column_map: list[list[int]] = field(default_factory=list)
    n_source: int = 0


class ACSF(torch.nn.Module):
    """A set of symmetry functions, evaluated on batches of structures.

    Atom a of element Z gets its features in columns ``[:n_features[Z]]`` of the output, in the
    order its functions were given, zeros beyond (for mixed element sets of different size).

    Attributes:
        functions: all functions, as given.
        elements: sorted atomic numbers covered as centres.
        cutoff: largest r_cut, Å.
        n_features: number of features per centre element.
        max_features: the largest of those.
    """

    def __init__(
        self, functions: Sequence[SymmetryFunction], elements: Sequence[int] | None = None
    ):
        super().__init__()
        functions = [
            f if isinstance(f, SymmetryFunction) else SymmetryFunction(**f) for f in functions
        ]
        if not functions:
            raise ParameterError("an ACSF set needs at least one symmetry function")
        centres = {f.center for f in functions}
        if elements is None:
            elements = sorted(centres)
        else:
            elements = sorted({_atomic_number(z) for z in elements})
            missing = centres - set(elements)
            if missing:
                raise ParameterError(
                    "functions are defined for centre element(s) "
                    f"{', '.join(_symbol(z) for z in sorted(missing))} that are not in elements "
                    f"{[_symbol(z) for z in elements]}"
                )
        self.functions: list[SymmetryFunction] = functions
        self.elements: list[int] = list(elements)
        self.cutoff: float = max(f.r_cut for f in functions)
        by_element = {z: [f for f in functions if f.center == z] for z in self.elements}
        self._by_element = by_element
        self.n_features: dict[int, int] = {z: len(fs) for z, fs in by_element.items()}
        self.max_features: int = max(self.n_features.values())
        self._plan = self._make_plan()
        self._angular_cutoff = max((f.r_cut for f in functions if f.is_angular), default=0.0)
        self._constants: dict = {}

    # ------------------------------------------------------------------------------------
    def functions_for(self, z: int) -> list[SymmetryFunction]:
        """The functions of centre element ``z`` in feature order."""
        return list(self._by_element.get(int(z), []))

    def _make_plan(self) -> _Plan:
        species = sorted(
            {f.center for f in self.functions}
            | {z for f in self.functions for z in f.neighbors}
            | set(self.elements)
        )
        cutoff_keys = sorted({f.cutoff_key for f in self.functions})
        ck = {k: i for i, k in enumerate(cutoff_keys)}
        plan = _Plan(elements=self.elements, species=species, cutoff_keys=cutoff_keys)
        # shapes in order of first appearance (gaussians before cosines, G4 parts before G5),
        # so that a set listing them in that order (the default sets) needs no column gather
        radial = sorted(
            dict.fromkeys(
                (f.kind, f.eta, f.r_shift, f.kappa, ck[f.cutoff_key])
                for f in self.functions
                if not f.is_angular
            ),
            key=lambda s: s[0] == "G3",  # stable: gaussians first, cosines last
        )
        parts = sorted(
            dict.fromkeys(
                (f.kind, f.eta, f.r_shift, ck[f.cutoff_key]) for f in self.functions if f.is_angular
            ),
            key=lambda p: p[0] != "G4",  # stable: narrow first
        )
        # (zeta, lambda) grouped by zeta: zetas, then their lambdas, in order of first appearance
        zl = list(dict.fromkeys((f.zeta, f.lambda_) for f in self.functions if f.is_angular))
        zeta_order = list(dict.fromkeys(z for z, _ in zl))
        zl.sort(key=lambda p: zeta_order.index(p[0]))  # stable
        plan.radial_shapes = radial
        plan.angular_parts = parts
        plan.n_narrow = sum(1 for p in parts if p[0] == "G4")
        plan.zeta_lambda = zl
        n_species = len(species)
        n_pairs = n_species * (n_species + 1) // 2
        radial_index = {s: i for i, s in enumerate(radial)}
        part_index = {p: i for i, p in enumerate(parts)}
        zl_index = {p: i for i, p in enumerate(zl)}
        sp_index = {z: i for i, z in enumerate(species)}
        n_radial_source = n_species * len(radial)
        n_angular_shapes = len(parts) * len(zl)
        plan.n_source = n_radial_source + n_pairs * n_angular_shapes
        pad = plan.n_source  # a zero column
        for z in self.elements:
            cols = []
            for f in self._by_element[z]:
                if f.is_angular:
                    a, b = (sp_index[n] for n in f.neighbors)
                    pair = _pair_index(a, b)
                    shape = (
                        part_index[(f.kind, f.eta, f.r_shift, ck[f.cutoff_key])] * len(zl)
                        + zl_index[(f.zeta, f.lambda_)]
                    )
                    cols.append(n_radial_source + pair * n_angular_shapes + shape)
                else:
                    shape = radial_index[(f.kind, f.eta, f.r_shift, f.kappa, ck[f.cutoff_key])]
                    cols.append(sp_index[f.neighbors[0]] * len(radial) + shape)
            cols += [pad] * (self.max_features - len(cols))
            plan.column_map.append(cols)
        return plan

    def _tables(self, dtype: torch.dtype, device: torch.device) -> dict:
        key = (dtype, device)
        if key in self._constants:
            return self._constants[key]
        if is_tracing():  # tensors made now may be fake: build real ones outside the tracer
            from torch._subclasses.fake_tensor import unset_fake_temporarily
            from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

            with unset_fake_temporarily(), disable_proxy_modes_tracing():
                return self._tables(dtype, device)
        plan = self._plan

        def t(values, dt=dtype):
            return torch.tensor(values, dtype=dt, device=device)

        species_lookup = torch.full((128,), -1, dtype=torch.long)
        for i, z in enumerate(plan.species):
            species_lookup[z] = i
        element_lookup = torch.full((128,), -1, dtype=torch.long)
        for i, z in enumerate(plan.elements):
            element_lookup[z] = i
        n_species = len(plan.species)
        pair_table = torch.tensor(
            [[_pair_index(a, b) for b in range(n_species)] for a in range(n_species)],
            dtype=torch.long,
        )
        radial = plan.radial_shapes
        gauss = [s for s in radial if s[0] != "G3"]
        cosine = [s for s in radial if s[0] == "G3"]
        parts = plan.angular_parts
        narrow = parts[: plan.n_narrow]
        zl = plan.zeta_lambda
        fused_parts = [(p[0], p[1], p[2], plan.cutoff_keys[p[3]]) for p in parts]
        lambdas = list(dict.fromkeys(lam for _, lam in zl))  # order of first appearance
        species_pairs = sorted(
            ((lo, hi) for hi in range(n_species) for lo in range(hi + 1)),
            key=lambda p: _pair_index(*p),
        )
        tables = {
            "species_lookup": species_lookup.to(device),
            "element_lookup": element_lookup.to(device),
            "pair_table": pair_table.to(device),
            "column_map": t(plan.column_map, torch.long),
            # every element's features are the source columns in order: no gather needed
            "column_identity": all(cols == list(range(plan.n_source)) for cols in plan.column_map),
            "gauss_eta": t([s[1] for s in gauss]),
            "gauss_rs": t([s[2] for s in gauss]),
            "gauss_fc": t([s[4] for s in gauss], torch.long),
            "cos_kappa": t([s[3] for s in cosine]),
            "cos_fc": t([s[4] for s in cosine], torch.long),
            "part_eta": t([p[1] for p in parts]),
            "part_rs": t([p[2] for p in parts]),
            "part_fc": t([p[3] for p in parts], torch.long),
            "zl_norm": t([2.0 ** (1.0 - z) for z, _ in zl]),
            "lambda_column": t(lambdas).view(-1, 1, 1),
            "zetas": sorted({z for z, _ in zl}),
            # per zeta, in column order: None (all lambdas, in lambda_column's order) or the
            # rows of lambda_column it uses, in column order
            "zeta_groups": [
                (zeta, None if rows == list(range(len(lambdas))) else rows)
                for zeta in dict.fromkeys(z for z, _ in zl)
                for rows in [[lambdas.index(la) for z, la in zl if z == zeta]]
            ],
            "zl": zl,
            "cutoff_keys": plan.cutoff_keys,
            "part_fc_list": [p[3] for p in parts],
            "part_fc_unique": sorted({p[3] for p in parts}),
            "part_params": [(p[1], p[2], p[3]) for p in parts],
            "species_pairs": species_pairs,
            "pair_lo": torch.tensor([lo for lo, hi in species_pairs], dtype=torch.long),
            "pair_hi": torch.tensor([hi for lo, hi in species_pairs], dtype=torch.long),
            "pair_factor": t([0.5 if lo == hi else 1.0 for lo, hi in species_pairs]),
            "narrow_params": [(p[1], p[2], p[3]) for p in narrow],
            # (1 + lambda cos) may round to -1e-16: clamp only matters for non-integer zeta
            "clamp_base": any(not float(z).is_integer() for z, _ in zl),
            # the fused kernel's parameters (float64 on the CPU whatever the dtype)
            # per part: eta, r_shift, r_cut, inner cutoff alpha * r_cut
            "fused_parts": torch.tensor(
                [[eta, rs, rc, alpha * rc] for _, eta, rs, (_, rc, alpha) in fused_parts],
                dtype=torch.float64,
            ).reshape(-1, 4),
            "fused_zl": torch.tensor(
                [[z, lam, 2.0 ** (1.0 - z)] for z, lam in zl], dtype=torch.float64
            ).reshape(-1, 3),
            "fused_radial": torch.tensor(
                [
                    [float(kind == "G3"), eta, rs, kappa, rc, alpha * rc]
                    for kind, eta, rs, kappa, (_, rc, alpha) in (
                        (*s[:4], plan.cutoff_keys[s[4]]) for s in radial
                    )
                ],
                dtype=torch.float64,
            ).reshape(-1, 6),
            # the kernel has the cosine cutoff and at most two lambda values
            "fused_ok": all(key[0] == "cos" for key in plan.cutoff_keys)
            and len({lam for _, lam in zl}) <= 2,
        }
        self._constants[key] = tables
        return tables

    # ------------------------------------------------------------------------------------
    def check_elements(self, batch: AtomsBatch) -> None:
        """Raise DataError naming the element and structure if the set does not cover it."""
        unknown, first = batch.unknown_elements(self.elements)
        if unknown:
            raise DataError(
                f"structure {first}: element(s) {', '.join(_symbol(z) for z in unknown)} not "
                f"covered by this symmetry-function set (it has functions for "
                f"{', '.join(_symbol(z) for z in self.elements)}); add functions for them"
            )

    def forward(self, batch: AtomsBatch, nl: NeighborList, vectors: torch.Tensor) -> torch.Tensor:
        """Features (N, max_features) of every atom of ``batch``.

        ``nl`` must be built with a cutoff ≥ ``self.cutoff``; ``vectors`` are its (P, 3) pair
        vectors r_j − r_i (Å), strained when stress is wanted. Differentiable in ``vectors``.

        Traceable by ``make_fx(tracing_mode="symbolic")`` and ``torch.compile``: while tracing
        (see :func:`is_tracing`) the element check is skipped (call :meth:`check_elements`
        before), pairs beyond the cutoff are kept (their f_c is 0) and the triplets are one
        chunk; the only data-dependent size is the number of triplets.
        """
        tracing = is_tracing(vectors)
        if not tracing:
            self.check_elements(batch)
        if nl.cutoff < self.cutoff - 1e-9:
            raise ParameterError(
                f"neighbour list cutoff {nl.cutoff} Å is below the ACSF cutoff {self.cutoff} Å; "
                "build it with neighbor_list(batch, acsf.cutoff)"
            )
        dtype, device = vectors.dtype, vectors.device
        tab = self._tables(dtype, device)
        plan = self._plan
        n_atoms = batch.numbers.shape[0]
        n_species = len(plan.species)
        species_of_atom = tab["species_lookup"][batch.numbers]

        centers, neighbors = nl.centers, nl.neighbors
        if not tracing and tab["fused_ok"] and device.type == "cpu" and _fused.kernel_available():
            # one compiled pass over the pairs of each centre (pairs beyond a cutoff add 0)
            source = _fused.ACSFSums.apply(
                vectors,
                centers,
                species_of_atom[neighbors],
                n_atoms,
                tab["fused_radial"],
                tab["fused_parts"],
                plan.n_narrow,
                tab["fused_zl"],
                tab["pair_table"],
            )
            if tab["column_identity"]:
                return source
            source = torch.cat([source, torch.zeros((n_atoms, 1), dtype=dtype)], dim=1)
            element_of_atom = tab["element_lookup"][batch.numbers]
            return torch.gather(source, 1, tab["column_map"][element_of_atom])
        r2_detached = (vectors.detach() ** 2).sum(dim=1)
        if not tracing:
            # keep pairs inside the cutoff (the list may have been built with a larger one)
            keep = r2_detached < self.cutoff**2
            if not bool(keep.all()):
                idx = torch.nonzero(keep).squeeze(1)
                centers, neighbors, vectors = centers[idx], neighbors[idx], vectors[idx]
                r2_detached = r2_detached[idx]
        neighbor_species = species_of_atom[neighbors]
        pieces = []

        # ---- radial functions --------------------------------------------------------
        n_radial = len(plan.radial_shapes)
        if n_radial:
            r = torch.sqrt((vectors * vectors).sum(dim=1))
            fc_all = torch.stack(
                [cutoff_function(r, rc, name, alpha) for (name, rc, alpha) in plan.cutoff_keys],
                dim=1,
            )  # (P, n_cutoffs)
            cols = []
            if tab["gauss_eta"].numel():
                d = r[:, None] - tab["gauss_rs"]
                cols.append(torch.exp(-tab["gauss_eta"] * d * d) * fc_all[:, tab["gauss_fc"]])
            if tab["cos_kappa"].numel():
                cols.append(torch.cos(r[:, None] * tab["cos_kappa"]) * fc_all[:, tab["cos_fc"]])
            values = torch.cat(cols, dim=1) if len(cols) > 1 else cols[0]
            acc = torch.zeros((n_atoms * n_species, n_radial), dtype=dtype, device=device)
            acc = acc.index_add(0, centers * n_species + neighbor_species, values)
            pieces.append(acc.view(n_atoms, n_species * n_radial))

        # ---- angular functions -------------------------------------------------------
        if plan.angular_parts:
            if tracing:
                pieces.append(
                    self._angular_traced(n_atoms, centers, neighbor_species, vectors, r2_detached)
                )
            else:
                pieces.append(
                    self._angular(n_atoms, centers, neighbor_species, vectors, r2_detached)
                )
        pieces.append(torch.zeros((n_atoms, 1), dtype=dtype, device=device))
        source = torch.cat(pieces, dim=1)
        element_of_atom = tab["element_lookup"][batch.numbers]
        return torch.gather(source, 1, tab["column_map"][element_of_atom])

    def _angular_traced(self, n_atoms, centers, neighbor_species, vectors, r2_detached):
        """Angular sums in one chunk without data-dependent Python control flow.

        Pairs are ordered by centre, those inside the angular cutoff first; only the first
        ``n_inside`` pairs of each centre make triplets.
        """
        inside = r2_detached < self._angular_cutoff**2
        order = torch.argsort(centers * 2 + (~inside).long(), stable=True)
        c = centers[order]
        zeros = torch.zeros(n_atoms, dtype=torch.long, device=c.device)
        total = zeros.index_add(0, c, torch.ones_like(c))
        n_inside = zeros.index_add(0, c, inside.long())
        start = torch.cumsum(total, 0) - total
        return self._angular_chunk(
            vectors[order], neighbor_species[order], n_inside, start, traced=True
        )

    def _angular(self, n_atoms, centers, neighbor_species, vectors, r2_detached):
        """(N, n_species_pairs × n_angular_shapes) sums over neighbour pairs, chunked by centres.

        Only pairs inside the angular cutoff take part. Chunks hold whole centres and at most
        about ``MAX_TRIPLETS_PER_CHUNK`` (triplet slot × feature-block) entries. When gradients
        are needed and all chunks together exceed ``CHECKPOINT_ENTRIES`` (or 16 chunks), each
        chunk is checkpointed (recomputed in the backward pass), so memory stays linear in the
        number of atoms; small systems keep their intermediates (no recomputation).
        """
        plan = self._plan
        dtype, device = vectors.dtype, vectors.device
        n_species = len(plan.species)
        n_pairs_el = n_species * (n_species + 1) // 2
        n_parts = len(plan.angular_parts)
        n_zl = len(plan.zeta_lambda)
        width = n_pairs_el * n_parts * n_zl
        idx = torch.nonzero(r2_detached < self._angular_cutoff**2).squeeze(1)
        if idx.numel() < 2:
            return torch.zeros((n_atoms, width), dtype=dtype, device=device)
        c = centers[idx]
        order = torch.argsort(c, stable=True)
        idx = idx[order]
        c = c[order]
        counts = torch.zeros(n_atoms, dtype=torch.long, device=device).index_add(
            0, c, torch.ones_like(c)
        )
        pair_end = torch.cumsum(counts, 0)
        # entries per triplet slot: gathered pair rows, weights, powers, products
        entries = 2 * (4 + n_parts + n_species) + (n_pairs_el + 2) * n_parts + 2 * n_zl + 12
        budget = max(MAX_TRIPLETS_PER_CHUNK // entries, 1)
        triplets = (counts * (counts - 1) // 2).tolist()
        bounds, total_slots = _chunk_bounds(triplets, budget)
        use_checkpoint = (
            len(bounds) > 2
            and total_slots * entries > min(CHECKPOINT_ENTRIES, MAX_TRIPLETS_PER_CHUNK * 16)
            and torch.is_grad_enabled()
            and vectors.requires_grad
        )
        if use_checkpoint:  # fewer, larger chunks: each one costs a recomputation
            bounds, _ = _chunk_bounds(triplets, 8 * budget)
        pair_bounds = [0, *pair_end[[b - 1 for b in bounds[1:]]].tolist()]
        start = pair_end - counts
        out = []
        for k in range(len(bounds) - 1):
            a0, a1 = bounds[k], bounds[k + 1]
            p0, p1 = pair_bounds[k], pair_bounds[k + 1]
            sel = idx[p0:p1]
            args = (vectors[sel], neighbor_species[sel], counts[a0:a1], start[a0:a1] - p0)
            if use_checkpoint:
                from torch.utils.checkpoint import checkpoint

                out.append(checkpoint(self._angular_chunk, *args, use_reentrant=False))
            else:
                out.append(self._angular_chunk(*args))
        return out[0] if len(out) == 1 else torch.cat(out, dim=0)

    def _angular_chunk(self, vec, species, counts, start, traced: bool = False):
        """Angular sums of a run of whole centres: (centres, n_species_pairs × n_shapes).

        Centre c has its ``counts[c]`` neighbour pairs at ``vec[start[c]:start[c] + counts[c]]``.
        Its unordered neighbour pairs {j, k} (j < k) fill the first counts(counts−1)/2 slots of
        a row of T = max counts(counts−1)/2 triplet slots, in column-major triangle order
        (slot q ↔ k(k−1)/2 + j); padding slots point at two far-away dummy pairs whose radial
        factor is 0. Per-pair factors (unit vector, a_p(R) = exp(−η (R − R_s)²) f_c(R), species
        one-hot) are computed once and gathered into (factor, centre, slot) arrays; per triplet
        come cos θ, the R_jk factors of the narrow parts and (1 + λ cos θ)^ζ (integer ζ by
        shared repeated squaring). All functions are then one batched product over the slots:
        (centre, species pair × part, slot) · (centre, slot, ζλ).
        """
        plan = self._plan
        dtype, device = vec.dtype, vec.device
        tab = self._tables(dtype, device)
        n_species = len(plan.species)
        n_pairs_el = n_species * (n_species + 1) // 2
        n_parts = len(plan.angular_parts)
        n_narrow = plan.n_narrow
        n_zl = len(tab["zl"])
        cutoff_keys = tab["cutoff_keys"]
        n_centres = counts.shape[0]
        n_pair_rows = vec.shape[0]

        # ---- per pair: x, y, z; 1/R; a_p(R); one-hot species -- plus 2 dummy pairs -----
        far = 3.0 * self.cutoff
        dummy = torch.tensor([[far, 0.0], [0.0, far], [0.0, 0.0]], dtype=dtype, device=device)
        vec_t = torch.cat([vec.t(), dummy], dim=1)  # (3, Pc + 2)
        r2 = (vec_t * vec_t).sum(dim=0)
        r = torch.sqrt(r2)
        fc_rows = {}
        for k in tab["part_fc_unique"]:
            name, rc, alpha = cutoff_keys[k]
            fc_rows[k] = cutoff_function(r, rc, name, alpha)
        a_rows = []
        for eta, rs, k in tab["part_params"]:
            if eta == 0.0:
                a_rows.append(fc_rows[k])
            elif rs == 0.0:
                a_rows.append(torch.exp(-eta * r2) * fc_rows[k])
            else:
                a_rows.append(torch.exp(-eta * (r - rs) ** 2) * fc_rows[k])
        tables = [vec_t, (1.0 / r)[None], torch.stack(a_rows)]
        if n_species > 1:
            onehot = torch.nn.functional.one_hot(species, n_species).to(dtype).t()
            tables.append(torch.cat([onehot, onehot.new_zeros((n_species, 2))], dim=1))

        # ---- triplet slots (centre, q) -> pair indices -------------------------------
        triplets = counts * (counts - 1) // 2
        if traced:  # the slot count as a size without .item()
            n_slots = torch.repeat_interleave(triplets.max().reshape(1)).shape[0]
        else:
            n_slots = int(triplets.max())
        q = torch.arange(n_slots, device=device)
        k = torch.floor(0.5 + torch.sqrt(0.25 + 2.0 * q.to(torch.float64))).long()
        k = k - (k * (k - 1) // 2 > q).long()
        k = k + ((k + 1) * k // 2 <= q).long()
        j = q - k * (k - 1) // 2
        valid = q[None, :] < triplets[:, None]  # (C, T)
        index_j = torch.where(valid, start[:, None] + j[None, :], n_pair_rows).reshape(-1)
        index_k = torch.where(valid, start[:, None] + k[None, :], n_pair_rows + 1).reshape(-1)

        def gathered(index):  # separate gathers: the backward needs no zero-fill or concat
            return [
                torch.gather(t, 1, index.expand(t.shape[0], -1)).view(t.shape[0], n_centres, -1)
                for t in tables
            ]

        vj, inv_rj, aj, *oj = gathered(index_j)
        vk, inv_rk, ak, *ok = gathered(index_k)
        cos_theta = (vj * vk).sum(dim=0) * (inv_rj[0] * inv_rk[0])  # (C, T)
        w = aj * ak  # (parts, C, T)
        if n_narrow:
            d = vk - vj
            r2_jk = (d * d).sum(dim=0)
            r_jk = torch.sqrt(r2_jk)
            fc_jk = {}
            e_rows = []
            for eta, rs, kk in tab["narrow_params"]:
                if kk not in fc_jk:
                    name, rc, alpha = cutoff_keys[kk]
                    fc_jk[kk] = cutoff_function(r_jk, rc, name, alpha)
                if eta == 0.0:
                    e_rows.append(fc_jk[kk])
                elif rs == 0.0:
                    e_rows.append(torch.exp(-eta * r2_jk) * fc_jk[kk])
                else:
                    e_rows.append(torch.exp(-eta * (r_jk - rs) ** 2) * fc_jk[kk])
            e = torch.stack(e_rows)
            w = w * e if n_narrow == n_parts else torch.cat([w[:n_narrow] * e, w[n_narrow:]])
        if n_species > 1:
            oj, ok = oj[0], ok[0]
            # unordered pair {j, k} with species {lo, hi}: weight 1 (both orders, halved if equal)
            sw = torch.stack(
                [
                    oj[lo] * ok[hi] * 0.5 + oj[hi] * ok[lo] * 0.5
                    if lo == hi
                    else oj[lo] * ok[hi] + oj[hi] * ok[lo]
                    for lo, hi in tab["species_pairs"]
                ]
            )  # (pairs, C, T)
            w = (sw[:, None] * w[None]).reshape(n_pairs_el * n_parts, n_centres, -1)

        # ---- (1 + lambda cos)^zeta, all lambdas at once: blocks (lambdas, C, T) per zeta --
        lambdas = tab["lambda_column"]  # (n_lambda, 1, 1)
        base = 1.0 + lambdas * cos_theta
        if tab["clamp_base"]:
            base = base.clamp_min(0.0)
        powers = _powers(base, tab["zetas"])
        blocks = []  # in the (zeta, lambda) order of the columns
        for zeta, rows in tab["zeta_groups"]:
            block = powers[zeta]
            blocks.append(block if rows is None else block[rows])

        # ---- sums over the slots: (C, pairs × parts, T) · (C, T, zl) -----------------
        g = _SlotContraction.apply(w.permute(1, 0, 2), *blocks) * tab["zl_norm"]
        return g.reshape(n_centres, n_pairs_el * n_parts * n_zl)

    # ------------------------------------------------------------------------------------
    def compute(
        self, atoms: ase.Atoms | Sequence[ase.Atoms], dtype: torch.dtype = torch.float64
    ) -> np.ndarray | list[np.ndarray]:
        """Features of one structure (n_atoms, max_features) or a list of them, as NumPy."""
        single = isinstance(atoms, ase.Atoms)
        structures = [atoms] if single else list(atoms)
        batch = AtomsBatch.from_atoms(structures, dtype=dtype)
        self.check_elements(batch)
        nl = neighbor_list(batch, self.cutoff)
        with torch.no_grad():
            features = self(batch, nl, pair_vectors(batch, nl)).cpu().numpy()
        out = np.split(features, np.cumsum(batch.n_atoms.cpu().numpy())[:-1])
        return out[0] if single else out

    # ------------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Plain-Python (JSON-able) description that :meth:`from_config` rebuilds."""
        functions = []
        for f in self.functions:
            d = asdict(f)
            d["neighbors"] = list(d["neighbors"])
            functions.append(d)
        return {"functions": functions, "elements": list(self.elements)}

    @classmethod
    def from_config(cls, config: dict) -> ACSF:
        try:
            functions = [SymmetryFunction(**f) for f in config["functions"]]
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"bad ACSF configuration: {exc}") from exc
        return cls(functions, elements=config.get("elements"))

    def extra_repr(self) -> str:
        per = ", ".join(f"{_symbol(z)}: {n}" for z, n in self.n_features.items())
        return f"cutoff={self.cutoff} Å, features per element: {per}"

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_dscribe(
        cls,
        species: Sequence[int | str],
        r_cut: float,
        g2_params: Sequence[Sequence[float]] | None = None,
        g3_params: Sequence[float] | None = None,
        g4_params: Sequence[Sequence[float]] | None = None,
        g5_params: Sequence[Sequence[float]] | None = None,
    ) -> ACSF:
        """The set of DScribe 2.x ``ACSF(species, r_cut, g2_params, ...)``, same feature order.

        Per centre element (every species): for each neighbour element in increasing atomic
        number, G1 then the G2 (η, R_s) then the G3 (κ); then for each unordered pair of
        neighbour elements (a ≤ b, ordered by b then a) the G4 then the G5 (η, ζ, λ).
        """
        zs = sorted({_atomic_number(s) for s in species})
        if not zs:
            raise ParameterError("from_dscribe: species is empty")

        def rows(params, width, name):
            if params is None:
                return []
            arr = np.asarray(params, dtype=float)
            if arr.size == 0:
                return []
            if width == 1:
                return [(float(v),) for v in arr.reshape(-1)]
            if arr.ndim != 2 or arr.shape[1] != width:
                raise ParameterError(f"from_dscribe: {name} must be rows of {width} numbers")
            return [tuple(float(v) for v in row) for row in arr]

        g2 = rows(g2_params, 2, "g2_params")
        g3 = rows(g3_params, 1, "g3_params")
        g4 = rows(g4_params, 3, "g4_params")
        g5 = rows(g5_params, 3, "g5_params")
        functions = []
        for center in zs:
            for nb in zs:
                functions.append(SymmetryFunction("G1", center, (nb,), r_cut))
                for eta, rs in g2:
                    functions.append(SymmetryFunction("G2", center, (nb,), r_cut, eta, rs))
                for (kappa,) in g3:
                    functions.append(SymmetryFunction("G3", center, (nb,), r_cut, kappa=kappa))
            for hi in range(len(zs)):
                for lo in range(hi + 1):
                    pair = (zs[lo], zs[hi])
                    for kind, params in (("G4", g4), ("G5", g5)):
                        for eta, zeta, lam in params:
                            functions.append(
                                SymmetryFunction(
                                    kind, center, pair, r_cut, eta, zeta=zeta, lambda_=lam
                                )
                            )
        return cls(functions, elements=zs)

    @classmethod
    def default(
        cls,
        elements: Sequence[int | str],
        r_cut: float = 6.0,
        angular_cutoff: float | None = None,
    ) -> ACSF:
        """A general default set for ``elements``, radial cutoff ``r_cut`` (Å) and angular
        cutoff ``angular_cutoff`` (Å; default 0.75 ``r_cut``).

        After Imbalzano et al., J. Chem. Phys. 148, 241730 (2018), as n2p2's sfparamgen does;
        see :func:`mlpot.descriptors.defaults.default_functions` for what it picks.
        """
        from mlpot.descriptors.defaults import default_functions

        return cls(default_functions(elements, r_cut, angular_cutoff))


class _SlotContraction(torch.autograd.Function):
    """w (C, F, T) and blocks p_i (Z_i, C, T) -> (C, F, ΣZ_i): slot sums Σ_T w p_i, batched.

    Taking the powers as separate blocks avoids stacking them; autograd's own backward of
    ``bmm(w, p.transpose)`` would produce a gradient laid out (C, T, Z) with a tiny inner size,
    which is slow: here all gradients come out (·, C, T). The backward is made of
    differentiable operations, so second derivatives work.
    """

    @staticmethod
    def forward(w: torch.Tensor, *blocks: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.bmm(w, b.permute(1, 2, 0)) for b in blocks], dim=2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        w, *blocks = ctx.saved_tensors
        pieces = grad.split([b.shape[0] for b in blocks], dim=2)  # (C, F, Z_i)
        grad_w = None
        if ctx.needs_input_grad[0]:
            grad_w = sum(
                torch.bmm(g, b.transpose(0, 1)) for g, b in zip(pieces, blocks, strict=True)
            )
        grad_blocks = [
            torch.bmm(g.transpose(1, 2), w).transpose(0, 1) if needed else None
            for g, needed in zip(pieces, ctx.needs_input_grad[1:], strict=True)
        ]
        return grad_w, *grad_blocks


def _chunk_bounds(triplets: list[int], budget: int) -> tuple[list[int], int]:
    """Centre boundaries of chunks with (centres × largest triangle) ≤ budget, greedily, and
    the total number of triplet slots."""
    n = len(triplets)
    if n * max(triplets) <= budget:
        return [0, n], n * max(triplets)
    bounds, largest, total = [0], 0, 0
    for a, t in enumerate(triplets):
        largest_new = max(largest, t)
        if (a - bounds[-1] + 1) * largest_new > budget and a > bounds[-1]:
            total += (a - bounds[-1]) * largest
            bounds.append(a)
            largest_new = t
        largest = largest_new
    total += (n - bounds[-1]) * largest
    bounds.append(n)
    return bounds, total


def _pair_index(a: int, b: int) -> int:
    """DScribe's index of the unordered species pair {a, b}: hi (hi + 1) / 2 + lo."""
    hi, lo = max(a, b), min(a, b)
    return hi * (hi + 1) // 2 + lo


def _powers(base: torch.Tensor, zetas: Sequence[float]) -> dict[float, torch.Tensor]:
    """{zeta: base**zeta}; integer zeta by shared repeated squaring (smooth derivatives at 0)."""
    squares = [base]  # base^(2^k)
    out = {}
    for zeta in sorted(set(zetas)):
        if float(zeta).is_integer() and 1 <= zeta <= 4096:
            n = int(zeta)
            result = None
            k = 0
            while n:
                while len(squares) <= k:
                    squares.append(squares[-1] * squares[-1])
                if n & 1:
                    result = squares[k] if result is None else result * squares[k]
                n >>= 1
                k += 1
            out[zeta] = result
        else:
            out[zeta] = torch.pow(base, zeta)
    return out
