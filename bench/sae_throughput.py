"""Throughput of vlasteer.sae: streamed SAE encoding, and SAE training steps.

Encoding: `latent_mean` streams N residuals of width D through an SAELens SAE of S latents in chunks of B
rows (the residuals come from a generator cycling a fixed pool of chunks, so nothing of size N is ever
held), against a plain `x @ W_enc` over the same chunks. Reports residuals/s of both, their ratio, the
memory high-water mark reached while streaming (CPU: process RSS; GPU: allocator peak) and the size the
dense latent matrix would have had.

Training: `vlasteer.sae.train_sae` against SAELens's `SAETrainer(...).fit()` called directly with the same
SAE config, trainer config and batch iterator; reports optimiser steps/s of both (fit only; `train_sae`'s
wall time including its save-and-reload into an inference SAE is reported too).

Usage: python bench/sae_throughput.py [--n 16384] [--d-in 2048] [--d-sae 16384] [--batch 4096]
       [--train-d-in 64] [--train-d-sae 256] [--train-steps 300] [--train-batch 64] [--threads N] [--device cuda]
       [--skip-encode] [--skip-train] [--out results.jsonl]
"""
import argparse, json, os, platform, resource, statistics, time
os.environ.setdefault("WANDB_MODE", "disabled")
import torch
from vlasteer.sae import SAETrainConfig, activation_batches, latent_mean, sae_lens, train_sae


def rss_mb() -> float:
    "High-water mark of this process's resident memory, MiB (Linux reports KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream(pool: list, n: int):
    "n rows as chunks cycled from `pool` (a bounded set of tensors)."
    i, left = 0, n
    while left > 0:
        c = pool[i % len(pool)][:left]
        yield c; left -= len(c); i += 1


def bench_encode(a, sl, sync) -> dict:
    torch.manual_seed(0)
    sae = sl.StandardSAE(sl.StandardSAEConfig(d_in=a.d_in, d_sae=a.d_sae, device=a.device)).requires_grad_(False)
    with torch.no_grad():  # a plausible SAE: decoder rows of norm 1, encoder its transpose, a small negative bias
        sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True); sae.W_enc.copy_(sae.W_dec.T); sae.b_enc.fill_(-0.05)
    pool = [torch.randn(a.batch, a.d_in, device=a.device) for _ in range(4)]
    W = sae.W_enc.detach()
    def plain():
        acc = torch.zeros(a.d_sae, device=a.device)
        with torch.no_grad():
            for c in stream(pool, a.n): acc += (c @ W).sum(0)
        return acc
    def ours(): return latent_mean(sae, stream(pool, a.n), batch_size=a.batch, device=a.device)
    # warm-up on one chunk each
    latent_mean(sae, pool[0], batch_size=a.batch, device=a.device); (pool[0] @ W).sum(); sync()
    if a.device.startswith("cuda"): torch.cuda.reset_peak_memory_stats()
    rss0 = rss_mb()
    t_plain, t_ours = [], []
    for _ in range(a.reps):
        for f, ts in ((plain, t_plain), (ours, t_ours)):
            sync(); t0 = time.perf_counter(); f(); sync(); ts.append(time.perf_counter() - t0)
    mp, mo = statistics.median(t_plain), statistics.median(t_ours)
    res = dict(part="encode", n=a.n, d_in=a.d_in, d_sae=a.d_sae, batch=a.batch, reps=a.reps,
               plain_matmul_rows_per_s=round(a.n / mp), sae_stream_rows_per_s=round(a.n / mo), ratio=round(mo / mp, 3),
               seconds_per_million=round(mo * 1e6 / a.n, 1), dense_latents_would_be_gb=round(a.n * a.d_sae * 4 / 2**30, 2),
               pool_gb=round(4 * a.batch * a.d_in * 4 / 2**30, 3), rss_before_mb=round(rss0), rss_peak_mb=round(rss_mb()))
    if a.device.startswith("cuda"): res["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


def bench_train(a, sl, sync) -> dict:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    import sae_lens.training.sae_trainer as st, functools
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.train_rows, a.train_d_in, generator=g) @ torch.randn(a.train_d_in, a.train_d_in, generator=g) / a.train_d_in ** 0.5
    cfg = SAETrainConfig(d_sae=a.train_d_sae, l1_coefficient=1.0, steps=a.train_steps, batch_size=a.train_batch, device=a.device, init_b_dec="zeros")
    train_sae(x, SAETrainConfig(**{**cfg.to_dict(), "steps": 5}))  # warm-up
    sync(); t0 = time.perf_counter(); _, info = train_sae(x, cfg); sync(); ours_wall = time.perf_counter() - t0
    # SAELens's own loop, run directly with the same configs and batches
    torch.manual_seed(cfg.seed)
    sae = sl.StandardTrainingSAE(sl.StandardTrainingSAEConfig(d_in=a.train_d_in, d_sae=a.train_d_sae, l1_coefficient=1.0, device=a.device))
    tcfg = SAETrainerConfig(total_training_samples=cfg.steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size, lr=cfg.lr,
                            lr_end=cfg.lr / 10, lr_scheduler_name=cfg.lr_scheduler, device=a.device, dead_feature_window=cfg.dead_feature_window,
                            feature_sampling_window=cfg.steps, logger=LoggingConfig(log_to_wandb=False))
    trainer = sl.SAETrainer(tcfg, sae, activation_batches(x, cfg.batch_size, cfg.seed))
    saved = st.tqdm; st.tqdm = functools.partial(saved, disable=True)
    try:
        sync(); t0 = time.perf_counter(); trainer.fit(); sync(); direct = time.perf_counter() - t0
    finally: st.tqdm = saved
    return dict(part="train", d_in=a.train_d_in, d_sae=a.train_d_sae, batch=a.train_batch, steps=a.train_steps,
                vlasteer_steps_per_s=info["steps_per_s"], vlasteer_wall_steps_per_s=round(a.train_steps / ours_wall, 2),
                saelens_direct_steps_per_s=round(a.train_steps / direct, 2), ratio=round(info["seconds"] / direct, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=None, help="residuals to encode (default: 1M on GPU, 16384 on CPU)")
    ap.add_argument("--d-in", type=int, default=2048); ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4096, help="rows per encoded chunk")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--train-d-in", type=int, default=64); ap.add_argument("--train-d-sae", type=int, default=256)
    ap.add_argument("--train-steps", type=int, default=300); ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--train-rows", type=int, default=4096)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--skip-encode", action="store_true"); ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--out", default=None, help="append results as JSON lines to this file")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.n is None: a.n = 1_000_000 if a.device.startswith("cuda") else 16_384
    sl = sae_lens()
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    env = dict(device=a.device, threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(), torch=torch.__version__)
    if a.device.startswith("cuda"): env["gpu"] = torch.cuda.get_device_name()
    results = []
    if not a.skip_encode: results.append({**bench_encode(a, sl, sync), **env})
    if not a.skip_train: results.append({**bench_train(a, sl, sync), **env})
    for r in results:
        print(json.dumps(r))
        if a.out:
            with open(a.out, "a") as f: f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
