"""Scale of the activation-clustering workflow at real Gemma-2B size, on synthetic weights.

`--what cluster` (default): k-means on 18 x 16,384 value vectors of width 2048 (float32, 2.4 GB) exactly as
`vlasteer_cluster` runs it: L2-normalise in place, `kmeans` (MiniBatchKMeans above 20,000 vectors), then
`cluster_quality` (silhouette and Davies-Bouldin on a 5,000-vector sample). The vectors are a seeded mixture
of 64 directions plus noise, so k-means has structure to find. Reports seconds and peak resident memory of
the process (data included), with BLAS limited to `--threads` cores.

`--what project`: the whole-layer vocabulary projection (`vlasteer.ffn.vocab_projection`) of `--neurons`
value vectors of width 2048 against a 257,152-token embedding (random), reporting seconds, peak memory and
the time extrapolated to all 18 x 16,384 neurons on this device.

Usage: python bench/cluster_scale.py [--what cluster|project] [--k 10] [--threads 2] [--out bench/results/x.jsonl]
"""
import argparse, json, os, platform, resource, time


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kB


def synthetic_vectors(n: int, d: int, centers: int = 64, seed: int = 0, chunk: int = 16384):
    "A [n d] float32 mixture: one of `centers` random directions (norm ~1) per row plus isotropic noise, built in place."
    import numpy as np
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((centers, d), dtype=np.float32) / np.sqrt(d)
    X = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        rng.standard_normal((m, d), dtype=np.float32, out=X[s:s + m])
        X[s:s + m] *= 0.6 / np.sqrt(d)
        X[s:s + m] += C[rng.integers(0, centers, m)]
    return X


def bench_cluster(a) -> dict:
    from threadpoolctl import threadpool_limits
    from vlasteer.clusters import ClusterConfig, cluster_quality, kmeans, normalize_rows
    n = a.layers * a.d_mlp
    t0 = time.perf_counter()
    X = synthetic_vectors(n, a.width, seed=a.seed)
    t_gen = time.perf_counter() - t0
    rss_data = peak_rss_gb()
    cfg = ClusterConfig(num_clusters=a.k, max_iterations=a.max_iterations, random_seed=a.seed)
    with threadpool_limits(a.threads):
        t0 = time.perf_counter()
        normalize_rows(X, out=X)
        km = kmeans(X, cfg)
        t_fit = time.perf_counter() - t0
        q = cluster_quality(X, km.labels, a.seed)
        t_total = time.perf_counter() - t0
    return dict(what="cluster", vectors=n, width=a.width, k=a.k, algorithm=km.algorithm, n_iter=km.n_iter,
                threads=a.threads, generate_s=round(t_gen, 2), normalize_fit_s=round(t_fit, 2),
                quality_s=round(t_total - t_fit, 2), total_s=round(t_total, 2), silhouette=round(q["silhouette"], 4),
                data_gb=round(X.nbytes / 2**30, 2), rss_after_data_gb=round(rss_data, 2), peak_rss_gb=round(peak_rss_gb(), 2),
                sizes_min_max=[min(q["sizes"].values()), max(q["sizes"].values())])


def bench_project(a) -> dict:
    import torch
    from vlasteer.ffn import TokenSpace, vocab_projection
    dev = a.device
    torch.set_num_threads(a.threads)
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    E = torch.randn(a.vocab, a.width, generator=g).mul_(0.02).to(dev)
    space = TokenSpace(E, torch.zeros(a.width, device=dev), None)
    W = torch.randn(a.width, a.neurons, generator=g).mul_(0.02)
    if dev.startswith("cuda"): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    n = sum(1 for _ in vocab_projection([(0, W)], space, top_n=10))
    if dev.startswith("cuda"): torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    res = dict(what="project", device=dev, vocab=a.vocab, width=a.width, neurons=n, threads=a.threads, seconds=round(dt, 2),
               neurons_per_s=round(n / dt, 1), extrapolated_all_s=round(dt * a.layers * a.d_mlp / n, 1), peak_rss_gb=round(peak_rss_gb(), 2))
    if dev.startswith("cuda"): res["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="cluster", choices=["cluster", "project"])
    ap.add_argument("--layers", type=int, default=18)
    ap.add_argument("--d-mlp", type=int, default=16384)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=257_152)
    ap.add_argument("--neurons", type=int, default=512, help="--what project: value vectors to project")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    res = bench_cluster(a) if a.what == "cluster" else bench_project(a)
    res["cpu"] = platform.processor() or platform.machine()
    res["cores_visible"] = os.cpu_count()
    print(json.dumps(res))
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "a") as f: f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
