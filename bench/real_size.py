"""Real pi0.5 sizes: seconds and peak memory of one inference, one FFN-probe batch and one residual-capture batch.

The model is `PolicyConfig(kind="pi05")` at its defaults, the real pi0.5: SigLIP So400m/14 at 224 px (27 blocks,
width 1152), the `gemma_2b` VLM (18 blocks, width 2048, MLP 16,384), the `gemma_300m` expert, the PaliGemma
vocabulary of 257,152 tokens; with pi05_libero's action horizon (10) and input format (three cameras, the prompt
padded to 200 tokens, so a prefix of 3 x 256 + 200 = 968 tokens). Random weights, N(0, 0.02) (norms at their
identity), built without the costly initialisation and filled in place, once per precision, each precision in a
fresh child process so one's memory never counts against the other's. Batch size 1 throughout.

- infer:     `Policy.infer`: the prefix pass through SigLIP and the VLM (building the KV cache), then 10 Euler steps of
             the expert; the process's first forward pass. `infer_again`: the same call once more.
- ffn_forward: the probe's forward part alone (`vlasteer.ffn.max_activations` on the batch), so that `ffn_probe` minus
             `ffn_forward` is what the vocabulary projection costs.
- ffn_probe: `vlasteer.ffn.probe_ffn` on one batch: the max |activation| of all 18 x 16,384 VLM FFN neurons (the prefix
             pass with a hook on every block), the top 10 neurons per layer, and their 180 value vectors projected
             through the 257,152 x 2048 unembedding (top 10 tokens each). Only the kept neurons are projected; the
             whole vocabulary is multiplied for each of them (the token space is a float32 copy of the embedding).
- capture:   `vlasteer.residuals.capture_batch` for the groups a residual run records, at every block: `instructions`
             (VLM, mean over the instruction) and `decision` (VLM, last token; expert, mean over the actions at the last
             denoising step), so the prefix pass and all 10 expert steps run with 18 + 18 + 18 hooks.

Memory: the process's resident memory sampled every 5 ms during each workload (`peak_rss_gb`) and its rise over the
resident memory just before (`rss_rise_gb`); the model's own bytes (`param_gb`); the peak while building
(`build.peak_rss_gb`); on CUDA, `torch.cuda.max_memory_allocated` (`cuda_peak_gb`).

Usage: python bench/real_size.py [--precision float32 bfloat16] [--device cpu|cuda] [--threads N]
       [--out bench/results/real_size.json] [--reduced]
The results file keeps one entry per (device, precision, reduced); a run replaces only its own entries, so a GPU run
adds to the CPU figures. `--reduced` runs the same code on the tiny config (seconds, a few hundred MB): the check
that the script works, not a measurement.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, threading, time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch

from vlasteer.cli import write_json
from vlasteer.policy import Policy, PolicyConfig, default_tokenizer, tiny_config

FORMAT = "vlasteer.bench.real_size/1"
WORKLOADS = ("infer", "infer_again", "ffn_forward", "ffn_probe", "capture")
TOP_K, TOP_N = 10, 10  # probe: neurons kept per layer, tokens per neuron
UNITS = "seconds: wall-clock; *_gb: GiB (2**30 bytes); peak_rss_gb: the whole process (python, torch and the libraries: ~1 GiB)"


def config(reduced: bool) -> PolicyConfig:
    "Real pi0.5 sizes with pi05_libero's horizon; `reduced`: the tiny config, same structure."
    return tiny_config("pi05", action_horizon=10) if reduced else PolicyConfig(kind="pi05", action_horizon=10, output_action_dim=7)


class PeakRSS:
    "Sample this process's resident memory every few milliseconds while the block runs; `peak` is the largest seen."
    def __init__(self, every: float = 0.005): self.every, self.peak, self._stop, self.p = every, 0, threading.Event(), psutil.Process()
    def _run(self):
        while not self._stop.is_set(): self.peak = max(self.peak, self.p.memory_info().rss); time.sleep(self.every)
    def __enter__(self):
        self.base = self.p.memory_info().rss; self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
    def __exit__(self, *a): self._stop.set(); self.t.join(); self.peak = max(self.peak, self.p.memory_info().rss)


def gb(n: float) -> float: return round(n / 2**30, 3)


def build(cfg: PolicyConfig, precision: str, device: str, seed: int = 0) -> Policy:
    "The policy at random weights, built in its final precision (no float32 copy of a bf16 model is ever filled)."
    from transformers.modeling_utils import no_init_weights
    cfg.precision = precision
    with no_init_weights(): pol = Policy(cfg, tokenizer=default_tokenizer())  # untouched memory: resident only once filled
    pol.to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for mod in pol.modules():
            for pname, p in mod.named_parameters(recurse=False):
                if isinstance(mod, torch.nn.LayerNorm): p.fill_(1.0 if pname == "weight" else 0.0)  # SigLIP's LayerNorms
                elif pname == "bias" or "RMSNorm" in type(mod).__name__: p.zero_()  # Gemma's RMSNorm scales by 1 + w
                else: p.normal_(0.0, 0.02, generator=g)
    return pol.eval()


def workloads(pol: Policy) -> dict:
    "The three workloads on one observation (batch 1), as callables."
    from vlasteer.ffn import ProbeConfig, max_activations, probe_ffn
    from vlasteer.residuals import CaptureConfig, capture_batch, frame_noise
    obs = pol.example_observation(batch_size=1)
    layers = tuple(range(pol.config.vlm.depth))
    groups = CaptureConfig(layers=layers, towers=("vlm", "expert")).token_groups
    return {"infer": lambda: pol.infer(obs), "infer_again": lambda: pol.infer(obs),
            "ffn_forward": lambda: max_activations(pol, [obs], "vlm"),
            "ffn_probe": lambda: probe_ffn(pol, [obs], "vlm", ProbeConfig(top_k_per_layer=TOP_K, top_n_tokens=TOP_N)),
            "capture": lambda: capture_batch(pol, obs, groups, layers, frame_noise(pol, [0]))}


def child(a) -> dict:
    "Build one precision and measure every workload (in this process)."
    if a.threads: torch.set_num_threads(a.threads)
    dev, cuda = a.device, a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available(): sys.exit(f"--device {dev}: CUDA is not available here")
    cfg = config(a.reduced)
    est = 3.3e9 * (2 if a.precision == "bfloat16" else 4) if not a.reduced else 0
    avail = psutil.virtual_memory().available
    if not cuda and est and avail < est * 1.25 + 2 * 2**30:
        sys.exit(f"only {gb(avail)} GB available; {a.precision} at real size needs about {gb(est * 1.25 + 2 * 2**30)} GB")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    with PeakRSS() as m:
        pol = build(cfg, a.precision, dev); sync()
    build_s = time.perf_counter() - t0
    n = sum(p.numel() for p in pol.parameters())
    out = dict(device=dev, precision=a.precision, reduced=a.reduced, threads=torch.get_num_threads(), params=n,
               param_gb=gb(sum(p.numel() * p.element_size() for p in pol.parameters())),
               build=dict(seconds=round(build_s, 1), peak_rss_gb=gb(m.peak)), workloads={})
    with torch.no_grad():
        for name, f in workloads(pol).items():
            if name not in a.workloads: continue
            if cuda: torch.cuda.reset_peak_memory_stats()
            sync()
            with PeakRSS() as m:
                t = time.perf_counter(); f(); sync(); s = time.perf_counter() - t
            r = dict(seconds=round(s, 3), peak_rss_gb=gb(m.peak), rss_rise_gb=gb(m.peak - m.base))
            if cuda: r["cuda_peak_gb"] = gb(torch.cuda.max_memory_allocated())
            out["workloads"][name] = r
            print(f"{a.precision} {name}: {r}", file=sys.stderr, flush=True)
    c = pol.config
    out["setup"] = dict(batch=1, prefix_tokens=len(c.cameras) * (c.vision.image_size // c.vision.patch_size) ** 2 + c.max_token_len,
                        cameras=len(c.cameras), image_size=c.vision.image_size, max_token_len=c.max_token_len,
                        action_horizon=c.action_horizon, num_steps=c.num_steps, vlm=vars(c.vlm), expert=vars(c.expert),
                        vocab_size=c.vocab_size, probe=dict(top_k_per_layer=TOP_K, top_n_tokens=TOP_N, projected=c.vlm.depth * TOP_K),
                        capture=dict(groups=["instructions/vlm", "decision/vlm", "decision/expert"], layers=c.vlm.depth))
    return out


def machine(device: str) -> dict:
    import transformers
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())
    m = dict(cpu=cpu, cores=os.cpu_count(), ram_gb=gb(psutil.virtual_memory().total),
             python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
             os=platform.platform())
    if device.startswith("cuda") and torch.cuda.is_available(): m["gpu"] = torch.cuda.get_device_name()
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "real_size.json"))
    ap.add_argument("--reduced", action="store_true", help="the tiny config: checks the script, measures nothing real")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: measure one precision, write JSON here
    a = ap.parse_args()
    if a.child:
        a.precision = a.precision[0]
        Path(a.child).write_text(json.dumps(child(a))); return
    out = Path(a.out)
    if not out.parent.is_dir(): sys.exit(f"output folder {out.parent} does not exist")
    runs = []
    for prec in a.precision:
        load = [round(x, 2) for x in os.getloadavg()]  # before the child: what else this machine was doing
        with tempfile.TemporaryDirectory() as d:
            res = Path(d) / "run.json"
            cmd = [sys.executable, __file__, "--child", str(res), "--precision", prec, "--device", a.device, "--workloads", *a.workloads]
            if a.threads: cmd += ["--threads", str(a.threads)]
            if a.reduced: cmd.append("--reduced")
            r = subprocess.run(cmd)
            if r.returncode: sys.exit(f"{prec} run failed (exit {r.returncode}); nothing written")
            run = json.loads(res.read_text())
        run["machine"] = {**machine(a.device), "load_average_before": load}
        run["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        runs.append(run)
    old = json.loads(out.read_text()) if out.is_file() else {}
    key = lambda r: (r["device"], r["precision"], r["reduced"])
    mine = {key(r) for r in runs}
    kept = [r for r in old.get("runs", []) if key(r) not in mine]
    extra = {k: v for k, v in old.items() if k not in ("format", "note", "units", "runs")}  # e.g. notes on earlier runs
    write_json(dict(format=FORMAT, note=__doc__.split("\n\n")[1].replace("\n", " "), units=UNITS, runs=kept + runs, **extra), out)
    for r in runs:
        print(f"{r['device']} {r['precision']}: {r['params'] / 1e9:.2f}B params, {r['param_gb']} GB; build {r['build']}")
        for w, v in r["workloads"].items(): print(f"  {w:12s} {v['seconds']:8.2f} s   peak {v['peak_rss_gb']:6.2f} GB (+{v['rss_rise_gb']:.2f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
