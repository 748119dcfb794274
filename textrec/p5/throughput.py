"""What a P5 serialization costs: source tokens per example and training examples per (CPU) second.

``serialization_cost`` renders one epoch of examples, tokenizes a sample of them and runs
training steps for a fixed wall-clock budget on a *copy* of the model (the model passed in is
left untouched), so two prompt formats can be compared in the same process, back to back. On a shared machine
examples per *CPU* second is the comparable number (wall-clock speed depends on the load).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from textrec.p5.model import P5Model
from textrec.p5.serializer import P5Serializer, TrainData


def serialization_cost(model: P5Model, serializer: P5Serializer, data: TrainData, batch_size: int = 64,
                       seconds: float = 60.0, lr: float = 1e-3, sample: int = 5000, seed: int = 0) -> dict:
    """Mean/95th-percentile source and target tokens per example, and training examples per wall and CPU second."""
    cols = serializer.examples(data, epoch=0)
    n = len(cols["source"])
    if n == 0:
        raise ValueError("the serializer produced no examples")
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=min(n, sample), replace=False)
    src_len = np.array([len(model.tokenizer(cols["source"][i])["input_ids"]) for i in pick])
    tgt_len = np.array([len(model.tokenizer(cols["target"][i])["input_ids"]) for i in pick])
    work = copy.deepcopy(model)
    work.train()
    opt = torch.optim.AdamW([p for p in work.parameters() if p.requires_grad], lr=lr)
    from textrec.p5.trainer import _batches

    batches = _batches(n, batch_size, rng, np.array([len(s) for s in cols["source"]]))  # as training groups them
    done, steps, t0, c0 = 0, 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        b = batches[steps % len(batches)]
        enc = work.tokenize_sources([cols["source"][i] for i in b])
        labels = work.tokenize_targets([cols["target"][i] for i in b])
        loss = work(enc["input_ids"], enc["attention_mask"], labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += len(b)
        steps += 1
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"examples_per_cpu_s": round(done / cpu, 1), "cpu_minutes_per_epoch": round(n / (done / cpu) / 60, 1),"examples_per_epoch": n, "source_tokens_mean": round(float(src_len.mean()), 2),
            "source_tokens_p95": int(np.percentile(src_len, 95)), "target_tokens_mean": round(float(tgt_len.mean()), 2),
            "batch_size": batch_size, "examples_per_s": round(done / secs, 1), "measured_seconds": round(secs, 1),
            "minutes_per_epoch": round(n / (done / secs) / 60, 1), "example_source": cols["source"][int(pick[0])]}
