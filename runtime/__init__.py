"""edgectl.runtime — what runs on the device. Never imports torch."""
