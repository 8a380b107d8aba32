"""edgectl.converter — workstation side: PyTorch model -> validated, packaged bundle. Imports torch lazily."""
