"""Do two policies fail on the same initial states? Per-seed success of each task, its overlap, and the start layout.

Usage: python bench/failure_overlap.py CHECKPOINT_A CHECKPOINT_B [--seeds 50] [--out FILE.json]
Rolls each checkpoint out on seeds 1000.. (one batch per task, re-planning every 2 steps), then reports per
task how many seeds both fail against the number expected if their failures were independent, and per
concept pair the correlation of the failure count (0-4: two tasks x two policies) with features of the
initial layout (gripper start, drawer opening, knob angle, bowl position, distances to the grasp points).
"""
import argparse, json
from pathlib import Path

import numpy as np

from vlasteer import sim
from vlasteer.cli import write_json
from vlasteer.checkpoints import load_policy


def per_seed(ckpt: Path, seeds: list[int]) -> dict:
    "Success (0/1) per task and seed."
    pol = load_policy(ckpt)
    return {t: [int(tr.success) for tr in sim.rollout_batch(pol, [t] * len(seeds), seeds, sim.RolloutOptions(record_frames=False, replan_steps=2))]
            for t in sim.TASKS}


def layout(seeds: list[int]) -> dict:
    "Features of each seed's initial state (the same for every task)."
    rows = []
    with sim.ToyKitchenEnv(render=False) as env:
        for s in seeds:
            obs = env.reset(s, task=next(iter(sim.TASKS))); p, eef = env.progress(), obs["robot0_eef_pos"]
            rows.append(dict(eef_x=eef[0], eef_y=eef[1], eef_z=eef[2], drawer_opening=p["drawer_opening"], knob_angle=p["knob_angle"],
                             bowl_x=env.site_pos("bowl_grasp_site")[0], bowl_y=p["bowl_y"],
                             to_handle=np.linalg.norm(eef - env.site_pos("drawer_handle_site")),
                             to_bowl=np.linalg.norm(eef - env.site_pos("bowl_grasp_site"))))
    return {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path); ap.add_argument("b", type=Path)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    for c in (args.a, args.b):
        if not (c / "model.safetensors").is_file(): raise SystemExit(f"failure_overlap: no model.safetensors in {c}; pass checkpoint folders")
    seeds = list(range(1000, 1000 + args.seeds))
    runs = [per_seed(args.a, seeds), per_seed(args.b, seeds)]
    feats = layout(seeds)
    report = {"checkpoints": [str(args.a), str(args.b)], "seeds": seeds, "tasks": {}, "pairs": {}}
    for t in sim.TASKS:
        fa, fb = (1 - np.array(r[t]) for r in runs)
        report["tasks"][t] = dict(success=[float(1 - fa.mean()), float(1 - fb.mean())], both_fail=int((fa * fb).sum()),
                                  independent=round(float(fa.mean() * fb.mean() * len(seeds)), 1))
        print(f"{t:40s} fail {int(fa.sum()):2d} / {int(fb.sum()):2d}  both {int((fa * fb).sum()):2d}  "
              f"(independent {fa.mean() * fb.mean() * len(seeds):.1f})")
    for pair, (pos, neg) in sim.CONCEPT_PAIRS.items():
        fails = sum(1 - np.array(r[t]) for r in runs for t in (pos, neg))
        corr = {k: (round(float(np.corrcoef(v, fails)[0, 1]), 2) if v.std() > 0 and fails.std() > 0 else None) for k, v in feats.items()}
        report["pairs"][pair] = dict(failures=fails.tolist(), correlation_with_layout=corr)
        print(pair, corr)
    if args.out: write_json(report, args.out)


if __name__ == "__main__":
    main()
