"""Train one variant of the default-policy recipe and save its EMA and last-step weights side by side.

Usage: OMP_NUM_THREADS=1 python bench/train_variants.py OUT [--seed 0] [--steps 6000] [--num-demos 130]
           [--recovery 0.25] [--ema 0.999] [--patch-size 16]
Runs `vlasteer.default_policy.train_default_policy` (what `vlasteer_train_default` runs: the same demos,
seeds and sampler) once and writes `OUT/ema<decay>` (what `--ema <decay>` ships) and `OUT/raw` (the same
run's last-step weights, what it ships without `--ema`), so the two are compared on one training run;
`--patch-size` changes the vision tower's patch size. Each checkpoint's `training.json` records the recipe;
`bench/eval_policy.py` measures them.
"""
import argparse, dataclasses, sys
from pathlib import Path

from vlasteer.default_policy import TrainingRecipe, default_config, train_default_policy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--num-demos", type=int, default=130)
    ap.add_argument("--recovery", type=float, default=0.25)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--patch-size", type=int, default=16)
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()): raise SystemExit(f"train_variants: {a.out} exists and is not empty; choose a new folder")
    a.out.mkdir(parents=True, exist_ok=True)
    cfg = default_config()
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, patch_size=a.patch_size))
    try:
        path = train_default_policy(a.out / f"ema{a.ema}", TrainingRecipe(num_demos=a.num_demos, steps=a.steps, seed=a.seed,
                                                                           recovery=a.recovery, ema=a.ema), config=cfg, last_step_out=a.out / "raw", progress=False)
    except (ValueError, OSError) as e: sys.exit(f"train_variants: {e}")
    print(path, a.out / "raw", flush=True)


if __name__ == "__main__":
    main()
