"""The processes of a job: one, or the ranks of a torchrun job (several GPUs or machines).

The trainers average their gradients over the ranks (NCCL on GPUs, gloo on CPUs). A stage
(index_bgem3.py, index_colbertxm.py, rerank_mt5.py) splits its work instead: each rank does its
share, the ranks meet at a barrier, and rank 0 finishes (merges the index, writes the run). A
stage's ranks exchange only Python objects, over gloo, and a barrier waits as long as the
slowest rank's share takes (torchrun ends every rank when one of them fails).
"""
import atexit
import datetime
import os

import torch

from .batching import default_device, no_cudnn_attention

STAGE_TIMEOUT = datetime.timedelta(days=7)  # a barrier waits for the others' shares


def join(device_name="", backend=None, timeout=None):
    """(device, rank, world) of this process; under torchrun it joins the process group
    (``backend``; default NCCL on GPUs, gloo on CPUs) and takes its local rank's GPU. cuDNN
    attention is off on a GPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    if world == 1:
        device = default_device(device_name or None)
        no_cudnn_attention(device)
        return device, rank, world
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(device_name or (f"cuda:{local_rank}" if torch.cuda.is_available()
                                          else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        backend or ("nccl" if device.type == "cuda" else "gloo"), timeout=timeout)
    atexit.register(leave)
    no_cudnn_attention(device)
    return device, rank, world


def join_stage(device_name=""):
    """join() for a stage: gloo, whose barriers wait days."""
    return join(device_name, "gloo", STAGE_TIMEOUT)


def world():
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank():
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def barrier():
    """Wait until every rank is here (nothing to wait for in a single process)."""
    if world() > 1:
        torch.distributed.barrier()


def gather(value):
    """Rank 0: the list of every rank's ``value``, in rank order; the other ranks: None."""
    if world() == 1:
        return [value]
    values = [None] * world() if rank() == 0 else None
    torch.distributed.gather_object(value, values, dst=0)
    return values


def leave():
    """Leave the process group (at exit, or before: torch warns if a rank has not)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
