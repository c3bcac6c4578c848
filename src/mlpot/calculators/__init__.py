"""Using a potential: the ASE calculator, molecular dynamics and relaxation."""
