"""Training checkpoints that resume exactly: the model, the optimizer and scheduler states,
the RNG states and the step, under {out}.checkpoints/step-N/ (the last two kept).

trainer.pt holds only tensors and plain values (the optimizer's and scheduler's state dicts,
the RNG states as byte tensors, the step), so it is read with ``torch.load(weights_only=True)``:
a file that names any other class (one a tampered or foreign checkpoint would run) is refused
before anything in it runs. The model folder is read by from_pretrained (safetensors)."""
import pickle
import re
import shutil
import struct

import torch

from ..errors import UserError
from ..runs import atomic_path


def saved(checkpoints):
    """The checkpoint folders of a run, oldest first."""
    return sorted(checkpoints.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def save(checkpoints, step, save_model, optimizer, scheduler, device):
    """Write step-{step}/ atomically (``save_model(folder)`` writes the model); keep two."""
    with atomic_path(checkpoints / f"step-{step}") as tmp:
        save_model(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(), "step": int(step),
                    "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None},
                   tmp / "trainer.pt")
    for old in saved(checkpoints)[:-2]:
        shutil.rmtree(old)


def load_state(path, device):
    """The state dict of a trainer.pt, read without running anything from the file."""
    fix = (f"delete {path.parent} to resume from the checkpoint before it (or delete all of "
           f"{path.parent.parent} to start again)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, IndexError,
            KeyError, TypeError, struct.error) as e:  # what a damaged file raises in there
        if "Weights only load failed" in str(e):  # a name outside the allow-list; nothing ran
            refused = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = refused.group(1) if refused else "an object outside torch's allow-list"
            raise UserError(f"{path}: refused to load {what}: a checkpoint of this project holds "
                            "only tensors and plain values, so this one was not written by it "
                            f"or was tampered with; {fix}") from None
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:120] if str(e) else ''}); {fix}") from None
    if not (isinstance(state, dict) and {"optimizer", "scheduler", "rng", "step"} <= state.keys()
            and isinstance(state["step"], int)):
        raise UserError(f"{path}: not a trainer checkpoint of this project (optimizer, scheduler, "
                        f"rng and step); {fix}")
    return state


def restore(checkpoint, optimizer, scheduler, device):
    """Load a checkpoint's optimizer, scheduler and RNG states; returns its step."""
    state = load_state(checkpoint / "trainer.pt", device)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    return state["step"]
