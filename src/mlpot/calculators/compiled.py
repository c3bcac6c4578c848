"""A compiled artefact of any potential: TorchScript that needs only libtorch.

The whole evaluation — pair vectors, descriptors, networks, and the backward pass that gives
forces and virial — is traced into one graph of ATen operations with symbolic sizes
(``make_fx(tracing_mode="symbolic")``), then scripted. The weights are constants of the graph.
The saved file runs from C++ (``torch::jit::load``) or Python (``torch.jit.load``) without the
mlpot package, for any number of atoms, pairs and elements of the potential.

Signature of the compiled ``forward`` (one structure; tensors of the model's float dtype,
float64 for HDNNPs, and int64 indices, all on the CPU or all on one device)::

    forward(positions (N, 3) Å, numbers (N,) int64 atomic numbers, cell (3, 3) Å (rows are
            the cell vectors; zeros for a molecule), centers (P,) int64, neighbors (P,) int64,
            shifts (P, 3) int64)
        -> (energy () eV, atomic_energies (N,) eV, forces (N, 3) eV/Å, virial (3, 3) eV)

Neighbour-list convention: a *full* list (both i→j and j→i) of every pair with
|r_ij| < cutoff (the ``cutoff_angstrom`` of the file's ``mlpot.json``; pairs up to any larger
radius are fine, they contribute zero), without self pairs i = j with zero shift, where
r_ij = positions[j] − positions[i] + shifts · cell (integer image shifts, as ASE's and vesin's
``S``). The virial is −∂E/∂ε for a homogeneous strain ε of positions and cell (eV);
stress = −virial / volume (eV/Å³, ASE sign convention); forces = −∂E/∂positions.
The atomic numbers must be elements of the potential (``elements`` in ``mlpot.json``): the
compiled graph does not check them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from mlpot._atomic import atomic_output
from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors
from mlpot.errors import ModelFileError
from mlpot.models.potential import Potential

#: Signature of the compiled module, as recorded in the file's ``mlpot.json``.
SIGNATURE = (
    "forward(positions (N,3) Å, numbers (N,) int64, cell (3,3) Å, centers (P,) int64, "
    "neighbors (P,) int64, shifts (P,3) int64) -> (energy () eV, atomic_energies (N,) eV, "
    "forces (N,3) eV/Å, virial (3,3) eV)"
)


def _energy_forces_virial(potential: Potential):
    cutoff = potential.cutoff

    def evaluate(positions, numbers, cell, centers, neighbors, shifts):
        strain = torch.zeros((3, 3), dtype=positions.dtype, device=positions.device)
        positions = positions.detach().requires_grad_(True)
        strain.requires_grad_(True)
        deformation = torch.eye(3, dtype=positions.dtype, device=positions.device) + strain
        strained_positions = positions @ deformation
        strained_cell = (cell @ deformation).unsqueeze(0)
        n_atoms = positions.shape[0]
        batch = AtomsBatch(
            positions=strained_positions,
            numbers=numbers,
            cell=strained_cell,
            pbc=torch.ones((1, 3), dtype=torch.bool, device=positions.device),
            structure_index=torch.zeros_like(numbers),
            n_atoms=torch.full((1,), n_atoms, dtype=torch.long, device=positions.device),
        )
        nl = NeighborList(centers=centers, neighbors=neighbors, shifts=shifts, cutoff=cutoff)
        vectors = pair_vectors(batch, nl)
        atomic = potential(batch, nl, vectors)
        energy = atomic.sum()
        grad_positions, grad_strain = torch.autograd.grad(energy, (positions, strain))
        return energy.detach(), atomic.detach(), -grad_positions.detach(), -grad_strain.detach()

    return evaluate


def compile_potential(
    potential: Potential, example: AtomsBatch | None = None
) -> torch.jit.ScriptModule:
    """Trace ``potential`` (energy, forces, virial) into a TorchScript module.

    ``example`` is a one-structure batch used for tracing (sizes are symbolic, so any structure
    works afterwards); by default a small periodic cell holding all the potential's elements.
    The potential's forward must be traceable (no data-dependent Python control flow while
    :func:`mlpot.descriptors.acsf.is_tracing`); HDNNP and LennardJones are.
    """
    potential = potential.eval()
    for p in potential.parameters():
        p.requires_grad_(False)
    if example is None:
        example = _default_example(potential)
    potential.check_elements(example)
    nl = neighbor_list(example, potential.cutoff)
    args = (
        example.positions,
        example.numbers,
        example.cell[0],
        nl.centers,
        nl.neighbors,
        nl.shifts,
    )
    graph = make_fx(
        _energy_forces_virial(potential), tracing_mode="symbolic", _allow_non_fake_inputs=True
    )(*args)
    for node in graph.graph.nodes:  # TorchScript knows operator packets, not their overloads
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            node.target = node.target.overloadpacket
    graph.recompile()
    scripted = torch.jit.script(graph)
    scripted.cutoff = potential.cutoff  # informational attribute for Python hosts
    return scripted


def save_compiled(
    potential: Potential, path: str | os.PathLike, example: AtomsBatch | None = None
) -> Path:
    """Compile and save atomically (TorchScript file).

    The file's extra file ``mlpot.json`` records cutoff (Å), elements, dtype, units and the
    signature; read it with ``torch.jit.load(path, _extra_files={"mlpot.json": ""})`` or
    ``torch::jit::load(path, device, extra_files)`` in C++.
    """
    path = Path(path)
    module = compile_potential(potential, example)
    meta = {
        "cutoff_angstrom": potential.cutoff,
        "elements": potential.elements,
        "dtype": str(potential.dtype),
        "units": {"length": "angstrom", "energy": "eV"},
        "signature": SIGNATURE,
        "neighbor_list": "full list, r_ij = positions[j] - positions[i] + shifts @ cell",
    }
    with atomic_output(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={"mlpot.json": json.dumps(meta)})
    return path


def _default_example(potential: Potential) -> AtomsBatch:
    from ase.build import bulk

    elements = potential.elements
    if not elements:
        raise ModelFileError("the potential names no elements; cannot build a tracing example")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(0)
    atoms.set_atomic_numbers([elements[i % len(elements)] for i in range(len(atoms))])
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return AtomsBatch.from_atoms([atoms], dtype=potential.dtype)
