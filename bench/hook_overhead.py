"""Overhead of recording FFN activations during inference.

Runs, in one process on the same model and inputs, plain `infer` and `infer` while recording
`mlp.hook_post` max-|act| on every block of every tower (vision, vlm, expert: the expert fires at each
of the 10 denoising steps), interleaving the two so drift hits both alike, and reports the ratio of
median times. Usage: python bench/hook_overhead.py [--size tiny|mid|real] [--batch 8] [--reps 15]
"""
import argparse, json, os, platform, statistics, time
import torch
from vlasteer.hooks import hook_names, record
from vlasteer.policy import GemmaSize, Policy, PolicyConfig, VisionSize, default_tokenizer, default_vocab, tiny_policy

def build(size: str) -> Policy:
    if size == "tiny": return tiny_policy("pi05")
    if size == "mid":  # a few tens of millions of parameters: large enough that matmuls dominate on a CPU
        cfg = PolicyConfig(kind="pi05", paligemma_variant="custom", action_expert_variant="custom",
                           vision=VisionSize(width=384, depth=6, mlp_dim=1536, num_heads=6, patch_size=14, image_size=112),
                           vlm=GemmaSize(width=512, depth=8, mlp_dim=2048, num_heads=8, num_kv_heads=1, head_dim=64),
                           expert=GemmaSize(width=256, depth=8, mlp_dim=1024, num_heads=8, num_kv_heads=1, head_dim=64),
                           vocab_size=len(default_vocab()), action_dim=32, action_horizon=10, max_token_len=48,
                           cameras=("base_0_rgb", "left_wrist_0_rgb"), output_action_dim=7)
        return Policy(cfg, tokenizer=default_tokenizer()).eval()
    cfg = PolicyConfig(kind="pi05", action_horizon=10, max_token_len=48, output_action_dim=7, vocab_size=len(default_vocab()))
    return Policy(cfg, tokenizer=default_tokenizer()).eval()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="mid", choices=["tiny", "mid", "real"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    a = ap.parse_args()
    torch.manual_seed(0)
    pol = build(a.size).to(a.device).to_precision(a.precision)
    obs = pol.example_observation(batch_size=a.batch)
    names = hook_names(pol, sites=["mlp.hook_post"])
    def plain(): pol.infer(obs)
    def recorded():
        with record(pol, names, reduce="max_abs", device=None): pol.infer(obs)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    for f in (plain, recorded, plain, recorded): f()  # warm-up
    t_plain, t_rec = [], []
    for _ in range(a.reps):
        for f, ts in ((plain, t_plain), (recorded, t_rec)):
            sync(); t0 = time.perf_counter(); f(); sync(); ts.append(time.perf_counter() - t0)
    mp, mr = statistics.median(t_plain), statistics.median(t_rec)
    res = dict(size=a.size, batch=a.batch, device=a.device, precision=a.precision, hooks=len(names),
               params=sum(p.numel() for p in pol.parameters()), plain_s=round(mp, 5), recorded_s=round(mr, 5),
               ratio=round(mr / mp, 3), samples_per_s=round(a.batch / mp, 2), threads=torch.get_num_threads(),
               cpu=platform.processor() or platform.machine())
    if a.device.startswith("cuda"): res["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(res))
    if a.out:
        with open(a.out, "a") as f: f.write(json.dumps(res) + "\n")

if __name__ == "__main__":
    main()
