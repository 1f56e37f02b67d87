"""Peak memory of SAE training as the residual rows grow: streamed from chunk files on disk, against in memory.

Writes N rows of width D (float32, `--samples-per-file` rows per chunk file, the layout `vlasteer_save_residuals`
writes) into a temporary folder once, then, each in a fresh process so that its peak RSS is its own:

- `stream_train`: `vlasteer.sae.train_sae` on `disk_rows(...)` of the first n rows (`--steps` optimiser steps), the
  path `vlasteer_train_sae --stream` / `--run-dir` takes. Reports peak RSS, seconds, steps/s and the rows it read.
- `stream_full_pass`: `stream_batches` over the same files until every row has been read once (no model): what a
  training run of n / batch steps reads, at the memory the buffer allows.
- `in_memory_train`: `train_sae` on the same rows loaded first (`load_slices`, as without `--stream`), at the sizes
  given by `--in-memory-rows` (only while the machine has the memory to spare).
- `stream_train` with the real SAE width (`--real-d-sae`, few steps) at the largest n: the model's own share.

The synthetic rows are a rank-64 signal plus noise: the bench measures memory, not what the SAE learns. The temporary
files are deleted at the end. The result (JSON) states the extrapolation to 10 M rows and what was not measured.

Usage: python bench/sae_memory.py [--rows 100000 250000 500000 2000000] [--d-in 2048] [--d-sae 2048] [--steps 200]
       [--batch 128] [--buffer-rows 65536] [--in-memory-rows 100000 250000] [--real-d-sae 16384] [--real-steps 5]
       [--tmp-dir DIR] [--modes stream_train stream_full_pass in_memory_train] [--merge] [--out bench/results/sae_memory.json]
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    "High-water mark of this process's resident memory, MiB (Linux reports KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_mb() -> float:
    "Memory the machine can still give (MemAvailable), MiB."
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"): return int(line.split()[1]) / 1024
    return float("nan")


def write_chunks(folder: Path, n: int, d: int, per_file: int) -> list[Path]:
    "n rows of width d as chunk files (residuals float32, index int64) in `folder`; one file in memory at a time."
    import torch
    from vlasteer.residuals import write_tensors
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(64, d, generator=g) / 8
    files = []
    for k, s in enumerate(range(0, n, per_file)):
        m = min(per_file, n - s)
        x = torch.randn(m, 64, generator=g) @ basis + 0.1 * torch.randn(m, d, generator=g)
        files.append(write_tensors(folder / f"layer00_chunk{k:04d}.safetensors", {"residuals": x, "index": torch.arange(s, s + m)},
                                   {"concept": f"chunk{k:04d}", "layer": 0, "hook": "vlm.blocks.0.hook_resid_post"}))
    return files


def child(a) -> dict:
    "One measurement, in this (fresh) process."
    import torch
    torch.set_num_threads(a.threads)
    from vlasteer.sae import SAETrainConfig, disk_rows, stream_batches, train_sae, sae_lens
    from vlasteer.slices import load_slices
    sae_lens()  # import SAELens before the baseline: its import is not the data's
    base = rss_mb()
    src = disk_rows(a.folder)
    read = [0]
    orig = src.read
    def counted(i, s, e):
        x = orig(i, s, e); read[0] += len(x); return x
    src.read = counted
    t0 = time.perf_counter()
    res = dict(mode=a.mode, rows=src.n, files=len(src.files), d_in=src.d_model, rss_after_imports_mb=round(base))
    if a.mode == "stream_full_pass":
        it = stream_batches(src, a.batch, 0, a.buffer_rows)
        for _ in range(-(-src.n // a.batch)): next(it)
        res.update(batches=-(-src.n // a.batch))
    else:
        cfg = SAETrainConfig(d_sae=a.d_sae, l1_coefficient=1.0, steps=a.steps, batch_size=a.batch, lr=1e-3, seed=0)
        data = src if a.mode == "stream_train" else load_slices(a.folder)
        _, info = train_sae(data, cfg, buffer_rows=a.buffer_rows)
        res.update(d_sae=a.d_sae, steps=info["steps"], steps_per_s=info["steps_per_s"], train_seconds=info["seconds"],
                   model_params_mb=round(2 * a.d_sae * src.d_model * 4 / 2**20, 1))
    res.update(seconds=round(time.perf_counter() - t0, 1), rows_read=read[0] if a.mode != "in_memory_train" else src.n,
               buffer_rows=a.buffer_rows if a.mode != "in_memory_train" else None, peak_rss_mb=round(rss_mb()))
    return res


def measure(a, folder: Path, mode: str, d_sae: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--folder", str(folder), "--d-sae", str(d_sae), "--steps", str(steps),
           "--batch", str(a.batch), "--buffer-rows", str(a.buffer_rows), "--threads", str(a.threads)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0: raise SystemExit(f"{mode} on {folder.name} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps(out), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 250_000, 500_000, 2_000_000])
    p.add_argument("--d-in", type=int, default=2048)
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--buffer-rows", type=int, default=1 << 16)
    p.add_argument("--samples-per-file", type=int, default=4096)
    p.add_argument("--in-memory-rows", type=int, nargs="*", default=[100_000, 250_000])
    p.add_argument("--real-d-sae", type=int, default=16384)
    p.add_argument("--real-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tmp-dir", default=None)
    p.add_argument("--modes", nargs="+", default=["stream_train", "stream_full_pass", "in_memory_train"])
    p.add_argument("--merge", action="store_true", help="keep the measurements of --out that this run does not repeat")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "sae_memory.json"))
    p.add_argument("--child", action="store_true"); p.add_argument("--mode"); p.add_argument("--folder")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a))); return
    import torch
    sizes = sorted(a.rows)
    need_gb = sizes[-1] * a.d_in * 4 / 2**30
    tmp = Path(tempfile.mkdtemp(prefix="vlasteer_sae_memory_", dir=a.tmp_dir))
    free_gb = shutil.disk_usage(tmp).free / 2**30
    if free_gb < need_gb + 10: raise SystemExit(f"{tmp}: {free_gb:.0f} GB free, {need_gb:.0f} GB needed (+10 spare); lower --rows")
    rows, t0 = [], time.perf_counter()
    try:
        t = time.perf_counter()
        files = write_chunks(tmp / "all", sizes[-1], a.d_in, a.samples_per_file)
        write_s = time.perf_counter() - t
        print(f"wrote {sizes[-1]:,} rows x {a.d_in} ({need_gb:.1f} GB, {len(files)} files) in {write_s:.0f}s", flush=True)
        for n in sizes:  # the first n rows, as a folder of links to the chunk files
            f = tmp / f"rows{n}"; f.mkdir()
            for q in files[:-(-n // a.samples_per_file)]: (f / q.name).symlink_to(q)
            for mode in ("stream_train", "stream_full_pass"):
                if mode in a.modes: rows.append(measure(a, f, mode, a.d_sae, a.steps))
            if n in a.in_memory_rows and "in_memory_train" in a.modes:
                need = 5 * n * a.d_in * 4 / 2**20  # measured: about 4.6 x the rows' bytes, plus the imports
                if available_mb() > need + 4096: rows.append(measure(a, f, "in_memory_train", a.d_sae, a.steps))
                else: rows.append(dict(mode="in_memory_train", rows=n, skipped=f"needs about {need / 1024:.1f} GB; {available_mb() / 1024:.1f} GB available"))
        if a.real_d_sae and "stream_train" in a.modes:
            rows.append(measure(a, tmp / f"rows{sizes[-1]}", "stream_train", a.real_d_sae, a.real_steps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    earlier = json.loads(Path(a.out).read_text()) if a.merge and Path(a.out).is_file() else None
    if earlier:  # keep the earlier measurements of other (mode, rows, width)
        key = lambda r: (r["mode"], r["rows"], r.get("d_sae"))
        new = {key(r) for r in rows}
        redone = {r["mode"] for r in rows}
        kept = [r for r in earlier["results"] if key(r) not in new and not ("skipped" in r and r["mode"] in redone)]
        rows = sorted(kept + rows, key=lambda r: (r["rows"], r["mode"], r.get("d_sae") or 0))
    # the extrapolation: a least-squares line of peak RSS against rows, per mode
    def fit(rs):
        if len(rs) < 2: return None
        xs, ys = [r["rows"] / 1e6 for r in rs], [r["peak_rss_mb"] for r in rs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        return dict(mb_per_million_rows=round(k, 1), intercept_mb=round(my - k * mx), spread_mb=max(ys) - min(ys))
    target, data_gb = 10_000_000, 10_000_000 * a.d_in * 4 / 2**30
    ext = dict(target_rows=target, d_in=a.d_in, data_on_disk_gb=round(data_gb, 1))
    for mode in ("stream_train", "stream_full_pass", "in_memory_train"):
        rs = [r for r in rows if r["mode"] == mode and "peak_rss_mb" in r and r.get("d_sae", a.d_sae) == a.d_sae]
        f = fit(rs)
        if not f: continue
        if mode == "in_memory_train": at = f["intercept_mb"] + f["mb_per_million_rows"] * target / 1e6
        else:  # streamed: the highest peak measured, plus the fitted growth if there is any (within the spread it is noise)
            at = max(r["peak_rss_mb"] for r in rs) + max(0.0, f["mb_per_million_rows"]) * (target - max(r["rows"] for r in rs)) / 1e6
        ext[mode] = dict(**f, measured_rows=[r["rows"] for r in rs], peak_at_target_mb=round(at))
    real = [r for r in rows if r["mode"] == "stream_train" and r.get("d_sae") == a.real_d_sae]
    if real: ext["stream_train_real_width"] = dict(d_sae=a.real_d_sae, rows=real[0]["rows"], steps=real[0]["steps"], peak_rss_mb=real[0]["peak_rss_mb"])
    out = dict(bench="sae_memory", when=time.strftime("%Y-%m-%d %H:%M:%S"), machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
               torch=torch.__version__, threads=a.threads, memory_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)),
               config=dict(d_in=a.d_in, d_sae=a.d_sae, steps=a.steps, batch=a.batch, buffer_rows=a.buffer_rows,
                           samples_per_file=a.samples_per_file, real_d_sae=a.real_d_sae, real_steps=a.real_steps),
               write_seconds=round(write_s, 1), total_seconds=round(time.perf_counter() - t0, 1) + (earlier or {}).get("total_seconds", 0),
               results=rows, extrapolation=ext,
               measured=("peak RSS of one process per row: training a few hundred steps on n rows streamed from chunk files, "
                         "one streamed pass reading all n rows, and training on the n rows loaded in memory; on this CPU only. The machine is "
                         "shared (2 cores, other jobs running): seconds and steps/s vary with its load between rows, the peaks do not"),
               not_measured=(f"{target:,} rows themselves ({data_gb:.0f} GB of chunks: more disk than this machine spares), the time "
                             "of a full training run over them, GPU memory (--device cuda was not run here), and page-cache pressure "
                             "on other processes while the files are read"))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(ext, indent=1))


if __name__ == "__main__":
    main()
