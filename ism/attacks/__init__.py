"""Attacks: torchattacks wrappers, the adaptive (BPDA + EOT) attacker and the latent-space attack."""
