"""Training checkpoints that resume exactly: the model, the optimizer and scheduler states,
the RNG states and the step, under {out}.checkpoints/step-N/ (the last two kept)."""
import shutil

import torch

from .runs import atomic_path


def saved(checkpoints):
    """The checkpoint folders of a run, oldest first."""
    return sorted(checkpoints.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def save(checkpoints, step, save_model, optimizer, scheduler, device):
    """Write step-{step}/ atomically (``save_model(folder)`` writes the model); keep two."""
    with atomic_path(checkpoints / f"step-{step}") as tmp:
        save_model(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(), "step": step,
                    "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None},
                   tmp / "trainer.pt")
    for old in saved(checkpoints)[:-2]:
        shutil.rmtree(old)


def restore(checkpoint, optimizer, scheduler, device):
    """Load a checkpoint's optimizer, scheduler and RNG states; returns its step."""
    state = torch.load(checkpoint / "trainer.pt", map_location=device, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["step"]
