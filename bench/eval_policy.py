"""Success of default-policy checkpoints on the 50 unseen seeds the goal is measured on, added to a results file.

Usage: python bench/eval_policy.py CHECKPOINT [CHECKPOINT ...] [--seeds 50] [--noise-scale S] [--out bench/results/default_policy_candidates.json]
Each checkpoint is a folder written by `vlasteer_train_default` (its `training.json` gives the recipe). The
result (per task: k, n, success, Wilson 95% interval; the recipe; the seconds the evaluation took) replaces
the entry with the same recipe (the sampling noise scale it was evaluated with included) in `candidates` of the
output file, or is appended. Run it with
OMP_NUM_THREADS=1 for the figures quoted in 03a (they do not depend on the thread count).
"""
import argparse, json, time
from pathlib import Path

from vlasteer.cli import read_json, write_json
from vlasteer.default_policy import evaluate
from vlasteer.checkpoints import load_policy

RECIPE = ("num_demos", "recovery", "ema", "steps", "batch_size", "lr", "seed", "patch_size", "noise_scale",
          "takeover_rounds", "takeover_episodes", "takeover_steps", "takeover_lr")
DEFAULTS = {"ema": 0.0, "lr": 1e-3, "patch_size": 16, "noise_scale": 1.0,  # what records written before these options existed mean
            "takeover_rounds": 0, "takeover_episodes": None, "takeover_steps": None, "takeover_lr": None}


def entry(ckpt: Path, seeds: int, noise_scale: float | None = None) -> dict:
    "Evaluate one checkpoint; its recipe comes from its training.json."
    rec = read_json(ckpt / "training.json", "training record", fix="pass a folder written by vlasteer_train_default")
    missing = [k for k in ("frames", "seconds", "threads") if k not in rec]
    if missing: raise SystemExit(f"eval_policy: {ckpt}/training.json lacks {missing}; pass a folder written by vlasteer_train_default")
    t0 = time.perf_counter()
    policy = load_policy(ckpt)
    if noise_scale is not None: policy.config.noise_scale = noise_scale
    res = evaluate(policy, seeds=range(1000, 1000 + seeds))
    out = {k: rec.get(k, DEFAULTS.get(k)) for k in RECIPE}
    out["noise_scale"] = policy.config.noise_scale  # as evaluated
    out.update(command=rec.get("command") or rec.get("made_by"), frames=rec["frames"], loss_last_100=round(rec.get("loss_final_100") or rec.get("loss_last_100") or float("nan"), 4), seconds=rec["seconds"],
               threads=rec["threads"], eval_seconds=round(time.perf_counter() - t0, 1),
               success={t: dict(k=r["k"], n=r["n"], success=r["success"], ci=[round(c, 3) for c in r["ci"]])
                        for t, r in res.items()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--noise-scale", type=float, default=None, help="evaluate with this sampling noise scale instead of the checkpoint's")
    ap.add_argument("--out", type=Path, default=Path("bench/results/default_policy_candidates.json"))
    a = ap.parse_args()
    for c in a.checkpoints:
        if not (c / "model.safetensors").is_file(): raise SystemExit(f"eval_policy: no model.safetensors in {c}; pass checkpoint folders")
    doc = read_json(a.out, "results file") if a.out.exists() else {"candidates": []}
    for c in a.checkpoints:
        try: e = entry(c, a.seeds, a.noise_scale)
        except (FileNotFoundError, ValueError) as err: raise SystemExit(f"eval_policy: {err}") from None
        print(json.dumps({k: e[k] for k in RECIPE}), {t: r["success"] for t, r in e["success"].items()}, flush=True)
        same = [i for i, old in enumerate(doc["candidates"]) if all(old.get(k, DEFAULTS.get(k)) == e[k] for k in RECIPE)]
        if same: doc["candidates"][same[0]] = e
        else: doc["candidates"].append(e)
        write_json(doc, a.out)


if __name__ == "__main__":
    main()
