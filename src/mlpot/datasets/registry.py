"""Registry of public training sets that ``mlpot datasets fetch`` downloads.

Each :class:`Dataset` lists its files (URL and SHA-256), licence and citation. A ``sha256`` of
``None`` means no checksum could be recorded when the entry was written (the host was not
reachable from the machine that wrote it); :func:`mlpot.datasets.fetch.fetch_dataset` then
computes the checksum of what it downloads and prints it with a warning, so that it can be
recorded here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpot.errors import MlpotError


@dataclass(frozen=True)
class DatasetFile:
    """One downloadable file: ``filename`` is its name in the cache folder."""

    filename: str
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A public data set: files, licence, citation and a one-line description."""

    name: str
    description: str
    files: tuple[DatasetFile, ...]
    license: str
    citation: str
    homepage: str
    notes: str = ""
    elements: tuple[str, ...] = field(default_factory=tuple)


MLEARN_CITATION = (
    "Y. Zuo, C. Chen, X. Li, Z. Deng, Y. Chen, J. Behler, G. Csányi, A. V. Shapeev, "
    "A. P. Thompson, M. A. Wood, S. P. Ong, 'Performance and cost assessment of machine learning "
    "interatomic potentials', J. Phys. Chem. A 124, 731-745 (2020), doi:10.1021/acs.jpca.9b08723"
)
MLEARN_RAW = "https://raw.githubusercontent.com/materialsvirtuallab/mlearn/master/data"

RMD17_CITATION = (
    "A. S. Christensen, O. A. von Lilienfeld, 'On the role of gradients for machine learning of "
    "molecular energies and forces', Mach. Learn.: Sci. Technol. 1, 045018 (2020), "
    "doi:10.1088/2632-2153/abba6f; data: doi:10.6084/m9.figshare.12672038"
)

N2P2_CITATION = (
    "A. Singraber, J. Behler, C. Dellago, 'Library-based LAMMPS implementation of "
    "high-dimensional neural network potentials', J. Chem. Theory Comput. 15, 1827-1840 (2019), "
    "doi:10.1021/acs.jctc.8b00770 (n2p2, github.com/CompPhysVienna/n2p2); cite also the "
    "original publication of each example's data, listed in the n2p2 documentation"
)
N2P2_RAW = "https://raw.githubusercontent.com/CompPhysVienna/n2p2/master/examples/nnp-train"


def _mlearn(element: str, description: str) -> Dataset:
    return Dataset(
        name=f"mlearn-{element}",
        description=f"mlearn {element}: {description} (DFT PBE, VASP; pymatgen JSON)",
        files=(
            DatasetFile("training.json", f"{MLEARN_RAW}/{element}/training.json"),
            DatasetFile("test.json", f"{MLEARN_RAW}/{element}/test.json"),
        ),
        license="BSD-3-Clause",
        citation=MLEARN_CITATION,
        homepage="https://github.com/materialsvirtuallab/mlearn",
        notes="JSON list of records with 'structure' (pymatgen dict), 'outputs' "
        "(energy eV, forces eV/Å, virial_stress kBar) and 'num_atoms'.",
        elements=(element,),
    )


def _n2p2(example: str, description: str, elements: tuple[str, ...]) -> Dataset:
    return Dataset(
        name=f"n2p2-{example}",
        description=f"n2p2 example {example}: {description} (n2p2 input.data)",
        files=(DatasetFile("input.data", f"{N2P2_RAW}/{example}/input.data"),),
        license="GPL-3.0-or-later",
        citation=N2P2_CITATION,
        homepage=f"https://github.com/CompPhysVienna/n2p2/tree/master/examples/nnp-train/{example}",
        notes="n2p2 input.data; units as in the example's input.nn (read with mlpot's n2p2 "
        "reader, giving --length-unit / --energy-unit where the example uses Bohr/Hartree).",
        elements=elements,
    )


def _build_registry() -> dict[str, Dataset]:
    datasets = [
        _mlearn("Si", "diamond Si, strained cells, surfaces, vacancies, AIMD snapshots"),
        _mlearn("Ge", "diamond Ge, strained cells, surfaces, vacancies, AIMD snapshots"),
        _mlearn("Mo", "bcc Mo, strained cells, surfaces, vacancies, AIMD snapshots"),
        _mlearn("Li", "bcc Li, strained cells, surfaces, vacancies, AIMD snapshots"),
        _mlearn("Cu", "fcc Cu, strained cells, surfaces, vacancies, AIMD snapshots"),
        _mlearn("Ni", "fcc Ni, strained cells, surfaces, vacancies, AIMD snapshots"),
        Dataset(
            name="rmd17",
            description="revised MD17: 100,000 conformations of each of 10 small molecules "
            "(PBE/def2-SVP, ORCA; energies and forces), one tar.bz2 of npz files",
            files=(
                DatasetFile("rmd17.tar.bz2", "https://figshare.com/ndownloader/files/23950376"),
            ),
            license="CC0-1.0",
            citation=RMD17_CITATION,
            homepage="https://figshare.com/articles/dataset/Revised_MD17_dataset_rMD17_/12672038",
            notes="Energies in kcal/mol and forces in kcal/mol/Å: convert to eV on reading.",
            elements=("H", "C", "N", "O"),
        ),
        _n2p2("LJ", "Lennard-Jones test system (element Ne)", ("Ne",)),
        _n2p2("H2O_RPBE-D3_4G", "water, 4G-HDNNP example with charges", ("H", "O")),
        _n2p2("Carbon_chain_4G", "charged carbon chains, 4G-HDNNP example", ("C", "H")),
        _n2p2(
            "AlAuMgO_4G",
            "Au clusters on MgO(001) with Al dopants, 4G-HDNNP",
            ("Al", "Au", "Mg", "O"),
        ),
    ]
    return {dataset.name: dataset for dataset in datasets}


REGISTRY: dict[str, Dataset] = _build_registry()


def get_dataset(name: str, registry: dict[str, Dataset] | None = None) -> Dataset:
    """The registry entry called ``name`` (MlpotError naming the known ones otherwise)."""
    registry = REGISTRY if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise MlpotError(f"unknown data set {name!r}; known data sets: {known}") from None
