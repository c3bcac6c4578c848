"""Fused C++ kernel of the angular symmetry functions (G4/G5), with its analytic gradient.

The PyTorch path of :class:`~mlpot.descriptors.acsf.ACSF` is vectorised over triplets but
makes one pass over memory per elementwise operation; this kernel does the whole triplet loop
in one pass per centre (forward) and one for the gradient with respect to the pair vectors
(backward), parallel over centres with ATen's thread pool. Memory is O(pairs + atoms ×
features): no triplet array exists.

It is compiled on first use with ``torch.utils.cpp_extension.load_inline`` (needs a C++
compiler and ninja; the build is cached in torch's extension folder, ``$TORCH_EXTENSIONS_DIR``
or ``~/.cache/torch_extensions``, under ``py<version>_torch<version>/``). When that fails, or
when ``MLPOT_FUSED_KERNEL=0`` is set, ACSF uses its PyTorch path, which gives the same numbers.

Every process that loads the kernel runs torch's build step (a no-op when the build is up to
date) while holding torch's lock *file*; a process killed in that window leaves the file behind
and every later one would wait for it forever. So mlpot first takes an OS lock on the build
folder (``fcntl.flock``, released by the kernel when its holder dies) and, holding it, removes
torch's lock file: only a killed build can have left one.

After a build, mlpot writes a stamp (a hash of the source, the flags, the Python and torch
versions) next to the library; a later process whose stamp matches imports the library
directly, without torch's build step. That step asks ninja whether the build is up to date, and
two ninja versions on one machine (a system one and the venv's ``pip install ninja``) each
consider the other's build stale: every switch between them recompiled the kernel (70 s on
2 cores), inside the time budget of the training that loaded it.

The same extension has the pair vectors of one structure and their gradient
(:class:`PairVectors`, used by :func:`mlpot.data.neighbors.pair_vectors`), and the contraction
of cached descriptor Jacobians with ∂E/∂G for training (:class:`JacobianContract`, used by
:class:`mlpot.training.feature_cache.FeatureEngine`).

The gradient is computed once (``once_differentiable``): second derivatives (force training
without the feature cache) need the PyTorch path; :func:`fused_kernel_enabled` (a context
manager) switches the kernel off for such code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import platform
import sys
import threading
import warnings
from pathlib import Path

import torch

_SOURCE_FILE = Path(__file__).with_name("_acsf_kernel.cpp")


def _build_flags() -> tuple[str, list[str]]:
    """(name suffix, compiler flags): AVX2/FMA code where torch itself detects AVX2 or better."""
    flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
    if platform.system() == "Linux" and "OpenMP" in torch.__config__.parallel_info():
        # ATen's parallel_for (inlined from its headers) runs serially without -fopenmp
        flags[1] = "-fopenmp"
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - old torch: portable build
        capability = "DEFAULT"
    if platform.machine().lower() in ("x86_64", "amd64") and capability in ("AVX2", "AVX512"):
        return "avx2", [*flags, "-mavx2", "-mfma"]
    return "generic", flags


def kernel_name() -> str:
    """The extension's name; it carries the instruction set, so a cache shared by different
    CPUs never loads code built for another one."""
    return f"mlpot_acsf_fused_v11_{_build_flags()[0]}"


def build_directory(name: str) -> Path:
    """The folder the extension ``name`` is built and cached in (created if missing)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    version = f"py{sys.version_info[0]}{sys.version_info[1]}_torch{torch.__version__}"
    path = Path(root) / version.replace("+", "_") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _exclusive_build(directory: Path):
    """Hold an OS lock on ``directory`` and clear torch's lock file a killed build left there."""
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's lock file alone
        yield
        return
    with open(directory / "mlpot.flock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits while another process builds
        except OSError:  # a file system without flock (some NFS): torch's lock file alone
            yield
            return
        try:
            # every mlpot build holds the flock while torch's lock file exists, so a lock file
            # seen here belongs to a process that died
            (directory / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_FUNCTIONS = (  # the kernel's functions that get Python bindings
    "acsf_forward",
    "acsf_backward",
    "pair_vectors_forward",
    "pair_vectors_backward",
    "jacobian_contract",
    "jacobian_contract_backward",
)


def build_stamp(name: str, flags: list[str], source: str) -> str:
    """What the compiled library depends on: source, bound functions, flags, Python and torch
    versions."""
    digest = hashlib.sha256()
    parts = (name, " ".join(flags), " ".join(_FUNCTIONS), source, sys.version, torch.__version__)
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _library_path(directory: Path, name: str) -> Path:
    from torch.utils.cpp_extension import LIB_EXT

    return directory / f"{name}{LIB_EXT}"


def _stamp_matches(directory: Path, name: str, stamp: str) -> bool:
    try:
        recorded = (directory / STAMP_FILE).read_text().strip()
    except OSError:
        return False
    return recorded == stamp and _library_path(directory, name).is_file()


def _import_library(directory: Path, name: str):
    """Import the built extension ``name`` from ``directory`` (no build step)."""
    spec = importlib.util.spec_from_file_location(name, _library_path(directory, name))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {name} from {directory}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_if_built(directory: Path, name: str, stamp: str):
    """The extension imported without a build step if its stamp matches, else None (also
    for a library that no longer loads: it is built again)."""
    if not _stamp_matches(directory, name, stamp):
        return None
    try:
        return _import_library(directory, name)
    except (ImportError, OSError):  # damaged: without the file the build step links it anew
        _library_path(directory, name).unlink(missing_ok=True)
        return None


def _write_stamp(directory: Path, stamp: str) -> None:
    from mlpot._atomic import atomic_write_text

    atomic_write_text(directory / STAMP_FILE, stamp + "\n")


STAMP_FILE = "mlpot.stamp"
_lock = threading.Lock()
_module = None
_failed: str | None = None
_enabled = os.environ.get("MLPOT_FUSED_KERNEL", "1") != "0"


def load_kernel():
    """The compiled extension, or None if it cannot be built (reason in a one-time warning)."""
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    with _lock:
        if _module is None and _failed is None:
            try:
                from torch.utils.cpp_extension import load_inline

                name, flags = kernel_name(), _build_flags()[1]
                directory = build_directory(name)
                source = _SOURCE_FILE.read_text()
                stamp = build_stamp(name, flags, source)
                module = _import_if_built(directory, name, stamp)
                if module is None:
                    with _exclusive_build(directory):
                        # another process may have built it while this one waited
                        module = _import_if_built(directory, name, stamp)
                        if module is None:
                            (directory / STAMP_FILE).unlink(missing_ok=True)
                            module = load_inline(
                                name=name,
                                cpp_sources=[source],
                                functions=list(_FUNCTIONS),
                                extra_cflags=flags,
                                extra_ldflags=["-fopenmp"] if "-fopenmp" in flags else [],
                                build_directory=str(directory),
                                verbose=False,
                            )
                            _write_stamp(directory, stamp)
                _module = module
            except Exception as exc:  # noqa: BLE001 - any build problem means: use PyTorch
                _failed = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    "mlpot: the fused ACSF kernel could not be built; using the PyTorch path "
                    f"(same results, slower). Reason: {_failed[:300]}",
                    stacklevel=2,
                )
    return _module


def kernel_available() -> bool:
    """Whether the fused kernel is switched on and builds."""
    return _enabled and load_kernel() is not None


@contextlib.contextmanager
def fused_kernel_enabled(enabled: bool):
    """Switch the fused kernel on or off inside a ``with`` block (e.g. for double backward)."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


class ACSFSums(torch.autograd.Function):
    """Radial and angular sums (N, width) of all atoms, from the pair vectors ``vec`` (P, 3)."""

    @staticmethod
    def forward(
        ctx,
        vec,
        centers,
        species,
        n_atoms,
        radial_params,
        part_params,
        n_narrow,
        zl_params,
        pair_table,
    ):
        vec = vec.contiguous()
        tables = (radial_params, part_params, zl_params, pair_table)
        out = load_kernel().acsf_forward(
            vec,
            centers,
            species,
            n_atoms,
            radial_params,
            part_params,
            n_narrow,
            zl_params,
            pair_table,
        )
        ctx.save_for_backward(vec, centers, species, *tables)
        ctx.n_atoms, ctx.n_narrow = n_atoms, n_narrow
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        vec, centers, species, radial_params, part_params, zl_params, pair_table = ctx.saved_tensors
        grad = load_kernel().acsf_backward(
            vec,
            centers,
            species,
            ctx.n_atoms,
            radial_params,
            part_params,
            ctx.n_narrow,
            zl_params,
            pair_table,
            grad_out.contiguous(),
        )
        return (grad,) + (None,) * 8


class PairVectors(torch.autograd.Function):
    """r_j − r_i + shift·cell (P, 3) of one structure, differentiable in positions and cell.

    The backward is compiled; under ``create_graph`` it is the same linear map in PyTorch, so
    higher derivatives work.
    """

    @staticmethod
    def forward(ctx, positions, cell, centers, neighbors, shifts):
        vec = load_kernel().pair_vectors_forward(
            positions.contiguous(), cell.contiguous(), centers, neighbors, shifts
        )
        ctx.save_for_backward(centers, neighbors, shifts)
        ctx.n_atoms = positions.shape[0]
        return vec

    @staticmethod
    def backward(ctx, grad_vec):
        centers, neighbors, shifts = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the same linear map, differentiable
            grad_positions = torch.zeros(
                (ctx.n_atoms, 3), dtype=grad_vec.dtype, device=grad_vec.device
            )
            grad_positions = grad_positions.index_add(0, neighbors, grad_vec)
            grad_positions = grad_positions.index_add(0, centers, -grad_vec)
            grad_cell = shifts.to(grad_vec.dtype).T @ grad_vec
            return grad_positions, grad_cell, None, None, None
        grad_positions, grad_cell = load_kernel().pair_vectors_backward(
            grad_vec.contiguous(), centers, neighbors, shifts, ctx.n_atoms
        )
        return grad_positions, grad_cell, None, None, None


class JacobianContract(torch.autograd.Function):
    """∂E/∂v (P, 3) of a minibatch from ∂E/∂G (N, F) and cached Jacobians ∂G/∂v.

    ``jacobians`` (one (P_s, 3, F) tensor per structure), ``centers`` (their local centre
    indices) and ``atom_offsets`` (where each structure's atoms start in ``d_features``)
    describe the minibatch; the result has the structures' pairs one after the other. It is
    linear in ``d_features``; the gradient is that linear map's adjoint (computed once: nothing
    differentiates a training loss twice).
    """

    @staticmethod
    def forward(ctx, d_features, jacobians, centers, atom_offsets):
        d_features = d_features.contiguous()
        ctx.jacobians, ctx.centers, ctx.atom_offsets = jacobians, centers, atom_offsets
        ctx.n_atoms = d_features.shape[0]
        return load_kernel().jacobian_contract(jacobians, centers, atom_offsets, d_features)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_vec):
        grad = load_kernel().jacobian_contract_backward(
            ctx.jacobians, ctx.centers, ctx.atom_offsets, grad_vec.contiguous(), ctx.n_atoms
        )
        return grad, None, None, None
