"""vlasteer's `record` against its peers: nnsight 0.8.1 and bare PyTorch hooks, on one policy and one batch.

Timed: one full `policy.infer(obs)` (prepare, SigLIP, the VLM prefix pass, then `num_steps` expert passes), four
ways, interleaved, the order rotating every rep, so drift hits all alike:
  plain     no recording;
  vlasteer  `record(policy, names, reduce=None, device=None, dtype=None)`;
  nnsight   `NNsight(twin).trace(obs, fn="infer")` saving the same module inputs/outputs (the expert's per step,
            through `tracer.iter`); `twin` is a second policy with the same weights, because wrapping replaces every
            module's `forward` for good (`nnsight_idle`: plain `infer` on the wrapped twin, tracing nothing);
  bare      `register_forward_pre_hook` / `register_forward_hook` on the same modules, appending the tensor.
Recorded: `mlp.hook_post` (what `down_proj` receives) of every VLM and expert block (the expert fires once per
denoising step) and the middle VLM block's `hook_resid_post`: full tensors, detached, left where the model put them
(no copy, no reduction). vlasteer keeps the positions its valid-token mask covers, `[:, :last valid + 1]` (a view);
all three are checked equal on those before timing. Memory: `held_mb`, the distinct storages each way holds after
a pass (any device); on CUDA also `peak_mb`, max_memory_allocated during one pass above what was allocated before
it. A CPU process's peak RSS is left out: it is one number per process and would not tell the ways apart.
Usage: python bench/peers.py [--size tiny|mid|real] [--batch 8] [--reps 20] [--out bench/results/peers.json]
"""
import argparse, json, platform, statistics, time
from pathlib import Path
import nnsight, torch
from hook_overhead import build  # bench/ is the script's folder, so first on sys.path
from vlasteer.cli import read_json, write_json
from vlasteer.hooks import hook_names, n_blocks, record, resolve_hook

def targets(pol) -> tuple[list, list]:
    "Hook names with module paths and 'input'|'output', in firing order: the VLM's, then one expert pass's."
    mid = n_blocks(pol, "vlm") // 2
    vlm = [n for i in range(n_blocks(pol, "vlm")) for n in [f"vlm.blocks.{i}.mlp.hook_post"]
           + ([f"vlm.blocks.{mid}.hook_resid_post"] if i == mid else [])]
    paths = {m: p for p, m in pol.named_modules()}
    def row(n): _, mod, kind = resolve_hook(pol, n); return n, paths[mod], kind
    return [row(n) for n in vlm], [row(n) for n in hook_names(pol, towers=["expert"], sites=["mlp.hook_post"])]

def held_mb(ts) -> float:
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in ts}.values()) / 2**20

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="mid", choices=["tiny", "mid", "real"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--out", default="bench/results/peers.json",
                    help="keeps one run per (size, batch, device, precision, threads)")
    a = ap.parse_args()
    pols = []
    for _ in range(2): torch.manual_seed(0); pols.append(build(a.size).to(a.device).to_precision(a.precision))
    pol, twin_pol = pols
    assert all(torch.equal(p, q) for p, q in zip(pol.state_dict().values(), twin_pol.state_dict().values()))
    obs, steps = pol.example_observation(batch_size=a.batch), pol.config.num_steps
    vlm_t, exp_t = targets(pol)
    names = [n for n, *_ in vlm_t + exp_t]
    twin = nnsight.NNsight(twin_pol)

    def plain(): pol.infer(obs)
    def idle(): twin._module.infer(obs)  # the wrapped twin itself, no trace
    def vlasteer():
        with record(pol, names, reduce=None, device=None, dtype=None) as cache: pol.infer(obs)
        return [r.acts for r in cache.records], [r.mask for r in cache.records]
    def nns():
        acts = []
        with twin.trace(obs, fn="infer") as tracer:  # traces `twin_pol.infer(obs)`
            acts.extend(nnsight.save(twin.get(f"{p}.{k}")) for _, p, k in vlm_t)
            for _ in tracer.iter[0:steps]:
                acts.extend(nnsight.save(twin.get(f"{p}.{k}")) for _, p, k in exp_t)
        return acts
    def bare():
        acts, hs = [], []
        for _, p, kind in vlm_t + exp_t:
            m = pol.get_submodule(p)
            if kind == "input": hs.append(m.register_forward_pre_hook(lambda m, args: acts.append(args[0].detach())))
            else: hs.append(m.register_forward_hook(lambda m, args, out: acts.append(out.detach())))
        try: pol.infer(obs)
        finally:
            for h in hs: h.remove()
        return acts

    # the three record the same tensors: same count and order (VLM, then each step's expert), equal values
    (va, vm), na, ba = vlasteer(), nns(), bare()
    firings = len(vlm_t) + steps * len(exp_t)
    assert len(va) == len(na) == len(ba) == firings, (len(va), len(na), len(ba), firings)
    keep = int(pol.hook_context["vlm"].spans["valid"].any(0).nonzero().max()) + 1  # prefix up to the last valid
    for i, (v, n, b) in enumerate(zip(va, na, ba)):
        assert v.shape[1] == (keep if i < len(vlm_t) else b.shape[1]) and torch.equal(v, b[:, :v.shape[1]])
        torch.testing.assert_close(n, b, rtol=1e-5, atol=1e-6)  # the twin: same weights, same inputs
    held = dict(vlasteer=held_mb(va + vm), nnsight=held_mb(na), bare=held_mb(ba))
    del va, vm, na, ba

    ways = dict(plain=plain, vlasteer=vlasteer, nnsight=nns, bare=bare, nnsight_idle=idle)
    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for f in list(ways.values()) * 2: f()  # warm-up
    times = {k: [] for k in ways}
    order = list(ways)
    for r in range(a.reps):
        for k in order[r % len(order):] + order[:r % len(order)]:
            sync(); t0 = time.perf_counter(); out = ways[k](); sync(); times[k].append(time.perf_counter() - t0)
            del out
    med = {k: statistics.median(v) for k, v in times.items()}
    res = dict(size=a.size, batch=a.batch, device=a.device, precision=a.precision, threads=torch.get_num_threads(),
               reps=a.reps, hooks=len(names), firings=firings, num_steps=steps,
               params=sum(p.numel() for p in pol.parameters()), what="infer; full tensors, no copy",
               **{f"{k}_s": round(v, 5) for k, v in med.items()},
               **{f"{k}_over_plain": round(med[k] / med["plain"], 3) for k in ways if k != "plain"},
               vlasteer_over_bare=round(med["vlasteer"] / med["bare"], 3),
               vlasteer_over_bare_paired=round(statistics.median(
                   v / b for v, b in zip(times["vlasteer"], times["bare"])), 3),
               held_mb={k: round(v, 2) for k, v in held.items()},
               nnsight=nnsight.__version__, torch=torch.__version__, cpu=platform.processor() or platform.machine())
    if cuda:
        peak = {}
        for k in ("plain", "vlasteer", "nnsight", "bare"):
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
            out = ways[k](); torch.cuda.synchronize()
            peak[k] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1); del out
        res["peak_mb"] = peak
    print(json.dumps(res))
    out, key = Path(a.out), lambda r: (r["size"], r["batch"], r["device"], r["precision"], r["threads"])
    old = read_json(out).get("runs", []) if out.is_file() else []
    write_json(dict(bench="peers", note=__doc__.split("\n\n")[0], runs=[r for r in old if key(r) != key(res)] + [res]),
               out)

if __name__ == "__main__":
    main()
