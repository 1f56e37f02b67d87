"""Throughput of residual capture against plain forward passes over the same frames, and its memory.

In one process, on one policy and one LeRobot dataset (the toy kitchen, generated into a temp folder unless
--lerobot-root is given), over the same frames in the same batches:

- plain:   read each batch from the dataset (`lerobot_obs_batch`) and run the forward pass a capture hooks into
           (the prefix pass; the whole sampling loop with --towers expert), without hooks, writing nothing;
- capture: `capture_residuals` end to end (reading, hooks, reductions, chunk files, metadata.json).

Plain and capture runs alternate (after a warm-up of each) and the medians are compared: ratio = capture frames/s
over plain frames/s (goal: >= 0.9). The forward passes alone (batches preloaded) are compared too, with and
without the capture's early stop after the last recorded layer. Memory: peak RSS above the baseline (and the CUDA
peak) while capturing N frames and while capturing 2N frames; equal peaks mean memory does not grow with the
number of frames. A capture has a fixed cost (opening the dataset, fingerprinting the policy, writing and
checking metadata) that a long run amortises: `ratio_marginal` compares the cost of N more frames (capture of 2N
minus capture of N) with plain passes over N frames.

Usage: python bench/capture_throughput.py [--size tiny|default|mid|real] [--frames 256] [--batch 16]
       [--samples-per-file 64] [--towers vlm] [--device cpu] [--precision float32] [--reps 3] [--threads 1]
       [--out bench/results/capture_throughput.jsonl]
"""
import argparse, json, os, platform, shutil, statistics, sys, tempfile, threading, time
from pathlib import Path

import numpy as np
import torch

from vlasteer.data import POLICY_CAMERAS, convert_libero_to_lerobot, generate_demos, lerobot_obs_batch, load_lerobot_dataset
from vlasteer.policy import GemmaSize, Policy, PolicyConfig, VisionSize, default_tokenizer, default_vocab, tiny_policy
from vlasteer.checkpoints import load_default_policy
from hook_overhead import build as hook_overhead_build  # bench/ is on sys.path when run as a script
from vlasteer.residuals import CaptureConfig, CaptureRun, capture_batch, capture_residuals, forward_only, frame_noise


def build(size: str) -> Policy:
    "tiny / mid as in bench/hook_overhead.py (one definition), the shipped default, or real pi0.5 sizes."
    if size in ("tiny", "mid"): return hook_overhead_build(size)
    if size == "default": return load_default_policy()
    # real pi0.5 sizes (gemma_2b + gemma_300m, SigLIP So400m at 224 px), the small default vocabulary
    cfg = PolicyConfig(kind="pi05", action_horizon=10, max_token_len=48, output_action_dim=7, vocab_size=len(default_vocab()),
                       cameras=("base_0_rgb", "left_wrist_0_rgb"))
    return Policy(cfg, tokenizer=default_tokenizer()).eval()


class PeakRSS:
    "Sample this process's resident memory every few milliseconds; `peak` is the largest seen."
    def __init__(self, every: float = 0.005): self.every, self.peak, self._stop = every, 0, threading.Event()
    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    def _run(self):
        while not self._stop.is_set(): self.peak = max(self.peak, self.now()); time.sleep(self.every)
    def __enter__(self): self.base = self.now(); self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
    def __exit__(self, *a): self._stop.set(); self.t.join(); self.peak = max(self.peak, self.now())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="default", choices=["tiny", "default", "mid", "real"])
    ap.add_argument("--lerobot-root", default=None); ap.add_argument("--repo-id", default="vlasteer/toy_kitchen")
    ap.add_argument("--frames", type=int, default=256, help="frames per capture (N; the memory check also captures 2N)")
    ap.add_argument("--batch", type=int, default=16); ap.add_argument("--samples-per-file", type=int, default=64)
    ap.add_argument("--layer", type=int, default=None, help="default: the middle VLM layer")
    ap.add_argument("--towers", nargs="+", default=["vlm"]); ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="float32"); ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = a.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    pol = build(a.size).to(dev).to_precision(a.precision).eval()
    layer = a.layer if a.layer is not None else pol.config.vlm.depth // 2
    work = Path(tempfile.mkdtemp(prefix="capture-bench-"))
    try:
        t0 = time.time()
        root = a.lerobot_root
        if root is None:  # enough toy-kitchen frames for 2N
            per_task = max(4, int(np.ceil(2 * a.frames / 12.5 / 6)) + 1)
            generate_demos(work / "demos", num_demos=per_task, seed=0, image_size=64)
            root = convert_libero_to_lerobot(work / "demos", a.repo_id, work / "lerobot")
        ds = load_lerobot_dataset(root, a.repo_id)
        if len(ds) < 2 * a.frames: sys.exit(f"the dataset has {len(ds)} frames; need 2 x --frames = {2 * a.frames}")
        setup_s = time.time() - t0
        cfg = CaptureConfig([layer], tuple(a.towers), ("instructions", "decision") if "vlm" in a.towers else ("decision",),
                            a.batch, a.samples_per_file).resolve(pol)
        groups, expert = cfg.token_groups, "expert" in a.towers
        cams = {c: k for c, k in POLICY_CAMERAS.items() if c in pol.config.cameras}
        frames = np.arange(a.frames)
        batches = [frames[s:s + a.batch] for s in range(0, a.frames, a.batch)]  # chunk-aligned when samples_per_file % batch == 0

        def plain():
            for b in batches:
                obs, _ = lerobot_obs_batch(ds, b, cams)
                forward_only(pol, obs, expert, frame_noise(pol, b) if expert else None)
            sync()

        runs = [0]
        rss_by_chunk = []
        def capture(n=a.frames, on_chunk=None):
            runs[0] += 1
            out = work / f"run{runs[0]}"
            capture_residuals(pol, root, out,
                              CaptureConfig([layer], towers=tuple(a.towers), groups=cfg.groups, batch_size=a.batch,
                                            samples_per_file=a.samples_per_file, max_samples_per_layer=n),
                              repo_id=a.repo_id, run=CaptureRun(num_workers=a.num_workers, on_chunk=on_chunk))
            sync()
            shutil.rmtree(out)

        def timed(f):
            sync(); t = time.perf_counter(); f(); return time.perf_counter() - t
        plain(); capture()  # warm-up
        tp, tc, tc2, mem = [], [], [], {}
        for _ in range(a.reps):
            tp.append(timed(plain))
            for n, ts in ((a.frames, tc), (2 * a.frames, tc2)):
                if dev.startswith("cuda"): torch.cuda.reset_peak_memory_stats()
                with PeakRSS() as m: ts.append(timed(lambda: capture(n)))
                r = mem.setdefault(n, dict(rss_peak_above_base_mb=0.0))
                r["rss_peak_above_base_mb"] = max(r["rss_peak_above_base_mb"], round((m.peak - m.base) / 2**20, 1))
                r["rss_peak_mb"] = round(m.peak / 2**20, 1)
                if dev.startswith("cuda"): r["cuda_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        mp, mc, mc2 = statistics.median(tp), statistics.median(tc), statistics.median(tc2)

        # forward passes alone, batches preloaded
        pre = [(lerobot_obs_batch(ds, b, cams)[0], frame_noise(pol, b) if expert else None) for b in batches]
        def fwd_plain():
            for obs, nz in pre: forward_only(pol, obs, expert, nz)
        def fwd_capture(stop_early=True):
            for obs, nz in pre: capture_batch(pol, obs, groups, cfg.layers, nz, stop_early)
        fwd_plain(); fwd_capture()
        fp, fc, fcn = [], [], []
        for _ in range(a.reps):
            fp.append(timed(fwd_plain)); fc.append(timed(fwd_capture)); fcn.append(timed(lambda: fwd_capture(False)))
        del pre
        # resident memory after every chunk of a 2N capture: flat when memory does not grow with the frames
        capture(2 * a.frames, on_chunk=lambda k: rss_by_chunk.append(PeakRSS.now() / 2**20))

        res = dict(size=a.size, params_m=round(sum(p.numel() for p in pol.parameters()) / 1e6, 2), device=dev, precision=a.precision,
                   layer=layer, depth=pol.config.vlm.depth, towers=a.towers, groups=list(cfg.groups), frames=a.frames, batch=a.batch,
                   samples_per_file=a.samples_per_file, num_workers=a.num_workers, reps=a.reps,
                   plain_frames_per_s=round(a.frames / mp, 1), capture_frames_per_s=round(a.frames / mc, 1),
                   ratio_end_to_end=round(mp / mc, 3),
                   capture_marginal_frames_per_s=round(a.frames / max(mc2 - mc, 1e-9), 1),
                   ratio_marginal=round(mp / max(mc2 - mc, 1e-9), 3), capture_fixed_s=round(max(0.0, 2 * mc - mc2), 3),
                   forward_plain_frames_per_s=round(a.frames / statistics.median(fp), 1),
                   ratio_forward_early_stop=round(statistics.median(fp) / statistics.median(fc), 3),
                   ratio_forward_full_pass=round(statistics.median(fp) / statistics.median(fcn), 3),
                   memory={str(k): v for k, v in mem.items()},
                   rss_after_chunk_mb=dict(first=round(rss_by_chunk[0], 1), last=round(rss_by_chunk[-1], 1),
                                           max=round(max(rss_by_chunk), 1), chunks=len(rss_by_chunk)), setup_s=round(setup_s, 1), threads=torch.get_num_threads(),
                   cpu=platform.processor() or platform.machine(), torch=torch.__version__)
        if dev.startswith("cuda"): res["gpu"] = torch.cuda.get_device_name()
        print(json.dumps(res))
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            with open(a.out, "a") as f: f.write(json.dumps(res) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
