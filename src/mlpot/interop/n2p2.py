"""n2p2 potentials: exact import of an n2p2 HDNNP directory, and export of an mlpot HDNNP.

An n2p2 potential directory holds ``input.nn`` (settings, symmetry functions, network
topology), ``scaling.data`` (per-element symmetry-function statistics) and one
``weights.NNN.data`` per element (NNN = atomic number, three digits). n2p2 files do not state
their units: give them on import (``length_unit`` "angstrom"/"bohr", ``energy_unit``
"ev"/"hartree"); the imported potential works in eV and Å. Exports are written in Å and eV.

What n2p2 does and this module reproduces (read from n2p2's ``Mode``, ``Element``, ``SymFnc*``
and ``NeuralNetwork`` sources):

* elements are indexed in order of atomic number; each element's symmetry functions are
  **sorted** (``Element::sortSymmetryFunctions``) by (type, cutoff, eta, rs, zeta, lambda,
  neighbour elements), and ``scaling.data`` and the network inputs follow that order;
* symmetry-function types 2 (radial), 3 (angular, narrow) and 9 (angular, wide); radial lines
  ``<ec> 2 <e1> <eta> <rs> <rc>``, angular lines ``<ec> 3|9 <e1> <e2> <eta> <lambda> <zeta>
  <rc> [<rs>]``; one global ``cutoff_type <n> [<alpha>]``;
* scaling (``SymFnc::scale``): scale, center, scale+center, scalesigma with
  ``scale_min_short``/``scale_max_short`` (defaults 0 and 1);
* the weights file lists, per layer, the weights w[k][j] with the previous-layer neuron j as
  outer and this layer's neuron k as inner loop, then the layer's biases
  (``NeuralNetwork::setConnections``); the output layer is linear; ``normalize_nodes`` divides
  each neuron's input sum by the number of its inputs;
* the normalisation keywords ``mean_energy``/``conv_energy``/``conv_length``: symmetry
  functions are invariant; the atomic network output E_n is in normalised units, so the
  atomic energy is E_n/conv_energy + mean_energy (``Mode::physicalEnergy``), plus the
  ``atom_energy`` offset of the element (``Mode::addEnergyOffset``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols
from ase.units import Bohr, Hartree

from mlpot._atomic import atomic_write_text
from mlpot.errors import ModelFileError, ParameterError
from mlpot.models.activations import N2P2_CODES, N2P2_LETTERS

LENGTH_UNITS = {"angstrom": 1.0, "a": 1.0, "bohr": Bohr}
ENERGY_UNITS = {"ev": 1.0, "hartree": Hartree, "ha": Hartree}

#: n2p2 cutoff_type numbers
CUTOFF_NAMES = {
    0: "hard",
    1: "cos",
    2: "tanhu",
    3: "tanh",
    4: "exp",
    5: "poly1",
    6: "poly2",
    7: "poly3",
    8: "poly4",
}
CUTOFF_NUMBERS = {name: number for number, name in CUTOFF_NAMES.items()}

#: n2p2 symmetry-function type -> mlpot kind
N2P2_TYPES = {2: "G2", 3: "G4", 9: "G5"}
_KNOWN_UNSUPPORTED_TYPES = {
    12: "weighted radial",
    13: "weighted angular narrow",
    20: "polynomial radial",
    21: "polynomial angular narrow",
    22: "polynomial angular wide",
    23: "weighted polynomial radial",
    24: "weighted polynomial angular narrow",
    25: "weighted polynomial angular wide",
}


def _unit_factors(length_unit: str, energy_unit: str) -> tuple[float, float]:
    """(Å per file length unit, eV per file energy unit)."""
    try:
        length = LENGTH_UNITS[str(length_unit).strip().lower()]
    except KeyError:
        raise ParameterError(
            f"unknown length unit {length_unit!r}; use 'angstrom' or 'bohr'"
        ) from None
    try:
        energy = ENERGY_UNITS[str(energy_unit).strip().lower()]
    except KeyError:
        raise ParameterError(
            f"unknown energy unit {energy_unit!r}; use 'ev' or 'hartree'"
        ) from None
    return length, energy


# ------------------------------------------------------------------------------------------
# input.nn
# ------------------------------------------------------------------------------------------
@dataclass
class _Settings:
    """Keyword lines of an ``input.nn``: keyword -> list of (value tokens, line number)."""

    path: Path
    entries: dict[str, list[tuple[list[str], int]]] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.entries

    def all(self, key: str) -> list[tuple[list[str], int]]:
        return self.entries.get(key, [])

    def one(self, key: str, required: bool = True) -> tuple[list[str], int] | None:
        values = self.entries.get(key)
        if not values:
            if required:
                raise ModelFileError(f"{self.path}: required keyword '{key}' is missing")
            return None
        if len(values) > 1:
            lines = ", ".join(str(n) for _, n in values)
            raise ModelFileError(
                f"{self.path}: keyword '{key}' appears more than once (lines {lines})"
            )
        return values[0]

    def float_of(self, key: str, default: float | None = None) -> float | None:
        entry = self.one(key, required=default is None)
        if entry is None:
            return default
        tokens, line = entry
        return _to_float(tokens, 0, self.path, line, key)


def _to_float(tokens: list[str], i: int, path: Path, line: int, what: str) -> float:
    try:
        return float(tokens[i])
    except (IndexError, ValueError):
        raise ModelFileError(
            f"{path}, line {line}: cannot read a number for '{what}' from {' '.join(tokens)!r}"
        ) from None


def _to_int(tokens: list[str], i: int, path: Path, line: int, what: str) -> int:
    try:
        return int(tokens[i])
    except (IndexError, ValueError):
        raise ModelFileError(
            f"{path}, line {line}: cannot read an integer for '{what}' from {' '.join(tokens)!r}"
        ) from None


def _read_settings(path: Path) -> _Settings:
    """Parse ``input.nn`` like n2p2's Settings: comments start at '#' or '!'."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file (an n2p2 potential needs input.nn)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read ({exc})") from None
    settings = _Settings(path=path)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split("!", 1)[0].strip()
        if not line:
            continue
        key, *tokens = line.split()
        settings.entries.setdefault(key, []).append((tokens, number))
    return settings


@dataclass
class _N2p2Function:
    """One symmetry function as in the file (file units), with its n2p2 sort key."""

    center: int
    type: int
    neighbors: tuple[int, ...]
    eta: float
    r_shift: float
    r_cut: float
    zeta: float = 1.0
    lambda_: float = 1.0
    line: int = 0

    def sort_key(self) -> tuple:
        # n2p2 operator<: ec, type, cutoffType, cutoffAlpha (global), rc, eta, rs,
        # [zeta, lambda,] e1[, e2]; element indices follow atomic numbers.
        if self.type == 2:
            return (self.type, self.r_cut, self.eta, self.r_shift, 0.0, 0.0, self.neighbors)
        return (
            self.type,
            self.r_cut,
            self.eta,
            self.r_shift,
            self.zeta,
            self.lambda_,
            self.neighbors,
        )


def _parse_symfunction(
    tokens: list[str], line: int, path: Path, elements: Sequence[int]
) -> _N2p2Function:
    def element(i: int) -> int:
        try:
            symbol = tokens[i]
        except IndexError:
            raise ModelFileError(
                f"{path}, line {line}: incomplete symfunction_short line {' '.join(tokens)!r}"
            ) from None
        z = atomic_numbers.get(symbol)
        if z is None or z not in elements:
            raise ModelFileError(
                f"{path}, line {line}: element {symbol!r} of a symmetry function is not among "
                f"the potential's elements ({' '.join(chemical_symbols[e] for e in elements)})"
            )
        return z

    if len(tokens) < 2:
        raise ModelFileError(
            f"{path}, line {line}: incomplete symfunction_short line {' '.join(tokens)!r}"
        )
    center = element(0)
    sf_type = _to_int(tokens, 1, path, line, "symmetry function type")
    if sf_type not in N2P2_TYPES:
        if sf_type in _KNOWN_UNSUPPORTED_TYPES:
            raise ModelFileError(
                f"{path}, line {line}: n2p2 symmetry function type {sf_type} "
                f"({_KNOWN_UNSUPPORTED_TYPES[sf_type]}) is not supported; mlpot reads types "
                "2, 3 and 9"
            )
        raise ModelFileError(
            f"{path}, line {line}: unknown symmetry function type {sf_type} "
            "(mlpot reads n2p2 types 2, 3 and 9)"
        )
    numbers = tokens[3:] if sf_type == 2 else tokens[4:]

    def number(i: int, what: str) -> float:
        try:
            return float(numbers[i])
        except (IndexError, ValueError):
            raise ModelFileError(
                f"{path}, line {line}: cannot read '{what}' of a type-{sf_type} symmetry "
                f"function from {' '.join(tokens)!r}"
            ) from None

    if sf_type == 2:
        neighbor = element(2)
        if len(numbers) == 3:  # eta rs rc
            eta, r_shift, r_cut = number(0, "eta"), number(1, "rs"), number(2, "rc")
        elif len(numbers) == 2:  # old format without rs: eta rc
            eta, r_shift, r_cut = number(0, "eta"), 0.0, number(1, "rc")
        else:
            raise ModelFileError(
                f"{path}, line {line}: a type-2 symmetry function needs '<ec> 2 <e1> <eta> "
                f"<rs> <rc>', got {' '.join(tokens)!r}"
            )
        function = _N2p2Function(center, 2, (neighbor,), eta, r_shift, r_cut, line=line)
    else:
        zj, zk = sorted((element(2), element(3)))
        if len(numbers) not in (4, 5):
            raise ModelFileError(
                f"{path}, line {line}: a type-{sf_type} symmetry function needs '<ec> "
                f"{sf_type} <e1> <e2> <eta> <lambda> <zeta> <rc> [<rs>]', got "
                f"{' '.join(tokens)!r}"
            )
        eta, lambda_ = number(0, "eta"), number(1, "lambda")
        zeta, r_cut = number(2, "zeta"), number(3, "rc")
        r_shift = number(4, "rs") if len(numbers) == 5 else 0.0
        function = _N2p2Function(
            center, sf_type, (zj, zk), eta, r_shift, r_cut, zeta=zeta, lambda_=lambda_, line=line
        )
    if not function.r_cut > 0 or function.eta < 0:
        raise ModelFileError(
            f"{path}, line {line}: symmetry function needs rc > 0 and eta >= 0, got "
            f"{' '.join(tokens)!r}"
        )
    return function


def _read_columns(path: Path, what: str) -> list[tuple[list[str], int]]:
    """Non-comment, non-empty lines of a data file as (tokens, line number)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot read ({exc})") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        rows.append((stripped.split(), number))
    return rows


def _read_scaling(path: Path, counts: dict[int, int], need_sigma: bool) -> dict[int, np.ndarray]:
    """Per element (by atomic number) an (n, 4) array of min, max, mean, sigma."""
    rows = _read_columns(path, "the symmetry-function scaling statistics")
    total = sum(counts.values())
    if len(rows) < total:
        raise ModelFileError(
            f"{path}: {len(rows)} scaling lines, but input.nn defines {total} symmetry "
            "functions; scaling.data does not belong to this input.nn"
        )
    out = {}
    position = 0
    for element_index, z in enumerate(sorted(counts)):
        values = np.zeros((counts[z], 4))
        for i in range(counts[z]):
            tokens, line = rows[position]
            position += 1
            if len(tokens) < 5:
                raise ModelFileError(
                    f"{path}, line {line}: expected 'element index, function index, min, max, "
                    f"mean[, sigma]', got {' '.join(tokens)!r}"
                )
            e_index = _to_int(tokens, 0, path, line, "element index")
            f_index = _to_int(tokens, 1, path, line, "function index")
            if e_index != element_index + 1 or f_index != i + 1:
                raise ModelFileError(
                    f"{path}, line {line}: expected element {element_index + 1} "
                    f"({chemical_symbols[z]}), function {i + 1}, found {e_index} {f_index}; "
                    "scaling.data does not belong to this input.nn"
                )
            values[i, 0] = _to_float(tokens, 2, path, line, "sf_min")
            values[i, 1] = _to_float(tokens, 3, path, line, "sf_max")
            values[i, 2] = _to_float(tokens, 4, path, line, "sf_mean")
            if len(tokens) > 5:
                values[i, 3] = _to_float(tokens, 5, path, line, "sf_sigma")
            elif need_sigma:
                raise ModelFileError(
                    f"{path}, line {line}: no sigma column, but input.nn asks for "
                    "scale_symmetry_functions_sigma"
                )
            else:
                values[i, 3] = 1.0
        out[z] = values
    if position != len(rows):
        tokens, line = rows[position]
        raise ModelFileError(
            f"{path}, line {line}: more scaling lines than the {total} symmetry functions of "
            "input.nn; scaling.data does not belong to this input.nn"
        )
    return out


def _read_weights(path: Path, expected: int, symbol: str) -> np.ndarray:
    if not path.exists():
        raise ModelFileError(
            f"{path}: missing weights file of element {symbol} (n2p2 names it "
            f"weights.NNN.data with NNN the atomic number)"
        )
    rows = _read_columns(path, f"network weights of {symbol}")
    values = np.array([_to_float(tokens, 0, path, line, "weight") for tokens, line in rows])
    if values.size != expected:
        raise ModelFileError(
            f"{path}: {values.size} weights, but the network of {symbol} in input.nn needs "
            f"{expected}"
        )
    return values


def load_n2p2_potential(
    directory: str | os.PathLike, length_unit: str = "angstrom", energy_unit: str = "ev"
):
    """Load an n2p2 HDNNP directory as an :class:`~mlpot.models.hdnnp.HDNNP` (eV, Å).

    ``length_unit``/``energy_unit`` say the units of the files ("angstrom"/"bohr",
    "ev"/"hartree"). Raises :class:`ModelFileError` naming the file (and line) on bad input.
    """
    from mlpot.descriptors.acsf import ACSF, SymmetryFunction
    from mlpot.models.hdnnp import HDNNP

    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: not a directory (expected an n2p2 potential)")
    length, energy = _unit_factors(length_unit, energy_unit)
    path = directory / "input.nn"
    settings = _read_settings(path)

    nnp_type = settings.one("nnp_type", required=False) or settings.one("nn_type", required=False)
    if nnp_type is not None:
        kind = _to_int(nnp_type[0], 0, path, nnp_type[1], "nnp_type")
        if kind not in (0, 2):
            raise ModelFileError(
                f"{path}, line {nnp_type[1]}: nnp_type {kind} is not supported; mlpot reads "
                "short-range (2G) HDNNPs only"
            )

    tokens, line = settings.one("elements")
    elements = []
    for symbol in tokens:
        if symbol not in atomic_numbers:
            raise ModelFileError(f"{path}, line {line}: unknown element {symbol!r}")
        elements.append(atomic_numbers[symbol])
    elements = sorted(set(elements))
    n_entry = settings.one("number_of_elements")
    n_elements = _to_int(n_entry[0], 0, path, n_entry[1], "number_of_elements")
    if n_elements != len(elements):
        raise ModelFileError(
            f"{path}, line {n_entry[1]}: number_of_elements is {n_elements} but 'elements' "
            f"lists {len(elements)}"
        )

    # cutoff function
    tokens, line = settings.one("cutoff_type")
    cutoff_number = _to_int(tokens, 0, path, line, "cutoff_type")
    if cutoff_number not in CUTOFF_NAMES:
        raise ModelFileError(f"{path}, line {line}: unknown cutoff_type {cutoff_number}")
    cutoff_alpha = _to_float(tokens, 1, path, line, "cutoff alpha") if len(tokens) > 1 else 0.0
    if not 0.0 <= cutoff_alpha < 1.0:
        raise ModelFileError(f"{path}, line {line}: cutoff alpha must be in [0, 1)")

    # normalisation
    normalisation = [settings.has(k) for k in ("mean_energy", "conv_energy", "conv_length")]
    if any(normalisation) and not all(normalisation):
        raise ModelFileError(f"{path}: use all or none of mean_energy, conv_energy and conv_length")
    mean_energy = settings.float_of("mean_energy", 0.0)
    conv_energy = settings.float_of("conv_energy", 1.0)

    # atomic energy offsets
    offsets = {z: 0.0 for z in elements}
    for tokens, line in settings.all("atom_energy"):
        symbol = tokens[0] if tokens else ""
        if atomic_numbers.get(symbol) not in offsets:
            raise ModelFileError(
                f"{path}, line {line}: atom_energy for {symbol!r}, which is not an element "
                "of the potential"
            )
        offsets[atomic_numbers[symbol]] = _to_float(tokens, 1, path, line, "atom_energy")

    # symmetry functions, sorted per element as n2p2 does
    per_element: dict[int, list[_N2p2Function]] = {z: [] for z in elements}
    sf_lines = settings.all("symfunction_short")
    if not sf_lines:
        raise ModelFileError(f"{path}: no symfunction_short lines")
    for tokens, line in sf_lines:
        function = _parse_symfunction(tokens, line, path, elements)
        per_element[function.center].append(function)
    for z, functions in per_element.items():
        if not functions:
            raise ModelFileError(f"{path}: element {chemical_symbols[z]} has no symmetry functions")
        functions.sort(key=_N2p2Function.sort_key)

    cutoff_name = CUTOFF_NAMES[cutoff_number]
    acsf_functions = []
    for z in elements:
        for f in per_element[z]:
            acsf_functions.append(
                SymmetryFunction(
                    kind=N2P2_TYPES[f.type],
                    center=z,
                    neighbors=f.neighbors,
                    r_cut=f.r_cut * length,
                    eta=f.eta / (length * length),
                    r_shift=f.r_shift * length,
                    zeta=f.zeta,
                    lambda_=f.lambda_,
                    cutoff_type=cutoff_name,
                    cutoff_alpha=cutoff_alpha,
                )
            )

    # network topology
    tokens, line = settings.one("global_hidden_layers_short")
    n_hidden = _to_int(tokens, 0, path, line, "global_hidden_layers_short")
    tokens, line = settings.one("global_nodes_short")
    if len(tokens) < n_hidden:
        raise ModelFileError(
            f"{path}, line {line}: global_nodes_short gives {len(tokens)} widths for "
            f"{n_hidden} hidden layers"
        )
    widths = [_to_int(tokens, i, path, line, "global_nodes_short") for i in range(n_hidden)]
    hidden = {z: list(widths) for z in elements}
    for tokens, line in settings.all("element_nodes_short"):
        z = atomic_numbers.get(tokens[0] if tokens else "")
        layer = _to_int(tokens, 1, path, line, "element_nodes_short layer")
        nodes = _to_int(tokens, 2, path, line, "element_nodes_short nodes")
        if z not in hidden or not 1 <= layer <= n_hidden:
            raise ModelFileError(
                f"{path}, line {line}: element_nodes_short needs '<element> <hidden layer "
                f"1..{n_hidden}> <nodes>' for an element of the potential"
            )
        hidden[z][layer - 1] = nodes
    tokens, line = settings.one("global_activation_short")
    if len(tokens) < n_hidden:
        raise ModelFileError(
            f"{path}, line {line}: global_activation_short gives {len(tokens)} activations "
            f"for {n_hidden} hidden layers"
        )
    activations = []
    for code in tokens[:n_hidden]:
        if code not in N2P2_CODES:
            raise ModelFileError(
                f"{path}, line {line}: unknown n2p2 activation {code!r} "
                f"(known: {' '.join(N2P2_CODES)})"
            )
        activations.append(N2P2_CODES[code])

    # scaling mode, as in Mode::setupSymmetryFunctionScaling
    scale, center = (
        settings.has("scale_symmetry_functions"),
        settings.has("center_symmetry_functions"),
    )
    if scale and not center:
        scaling = "minmax"
    elif center and not scale:
        scaling = "center"
    elif scale and center:
        scaling = "scale_center"
    elif settings.has("scale_symmetry_functions_sigma"):
        scaling = "scalesigma"
    else:
        scaling = "none"
    s_min = settings.float_of("scale_min_short", 0.0)
    s_max = settings.float_of("scale_max_short", 1.0)
    if scaling in ("center", "none") or s_max == s_min:
        scaling_range = (0.0, 1.0) if scaling in ("center", "none") else (s_min, s_max)
    else:
        scaling_range = (s_min, s_max)
    if scaling_range[0] == scaling_range[1]:
        raise ModelFileError(f"{path}: scale_min_short equals scale_max_short")

    descriptor = ACSF(acsf_functions, elements=elements)
    model = HDNNP(
        descriptor,
        hidden_layers=hidden,
        activation=activations,
        scaling=scaling,
        scaling_range=scaling_range,
        normalize_nodes=settings.has("normalize_nodes"),
    )

    counts = {z: len(per_element[z]) for z in elements}
    statistics = _read_scaling(directory / "scaling.data", counts, scaling == "scalesigma")
    with torch.no_grad():
        for z in elements:
            symbol = chemical_symbols[z]
            net = model.networks[symbol]
            if net.n_features != counts[z]:  # pragma: no cover - consistency of ACSF
                raise ModelFileError(
                    f"{path}: descriptor has {net.n_features} features for {symbol}, "
                    f"input.nn {counts[z]}"
                )
            stats = torch.from_numpy(statistics[z])
            net.feature_min.copy_(stats[:, 0])
            net.feature_max.copy_(stats[:, 1])
            net.feature_mean.copy_(stats[:, 2])
            net.feature_sigma.copy_(stats[:, 3])
            n_connections = sum(
                layer.in_features * layer.out_features + layer.out_features for layer in net.layers
            )
            weights = _read_weights(directory / f"weights.{z:03d}.data", n_connections, symbol)
            position = 0
            for layer in net.layers:
                n_in, n_out = layer.in_features, layer.out_features
                block = weights[position : position + n_in * n_out].reshape(n_in, n_out)
                position += n_in * n_out
                layer.weight.copy_(torch.from_numpy(block.T.copy()))
                layer.bias.copy_(torch.from_numpy(weights[position : position + n_out]))
                position += n_out
            net.energy_scale.fill_(energy / conv_energy)
            net.energy_shift.fill_(mean_energy * energy)
            net.reference_energy.fill_(offsets[z] * energy)
    model.metadata = {
        "source": "n2p2",
        "directory": str(directory),
        "file_units": {"length": str(length_unit), "energy": str(energy_unit)},
    }
    return model


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def _exact(value: float) -> str:
    """A float as text that reads back to the identical double."""
    return repr(float(value))


def export_n2p2(model, directory: str | os.PathLike, comment: str | None = None) -> Path:
    """Write an mlpot HDNNP as an n2p2 potential directory in Å and eV.

    Writes ``input.nn``, ``scaling.data`` and ``weights.NNN.data`` (each file atomically), so
    that n2p2's tools and LAMMPS's ``pair_style hdnnp`` can run the model. The output scale
    and shift of each element are folded into its output layer, the reference energies
    become ``atom_energy`` lines, and the symmetry functions are written in n2p2's sorted
    order (the first-layer weights and the statistics permuted to match).

    Raises :class:`ParameterError` for a model n2p2 cannot represent (a G3 function,
    different cutoff types in one model, an activation n2p2 lacks such as SiLU).
    """
    from mlpot.models.hdnnp import HDNNP

    if not isinstance(model, HDNNP):
        raise ParameterError(
            f"only HDNNP models can be exported to n2p2, got {type(model).__name__}"
        )
    if getattr(model, "interaction", None) is not None:
        raise ParameterError(
            "this HDNNP has an interaction (message-passing) layer, which n2p2's short-range "
            "HDNNP cannot represent; export it as TorchScript instead (mlpot export --format "
            "torchscript) or train without model.interaction"
        )
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ParameterError(f"{directory}: exists and is not a directory")

    descriptor = model.descriptor
    elements = list(model.elements)

    # symmetry functions -> n2p2 lines (Å), one global cutoff type
    cutoff_kinds = set()
    per_element: dict[int, list[tuple[_N2p2Function, int]]] = {}
    for z in elements:
        functions = descriptor.functions_for(z)
        if not functions:
            raise ParameterError(
                f"element {chemical_symbols[z]} has no symmetry functions; n2p2 needs at "
                "least one per element"
            )
        entries = []
        for index, f in enumerate(functions):
            cutoff_kinds.add((str(f.cutoff_type), float(f.cutoff_alpha)))
            kind = f.kind
            if kind == "G1":
                n2p2 = _N2p2Function(z, 2, tuple(f.neighbors), 0.0, 0.0, f.r_cut)
            elif kind == "G2":
                n2p2 = _N2p2Function(z, 2, tuple(f.neighbors), f.eta, f.r_shift, f.r_cut)
            elif kind in ("G4", "G5"):
                n2p2 = _N2p2Function(
                    z,
                    3 if kind == "G4" else 9,
                    tuple(sorted(f.neighbors)),
                    f.eta,
                    f.r_shift,
                    f.r_cut,
                    zeta=f.zeta,
                    lambda_=f.lambda_,
                )
            else:
                raise ParameterError(
                    f"symmetry function {index + 1} of {chemical_symbols[z]} is of kind {kind} "
                    f"(e.g. DScribe's G3 cos(kappa r)), which n2p2 has no type for; train the "
                    "model with G1/G2/G4/G5 functions to export it"
                )
            entries.append((n2p2, index))
        entries.sort(key=lambda item: item[0].sort_key())
        per_element[z] = entries
    if len(cutoff_kinds) != 1:
        raise ParameterError(
            "n2p2 uses one cutoff function type (and alpha) for all symmetry functions, but "
            f"this model mixes {sorted(cutoff_kinds)}"
        )
    cutoff_name, cutoff_alpha = cutoff_kinds.pop()
    if cutoff_name.isdigit():
        cutoff_name = CUTOFF_NAMES[int(cutoff_name)]
    if cutoff_name not in CUTOFF_NUMBERS:
        raise ParameterError(f"cutoff type {cutoff_name!r} has no n2p2 equivalent")

    # activations
    letters = []
    shifted = []
    for name in model.activation:
        if name == "shifted_softplus":
            letters.append(N2P2_LETTERS["softplus"])
            shifted.append(True)
        elif name in N2P2_LETTERS:
            letters.append(N2P2_LETTERS[name])
            shifted.append(False)
        else:
            raise ParameterError(
                f"activation {name!r} has no n2p2 equivalent (n2p2 has "
                f"{', '.join(sorted(N2P2_LETTERS))}); train with one of those to export"
            )

    # scaling
    scaling_lines = {
        "minmax": ["scale_symmetry_functions"],
        "center": ["center_symmetry_functions"],
        "scale_center": ["scale_symmetry_functions", "center_symmetry_functions"],
        "scalesigma": ["scale_symmetry_functions_sigma"],
        "standard": ["scale_symmetry_functions_sigma"],
        "none": [],
    }[model.scaling]
    s_min, s_max = (0.0, 1.0) if model.scaling == "standard" else model.scaling_range

    # weights, with shifted-softplus offsets and the output scale/shift folded in
    weight_texts = {}
    stats_rows = []
    for element_index, z in enumerate(elements):
        net = model.networks[chemical_symbols[z]]
        order = [index for _, index in per_element[z]]
        weights = [layer.weight.detach().double().cpu().clone() for layer in net.layers]
        biases = [layer.bias.detach().double().cpu().clone() for layer in net.layers]
        weights[0] = weights[0][:, order]
        for i, is_shifted in enumerate(shifted):
            if is_shifted:  # W (sp(x) - ln 2) + b = W sp(x) + (b - ln 2 · Σ_j W_kj)
                biases[i + 1] = biases[i + 1] - math.log(2.0) * weights[i + 1].sum(dim=1)
        scale = float(net.energy_scale)
        shift = float(net.energy_shift)
        fan_in = net.layers[-1].in_features if model.normalize_nodes else 1
        weights[-1] = weights[-1] * scale
        biases[-1] = biases[-1] * scale + shift * fan_in
        lines = [
            "#" * 80,
            "# Neural network connection values (weights and biases), written by mlpot.",
            "# Columns: connection, type (a weight, b bias), index, layer/neuron start, "
            "layer/neuron end",
            "#" * 80,
        ]
        count = 0
        for layer_index, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
            n_out, n_in = w.shape
            for j in range(n_in):
                for k in range(n_out):
                    count += 1
                    lines.append(
                        f"{float(w[k, j]):24.16E} a {count:9d} {layer_index - 1:5d} {j + 1:5d} "
                        f"{layer_index:5d} {k + 1:5d}"
                    )
            for k in range(n_out):
                count += 1
                lines.append(f"{float(b[k]):24.16E} b {count:9d} {layer_index:5d} {k + 1:5d}")
        weight_texts[z] = "\n".join(lines) + "\n"
        stats = torch.stack(
            [net.feature_min, net.feature_max, net.feature_mean, net.feature_sigma], dim=1
        )
        stats = stats.detach().double().cpu()[order]
        for i, row in enumerate(stats.tolist()):
            stats_rows.append(
                f"{element_index + 1:10d} {i + 1:10d} "
                + " ".join(f"{value:24.16E}" for value in row)
            )

    # input.nn
    symbols = [chemical_symbols[z] for z in elements]
    widths = model.hidden_layers
    first = widths[elements[0]]
    out = [
        "#" * 80,
        "# n2p2 HDNNP written by mlpot (units: Angstrom, eV).",
    ]
    if comment:
        out.extend(f"# {text}" for text in str(comment).splitlines())
    out.append("#" * 80)
    out.append(f"number_of_elements {len(elements)}")
    out.append(f"elements {' '.join(symbols)}")
    for z in elements:
        reference = float(model.networks[chemical_symbols[z]].reference_energy)
        out.append(f"atom_energy {chemical_symbols[z]} {_exact(reference)}")
    out.append(f"cutoff_type {CUTOFF_NUMBERS[cutoff_name]} {_exact(cutoff_alpha)}")
    out.extend(scaling_lines)
    if model.scaling in ("minmax", "scale_center", "scalesigma", "standard"):
        out.append(f"scale_min_short {_exact(s_min)}")
        out.append(f"scale_max_short {_exact(s_max)}")
    out.append(f"global_hidden_layers_short {len(first)}")
    out.append(f"global_nodes_short {' '.join(str(w) for w in first)}")
    out.append(f"global_activation_short {' '.join(letters)} l")
    for z in elements[1:]:
        for layer, (width, width0) in enumerate(zip(widths[z], first, strict=True), start=1):
            if width != width0:
                out.append(f"element_nodes_short {chemical_symbols[z]} {layer} {width}")
    if model.normalize_nodes:
        out.append("normalize_nodes")
    out.append("")
    out.append("# symfunction_short <ec> 2 <e1> <eta> <rs> <rc>")
    out.append("# symfunction_short <ec> 3|9 <e1> <e2> <eta> <lambda> <zeta> <rc> <rs>")
    for z in elements:
        for f, _ in per_element[z]:
            ec = chemical_symbols[z]
            if f.type == 2:
                out.append(
                    f"symfunction_short {ec} 2 {chemical_symbols[f.neighbors[0]]} "
                    f"{_exact(f.eta)} {_exact(f.r_shift)} {_exact(f.r_cut)}"
                )
            else:
                e1, e2 = (chemical_symbols[n] for n in f.neighbors)
                out.append(
                    f"symfunction_short {ec} {f.type} {e1} {e2} {_exact(f.eta)} "
                    f"{_exact(f.lambda_)} {_exact(f.zeta)} {_exact(f.r_cut)} {_exact(f.r_shift)}"
                )
    scaling_text = (
        "\n".join(
            [
                "#" * 80,
                "# Symmetry function scaling data, written by mlpot.",
                "# Columns: e_index sf_index sf_min sf_max sf_mean sf_sigma",
                "#" * 80,
                *stats_rows,
            ]
        )
        + "\n"
    )

    directory.mkdir(parents=True, exist_ok=True)
    for z, text in weight_texts.items():
        atomic_write_text(directory / f"weights.{z:03d}.data", text)
    atomic_write_text(directory / "scaling.data", scaling_text)
    atomic_write_text(directory / "input.nn", "\n".join(out) + "\n")
    return directory
