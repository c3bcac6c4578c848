"""The Behler–Parrinello high-dimensional neural network potential (HDNNP).

Each atom's energy comes from a small network of its element, fed with the atom's ACSF
descriptor (symmetry functions)::

    E_i = energy_scale_Z · MLP_Z(scale_Z(G_i)) + energy_shift_Z + reference_energy_Z     (eV)
    E   = Σ_i E_i

Forces and stress follow by autograd (:func:`mlpot.models.potential.compute_properties`).

Feature scaling (``scaling``), with per-feature statistics of the training set (min, max, mean,
population sigma) kept as buffers and ``scaling_range = (S_min, S_max)``, the same modes as n2p2
(``SymFnc::scale``):

* ``"minmax"`` (n2p2 ``scale_symmetry_functions``):
  S_min + (S_max − S_min)(G − G_min)/(G_max − G_min)
* ``"standard"``: (G − mean)/sigma
* ``"center"`` (n2p2 ``center_symmetry_functions``): G − mean
* ``"scale_center"`` (n2p2 both keywords): S_min + (S_max − S_min)(G − mean)/(G_max − G_min)
* ``"scalesigma"`` (n2p2 ``scale_symmetry_functions_sigma``):
  S_min + (S_max − S_min)(G − mean)/sigma
* ``"none"``: G

Evaluation is one descriptor pass for the whole batch; then, per element, the atoms of that
element and their first ``n_features[Z]`` columns are gathered, run through the element's
network and scattered back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import ase
import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from mlpot.data.batch import REF_ENERGY, AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors
from mlpot.errors import DataError, ParameterError
from mlpot.models.activations import Activation, canonical_activation
from mlpot.models.potential import Potential, register_potential

SCALING_MODES = ("minmax", "standard", "center", "scale_center", "scalesigma", "none")
_SCALING_ALIASES = {
    "scale": "minmax",
    "min_max": "minmax",
    "standardize": "standard",
    "standardise": "standard",
    "std": "standard",
    "scalecenter": "scale_center",
    "scale+center": "scale_center",
    "scale_sigma": "scalesigma",
    "sigma": "scalesigma",
}


def canonical_scaling(mode: str) -> str:
    """Canonical name of a feature-scaling mode; ParameterError if unknown."""
    key = str(mode).strip().lower()
    key = _SCALING_ALIASES.get(key, key)
    if key not in SCALING_MODES:
        raise ParameterError(f"unknown feature scaling {mode!r}; use one of {list(SCALING_MODES)}")
    return key


def _element_number(key: Any) -> int:
    """Atomic number from an int, a digit string or a chemical symbol."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    text = str(key).strip()
    if text.isdigit():
        return int(text)
    if text in atomic_numbers:
        return atomic_numbers[text]
    raise ParameterError(f"{key!r} is neither an atomic number nor a chemical symbol")


class ElementNetwork(torch.nn.Module):
    """Feature scaling + MLP (n_features → hidden … → 1) + output scale/shift of one element.

    Buffers: ``feature_min``, ``feature_max``, ``feature_mean``, ``feature_sigma`` (n_features,)
    statistics of the unscaled features; ``energy_scale`` (eV), ``energy_shift`` (eV) and
    ``reference_energy`` (eV), scalars.
    """

    def __init__(
        self,
        n_features: int,
        hidden_layers: Sequence[int],
        activations: Sequence[str],
        normalize_nodes: bool = False,
        n_extra: int = 0,
    ):
        super().__init__()
        self.n_features = int(n_features)
        self.n_extra = int(n_extra)
        self.normalize_nodes = bool(normalize_nodes)
        sizes = [self.n_features + self.n_extra, *[int(h) for h in hidden_layers], 1]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64)
            for i in range(len(sizes) - 1)
        )
        self.activations = torch.nn.ModuleList(Activation(a) for a in activations)
        f64 = {"dtype": torch.float64}
        self.register_buffer("feature_min", torch.zeros(self.n_features, **f64))
        self.register_buffer("feature_max", torch.ones(self.n_features, **f64))
        self.register_buffer("feature_mean", torch.zeros(self.n_features, **f64))
        self.register_buffer("feature_sigma", torch.ones(self.n_features, **f64))
        self.register_buffer("energy_scale", torch.ones((), **f64))
        self.register_buffer("energy_shift", torch.zeros((), **f64))
        self.register_buffer("reference_energy", torch.zeros((), **f64))

    def scale_features(
        self, features: torch.Tensor, mode: str, scaling_range: tuple[float, float]
    ) -> torch.Tensor:
        """Scaled features (same expressions, in the same order, as n2p2's SymFnc::scale)."""
        s_min, s_max = scaling_range
        if mode == "none":
            return features
        if mode == "center":
            return features - self.feature_mean
        if mode == "minmax":
            factor = (s_max - s_min) / (self.feature_max - self.feature_min)
            return s_min + factor * (features - self.feature_min)
        if mode == "scale_center":
            factor = (s_max - s_min) / (self.feature_max - self.feature_min)
            return s_min + factor * (features - self.feature_mean)
        if mode == "scalesigma":
            factor = (s_max - s_min) / self.feature_sigma
            return s_min + factor * (features - self.feature_mean)
        if mode == "standard":
            return (features - self.feature_mean) / self.feature_sigma
        raise ParameterError(f"unknown feature scaling {mode!r}")  # pragma: no cover

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The bare MLP on scaled features: (n, n_features) -> (n,)."""
        n_layers = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.normalize_nodes:
                x = x / layer.in_features
            if i < n_layers - 1:
                x = self.activations[i](x)
        return x.squeeze(-1)

    def forward(
        self,
        features: torch.Tensor,
        mode: str,
        scaling_range: tuple[float, float],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Atomic energies (n,), eV, from unscaled features (n, n_features).

        ``extra`` (n, n_extra): further inputs appended to the scaled features (the messages
        of an :class:`EnvironmentMessages` layer).
        """
        x = self.scale_features(features, mode, scaling_range)
        if extra is not None:
            x = torch.cat([x, extra], dim=1)
        out = self.network(x)
        return self.energy_scale * out + self.energy_shift + self.reference_energy


class EnvironmentMessages(torch.nn.Module):
    """One message-passing step: each atom learns about its neighbours' environments.

    For atom i with neighbours j within ``cutoff`` (Å)::

        m_i = (1/n̄) Σ_j [W b(r_ij)] f_c(r_ij) ⊙ ssp(A_Zj x_j + a_Zj)        (channels,)

    x_j is neighbour j's scaled descriptor, ``A_Z``/``a_Z`` a per-element linear embedding,
    b(r) ``n_radial`` Gaussians spread over [0, cutoff], W a linear filter (as SchNet's
    continuous filters), f_c the cosine cutoff and n̄ the mean Σ_j f_c(r_ij) of the training
    atoms (fitted by :meth:`HDNNP.fit_statistics`). The messages join the atom's own scaled
    descriptor at the input of its element's network, so an atomic energy sees the
    descriptors of the neighbours (many-body terms, range up to twice the cutoff) while staying
    invariant, local and differentiable. With ``interaction=None`` the HDNNP is the plain
    Behler–Parrinello model.
    """

    def __init__(
        self,
        n_features: Mapping[int, int],
        channels: int = 16,
        n_radial: int = 8,
        cutoff: float = 6.0,
    ):
        super().__init__()
        if int(channels) < 1 or int(n_radial) < 2 or not float(cutoff) > 0:
            raise ParameterError(
                f"interaction needs channels >= 1, n_radial >= 2 and cutoff > 0; got "
                f"channels={channels}, n_radial={n_radial}, cutoff={cutoff}"
            )
        self.channels = int(channels)
        self.n_radial = int(n_radial)
        self.cutoff = float(cutoff)
        f64 = {"dtype": torch.float64}
        self.embed = torch.nn.ModuleDict(
            {
                chemical_symbols[z]: torch.nn.Linear(int(f), self.channels, **f64)
                for z, f in n_features.items()
            }
        )
        self.filter = torch.nn.Linear(self.n_radial, self.channels, **f64)
        self.register_buffer(
            "radial_centres", torch.linspace(0.0, self.cutoff, self.n_radial, **f64)
        )
        self.radial_width = self.cutoff / (self.n_radial - 1)
        self.register_buffer("inverse_mean_neighbors", torch.ones((), **f64))
        self.activation = Activation("shifted_softplus")

    def get_config(self) -> dict[str, Any]:
        return {"channels": self.channels, "n_radial": self.n_radial, "cutoff": self.cutoff}

    def cutoff_weight(self, r: torch.Tensor) -> torch.Tensor:
        """Cosine cutoff 0.5 (cos(π r / cutoff) + 1) inside the cutoff, 0 beyond."""
        inside = r < self.cutoff
        fc = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        return torch.where(inside, fc, torch.zeros_like(fc))

    def forward(
        self,
        embedded: torch.Tensor,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        vectors: torch.Tensor,
    ) -> torch.Tensor:
        """Messages (N, channels) from the atoms' embeddings (N, channels) and the pairs."""
        r = torch.linalg.norm(vectors, dim=1)
        d = (r[:, None] - self.radial_centres) / self.radial_width
        basis = torch.exp(-0.5 * d * d)
        weight = self.filter(basis) * self.cutoff_weight(r)[:, None]
        messages = embedded.new_zeros(embedded.shape).index_add(
            0, centers, weight * embedded.index_select(0, neighbors)
        )
        return messages * self.inverse_mean_neighbors


@register_potential
class HDNNP(Potential):
    """Behler–Parrinello potential: per-element MLPs on ACSF features (eV, Å).

    Args:
        descriptor: an :class:`~mlpot.descriptors.acsf.ACSF` or its config dict.
        hidden_layers: hidden-layer widths, for all elements, or a mapping element (atomic
            number or symbol) → widths (same depth for every element).
        activation: one activation name for all hidden layers, or one per hidden layer
            (see :mod:`mlpot.models.activations`); the output layer is linear.
        scaling: feature scaling mode, see the module docstring.
        reference_energies: fixed per-element reference energies, eV (element → value); when
            None, :meth:`fit_statistics` fits them by least squares on composition.
        seed: seed of the weight initialisation.
        scaling_range: (S_min, S_max) of the minmax / scale_center / scalesigma modes.
        normalize_nodes: divide each neuron's input sum by the number of inputs (n2p2's
            ``normalize_nodes``).
        interaction: ``None`` (the plain HDNNP) or the settings of one
            :class:`EnvironmentMessages` step, ``{"channels", "n_radial", "cutoff"}`` (cutoff
            in Å, at most the descriptor's); its messages widen each network's input.
    """

    accepts_longer_neighbor_lists = True  # ACSF adds nothing for pairs beyond its cutoffs

    def __init__(
        self,
        descriptor,
        hidden_layers: Sequence[int] | Mapping[Any, Sequence[int]] = (25, 25),
        activation: str | Sequence[str] = "tanh",
        scaling: str = "minmax",
        reference_energies: Mapping[Any, float] | None = None,
        seed: int | None = None,
        scaling_range: Sequence[float] = (0.0, 1.0),
        normalize_nodes: bool = False,
        interaction: Mapping[str, Any] | None = None,
    ):
        from mlpot.descriptors.acsf import ACSF

        if isinstance(descriptor, Mapping):
            descriptor = ACSF.from_config(dict(descriptor))
        if not isinstance(descriptor, torch.nn.Module):
            raise ParameterError(
                f"HDNNP needs an ACSF descriptor (or its config dict), got {type(descriptor)}"
            )
        super().__init__(descriptor.cutoff, descriptor.elements)
        self.descriptor = descriptor
        self.scaling = canonical_scaling(scaling)
        if len(scaling_range) != 2 or float(scaling_range[1]) == float(scaling_range[0]):
            raise ParameterError(
                f"scaling_range must be (S_min, S_max) with S_max != S_min, got {scaling_range}"
            )
        self.scaling_range = (float(scaling_range[0]), float(scaling_range[1]))
        self.normalize_nodes = bool(normalize_nodes)
        self.seed = None if seed is None else int(seed)

        self.hidden_layers = self._hidden_layers_per_element(hidden_layers)
        depths = {len(h) for h in self.hidden_layers.values()}
        if len(depths) > 1:
            raise ParameterError(
                f"all elements need the same number of hidden layers, got {self.hidden_layers}"
            )
        depth = depths.pop() if depths else 0
        if isinstance(activation, str):
            self.activation = [canonical_activation(activation)] * depth
        else:
            self.activation = [canonical_activation(a) for a in activation]
            if len(self.activation) != depth:
                raise ParameterError(
                    f"{len(self.activation)} activations given for {depth} hidden layers; "
                    "give one per hidden layer or a single name"
                )

        self.fixed_reference_energies: dict[int, float] | None = None
        if reference_energies is not None:
            self.fixed_reference_energies = {
                _element_number(k): float(v) for k, v in reference_energies.items()
            }
            unknown = set(self.fixed_reference_energies) - set(self.elements)
            if unknown:
                raise ParameterError(
                    "reference energies given for element(s) the descriptor does not cover: "
                    + ", ".join(chemical_symbols[z] for z in sorted(unknown))
                )

        self.interaction: EnvironmentMessages | None = None
        if interaction is not None:
            settings = dict(interaction)
            unknown = set(settings) - {"channels", "n_radial", "cutoff"}
            if unknown:
                raise ParameterError(
                    f"interaction: unknown setting(s) {sorted(unknown)}; "
                    "use channels, n_radial, cutoff"
                )
            settings.setdefault("cutoff", descriptor.cutoff)
            if float(settings["cutoff"]) > descriptor.cutoff + 1e-9:
                raise ParameterError(
                    f"interaction cutoff {settings['cutoff']} Å exceeds the descriptor's cutoff "
                    f"{descriptor.cutoff} Å (the neighbour list is built with the latter)"
                )
            self.interaction = EnvironmentMessages(
                {z: descriptor.n_features[z] for z in self.elements}, **settings
            )
        n_extra = 0 if self.interaction is None else self.interaction.channels
        self.networks = torch.nn.ModuleDict()
        for z in self.elements:
            self.networks[chemical_symbols[z]] = ElementNetwork(
                descriptor.n_features[z],
                self.hidden_layers[z],
                self.activation,
                normalize_nodes=self.normalize_nodes,
                n_extra=n_extra,
            )
        self._initialise_weights()
        if self.fixed_reference_energies is not None:
            for z, value in self.fixed_reference_energies.items():
                self.networks[chemical_symbols[z]].reference_energy.fill_(value)
        self.to(torch.float64)

    # --- construction helpers ------------------------------------------------------------
    def _hidden_layers_per_element(self, hidden_layers) -> dict[int, list[int]]:
        if isinstance(hidden_layers, Mapping):
            per = {_element_number(k): [int(h) for h in v] for k, v in hidden_layers.items()}
            missing = set(self.elements) - set(per)
            if missing:
                raise ParameterError(
                    "hidden_layers gives no widths for element(s) "
                    + ", ".join(chemical_symbols[z] for z in sorted(missing))
                )
            per = {z: per[z] for z in self.elements}
        else:
            widths = [int(h) for h in hidden_layers]
            per = {z: list(widths) for z in self.elements}
        for z, widths in per.items():
            if any(w < 1 for w in widths):
                raise ParameterError(
                    f"hidden layer widths must be >= 1, got {widths} for {chemical_symbols[z]}"
                )
        return per

    def _initialise_weights(self) -> None:
        """Glorot-uniform weights, zero biases (reproducible with ``seed``)."""
        generator = torch.Generator()
        if self.seed is not None:
            generator.manual_seed(self.seed)
        else:
            generator.seed()
        layers = [layer for net in self.networks.values() for layer in net.layers]
        if self.interaction is not None:
            layers += [*self.interaction.embed.values(), self.interaction.filter]
        with torch.no_grad():
            for layer in layers:
                bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                w = torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64)
                layer.weight.copy_((2.0 * w - 1.0) * bound)
                layer.bias.zero_()

    # --- evaluation ----------------------------------------------------------------------
    def forward(self, batch: AtomsBatch, nl: NeighborList, vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (N,), eV."""
        from mlpot.descriptors.acsf import is_tracing

        features = self.descriptor(batch, nl, vectors)
        tracing = is_tracing(features)  # no data-dependent Python branches while tracing
        element_index = {z: torch.nonzero(batch.numbers == z).squeeze(1) for z in self.elements}
        if not tracing and sum(i.numel() for i in element_index.values()) != features.shape[0]:
            self.check_elements(batch)
        return self.atomic_energies(
            features,
            batch.numbers,
            nl.centers,
            nl.neighbors,
            vectors,
            element_index=element_index,
            tracing=tracing,
        )

    def atomic_energies(
        self,
        features: torch.Tensor,
        numbers: torch.Tensor,
        centers: torch.Tensor | None = None,
        neighbors: torch.Tensor | None = None,
        vectors: torch.Tensor | None = None,
        element_index: Mapping[int, torch.Tensor] | None = None,
        tracing: bool = False,
    ) -> torch.Tensor:
        """Per-atom energies (N,), eV, from unscaled features (N, F).

        The pairs (``centers``, ``neighbors``, ``vectors`` r_j − r_i in Å) are needed only
        with an ``interaction``. ``element_index``: atom indices per element, if known.
        """
        indices = {}
        for z in self.elements:
            index = element_index.get(z) if element_index is not None else None
            if index is None:
                index = torch.nonzero(numbers == z).squeeze(1)
            if tracing or index.numel() > 0:
                indices[z] = index
        single = not tracing and len(indices) == 1
        extra = None
        if self.interaction is not None:
            if vectors is None or centers is None or neighbors is None:
                raise ParameterError("an HDNNP with an interaction needs the neighbour pairs")
            embedded = features.new_zeros((features.shape[0], self.interaction.channels))
            for z, index in indices.items():
                net = self.networks[chemical_symbols[z]]
                embed = self.interaction.embed[chemical_symbols[z]]
                if single:
                    x = net.scale_features(
                        features[:, : net.n_features], self.scaling, self.scaling_range
                    )
                    embedded = self.interaction.activation(embed(x))
                else:
                    x = features.index_select(0, index)[:, : net.n_features]
                    x = net.scale_features(x, self.scaling, self.scaling_range)
                    embedded = embedded.index_copy(0, index, self.interaction.activation(embed(x)))
            extra = self.interaction(embedded, centers, neighbors, vectors)
        energies = features.new_zeros(features.shape[0])
        for z, index in indices.items():
            net = self.networks[chemical_symbols[z]]
            if single:  # one element: no gathers
                return net(features[:, : net.n_features], self.scaling, self.scaling_range, extra)
            atom_features = features.index_select(0, index)[:, : net.n_features]
            atom_extra = None if extra is None else extra.index_select(0, index)
            energies = energies.index_copy(
                0, index, net(atom_features, self.scaling, self.scaling_range, atom_extra)
            )
        return energies

    # --- statistics ----------------------------------------------------------------------
    @torch.no_grad()
    def fit_statistics(
        self,
        structures: Sequence[ase.Atoms],
        batch_size: int = 32,
        features: Sequence[torch.Tensor] | None = None,
        min_relative_spread: float = 0.0,
    ) -> None:
        """Fit feature statistics and reference energies on training structures.

        * per element and feature: min, max, mean and population sigma of the unscaled
          features (a feature that never varies gets max = min + 1 and sigma = 1, so scaling
          stays finite);
        * reference energies (eV): least squares of ``atoms.info["ref_energy"]`` on the
          composition, unless fixed in the constructor;
        * ``energy_shift`` = mean residual energy per atom (≈ 0 with fitted references) and
          ``energy_scale`` = its standard deviation (1 eV when it vanishes), so that the
          networks learn an O(1) residual.

        ``features``: the descriptors of ``structures`` already computed (one (n_atoms, F)
        tensor per structure, e.g. a training feature cache); then no descriptor pass is run.
        ``min_relative_spread``: floor of each feature's sigma and max − min, relative to the
        largest of the element's features (0 = the plain statistics).
        """
        structures = list(structures)
        if not structures:
            raise DataError("fit_statistics: no training structures given")
        device = self.networks[chemical_symbols[self.elements[0]]].feature_min.device
        dtype = self.dtype
        stats = {z: None for z in self.elements}
        if features is not None and len(features) != len(structures):
            raise DataError(
                f"fit_statistics: {len(features)} feature tensors for {len(structures)} structures"
            )
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            if features is not None:
                numbers = torch.cat([torch.as_tensor(a.numbers) for a in chunk])
                chunk_features = torch.cat(
                    [f.detach() for f in features[start : start + batch_size]]
                ).double()
            else:
                batch = AtomsBatch.from_atoms(chunk, dtype=dtype, device=device)
                try:
                    self.check_elements(batch)
                except DataError as exc:
                    raise DataError(f"training structure index offset {start}: {exc}") from None
                nl = neighbor_list(batch, self.cutoff)
                chunk_features = self.descriptor(batch, nl, pair_vectors(batch, nl)).double()
                numbers = batch.numbers
            for z in self.elements:
                n_features = self.networks[chemical_symbols[z]].n_features
                g = chunk_features[numbers == z][:, :n_features]
                if g.shape[0] == 0:
                    continue
                part = (g.shape[0], g.sum(0), (g * g).sum(0), g.min(0).values, g.max(0).values)
                old = stats[z]
                if old is None:
                    stats[z] = part
                else:
                    stats[z] = (
                        old[0] + part[0],
                        old[1] + part[1],
                        old[2] + part[2],
                        torch.minimum(old[3], part[3]),
                        torch.maximum(old[4], part[4]),
                    )
        for z, s in stats.items():
            if s is None:
                continue
            count, total, total2, g_min, g_max = s
            mean = total / count
            sigma = torch.sqrt(torch.clamp(total2 / count - mean * mean, min=0.0))
            flat = (g_max - g_min) <= 1e-12 * torch.clamp(g_max.abs(), min=1.0)
            g_max = torch.where(flat, g_min + 1.0, g_max)
            sigma = torch.where(sigma <= 1e-12 * torch.clamp(mean.abs(), min=1.0), 1.0, sigma)
            # a feature that barely varies in the training data (e.g. a narrow radial function
            # centred below the shortest bond: sigma 1e-14 for Si) would be blown up by the
            # scaling and turn any new structure with a slightly shorter bond into a wild
            # extrapolation; the trainer floors its spread (min_relative_spread)
            if min_relative_spread > 0 and not flat.all():
                spread_floor = min_relative_spread * (g_max - g_min)[~flat].max()
                g_max = torch.where(~flat, torch.maximum(g_max, g_min + spread_floor), g_max)
                sigma = torch.clamp(sigma, min=min_relative_spread * sigma.max())
            net = self.networks[chemical_symbols[z]]
            net.feature_min.copy_(g_min)
            net.feature_max.copy_(g_max)
            net.feature_mean.copy_(mean)
            net.feature_sigma.copy_(sigma)

        if self.interaction is not None:
            self._fit_neighbor_count(structures)
        if not all(REF_ENERGY in a.info for a in structures):
            return
        energies = np.array([float(a.info[REF_ENERGY]) for a in structures])
        counts = np.array(
            [[int(np.sum(a.numbers == z)) for z in self.elements] for a in structures],
            dtype=float,
        )
        if self.fixed_reference_energies is not None:
            references = np.array(
                [self.fixed_reference_energies.get(z, 0.0) for z in self.elements]
            )
        else:
            references = np.linalg.lstsq(counts, energies, rcond=None)[0]
        n_atoms = counts.sum(1)
        residual_per_atom = (energies - counts @ references) / n_atoms
        shift = float(residual_per_atom.mean())
        spread = float(residual_per_atom.std())
        scale = spread if spread > 1e-6 else 1.0
        for z, ref in zip(self.elements, references, strict=True):
            net = self.networks[chemical_symbols[z]]
            net.reference_energy.fill_(float(ref))
            net.energy_shift.fill_(shift)
            net.energy_scale.fill_(scale)

    def _fit_neighbor_count(self, structures: Sequence[ase.Atoms]) -> None:
        """n̄ of the interaction: mean over training atoms of Σ_j f_c(r_ij)."""
        total, count = 0.0, 0
        for atoms in structures:
            batch = AtomsBatch.from_atoms(atoms, dtype=torch.float64)
            nl = neighbor_list(batch, self.interaction.cutoff)
            r = torch.linalg.norm(pair_vectors(batch, nl), dim=1)
            total += float(self.interaction.cutoff_weight(r).sum())
            count += len(atoms)
        mean = total / count if count else 0.0
        self.interaction.inverse_mean_neighbors.fill_(1.0 / mean if mean > 1e-12 else 1.0)

    def reference_energies(self) -> dict[int, float]:
        """Per-element reference energies, eV."""
        return {
            z: float(self.networks[chemical_symbols[z]].reference_energy) for z in self.elements
        }

    # --- persistence ---------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        hidden: Any
        widths = list(self.hidden_layers.values())
        if all(w == widths[0] for w in widths):
            hidden = list(widths[0]) if widths else []
        else:
            hidden = {chemical_symbols[z]: list(w) for z, w in self.hidden_layers.items()}
        return {
            "descriptor": self.descriptor.get_config(),
            "hidden_layers": hidden,
            "activation": list(self.activation),
            "scaling": self.scaling,
            "reference_energies": None
            if self.fixed_reference_energies is None
            else {chemical_symbols[z]: v for z, v in self.fixed_reference_energies.items()},
            "seed": self.seed,
            "scaling_range": list(self.scaling_range),
            "normalize_nodes": self.normalize_nodes,
            "interaction": None if self.interaction is None else self.interaction.get_config(),
        }
