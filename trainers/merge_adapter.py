#!/usr/bin/env python3
"""Merge a LoRA adapter into its base model's weights, for a deployment that serves the merged model.

    merge_adapter.py --base <model folder or Hugging Face id> --adapter <adapter folder> --out <folder>

trainyard runs this under the shepherd for `deployments.create({ taskId, merge: true })`, then
starts vLLM on --out (no LoRA at serving time: the adapter is in the weights).

The arithmetic is PEFT's `merge_and_unload`: for each adapted layer W += scale * (B @ A), with
scale = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora; rank_pattern and alpha_pattern
per layer), transposed for fan_in_fan_out layers (GPT-2's Conv1D) and for embeddings; a LoRA
bias is added to the layer's bias; a module trained in full (modules_to_save) replaces the base's.
DoRA adapters are refused. The sums are done in float32 and stored in the base's dtype.

Only torch is needed: the safetensors format (8-byte header length, JSON header, raw tensors) is
read and written here, so the merge runs wherever a trainer runs. The base is a folder with
`model.safetensors` or shards listed in `model.safetensors.index.json`; a Hugging Face id is looked
up in the local Hugging Face cache (nothing is downloaded). Every other file of the base (config,
tokenizer) is copied. The result is written beside --out and renamed at the end: --out is
complete or absent.

Progress as JSON lines on stdout ({"type":"progress","step":k,"totalSteps":n}, one step per
weights file); what it does on stderr.
Exit codes: 0 merged, 2 bad input (the message says which and what to do), 3 torch missing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

sys.dont_write_bytecode = True

EXIT_BAD_INPUT = 2
EXIT_MISSING_PACKAGES = 3
PEFT_PREFIX = "base_model.model."


class BadInput(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(message: Dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


torch: Any = None  # imported once the inputs are known to be there (a refusal needs no torch)
DTYPES: Dict[str, Any] = {}
DTYPE_NAMES: Dict[Any, str] = {}


def import_torch() -> None:
    global torch
    try:
        import torch as t
    except ImportError:
        log("torch is not installed for this interpreter: run the merge with the Python that trains (e.g. /usr/bin/python3 with python3-torch)")
        sys.exit(EXIT_MISSING_PACKAGES)
    torch = t
    DTYPES.update(
        {
            "F64": t.float64,
            "F32": t.float32,
            "F16": t.float16,
            "BF16": t.bfloat16,
            "I64": t.int64,
            "I32": t.int32,
            "I16": t.int16,
            "I8": t.int8,
            "U8": t.uint8,
            "BOOL": t.bool,
        }
    )
    DTYPE_NAMES.update({v: k for k, v in DTYPES.items()})


# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors(path: str) -> Tuple[Dict[str, "torch.Tensor"], Optional[Dict[str, str]]]:
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise BadInput(f"{path} is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", raw[:8])
    if 8 + size > len(raw):
        raise BadInput(f"{path} is not a safetensors file (its header runs past the end)")
    try:
        header = json.loads(raw[8 : 8 + size])
    except ValueError as e:
        raise BadInput(f"{path} is not a safetensors file ({e})") from None
    metadata = header.pop("__metadata__", None)
    buf = bytearray(raw[8 + size :])
    del raw
    tensors: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dtype = DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise BadInput(f"{path}: tensor {name} has dtype {info.get('dtype')}, which this merge does not handle")
        start, end = info["data_offsets"]
        shape = info["shape"]
        count = math.prod(shape) if shape else 1
        if end - start != count * torch.tensor([], dtype=dtype).element_size():
            raise BadInput(f"{path}: tensor {name}'s size does not match its shape")
        t = torch.frombuffer(buf, dtype=dtype, count=count, offset=start) if count else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(shape)
    return tensors, metadata


def read_header(path: str) -> Dict[str, Any]:
    """A safetensors file's tensor names, dtypes and shapes, without reading the tensors."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BadInput(f"{path} is not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(size))
        except ValueError as e:
            raise BadInput(f"{path} is not a safetensors file ({e})") from None
    header.pop("__metadata__", None)
    return header


def write_safetensors(path: str, tensors: Dict[str, "torch.Tensor"], metadata: Optional[Dict[str, str]]) -> None:
    header: Dict[str, Any] = {}
    blobs: List[bytes] = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


# --- the base model and the adapter --------------------------------------------------------------


def resolve_base(base: str) -> str:
    """A local folder, or a Hugging Face id found in the local cache (its snapshot for refs/main)."""
    if os.path.isdir(base):
        return base
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"
    )
    repo = os.path.join(hub, "models--" + base.replace("/", "--"))
    try:
        with open(os.path.join(repo, "refs", "main"), encoding="utf-8") as f:
            snapshot = os.path.join(repo, "snapshots", f.read().strip())
    except OSError:
        snapshot = ""
    if snapshot and os.path.isdir(snapshot):
        return snapshot
    raise BadInput(
        f"base model {base} is neither a folder nor in the Hugging Face cache ({hub}): "
        f"download it first (huggingface-cli download {base}) or give its folder as the task's model"
    )


def weight_files(base: str) -> List[str]:
    index = os.path.join(base, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        return sorted(set(weight_map.values()))
    if os.path.isfile(os.path.join(base, "model.safetensors")):
        return ["model.safetensors"]
    raise BadInput(f"{base} holds no safetensors weights (model.safetensors or model.safetensors.index.json)")


def adapter_config(adapter: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise BadInput(f"{adapter} is not a PEFT adapter folder (adapter_config.json: {e})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise BadInput(f"{adapter} is a {config.get('peft_type')} adapter; only LoRA adapters are merged")
    if config.get("use_dora"):
        raise BadInput(f"{adapter} is a DoRA adapter (use_dora), which this merge does not handle: serve it as a LoRA module instead (merge off)")
    return config


def adapter_weights(adapter: str) -> Dict[str, "torch.Tensor"]:
    st = os.path.join(adapter, "adapter_model.safetensors")
    if os.path.isfile(st):
        tensors, _ = read_safetensors(st)
    elif os.path.isfile(os.path.join(adapter, "adapter_model.bin")):
        tensors = torch.load(os.path.join(adapter, "adapter_model.bin"), map_location="cpu")
    else:
        raise BadInput(f"{adapter} has no adapter weights (adapter_model.safetensors or adapter_model.bin)")
    return tensors


def pattern_value(patterns: Dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-layer override: the first pattern that matches the end of the module's name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


class Change:
    """What the adapter does to one base tensor."""

    def __init__(self) -> None:
        self.lora: Optional[Tuple["torch.Tensor", "torch.Tensor", float, bool]] = None  # A, B, scale, transpose
        self.bias: Optional[Tuple["torch.Tensor", float]] = None
        self.replace: Optional["torch.Tensor"] = None


def plan_changes(config: Dict[str, Any], tensors: Dict[str, "torch.Tensor"]) -> Dict[str, Change]:
    """Base tensor name -> its change, from the adapter's tensors (keys as PEFT saves them)."""
    r_default = int(config.get("r", 8))
    alpha_default = float(config.get("lora_alpha", r_default))
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora"))
    fan_in_fan_out = bool(config.get("fan_in_fan_out"))

    def scale(module: str) -> float:
        r = int(pattern_value(rank_pattern, module, r_default))
        alpha = float(pattern_value(alpha_pattern, module, alpha_default))
        return alpha / math.sqrt(r) if rslora else alpha / r

    pairs: Dict[str, Dict[str, "torch.Tensor"]] = {}
    changes: Dict[str, Change] = {}
    for key, t in tensors.items():
        name = key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key
        name = re.sub(r"\.default(?=\.|$)", "", name)  # saved with the adapter's name in it
        m = re.match(r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.weight)?$", name)
        if m:
            pairs.setdefault(m.group(1), {})[m.group(2)] = t
            continue
        m = re.match(r"^(.*)\.lora_B\.bias$", name)
        if m:
            changes.setdefault(f"{m.group(1)}.bias", Change()).bias = (t, scale(m.group(1)))
            continue
        if "lora_magnitude_vector" in name:
            raise BadInput("the adapter holds DoRA magnitudes (lora_magnitude_vector): serve it as a LoRA module instead (merge off)")
        if ".lora_" in name:
            raise BadInput(f"the adapter holds {key}, a kind of LoRA tensor this merge does not handle")
        # A module trained in full (modules_to_save): it replaces the base's.
        changes.setdefault(name.replace(".modules_to_save", ""), Change()).replace = t
    for module, p in pairs.items():
        if "lora_A" in p and "lora_B" in p:
            changes.setdefault(f"{module}.weight", Change()).lora = (p["lora_A"], p["lora_B"], scale(module), fan_in_fan_out)
        elif "lora_embedding_A" in p and "lora_embedding_B" in p:
            changes.setdefault(f"{module}.weight", Change()).lora = (p["lora_embedding_A"], p["lora_embedding_B"], scale(module), True)
        else:
            raise BadInput(f"the adapter has only one of the two LoRA matrices for {module}")
    return changes


def apply_change(name: str, base: "torch.Tensor", change: Change) -> "torch.Tensor":
    if change.replace is not None:
        if tuple(change.replace.shape) != tuple(base.shape):
            raise BadInput(f"the adapter's {name} is {list(change.replace.shape)}, the base's {list(base.shape)}: was it trained on another base?")
        return change.replace.to(base.dtype)
    merged = base.to(torch.float32)
    if change.lora is not None:
        a, b, s, transpose = change.lora
        delta = b.to(torch.float32) @ a.to(torch.float32)
        if transpose:
            delta = delta.T
        if tuple(delta.shape) != tuple(base.shape):
            raise BadInput(f"the adapter's change to {name} is {list(delta.shape)}, the base's {list(base.shape)}: was it trained on another base?")
        merged = merged + delta * s
    if change.bias is not None:
        bias, s = change.bias
        merged = merged + bias.to(torch.float32) * s
    return merged.to(base.dtype)


def merge(base_arg: str, adapter: str, out: str) -> None:
    base = resolve_base(base_arg)
    files = weight_files(base)
    config = adapter_config(adapter)
    import_torch()
    changes = plan_changes(config, adapter_weights(adapter))
    # Every layer the adapter changes must be in the base, checked from the headers before any work.
    present = {name for file in files for name in read_header(os.path.join(base, file))}
    missing = sorted(set(changes) - present)
    if missing:
        raise BadInput(
            f"the adapter changes {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}, which the base model {base_arg} does not have: "
            "was it trained on another base?"
        )
    log(f"merging {len(changes)} tensors of {adapter} into {base} ({len(files)} weights file{'s' if len(files) != 1 else ''})")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    partial = os.path.join(parent, f".{os.path.basename(out)}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        # Config, tokenizer and the rest, as the base has them; the weights are written below.
        shutil.copytree(base, partial, ignore=lambda d, names: [n for n in names if n.endswith(".safetensors") or n.endswith(".bin")])
        for step, file in enumerate(files, 1):
            tensors, metadata = read_safetensors(os.path.join(base, file))
            out_tensors = {}
            for name, t in tensors.items():
                change = changes.get(name)
                out_tensors[name] = apply_change(name, t, change) if change else t
            write_safetensors(os.path.join(partial, file), out_tensors, metadata)
            del tensors, out_tensors
            emit({"type": "progress", "step": step, "totalSteps": len(files)})
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"merged into {out}")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="Merge a LoRA adapter into its base model's weights.")
    parser.add_argument("--base", required=True, help="the base model: a folder, or a Hugging Face id in the local cache")
    parser.add_argument("--adapter", required=True, help="the PEFT adapter folder (adapter_config.json and its weights)")
    parser.add_argument("--out", required=True, help="the folder to write the merged model to (complete or absent)")
    args = parser.parse_args(argv)
    try:
        merge(args.base, args.adapter, args.out)
    except BadInput as e:
        log(f"cannot merge: {e}")
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
