"""What the eye sees (issue "the pictures tell the truth"): a purifier must move an attacked picture *towards*
the original, not only make the classifier read it right again. Figures on the pictures an attack fools:

- PSNR to the original of the attacked and the purified (or regenerated) picture;
- the share of purified pictures closer to the original than the attacked one;
- the largest change the purifier makes to its input (L∞, on every picture), the counter-change;
- how often the purified picture is read right ("restored");
- and the clean pass: PSNR of a clean picture through the purifier and the accuracy on it.
"""
from __future__ import annotations

import torch

from ism.eval.metrics import psnr


@torch.no_grad()
def picture_figures(x: torch.Tensor, y: torch.Tensor, attacked: torch.Tensor, purified: torch.Tensor,
                    fooled: torch.Tensor, read: torch.Tensor, clean_out: torch.Tensor | None = None,
                    clean_read: torch.Tensor | None = None) -> dict:
    """``x`` originals with labels ``y``; ``attacked`` their attacked copies; ``purified`` the purifier's output
    on them; ``fooled`` (bool) the pictures the attack fools; ``read`` the classifier's answers on ``purified``;
    ``clean_out`` / ``clean_read``: the purifier's output on ``x`` and the answers on it. Means over the fooled
    pictures (the clean figures over all)."""
    f = fooled.bool()
    n = int(f.sum())
    p_att, p_pur = psnr(attacked, x), psnr(purified, x)
    out = {
        "fooled": n,
        "psnr_attacked": round(p_att[f].mean().item(), 2) if n else None,
        "psnr_purified": round(p_pur[f].mean().item(), 2) if n else None,
        "closer": round((p_pur[f] > p_att[f]).float().mean().item(), 3) if n else None,
        "largest_change_255": round((purified.float() - attacked.float()).abs().max().item() * 255, 2),
        "attack_linf_255": round((attacked.float() - x.float()).abs().max().item() * 255, 2),
        "restored": round((read[f] == y[f]).float().mean().item(), 3) if n else None,
    }
    if clean_out is not None:
        out["psnr_clean"] = round(psnr(clean_out, x).clamp(max=99).mean().item(), 2)
        out["largest_clean_change_255"] = round((clean_out.float() - x.float()).abs().max().item() * 255, 2)
    if clean_read is not None:
        out["clean_accuracy"] = round((clean_read == y).float().mean().item(), 4)
    return out
