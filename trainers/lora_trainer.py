#!/usr/bin/env python3
"""Reference LoRA fine-tuning trainer for trainyard (transformers + peft + datasets).

Speaks the trainyard trainer protocol (see README.md): protocol messages are JSON lines on
stdout (flushed), everything else (logs, warnings, tracebacks) goes to stderr.

Input: the task spec JSON in the file named by $TRAINYARD_TASK_SPEC:
    {id, name, model, datasetPath, outputDir,
     config: {epochs, batchSize, gradientAccumulation, learningRate, maxLength,
              load8bit, load4bit, loraRank, loraAlpha}}
$TRAINYARD_OUTPUT_DIR (if set) overrides spec.outputDir; $TRAINYARD_TASK_ID names the task.
The GPU is chosen by the service through $CUDA_VISIBLE_DEVICES.

Dataset: a local .json / .jsonl file of {"instruction", "input", "output"} records
(Alpaca style) or {"text"} records.

Exit codes: 0 done, 1 training error (traceback on stderr), 2 bad spec or dataset,
3 missing Python packages, 143 stopped by SIGTERM.

`python3 lora_trainer.py --check` only checks that the required packages are importable.
Heavy imports happen inside main() so that --check works without them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
from typing import Any, Dict, List, Optional

REQUIRED_PACKAGES = ["torch", "transformers", "peft", "datasets", "accelerate"]
QUANT_PACKAGE = "bitsandbytes"

EXIT_BAD_INPUT = 2
EXIT_MISSING_PACKAGES = 3
EXIT_SIGTERM = 143


def emit(message: Dict[str, Any]) -> None:
    """Writes one protocol message as a JSON line on stdout."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def in_standby() -> bool:
    """Started ahead of need (TRAINYARD_STANDBY=1): import, touch no GPU, then await_assignment()."""
    return os.environ.get("TRAINYARD_STANDBY") == "1"


def await_assignment() -> bool:
    """Standby (see README.md): print {"type":"ready"}, read the assignment (one JSON line) on stdin
    and set its variables (CUDA_VISIBLE_DEVICES among them: call this before anything initialises
    CUDA), so the rest runs as in a trainer started with them. False: stdin ended first (retired)."""
    emit({"type": "ready"})
    line = sys.stdin.readline()
    if not line.strip():
        return False
    message = json.loads(line)
    for key, value in (message.get("env") or {}).items():
        os.environ[str(key)] = str(value)
    os.environ.pop("TRAINYARD_STANDBY", None)  # our own children are no standbys
    log(
        f"standby: assigned task {os.environ.get('TRAINYARD_TASK_ID', '?')}"
        f" (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})"
    )
    return True


def missing_packages(names: List[str]) -> List[str]:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # ImportError, or a broken install raising something else
            missing.append(name)
    return missing


def report_missing(missing: List[str], optional_missing: List[str]) -> None:
    log("lora_trainer: missing Python packages: " + ", ".join(missing))
    log("  install them with: python3 -m pip install " + " ".join(missing + optional_missing))
    log("  (torch must match the machine's CUDA version; see https://pytorch.org)")


def check(need_quant: bool) -> int:
    missing = missing_packages(REQUIRED_PACKAGES)
    quant_missing = missing_packages([QUANT_PACKAGE])
    if need_quant and quant_missing:
        missing += quant_missing
        quant_missing = []
    if missing:
        report_missing(missing, quant_missing)
        return EXIT_MISSING_PACKAGES
    if quant_missing:
        log("lora_trainer: note: bitsandbytes is not installed; load8bit/load4bit tasks will fail")
    log("lora_trainer: all required packages are installed")
    return 0


def pad_and_label(features: List[Dict[str, List[int]]], pad_id: int) -> Dict[str, List[List[int]]]:
    """Pads a batch of tokenized texts for causal-LM training and builds its labels.

    Padding is masked out of the loss by position (attention mask 0), never by token id: many
    tokenizers have no pad token, so the pad id is the EOS id, and masking by id would also hide
    every real EOS from the loss and the model would never learn to stop.
    """
    width = max((len(f["input_ids"]) for f in features), default=0)
    batch: Dict[str, List[List[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        ids = list(f["input_ids"])
        mask = list(f.get("attention_mask") or [1] * len(ids))
        pad = width - len(ids)
        batch["input_ids"].append(ids + [pad_id] * pad)
        batch["attention_mask"].append(mask + [0] * pad)
        batch["labels"].append([t if m == 1 else -100 for t, m in zip(ids, mask)] + [-100] * pad)
    return batch


def load_spec(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        log("lora_trainer: TRAINYARD_TASK_SPEC is not set (or pass --spec FILE)")
        sys.exit(EXIT_BAD_INPUT)
    try:
        with open(path, "r", encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        log(f"lora_trainer: cannot read task spec {path}: {e}")
        sys.exit(EXIT_BAD_INPUT)
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        log("lora_trainer: task spec must be an object with a config object")
        sys.exit(EXIT_BAD_INPUT)
    for key in ("model", "datasetPath"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            log(f"lora_trainer: task spec is missing {key}")
            sys.exit(EXIT_BAD_INPUT)
    return spec


def read_records(path: str) -> List[Dict[str, Any]]:
    """Reads a local JSON array or JSON-lines file of records."""
    if not os.path.isfile(path):
        log(f"lora_trainer: dataset not found: {path}")
        sys.exit(EXIT_BAD_INPUT)
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        log(f"lora_trainer: dataset {path} is not JSON / JSON lines: {e}")
        sys.exit(EXIT_BAD_INPUT)
    if not isinstance(records, list) or not records:
        log(f"lora_trainer: dataset {path} has no records")
        sys.exit(EXIT_BAD_INPUT)
    return records


def format_record(rec: Any) -> Optional[str]:
    """Turns a {"text"} or {"instruction","input","output"} record into one training text."""
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("text"), str):
        return rec["text"]
    instruction = rec.get("instruction")
    output = rec.get("output")
    if not isinstance(instruction, str) or not isinstance(output, str):
        return None
    extra = rec.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = (
            "Below is an instruction that describes a task, paired with an input that provides "
            "further context. Write a response that appropriately completes the request.\n\n"
            f"### Instruction:\n{instruction}\n\n### Input:\n{extra}\n\n### Response:\n"
        )
    else:
        prompt = (
            "Below is an instruction that describes a task. Write a response that appropriately "
            f"completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
        )
    return prompt + output


def current_epoch(state_epoch: Optional[float], total_epochs: int) -> int:
    """1-based index of the epoch in progress (transformers' state.epoch is fractional)."""
    if not state_epoch or state_epoch <= 0:
        return 1
    return max(1, min(total_epochs, math.floor(state_epoch - 1e-9) + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description="trainyard LoRA trainer")
    parser.add_argument("--check", action="store_true", help="only check required packages")
    parser.add_argument("--spec", help="task spec file (default: $TRAINYARD_TASK_SPEC)")
    args = parser.parse_args()

    if args.check:
        return check(need_quant=False)

    if in_standby():
        # The imports that cost seconds, none of which initialises CUDA (peft, which may import
        # bitsandbytes and with it probe the GPU, waits for the assignment). A CUDA query in
        # between goes through NVML, which does not initialise CUDA either.
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        try:
            import datasets  # noqa: F401
            import torch
            import transformers  # noqa: F401
        except Exception as e:  # ImportError, or a broken install raising something else
            log(f"lora_trainer: cannot import what training needs ({e}); see --check")
            return EXIT_MISSING_PACKAGES
        if torch.cuda.is_initialized():
            log("lora_trainer: CUDA was initialised in standby; the assignment's devices could not apply")
            return EXIT_BAD_INPUT
        if not await_assignment():
            return 0

    spec = load_spec(args.spec or os.environ.get("TRAINYARD_TASK_SPEC"))
    config: Dict[str, Any] = spec["config"]
    load4bit = bool(config.get("load4bit"))
    load8bit = bool(config.get("load8bit")) and not load4bit
    missing = missing_packages(REQUIRED_PACKAGES + ([QUANT_PACKAGE] if load4bit or load8bit else []))
    if missing:
        report_missing(missing, [])
        return EXIT_MISSING_PACKAGES

    # SIGTERM: before training, exit at once; during training, finish the current step,
    # save what we have and exit 143. os.write: print() is not safe in a signal handler.
    stop_requested = {"flag": False, "training": False}

    def on_sigterm(signum: int, frame: Any) -> None:
        if not stop_requested["training"]:
            os.write(1, b"received SIGTERM before training, exiting\n")
            os._exit(EXIT_SIGTERM)
        stop_requested["flag"] = True
        os.write(1, b"received SIGTERM, saving checkpoint\n")

    signal.signal(signal.SIGTERM, on_sigterm)

    # SIGUSR1 (the service preempts the task): save a checkpoint at the end of the current step,
    # report it, and keep training until SIGTERM. Without this handler SIGUSR1 would end the process.
    checkpoint_requested = {"flag": False}

    def on_sigusr1(signum: int, frame: Any) -> None:
        checkpoint_requested["flag"] = True
        os.write(1, b"received SIGUSR1, saving a checkpoint\n")

    signal.signal(signal.SIGUSR1, on_sigusr1)

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    task_id = os.environ.get("TRAINYARD_TASK_ID") or spec.get("id") or "unknown"
    output_dir = os.path.abspath(os.environ.get("TRAINYARD_OUTPUT_DIR") or spec.get("outputDir") or "output")
    model_name: str = spec["model"]
    epochs = max(1, int(config.get("epochs") or 1))
    batch_size = max(1, int(config.get("batchSize") or 1))
    grad_accum = max(1, int(config.get("gradientAccumulation") or 1))
    learning_rate = float(config.get("learningRate") or 2e-4)
    max_length = max(8, int(config.get("maxLength") or 512))
    lora_rank = max(1, int(config.get("loraRank") or 8))
    lora_alpha = max(1, int(config.get("loraAlpha") or 2 * lora_rank))
    checkpoint_every = max(0, int(config.get("checkpointEverySteps") or 0))

    cuda = torch.cuda.is_available()
    n_devices = torch.cuda.device_count() if cuda else 0
    log(f"task {task_id}: CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"
        f" cuda_available={cuda} devices={n_devices}")
    if (load4bit or load8bit) and not cuda:
        log("lora_trainer: 8-bit/4-bit loading needs a CUDA GPU")
        return EXIT_BAD_INPUT

    # ---- data ----
    records = read_records(spec["datasetPath"])
    texts = [t for t in (format_record(r) for r in records) if t]
    if not texts:
        log('lora_trainer: no usable records (want {"text"} or {"instruction","input","output"})')
        return EXIT_BAD_INPUT
    if len(texts) < len(records):
        log(f"lora_trainer: skipped {len(records) - len(texts)} malformed records")
    log(f"dataset: {spec['datasetPath']} ({len(texts)} records)")

    log(f"loading tokenizer {model_name} ...")
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def tokenize(batch: Dict[str, List[str]]) -> Dict[str, Any]:
        texts_with_eos = [t + (tokenizer.eos_token or "") for t in batch["text"]]
        return tokenizer(texts_with_eos, truncation=True, max_length=max_length)

    dataset = Dataset.from_dict({"text": texts}).map(tokenize, batched=True, remove_columns=["text"])

    # ---- model ----
    quant_label = " (4-bit)" if load4bit else " (8-bit)" if load8bit else ""
    log(f"loading model {model_name}{quant_label} ...")
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    fp16 = bool(cuda and not bf16)
    model_kwargs: Dict[str, Any] = {}
    if load4bit or load8bit:
        from transformers import BitsAndBytesConfig

        if load4bit:
            model_kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
            )
        else:
            model_kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        model_kwargs["device_map"] = "auto" if n_devices > 1 else {"": 0}
    elif cuda:
        model_kwargs["torch_dtype"] = torch.bfloat16 if bf16 else torch.float16
        if n_devices > 1:
            model_kwargs["device_map"] = "auto"
    if n_devices > 1:
        # Several GPUs (a gang): the model's layers are spread over all of them (model parallel,
        # one process), which the Trainer detects from hf_device_map and does not wrap in
        # DataParallel. It makes a model fit that one GPU cannot hold; it does not speed up a
        # model that already fits (that is data parallel: torchrun, one process per GPU).
        log(f"lora_trainer: spreading the model over {n_devices} GPUs (device_map=auto)")
    model = AutoModelForCausalLM.from_pretrained(model_name, **model_kwargs)
    if load4bit or load8bit:
        model = prepare_model_for_kbit_training(model)
    if hasattr(model, "config"):
        model.config.use_cache = False  # incompatible with gradient checkpointing / training

    def lora_config(target_modules: Any) -> Any:
        return LoraConfig(
            r=lora_rank,
            lora_alpha=lora_alpha,
            lora_dropout=0.05,
            bias="none",
            task_type="CAUSAL_LM",
            target_modules=target_modules,
        )

    try:
        model = get_peft_model(model, lora_config(None))  # peft knows common architectures
    except ValueError:
        log("lora_trainer: unknown architecture for default LoRA targets; using all linear layers")
        model = get_peft_model(model, lora_config("all-linear"))
    # Trainable (adapter) weights in fp32: fp16 AMP cannot unscale fp16 gradients.
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"lora r={lora_rank} alpha={lora_alpha}: {trainable} trainable of {total} parameters")

    # ---- training ----
    class ProtocolCallback(TrainerCallback):
        """Emits phase/progress messages; stops training on SIGTERM."""

        def __init__(self) -> None:
            self.last_loss: Optional[float] = None
            self.last_lr: Optional[float] = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stop_requested["training"] = True
            emit({"type": "phase", "phase": "training"})

        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
            loss = (logs or {}).get("loss")
            if isinstance(loss, (int, float)) and math.isfinite(loss) and loss >= 0:
                self.last_loss = float(loss)
            lr = (logs or {}).get("learning_rate")
            if isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0:
                self.last_lr = float(lr)
            if logs and "loss" in logs:
                self._progress(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if checkpoint_requested["flag"]:
                checkpoint_requested["flag"] = False
                control.should_save = True
            if stop_requested["flag"]:
                control.should_training_stop = True
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # The Trainer's own checkpoint (model, optimizer, scheduler, RNG, step): a later attempt
            # resumes from it with resume_from_checkpoint.
            step = int(state.global_step or 0)
            emit({"type": "checkpoint", "path": os.path.join(args.output_dir, f"checkpoint-{step}"), "step": step})

        def _progress(self, state: Any) -> None:
            total_steps = int(state.max_steps or 0)
            step = int(state.global_step or 0)
            message: Dict[str, Any] = {
                "type": "progress",
                "epoch": current_epoch(state.epoch, epochs),
                "totalEpochs": epochs,
                "step": min(step, total_steps) if total_steps > 0 else step,
            }
            if total_steps > 0:
                message["totalSteps"] = total_steps
            if self.last_loss is not None:
                message["loss"] = round(self.last_loss, 6)
            if self.last_lr is not None:
                message["learningRate"] = self.last_lr
            emit(message)

    training_args = TrainingArguments(
        output_dir=os.path.join(output_dir, "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_ratio=0.03,
        logging_steps=1,
        save_strategy="steps" if checkpoint_every else "no",
        save_steps=checkpoint_every or 500,
        report_to=[],
        disable_tqdm=True,  # tqdm's \r progress bars would only flood the log
        bf16=bf16,
        fp16=fp16,
        remove_unused_columns=False,
        dataloader_pin_memory=cuda,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=lambda features: {
            k: torch.tensor(v) for k, v in pad_and_label(features, tokenizer.pad_token_id).items()
        },
        callbacks=[ProtocolCallback()],
    )
    resume_from = os.environ.get("TRAINYARD_RESUME_FROM") or None
    if resume_from and not os.path.isdir(resume_from):
        log(f"lora_trainer: checkpoint {resume_from} is not a folder; starting from the beginning")
        resume_from = None
    if resume_from:
        log(f"resuming from {resume_from}")
    trainer.train(resume_from_checkpoint=resume_from)

    # ---- save ----
    save_dir = os.path.join(output_dir, "interrupted") if stop_requested["flag"] else output_dir
    os.makedirs(save_dir, exist_ok=True)
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    log(f"saved adapter to {save_dir}")
    if stop_requested["flag"]:
        return EXIT_SIGTERM
    emit({"type": "artifact", "path": save_dir})
    return 0


if __name__ == "__main__":
    sys.exit(main())
