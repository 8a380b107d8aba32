"""edgectl.fleet — the device agent and the operator's controller."""
