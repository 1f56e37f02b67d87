"""Toy-kitchen simulator speed: control steps per second with and without rendering, and batched rollouts.

Usage: python bench/sim_speed.py [--episodes 30] [--sizes 64 128 224] [--batch 8] [--out bench/results/sim_speed.json]
Runs the scripted experts (all six tasks, seeds 0..episodes-1) and reports env steps/s, first with rendering
off, then with both cameras rendered at each image size; then `rollout_batch` with a trivial policy.
"""
import argparse, json, os, platform, time
from pathlib import Path

import numpy as np

from vlasteer.sim import TASKS, RolloutOptions, ToyKitchenEnv, rollout_batch, scripted_expert


def expert_steps_per_s(render: bool, image_size: int, episodes: int) -> dict:
    "Env steps/s while the scripted experts solve every task for `episodes` seeds (expert time included)."
    steps, t0 = 0, time.perf_counter()
    with ToyKitchenEnv(image_size=image_size, render=render) as env:
        for task in TASKS:
            for seed in range(episodes):
                expert, obs = scripted_expert(task, seed=seed), env.reset(seed, task=task)
                for _ in range(env.max_steps):
                    obs, _, done, _ = env.step(expert.act(obs, env))
                    steps += 1
                    if done: break
    dt = time.perf_counter() - t0
    return {"render": render, "image_size": image_size if render else None, "steps": steps, "seconds": round(dt, 3),
            "steps_per_s": round(steps / dt, 1)}


class Still:
    "Trivial batched policy: hold still with the gripper open (measures the rollout machinery, not a model)."
    def infer(self, obs):
        return {"actions": np.tile(np.array([0, 0, 0, 0, 0, 0, -1.0]), (len(obs["prompt"]), 10, 1))}


def batch_steps_per_s(batch: int, steps: int = 40) -> dict:
    "Env steps/s of `rollout_batch` (64x64, frames recorded) on `batch` episodes of `steps` steps."
    tasks = [list(TASKS)[i % len(TASKS)] for i in range(batch)]
    t0 = time.perf_counter()
    rollout_batch(Still(), tasks, list(range(batch)), RolloutOptions(steps=steps))
    dt = time.perf_counter() - t0
    return {"batch": batch, "steps": batch * steps, "seconds": round(dt, 3), "steps_per_s": round(batch * steps / dt, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=30, help="seeds per task")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224], help="image sizes to render")
    ap.add_argument("--batch", type=int, default=8, help="episodes in the rollout_batch measurement")
    ap.add_argument("--out", default="bench/results/sim_speed.json", help="JSON file for the results")
    args = ap.parse_args()
    if args.episodes < 1 or args.batch < 1: ap.error("--episodes and --batch must be at least 1")
    rows = [expert_steps_per_s(False, 64, args.episodes)] + [expert_steps_per_s(True, s, args.episodes) for s in args.sizes]
    for r in rows:
        what = "no rendering" if not r["render"] else f"2 cameras {r['image_size']}x{r['image_size']}"
        print(f"{what:>24}: {r['steps_per_s']:8.1f} steps/s ({r['steps']} steps in {r['seconds']} s)")
    b = batch_steps_per_s(args.batch)
    print(f"{'rollout_batch B=' + str(args.batch):>24}: {b['steps_per_s']:8.1f} steps/s")
    result = {"machine": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
              "mujoco_gl": os.environ.get("MUJOCO_GL"), "expert": rows, "rollout_batch": b}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.rename(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
