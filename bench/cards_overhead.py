"""Extra cost of keeping feature-card summaries (vlasteer.cards.TopK) during a residual capture.

In one process, on one policy and the same preloaded observation batches (toy-kitchen frames generated into a temp
folder), three variants of the capture loop run interleaved, rep after rep:

- capture: `capture_batch` for the instructions and decision groups at every VLM layer (what capture_residuals does
           per batch, minus writing chunks);
- +dims:   the same, and each batch fed to one TopK over every residual dimension of every group and layer
           (groups x layers x d_model units, task histograms): one update per batch, as a capture would keep it;
- +sae:    the same as +dims, plus an SAE-sized unit set per group and layer: ReLU of a 4 x d_model random
           projection, in a second TopK (the encoder's cost is counted: keeping SAE cards runs the encoder).
- probe / probe+cards: the FFN probe's pass of 04 (`max_activations`) without and with the cards of every neuron
           of every VLM block (`probe_topk`: top 8, 8 random frames, 20 bins per task), as `vlasteer_ffn_probe
           --cards-out` runs it; `cards_alone` is the card updates fed the same activations.

Each variant's median seconds per frame over the reps; ratio = variant / capture (goal for +dims: <= 1.05), and
with the fastest rep of each (`_min`). On a shared machine the spread between reps can exceed the overhead, so the
TopK work is also timed alone (`topk_dims`, `topk_sae`: the same updates fed the captured rows, no forward pass):
`overhead_*_isolated` = that time / the capture's.
The TopK state lives on the capture's device. Writes bench/results/cards_overhead.json (atomically).

Usage: python bench/cards_overhead.py [--sizes default mid] [--frames 128] [--batch 16] [--reps 5]
       [--k 16] [--device cpu] [--threads 1] [--out bench/results/cards_overhead.json]
"""
import argparse, platform, statistics, sys, tempfile, time, shutil
from pathlib import Path

import torch

from vlasteer.cards import TopK
from vlasteer.checkpoints import load_default_policy
from vlasteer.cli import write_json
from vlasteer.data import convert_libero_to_lerobot, generate_demos, lerobot_obs_batch, load_lerobot_dataset
from vlasteer.ffn import ffn_activations, max_activations, probe_topk
from vlasteer.residuals import capture_batch, token_group


def build(size: str):
    if size == "default": return load_default_policy()
    sys.path.insert(0, str(Path(__file__).parent))
    from hook_overhead import build as hook_overhead_build
    return hook_overhead_build(size)


def measure(a, size: str) -> dict:
    torch.manual_seed(0)
    dev = a.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    pol = build(size).to(dev).eval()
    work = Path(tempfile.mkdtemp(prefix="cards-bench-"))
    try:
        generate_demos(work / "demos", num_demos=max(1, a.frames // 200 + 1), seed=0, image_size=32)
        ds = load_lerobot_dataset(convert_libero_to_lerobot(work / "demos", "vlasteer/toy_kitchen", work / "lr"),
                                  "vlasteer/toy_kitchen")
        n = min(a.frames, ds.num_frames)
        batches = [lerobot_obs_batch(ds, range(b, min(b + a.batch, n))) for b in range(0, n, a.batch)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    groups = [token_group("instructions"), token_group("decision")]
    layers = list(range(pol.config.vlm.depth))
    d_model, n_tasks = pol.config.vlm.width, int(max(e["task_index"].max() for _, e in batches)) + 1
    enc = torch.randn(d_model, 4 * d_model, generator=torch.Generator().manual_seed(0)).to(dev) / d_model ** 0.5

    captured = [capture_batch(pol, obs, groups, layers) for obs, _ in batches]  # for the TopK-only timings

    def run(variant: str) -> float:
        tks = {}
        sync(); t0 = time.perf_counter()
        for (obs, extra), pre in zip(batches, captured):
            out = pre if variant.startswith("topk") else capture_batch(pol, obs, groups, layers)
            if variant == "capture": continue
            idx = torch.as_tensor(extra["index"], device=dev); g = torch.as_tensor(extra["task_index"], device=dev)
            x = torch.cat([out[k].to(dev) for k in sorted(out)], 1)  # [batch groups*layers*d_model]
            if not tks:
                tks["dims"] = TopK(x.shape[1], k=a.k, sample=a.k, n_groups=n_tasks, active=None, device=dev)
                if variant.endswith("sae"): tks["sae"] = TopK(4 * x.shape[1], k=a.k, sample=a.k, n_groups=n_tasks, device=dev)
            tks["dims"].update(x, idx, g)
            if variant.endswith("sae"):
                z = torch.relu(x.view(len(x), -1, d_model) @ enc).flatten(1)  # [batch groups*layers*4*d_model]
                tks["sae"].update(z, idx, g)
        sync()
        return (time.perf_counter() - t0) / n

    probe_acts = [ffn_activations(pol, obs, "vlm").cpu() for obs, _ in batches]  # for the cards-only timing

    def run_probe(variant: str) -> float:
        "The FFN probe's pass (`max_activations`), without and with `probe_topk` cards, or the card updates alone."
        tk = probe_topk(pol, "vlm", n_tasks) if variant != "probe" else None
        sync(); t0 = time.perf_counter()
        if variant == "cards_alone":
            for (_, extra), acts in zip(batches, probe_acts): tk.update(acts.flatten(1), extra["index"], extra["task_index"])
            tk.flush()
        else:
            max_activations(pol, batches, "vlm", cards=tk)
            if tk is not None: tk.flush()
        sync()
        return (time.perf_counter() - t0) / n

    variants = ["capture", "+dims", "+sae", "topk_dims", "topk_sae", "probe", "probe+cards", "cards_alone"]
    timer = lambda v: run_probe(v) if v.startswith(("probe", "cards")) else run(v)
    for v in variants: timer(v)  # warm-up
    times = {v: [] for v in variants}
    for _ in range(a.reps):
        for v in variants: times[v].append(timer(v))
    med = {v: statistics.median(t) for v, t in times.items()}
    res = {"bench": "cards_overhead", "size": size, "device": dev, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(),
           "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None,
           "frames": n, "batch": a.batch, "reps": a.reps, "k": a.k, "sample": a.k, "layers": len(layers),
           "groups": [g.name for g in groups], "d_model": d_model, "n_tasks": n_tasks,
           "dims_units": len(groups) * len(layers) * d_model, "sae_units": len(groups) * len(layers) * 4 * d_model,
           "seconds_per_frame": {v: med[v] for v in variants},
           "seconds_per_frame_all_reps": times,
           "ratio_dims": med["+dims"] / med["capture"], "ratio_sae": med["+sae"] / med["capture"],
           "ratio_dims_min": min(times["+dims"]) / min(times["capture"]), "ratio_sae_min": min(times["+sae"]) / min(times["capture"]),
           # the TopK work alone (fed the same captured rows, no forward pass) over the capture: robust on a busy machine
           "overhead_dims_isolated": med["topk_dims"] / med["capture"], "overhead_sae_isolated": med["topk_sae"] / med["capture"],
           # the FFN probe as 04 runs it: every neuron's cards kept in the same pass (probe_topk, 20 bins, per-task)
           "probe_units": int(probe_acts[0][0].numel()),
           "ratio_probe_cards": med["probe+cards"] / med["probe"],
           "ratio_probe_cards_min": min(times["probe+cards"]) / min(times["probe"]),
           "overhead_probe_cards_isolated": med["cards_alone"] / med["probe"],
           "goal": "ratio_dims <= 1.05"}
    print(f"{size} on {dev}: capture {med['capture'] * 1e3:.3f} ms/frame, +dims x{res['ratio_dims']:.3f}, "
          f"+sae x{res['ratio_sae']:.3f}; TopK alone: dims {res['overhead_dims_isolated']:.2%}, "
          f"sae (with encoder) {res['overhead_sae_isolated']:.2%} of the capture; FFN probe {med['probe'] * 1e3:.3f} ms/frame, "
          f"+cards of {res['probe_units']} neurons x{res['ratio_probe_cards']:.3f} (cards alone "
          f"{res['overhead_probe_cards_isolated']:.2%})", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["default", "mid"], choices=["tiny", "default", "mid"])
    ap.add_argument("--frames", type=int, default=128); ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5); ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cards_overhead.json"))
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    res = {"bench": "cards_overhead", "goal": "ratio_dims <= 1.05", "runs": [measure(a, z) for z in a.sizes]}
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    write_json(res, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
