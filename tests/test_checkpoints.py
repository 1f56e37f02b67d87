"""Checkpoints as their producers write them: openpi's PyTorch converter and LeRobot 0.4's `save_pretrained`.

Every fixture is made with the producer's own saving code, not a hand-written key list:

- openpi (`examples/convert_jax_model_to_pytorch.py`): the module tree of `PI0Pytorch` (vlasteer's, which ties
  PaliGemma's `lm_head` to the token embedding as openpi's does, plus the expert's `lm_head` that openpi's
  `GemmaForCausalLM` keeps), cast whole to the converter's precision (`pi0_model.to(torch.bfloat16)`), saved with
  `safetensors.torch.save_model` (which writes a tied group once, under one name), the converter's five-key
  `config.json`, and the `assets/<asset id>/norm_stats.json` tree it copies.
- LeRobot: lerobot's own `PI05Config` / `PI0Config` write `config.json`, and lerobot's own
  `make_pi05_pre_post_processors` / `make_pi0_pre_post_processors` pipelines write the processor files with the
  normaliser statistics. The weights: `PI05Policy` cannot be built here (its model checks for openpi's patched
  transformers and accepts only the real Gemma sizes), so its tree (`self.model` = the openpi tree) is wrapped the
  way `PI05Policy` holds it and saved with the same `save_model` that `PreTrainedPolicy._save_pretrained` calls.
"""
import copy, json, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from vlasteer.policy import ASSETS, NormStats, Policy, tiny_policy
from vlasteer.checkpoints import TIED_KEYS, load_policy, policy_from_cli

from conftest import run_entry_point

LM_HEAD, EMBED = next(iter(TIED_KEYS.items()))
TOKENIZER = ASSETS / "tokenizer.json"


def reference(kind: str = "pi05", seed: int = 0) -> Policy:
    "A small policy with named Gemma variants (openpi's `dummy`), so a producer's config.json can describe it."
    return tiny_policy(kind, seed=seed, paligemma_variant="dummy", action_expert_variant="dummy", vlm=None, expert=None)


def stats_for(rng_seed: int = 0, state_dim: int = 8, action_dim: int = 7) -> dict:
    rng = np.random.default_rng(rng_seed)
    return {"state": NormStats.of(rng.uniform(-2, 2, (200, state_dim))), "actions": NormStats.of(rng.normal(0.3, 2.0, (200, action_dim)))}


def overrides(pol: Policy) -> dict:
    "What neither producer's config.json says: our cameras and prompt length, LIBERO's 7 action dims, the tokenizer."
    c = pol.config
    return dict(cameras=c.cameras, max_token_len=c.max_token_len, output_action_dim=7, tokenizer_path=TOKENIZER)


def openpi_tree(policy: Policy) -> nn.Module:
    "`policy`'s modules as openpi's PI0Pytorch holds them: the expert is a GemmaForCausalLM without embed_tokens."
    m = copy.deepcopy(policy)  # deepcopy keeps the lm_head / embed_tokens tie
    m.paligemma_with_expert.gemma_expert.lm_head = nn.Linear(m.config.expert.width, m.config.vocab_size, bias=False)
    return m


def write_assets(out: Path, stats: dict, ids=("physical-intelligence/libero",)):
    "openpi's `normalize.save` per asset id (`{\"norm_stats\": ...}`, indent 2), as the converter copies `assets/`."
    for i in ids:
        (out / "assets" / i).mkdir(parents=True)
        (out / "assets" / i / "norm_stats.json").write_text(json.dumps({"norm_stats": {k: v.to_dict() for k, v in stats.items()}}, indent=2))


def write_openpi(policy: Policy, out: Path, precision: str = "bfloat16", names: str = "save_model", stats: dict | None = None,
                 ids=("physical-intelligence/libero",)) -> Path:
    """`policy` as openpi's converter writes it. `names`: `save_model` (the converter: the tied pair under one name),
    `embed` (the pair under the embedding's name only, as vlasteer's save_policy writes it), `both` (every name, cloned)."""
    m = openpi_tree(policy).to(torch.bfloat16 if precision == "bfloat16" else torch.float32)
    out.mkdir()
    if names == "save_model": save_model(m, str(out / "model.safetensors"))
    else:
        sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items() if not (names == "embed" and k == LM_HEAD)}
        save_file(sd, str(out / "model.safetensors"))
    c = policy.config
    (out / "config.json").write_text(json.dumps(dict(action_dim=c.action_dim, action_horizon=c.action_horizon,
                                                     paligemma_variant=c.paligemma_variant, action_expert_variant=c.action_expert_variant,
                                                     precision=precision), indent=2))
    if stats: write_assets(out, stats, ids)
    return out


def expected_policy(policy: Policy, file: Path, precision: str, prefix: str = "") -> Policy:
    "What the producer's loader gets from `file`: `safetensors.torch.load_model` (openpi's) into the producer's tree."
    m = openpi_tree(policy)
    target = m
    if prefix: target = nn.Module(); target.model = m
    missing, unexpected = load_model(target, str(file), strict=False)  # strict refuses a file holding both tied names
    assert not missing and set(unexpected) <= {prefix + EMBED}, (missing, unexpected)
    return m.to_precision(precision)


def obs_of(pol: Policy) -> dict: return pol.example_observation(batch_size=2, seed=3)


# ---------------------------------------------------------------- openpi

@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
@pytest.mark.parametrize("names", ["save_model", "embed", "both"])
def test_openpi_checkpoint(tmp_path, precision, names):
    ref, st = reference(), stats_for()
    ck = write_openpi(ref, tmp_path / "pi05_libero", precision, names, st)
    keys = set(load_file(str(ck / "model.safetensors")))
    want = {"save_model": {LM_HEAD}, "embed": {EMBED}, "both": {LM_HEAD, EMBED}}[names]
    assert {LM_HEAD, EMBED} & keys == want  # save_model keeps the sorted-first name of the tied pair: lm_head
    assert {v.dtype for v in load_file(str(ck / "model.safetensors")).values()} == {getattr(torch, precision)}
    back = load_policy(ck, **overrides(ref))
    assert back.config.precision == precision and back.norm_stats_source == "assets/physical-intelligence/libero/norm_stats.json"
    for k in ("state", "actions"):
        np.testing.assert_allclose(back.norm_stats[k].q01, st[k].q01); np.testing.assert_allclose(back.norm_stats[k].q99, st[k].q99)
    exp = expected_policy(ref, ck / "model.safetensors", precision)
    exp.norm_stats = st
    obs = obs_of(ref)
    np.testing.assert_allclose(back.infer(obs)["actions"], exp.infer(obs)["actions"], atol=1e-5)
    if precision == "float32":  # nothing rounded: the very policy that was written
        ref.norm_stats = st
        np.testing.assert_allclose(back.infer(obs)["actions"], ref.infer(obs)["actions"], atol=1e-5)


def test_openpi_pi0(tmp_path):
    ref, st = reference("pi0", seed=1), stats_for(1)
    ck = write_openpi(ref, tmp_path / "pi0_libero", "float32", stats=st)
    back = load_policy(ck, discrete_state_input=False, **overrides(ref))
    assert back.config.kind == "pi0"
    ref.norm_stats = st
    obs = obs_of(ref)
    np.testing.assert_allclose(back.infer(obs)["actions"], ref.infer(obs)["actions"], atol=1e-5)


def test_asset_ids(tmp_path):
    ref, st = reference(), stats_for()
    ck = write_openpi(ref, tmp_path / "ck", "float32", stats=st, ids=("physical-intelligence/libero", "physical-intelligence/droid"))
    with pytest.raises(ValueError, match=r"2 asset ids \(physical-intelligence/droid, physical-intelligence/libero\); choose one with --asset-id ID"):
        load_policy(ck, **overrides(ref))
    with pytest.raises(ValueError, match=r"unknown --asset-id 'trossen': .* has asset ids physical-intelligence/droid, physical-intelligence/libero"):
        load_policy(ck, asset_id="trossen", **overrides(ref))
    back = load_policy(ck, asset_id="physical-intelligence/droid", **overrides(ref))
    assert back.norm_stats_source == "assets/physical-intelligence/droid/norm_stats.json"


def test_bad_openpi_checkpoints(tmp_path):
    ref, st = reference(), stats_for()
    ck = write_openpi(ref, tmp_path / "ck", "bfloat16", stats=st)
    sd = load_file(str(ck / "model.safetensors"))
    # a tensor missing
    miss = tmp_path / "miss"; miss.mkdir()
    for f in ("config.json",): (miss / f).write_text((ck / f).read_text())
    save_file({k: v for k, v in sd.items() if k != "action_out_proj.bias"}, str(miss / "model.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing: action_out_proj.bias; is it the right checkpoint and kind\?"):
        load_policy(miss, **overrides(ref))
    # the tied pair stored under both names, with different values
    save_file({**sd, EMBED: sd[LM_HEAD] + 1}, str(miss / "model.safetensors"))
    with pytest.raises(ValueError, match="are one tied tensor in the model but differ in the file"):
        load_policy(miss, **overrides(ref))
    # truncated in the header or in the data
    full = (ck / "model.safetensors").read_bytes()
    for cut in (full[:100], full[:-16]):
        (miss / "model.safetensors").write_bytes(cut)
        with pytest.raises(ValueError, match="is it a complete safetensors file"):
            load_policy(miss, **overrides(ref))


@pytest.mark.parametrize("lacking", ["state", "actions"])
def test_stats_missing_a_key(tmp_path, lacking):
    ref, st = reference(), stats_for()
    ck = write_openpi(ref, tmp_path / "ck", "float32", stats={k: v for k, v in st.items() if k != lacking})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pol = load_policy(ck, **overrides(ref))
    assert len(w) == 1 and f"has no normalisation statistics for {lacking}; the policy refuses to act" in str(w[0].message)
    with pytest.raises(ValueError, match=f"^no normalisation statistics for {lacking}: give them \\(--norm-stats PATH"):
        pol.infer(obs_of(ref))
    with pytest.raises(ValueError, match=f"checkpoint {ck}: no normalisation statistics for {lacking}"):
        policy_from_cli(ck)  # its config.json names the Gemma variants: no overrides needed
    (tmp_path / "full.json").write_text(json.dumps({"norm_stats": {k: v.to_dict() for k, v in st.items()}}))
    ok = load_policy(ck, norm_stats_path=tmp_path / "full.json", **overrides(ref))
    assert ok.missing_norm_stats() == [] and ok.norm_stats_source == str(tmp_path / "full.json")


# ---------------------------------------------------------------- LeRobot

@pytest.fixture
def lerobot_tokenizer(monkeypatch):
    "lerobot's TokenizerProcessorStep fetches PaliGemma's tokenizer from the hub; give it the local default instead."
    import lerobot.processor.tokenizer_processor as tp
    from transformers import PreTrainedTokenizerFast
    class Local:
        @staticmethod
        def from_pretrained(name, **kw): return PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), pad_token="<pad>")
    monkeypatch.setattr(tp, "AutoTokenizer", Local)


def write_lerobot(policy: Policy, out: Path, stats: dict, dtype: str = "float32", modes: dict | None = None):
    "`policy` as lerobot 0.4's `save_pretrained` writes a pi05 / pi0 policy, with lerobot's processor pipelines."
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    c = policy.config
    feats = dict(input_features={"observation.state": PolicyFeature(FeatureType.STATE, (8,)),
                                 **{f"observation.images.{cam}": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)) for cam in c.cameras}},
                 output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))})
    kw = dict(chunk_size=c.action_horizon, n_action_steps=c.action_horizon, max_state_dim=c.action_dim, max_action_dim=c.action_dim,
              tokenizer_max_length=c.max_token_len, dtype=dtype, **feats)
    if modes: kw["normalization_mapping"] = {"VISUAL": NormalizationMode.IDENTITY, **{k: NormalizationMode(v) for k, v in modes.items()}}
    if c.kind == "pi05":
        from lerobot.policies.pi05.configuration_pi05 import PI05Config as Config
        from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors as make
    else:
        from lerobot.policies.pi0.configuration_pi0 import PI0Config as Config
        from lerobot.policies.pi0.processor_pi0 import make_pi0_pre_post_processors as make
    cfg = Config(**kw)
    out.mkdir()
    cfg._save_pretrained(out)  # PreTrainedPolicy._save_pretrained: config first, then the weights
    wrap = nn.Module(); wrap.model = openpi_tree(policy)  # PI05Policy.model = PI05Pytorch (openpi's tree)
    if dtype == "bfloat16": wrap.model.to_precision("bfloat16")  # PaliGemmaWithExpertModel.to_bfloat16_for_selected_params
    save_model(wrap, str(out / "model.safetensors"))
    lr_stats = {"observation.state": {k: v for k, v in stats["state"].to_dict().items() if v is not None},
                "action": {k: v for k, v in stats["actions"].to_dict().items() if v is not None}}
    lr_stats = {key: {s: np.asarray(v, np.float32) for s, v in d.items()} for key, d in lr_stats.items()}
    pre, post = make(cfg, lr_stats)
    pre.save_pretrained(out); post.save_pretrained(out)
    return out, pre, post


def lerobot_transform(step, state=None, action=None):
    from lerobot.processor.converters import create_transition
    from lerobot.processor.core import TransitionKey
    t = step(create_transition(observation=None if state is None else {"observation.state": torch.as_tensor(state)},
                               action=None if action is None else torch.as_tensor(action)))
    return (t[TransitionKey.OBSERVATION]["observation.state"] if state is not None else t[TransitionKey.ACTION]).numpy()


@pytest.mark.parametrize("kind,dtype,modes", [("pi05", "float32", None), ("pi05", "bfloat16", None),
                                              ("pi05", "float32", {"STATE": "MEAN_STD", "ACTION": "MEAN_STD"}),
                                              ("pi0", "float32", None)])
def test_lerobot_checkpoint(tmp_path, lerobot_tokenizer, kind, dtype, modes):
    from lerobot.processor import NormalizerProcessorStep, UnnormalizerProcessorStep
    ref, st = reference(kind, seed=2), stats_for(2)
    ck, pre, post = write_lerobot(ref, tmp_path / f"{kind}_lerobot", st, dtype, modes)
    assert {"policy_preprocessor.json", "policy_postprocessor.json"} <= {p.name for p in ck.iterdir()}
    assert f"model.{LM_HEAD}" in load_file(str(ck / "model.safetensors"))  # the `model.` prefix, the tied pair as save_model keeps it
    back = load_policy(ck, paligemma_variant="dummy", action_expert_variant="dummy", **overrides(ref))
    want = {None: "quantile" if kind == "pi05" else "zscore", "MEAN_STD": "zscore"}[(modes or {}).get("STATE")]
    assert (back.config.kind, back.config.precision) == (kind, dtype)
    assert {k: s.mode for k, s in back.norm_stats.items()} == {"state": want, "actions": want}
    assert back.norm_stats_source == "policy_preprocessor.json + policy_postprocessor.json"
    # the statistics act as lerobot's own normaliser and unnormaliser do (up to the epsilon, 1e-6 against 1e-8)
    x, a = np.random.default_rng(0).uniform(-1, 1, (3, 8)).astype(np.float32), np.random.default_rng(1).uniform(-1, 1, (3, 7)).astype(np.float32)
    norm = next(s for s in pre.steps if isinstance(s, NormalizerProcessorStep))
    unnorm = next(s for s in post.steps if isinstance(s, UnnormalizerProcessorStep))
    np.testing.assert_allclose(back.norm_stats["state"].normalize(x), lerobot_transform(norm, state=x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back.norm_stats["actions"].unnormalize(a), lerobot_transform(unnorm, action=a), rtol=1e-4, atol=1e-4)
    # and the policy acts with them
    exp = expected_policy(ref, ck / "model.safetensors", dtype, prefix="model.")
    exp.norm_stats = {k: NormStats(s.mean, s.std, s.q01, s.q99, mode=want) for k, s in st.items()}
    obs = obs_of(ref)
    np.testing.assert_allclose(back.infer(obs)["actions"], exp.infer(obs)["actions"], atol=1e-5)


def test_lerobot_modes_refused_or_missing(tmp_path, lerobot_tokenizer):
    ref, st = reference(seed=2), stats_for(2)
    ck, _, _ = write_lerobot(ref, tmp_path / "minmax", st, modes={"STATE": "MIN_MAX", "ACTION": "QUANTILES"})
    with pytest.raises(ValueError, match="observation.state is normalised with MIN_MAX, which vlasteer does not apply"):
        load_policy(ck, paligemma_variant="dummy", action_expert_variant="dummy", **overrides(ref))
    ck, _, _ = write_lerobot(ref, tmp_path / "identity", st, modes={"STATE": "QUANTILES", "ACTION": "IDENTITY"})
    with pytest.warns(UserWarning, match="no normalisation statistics for actions"):
        pol = load_policy(ck, paligemma_variant="dummy", action_expert_variant="dummy", **overrides(ref))
    with pytest.raises(ValueError, match="no normalisation statistics for actions"):
        pol.infer(obs_of(ref))
    # statistics given from a file instead: an openpi norm_stats.json or another checkpoint's processor config
    (tmp_path / "ns.json").write_text(json.dumps({"norm_stats": {k: v.to_dict() for k, v in st.items()}}))
    ok = load_policy(ck, norm_stats_path=tmp_path / "ns.json", paligemma_variant="dummy", action_expert_variant="dummy", **overrides(ref))
    assert ok.missing_norm_stats() == []
    with pytest.raises(ValueError, match="policy_preprocessor.json has no statistics for actions"):  # IDENTITY for actions
        load_policy(ck, norm_stats_path=ck / "policy_preprocessor.json", paligemma_variant="dummy", action_expert_variant="dummy",
                    **overrides(ref))


# ---------------------------------------------------------------- the command line

def run_probe(*args: str):
    return run_entry_point("vlasteer.ffn", "ffn_probe_main", *args)


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    from vlasteer.data import save_obs_batch
    d = tmp_path_factory.mktemp("cli")
    ref = reference()
    save_obs_batch(d / "batch_00000.npz", ref.example_observation(batch_size=2, seed=0))
    write_openpi(ref, d / "no_stats", "bfloat16")
    write_openpi(ref, d / "two_ids", "bfloat16", stats=stats_for(), ids=("physical-intelligence/libero", "physical-intelligence/droid"))
    (d / "ns.json").write_text(json.dumps({"norm_stats": {k: v.to_dict() for k, v in stats_for().items()}}))
    return d


@pytest.mark.parametrize("case", ["refused", "waived", "given", "no_asset_id", "asset_id", "unknown_asset_id"])
def test_probe_cli_statistics(cli_inputs, tmp_path, case):
    d, out = cli_inputs, tmp_path / "proj.json"
    ck = d / ("no_stats" if case in ("refused", "waived", "given") else "two_ids")
    extra = {"waived": ["--no-norm-stats"], "given": ["--norm-stats", str(d / "ns.json")], "asset_id": ["--asset-id", "physical-intelligence/droid"],
             "unknown_asset_id": ["--asset-id", "trossen"]}.get(case, [])
    r = run_probe("--checkpoint-dir", str(ck), "--tokenizer-path", str(TOKENIZER), "--observations-glob", str(d / "*.npz"),
                  "--output-path", str(out), "--top-k-per-layer", "2", "--quiet", *extra)
    if case in ("waived", "given", "asset_id"):
        assert r.returncode == 0, r.stderr
        src = json.loads(out.read_text())["params"]["norm_stats"]
        assert src == {"waived": "waived (--no-norm-stats)", "given": str(d / "ns.json"),
                       "asset_id": "assets/physical-intelligence/droid/norm_stats.json"}[case]
        return
    want = {"refused": f"error: checkpoint {ck}: no normalisation statistics for state, actions: give them (--norm-stats PATH",
            "no_asset_id": "asset ids (physical-intelligence/droid, physical-intelligence/libero); choose one with --asset-id ID",
            "unknown_asset_id": "unknown --asset-id 'trossen'"}[case]
    assert r.returncode == 1 and want in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_shipped_default_still_loads():
    from vlasteer.checkpoints import load_default_policy
    pol = load_default_policy()
    assert pol.require_norm_stats and pol.missing_norm_stats() == [] and pol.norm_stats_source == "norm_stats.json"
    assert pol.infer(pol.example_observation())["actions"].shape[-1] == pol.config.output_action_dim
