"""The full localisation and steering study on the embedded default policy (20 seeds per cell), for the numbers 09d_localize quotes.

    OMP_NUM_THREADS=1 python bench/localize_study.py --run runs/demo --out runs/study

`--run` is a main-job run folder (`make demo`): its pooled pair directions (08_sae) and FFN clusters (05) join the study. Writes
bench/results/localize_study.json (the study's localize.json, plus how and where it was made). Resumable: a killed run continues.
"""
import argparse, json, platform, sys, time
from pathlib import Path

import torch

from vlasteer.cli import write_json
from vlasteer.localize import localize, print_answer, study_config
from vlasteer.checkpoints import load_default_policy
from vlasteer.sweep import directions_from_root

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="main-job run folder whose directions/ and clusters/clusters.json join the study")
    ap.add_argument("--out", default="runs/study", help="study folder (resumed when it exists)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--result", default=str(Path(__file__).parent / "results" / "localize_study.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    policy = load_default_policy()
    dirs, clusters = {}, None
    if a.run:
        dirs = directions_from_root(Path(a.run) / "directions")
        clusters = str(Path(a.run) / "clusters" / "clusters.json")
    layers = sorted({l for v in dirs.values() for l in v}) or None
    cfg = study_config(policy, seeds=range(6000, 6000 + a.seeds), pooled_layers=layers, clusters=clusters is not None, workers=a.workers)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res, doc = localize(policy, a.out, cfg, dirs, clusters, progress=True)
    sec = time.time() - t0
    write_json(dict(command=" ".join(["python", "bench/localize_study.py"] + sys.argv[1:]), seconds=round(sec, 1), cells=len(res.cells),
                    episodes=sum(len(c["episodes"]) for c in res.cells), machine=platform.machine(), processor=platform.processor(),
                    torch=torch.__version__, threads_per_worker=1, workers=a.workers, study=doc), a.result, sort_keys=True)
    print_answer(doc)
    print(f"{len(res.cells)} cells in {sec:.0f} s; wrote {a.result}")


if __name__ == "__main__":  # the sweep's worker processes import this file
    main()
