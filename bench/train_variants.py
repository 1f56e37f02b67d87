"""Train one variant of the default-policy recipe and save its last-step and EMA weights side by side.

Usage: OMP_NUM_THREADS=1 python bench/train_variants.py OUT [--seed 0] [--steps 6000] [--num-demos 130]
           [--recovery 0.25] [--ema 0.999 ...] [--patch-size 16] [--work-dir DIR]
Does what `vlasteer_train_default` does (demos -> LeRobot dataset -> flow matching, same seeds, same
sampler), with two differences for experiments: one training run writes `OUT/raw` (the last step's
weights, what `vlasteer_train_default` ships without `--ema`) and `OUT/ema<decay>` for each `--ema`
(what `--ema <decay>` ships), and `--patch-size` changes the vision tower's patch size. `--work-dir`
keeps the demos and dataset so a second variant on the same data skips making them. Each checkpoint's
`training.json` records the recipe; `bench/eval_policy.py` measures them.
"""
import argparse, copy, dataclasses, json, platform, sys, time
from pathlib import Path

import numpy as np
import torch

from vlasteer.data import convert_libero_to_lerobot, generate_demos
from vlasteer.default_policy import ChunkSampler, default_config, load_training_frames
from vlasteer.policy import EMA, NormStats, Policy, default_tokenizer, fit, save_policy


class _All:
    "Updates several EMAs from one training run."
    def __init__(self, emas): self.emas = emas
    def update(self, model):
        for e in self.emas: e.update(model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--num-demos", type=int, default=130)
    ap.add_argument("--recovery", type=float, default=0.25)
    ap.add_argument("--ema", type=float, nargs="*", default=[0.999])
    ap.add_argument("--patch-size", type=int, default=16)
    ap.add_argument("--work-dir", type=Path, default=None)
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()): raise SystemExit(f"train_variants: {a.out} exists and is not empty; choose a new folder")
    a.out.mkdir(parents=True, exist_ok=True)
    work = a.work_dir or a.out / "work"; work.mkdir(parents=True, exist_ok=True)
    cfg = default_config()
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_size=a.patch_size))
    t0 = time.time()
    if not (work / "lerobot").exists():
        generate_demos(work / "demos", num_demos=a.num_demos, seed=a.seed, image_size=cfg.vision.image_size,
                       progress=False, recovery=a.recovery)
        convert_libero_to_lerobot(work / "demos", "vlasteer/toy_kitchen", work / "lerobot", progress=False)
    frames = load_training_frames(work / "lerobot", "vlasteer/toy_kitchen")
    data_s = time.time() - t0
    torch.manual_seed(a.seed)
    stats = {"state": NormStats.of(frames["state"]), "actions": NormStats.of(frames["actions"])}
    policy = Policy(cfg, tokenizer=default_tokenizer(), norm_stats=stats)
    sampler = ChunkSampler(frames, cfg.action_horizon, batch_size=32, seed=a.seed)
    emas = [EMA(policy, d) for d in a.ema]
    t1 = time.time()
    losses = fit(policy, sampler, steps=a.steps, lr=1e-3, warmup=min(200, a.steps // 10), seed=a.seed, ema=_All(emas))
    train_s = time.time() - t1
    base = dict(num_demos=a.num_demos, recovery=a.recovery, steps=a.steps, batch_size=32, lr=1e-3, seed=a.seed,
                patch_size=a.patch_size, frames=int(len(frames["state"])),
                loss_last_100=float(np.mean(losses[-100:])), threads=torch.get_num_threads(),
                seconds={"demos_and_dataset_s": round(data_s, 1), "train_s": round(train_s, 1)},
                torch=torch.__version__, machine=platform.machine(), made_by=" ".join(["bench/train_variants.py"] + sys.argv[1:]))
    for name, ema in [("raw", None)] + [(f"ema{e.decay}", e) for e in emas]:
        p = policy if ema is None else copy.deepcopy(policy)
        if ema is not None: ema.copy_to(p)
        path = save_policy(p, a.out / name)
        (path / "training.json").write_text(json.dumps({**base, "ema": ema.decay if ema else 0.0}, indent=1))
        print(path, flush=True)


if __name__ == "__main__":
    main()
