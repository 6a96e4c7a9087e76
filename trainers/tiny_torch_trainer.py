#!/usr/bin/env python3
"""A tiny real trainer for trainyard: proves checkpoint and resume on a CPU, in about a second.

A character-level model (a frozen, randomly initialised base: embedding, a hidden layer, an
output layer) gets LoRA-style low-rank adapters on its two linear layers, and only the adapters
are trained, for real, on the task's dataset (Adam, a real cross-entropy loss, dropout on the
adapters' input like the LoRA trainer's). Everything is seeded, and it runs on one CPU thread,
so a run is reproducible bit for bit, and a run checkpointed, stopped and resumed ends with the
same loss as one that was never interrupted.

Speaks the trainyard trainer protocol (see README.md): phase, progress, checkpoint and artifact
messages as JSON lines on stdout; logs on stderr.

Input: the task spec JSON in the file named by $TRAINYARD_TASK_SPEC (its `model` is only
printed). From `config`: epochs, batchSize x gradientAccumulation (the context windows one
optimizer step sees), learningRate (warm-up over the first 3% of steps, then cosine decay, as the
LoRA trainer's), maxLength (characters of a record kept), loraRank, loraAlpha, and
checkpointEverySteps (default 50). The dataset: a JSON array or JSON-lines file of {"text"} or
{"instruction","input","output"} records, read and formatted as lora_trainer.py does.

Checkpoints: on SIGUSR1 (at the end of the step in progress) and every checkpointEverySteps
steps it writes the model, optimizer, RNG and data-order state to the file
$TRAINYARD_OUTPUT_DIR/checkpoints/step-<N> (torch.save; written aside, then renamed: complete or
absent) and prints {"type":"checkpoint","path":...,"step":N}. Started with
TRAINYARD_RESUME_FROM=<such a file> it loads it and continues after step N.

Standby (TRAINYARD_STANDBY=1, see README.md): it imports torch, prints {"type":"ready"} and
waits for its assignment on stdin before reading the spec.

Exit codes: 0 done (or retired in standby), 1 training error, 2 bad spec, dataset or checkpoint, 3 torch missing,
143 stopped by SIGTERM.

Run it with the interpreter that has torch (on Debian: /usr/bin/python3 with python3-torch).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from typing import Any, Dict, List, Optional, Tuple

sys.dont_write_bytecode = True  # no __pycache__ left in the trainers folder
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Standard library only at import time: the dataset rules live there, in one place.
from lora_trainer import await_assignment, emit, format_record, in_standby, load_spec, log, read_records  # noqa: E402

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_PACKAGES = 3
EXIT_SIGTERM = 143

SEED = 1234
CONTEXT = 16  # characters the model sees before the one it predicts
EMBED = 16
HIDDEN = 128
LORA_DROPOUT = 0.05
DEFAULT_CHECKPOINT_EVERY = 50
CHECKPOINT_FORMAT = "trainyard-tiny-torch-1"

# Set from signal handlers, read at step boundaries. os.write: print() is not safe in a handler.
signals = {"checkpoint": False, "stop": False, "training": False}


def on_sigusr1(signum: int, frame: Any) -> None:
    signals["checkpoint"] = True
    os.write(2, b"received SIGUSR1, writing a checkpoint after this step\n")


def on_sigterm(signum: int, frame: Any) -> None:
    if not signals["training"]:
        os.write(2, b"received SIGTERM before training, exiting\n")
        os._exit(EXIT_SIGTERM)
    signals["stop"] = True
    os.write(2, b"received SIGTERM, stopping after this step\n")


def positive_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def learning_rate_at(step: int, total_steps: int, base: float) -> float:
    """Linear warm-up over the first 3% of steps, then cosine decay to 0 (the LoRA trainer's)."""
    warmup = max(1, math.ceil(total_steps * 0.03))
    if step <= warmup:
        return base * step / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


def windows(texts: List[str], max_length: int) -> Tuple[List[str], List[List[int]], List[int]]:
    """The vocabulary (id 0: start and end of a record) and every (context, next character) pair."""
    texts = [t[:max_length] for t in texts]
    vocab = ["\u0000"] + sorted({c for t in texts for c in t} - {"\u0000"})
    index = {c: i for i, c in enumerate(vocab)}
    xs: List[List[int]] = []
    ys: List[int] = []
    for t in texts:
        ids = [0] * CONTEXT + [index[c] for c in t] + [0]
        for i in range(CONTEXT, len(ids)):
            xs.append(ids[i - CONTEXT : i])
            ys.append(ids[i])
    return vocab, xs, ys


def main() -> int:
    signal.signal(signal.SIGUSR1, on_sigusr1)
    signal.signal(signal.SIGTERM, on_sigterm)

    if in_standby():
        # Started ahead of need: pay for `import torch` now (it does not initialise CUDA), then
        # wait for the task. SIGTERM meanwhile exits at once (on_sigterm: not training).
        try:
            import torch  # noqa: F401
        except Exception as e:
            log(f"tiny_torch_trainer: cannot import torch ({e}); on Debian: apt-get install python3-torch")
            return EXIT_MISSING_PACKAGES
        if not await_assignment():
            return 0

    spec = load_spec(os.environ.get("TRAINYARD_TASK_SPEC"))
    config: Dict[str, Any] = spec["config"]
    task_id = os.environ.get("TRAINYARD_TASK_ID") or spec.get("id") or "unknown"
    output_dir = os.path.abspath(os.environ.get("TRAINYARD_OUTPUT_DIR") or spec.get("outputDir") or "output")
    checkpoint_dir = os.path.join(output_dir, "checkpoints")
    resume_from = os.environ.get("TRAINYARD_RESUME_FROM") or None

    epochs = positive_int(config.get("epochs"), 1)
    batch = positive_int(config.get("batchSize"), 1) * positive_int(config.get("gradientAccumulation"), 1)
    base_lr = float(config.get("learningRate") or 2e-4)
    max_length = positive_int(config.get("maxLength"), 512)
    rank = positive_int(config.get("loraRank"), 8)
    alpha = positive_int(config.get("loraAlpha"), 2 * rank)
    checkpoint_every = positive_int(config.get("checkpointEverySteps"), DEFAULT_CHECKPOINT_EVERY)

    records = read_records(spec["datasetPath"])
    texts = [t for t in (format_record(r) for r in records) if t]
    if not texts:
        log('tiny_torch_trainer: no usable records (want {"text"} or {"instruction","input","output"})')
        return EXIT_BAD_INPUT
    vocab, xs, ys = windows(texts, max_length)
    batch = min(batch, len(xs))
    steps_per_epoch = math.ceil(len(xs) / batch)
    total_steps = epochs * steps_per_epoch
    log(f"task {task_id}: tiny torch trainer for {spec['model']} (a character model stands in for it)")
    log(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}: not used, this trainer runs on the CPU")
    log(
        f"dataset: {spec['datasetPath']} ({len(texts)} records, {len(xs)} windows, {len(vocab)} symbols);"
        f" {epochs} epochs x {steps_per_epoch} steps of {batch} windows"
    )

    try:
        import torch
        from torch import nn
    except Exception as e:  # ImportError, or a broken install raising something else
        log(f"tiny_torch_trainer: cannot import torch ({e}); on Debian: apt-get install python3-torch")
        return EXIT_MISSING_PACKAGES

    # One thread and deterministic kernels: the same run gives the same floats, resumed or not.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)

    class LoRALinear(nn.Module):
        """A frozen linear layer plus a trainable low-rank update B·A scaled by alpha/rank (B starts at 0)."""

        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.base = nn.Linear(n_in, n_out)
            self.base.requires_grad_(False)
            self.lora_a = nn.Parameter(torch.randn(rank, n_in) / math.sqrt(n_in))
            self.lora_b = nn.Parameter(torch.zeros(n_out, rank))
            self.dropout = nn.Dropout(LORA_DROPOUT)
            self.scale = alpha / rank

        def forward(self, x: Any) -> Any:
            return self.base(x) + (self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    class TinyCharModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(len(vocab), EMBED)
            self.embed.requires_grad_(False)
            self.hidden = LoRALinear(CONTEXT * EMBED, HIDDEN)
            self.out = LoRALinear(HIDDEN, len(vocab))

        def forward(self, context: Any) -> Any:
            return self.out(torch.tanh(self.hidden(self.embed(context).flatten(1))))

    model = TinyCharModel()
    adapters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(adapters, lr=base_lr)
    data_order = torch.Generator().manual_seed(SEED + 1)
    x_all = torch.tensor(xs, dtype=torch.long)
    y_all = torch.tensor(ys, dtype=torch.long)
    log(f"lora r={rank} alpha={alpha}: {sum(p.numel() for p in adapters)} trainable of {sum(p.numel() for p in model.parameters())} parameters")

    # What must match for a checkpoint to continue this run: else it is someone else's state.
    signature = {
        "format": CHECKPOINT_FORMAT,
        "seed": SEED,
        "vocab": "".join(vocab),
        "windows": len(xs),
        "context": CONTEXT,
        "embed": EMBED,
        "hidden": HIDDEN,
        "rank": rank,
        "alpha": alpha,
        "batch": batch,
        "learningRate": base_lr,
        "totalSteps": total_steps,
    }

    step = 0
    loss: Optional[float] = None
    perm = torch.zeros(0, dtype=torch.long)  # the epoch's data order, drawn at its first step

    def write_checkpoint() -> None:
        path = os.path.join(checkpoint_dir, f"step-{step}")
        os.makedirs(checkpoint_dir, exist_ok=True)
        partial = f"{path}.partial-{os.getpid()}"
        optimizer_state = optimizer.state_dict()
        # Plain values as JSON, tensors as tensors: torch.load(weights_only=True) of older torch
        # versions refuses pickled floats, and anything but weights_only would run pickled code.
        meta = {"signature": signature, "step": step, "loss": loss, "paramGroups": optimizer_state["param_groups"]}
        state = {
            "meta": json.dumps(meta),
            "model": model.state_dict(),
            "optimizer": optimizer_state["state"],
            "torch_rng": torch.get_rng_state(),
            "data_order_rng": data_order.get_state(),
            "perm": perm,
        }
        with open(partial, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)  # atomic: the path holds a whole checkpoint or none
        log(f"saved checkpoint at step {step} to {path}")
        emit({"type": "checkpoint", "path": path, "step": step})

    start_step = 0
    if resume_from:
        try:
            state = torch.load(resume_from, map_location="cpu", weights_only=True)
            meta = json.loads(state["meta"])
        except Exception as e:
            log(f"tiny_torch_trainer: cannot read checkpoint {resume_from}: {e}")
            return EXIT_BAD_INPUT
        saved_signature = meta.get("signature") if isinstance(meta, dict) else None
        if saved_signature != signature:
            differ = sorted(k for k in signature if not isinstance(saved_signature, dict) or saved_signature.get(k) != signature[k])
            log(f"tiny_torch_trainer: checkpoint {resume_from} is not of this task's run (differs in: {', '.join(differ)})")
            return EXIT_BAD_INPUT
        step = int(meta["step"])
        loss = meta["loss"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict({"state": state["optimizer"], "param_groups": meta["paramGroups"]})
        torch.set_rng_state(state["torch_rng"])
        data_order.set_state(state["data_order_rng"])
        perm = state["perm"]
        start_step = step
        log(f"resuming from step {step} ({resume_from})")

    signals["training"] = True
    emit({"type": "phase", "phase": "training"})

    def progress() -> None:
        message: Dict[str, Any] = {
            "type": "progress",
            "epoch": min(epochs, max(1, (step - 1) // steps_per_epoch + 1)),
            "totalEpochs": epochs,
            "step": step,
            "totalSteps": total_steps,
        }
        if loss is not None:
            message["loss"] = loss
        if step > 0:
            message["learningRate"] = learning_rate_at(step, total_steps, base_lr)
        emit(message)

    if resume_from:
        progress()  # where the checkpoint left off: a resumed run's progress starts at its step

    model.train()
    loss_fn = nn.CrossEntropyLoss()
    while True:
        due = step > start_step and step % checkpoint_every == 0 and step < total_steps
        if signals["checkpoint"] or due:
            signals["checkpoint"] = False
            write_checkpoint()
        if signals["stop"]:
            log(f"stopped at step {step} of {total_steps}")
            return EXIT_SIGTERM
        if step >= total_steps:
            break
        position = step % steps_per_epoch
        if position == 0:
            perm = torch.randperm(len(xs), generator=data_order)
        idx = perm[position * batch : (position + 1) * batch]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step + 1, total_steps, base_lr)
        optimizer.zero_grad()
        batch_loss = loss_fn(model(x_all[idx]), y_all[idx])
        batch_loss.backward()
        optimizer.step()
        step += 1
        loss = float(batch_loss.item())
        if not math.isfinite(loss):
            log(f"tiny_torch_trainer: the loss is {loss} at step {step}")
            return EXIT_ERROR
        progress()

    ran = total_steps - start_step
    log(f"trained {ran} steps in this attempt (of {total_steps}{f', resumed after step {start_step}' if start_step else ''})")
    log(f"final loss {loss!r}")
    os.makedirs(output_dir, exist_ok=True)
    adapter_path = os.path.join(output_dir, "adapter_model.pt")
    torch.save({name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}, adapter_path)
    with open(os.path.join(output_dir, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(
            {"base_model_name_or_path": spec["model"], "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "tiny_torch": signature},
            f,
            indent=2,
        )
        f.write("\n")
    log(f"saved adapter to {adapter_path}")
    emit({"type": "artifact", "path": adapter_path})
    return 0


if __name__ == "__main__":
    sys.exit(main())
