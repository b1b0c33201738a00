"""Several processes, one result: the glue for ``torchrun --nproc_per_node N``.

Outside torchrun (no ``WORLD_SIZE`` in the environment) every function is a no-op for one
process, so the same code runs on a laptop, a 2-core CPU box or a multi-GPU node. Under torchrun
``init()`` starts the process group: gloo on CPU, nccl when each process has its own GPU.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init(device: str = "auto") -> torch.device:
    """Join the process group if launched by torchrun; return this process's device.

    ``device="auto"``: ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU.
    """
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def gather(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every process."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when there are several processes, else itself."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
