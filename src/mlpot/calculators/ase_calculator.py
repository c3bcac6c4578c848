"""ASE calculator for any mlpot :class:`~mlpot.models.potential.Potential`."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlpot.data.batch import AtomsBatch
from mlpot.models.potential import Potential, compute_properties


class MlpotCalculator(Calculator):
    """Energy, free energy, forces, stress and per-atom energies from an mlpot potential.

    Units follow ASE: eV, eV/Å, eV/Å³. Stress is available for structures periodic in all three
    directions.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential: Potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential.eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        batch = AtomsBatch.from_atoms(self.atoms, dtype=self.potential.dtype)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        out = compute_properties(self.potential, batch, forces=True, stress=want_stress)
        energy = float(out["energy"][0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energies"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = out["stress"][0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
