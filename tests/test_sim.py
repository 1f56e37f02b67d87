"""Tests of vlasteer.sim (the toy kitchen): determinism, pair ambiguity, success checks, experts, rollouts."""
import contextlib

import numpy as np
import pytest

from vlasteer.sim import (BOWL_GOAL, RolloutOptions, CONCEPT_PAIRS, DRAWER_RANGE, KNOB_ON, MAX_DELTA, TASKS, Task, ToyKitchenEnv,
                          batch_policy_obs, expert_rollout, get_task, initial_state, policy_state, rollout,
                          rollout_batch, run_expert, scripted_expert, to_policy_obs)


@pytest.fixture(scope="module")
def env():
    with ToyKitchenEnv() as e:
        yield e


@pytest.fixture(scope="module")
def fast_env():
    with ToyKitchenEnv(render=False) as e:
        yield e


class Replay:
    "Stand-in policy replaying recorded actions in chunks of `horizon`, advancing by `replan` per call."
    def __init__(self, actions, horizon=8, replan=5):
        self.actions, self.horizon, self.replan, self.t = np.asarray(actions), horizon, replan, 0

    def infer(self, obs):
        a = self.actions[self.t:self.t + self.horizon]
        a = np.concatenate([a, np.zeros((self.horizon - len(a), 7))]) if len(a) < self.horizon else a
        self.t += self.replan
        return {"actions": a}


class Linear:
    "Deterministic stand-in policy (single or batched): action = tanh(W @ state + prompt bias)."
    def __init__(self, horizon=6):
        rng = np.random.default_rng(0)
        self.W, self.horizon, self.calls = rng.normal(0, 2, (7, 8)), horizon, []

    def _one(self, state, prompt):
        bias = np.sin(np.arange(7) + len(prompt))
        a = np.tanh(self.W @ state.astype(np.float64) + bias)
        return np.stack([a * (1 - 0.1 * k) for k in range(self.horizon)])

    def infer(self, obs):
        if isinstance(obs["prompt"], str): return {"actions": self._one(obs["state"], obs["prompt"])}
        self.calls.append(len(obs["prompt"]))
        return {"actions": np.stack([self._one(s, p) for s, p in zip(obs["state"], obs["prompt"])])}


def test_tasks_and_pairs():
    assert len(TASKS) >= 6
    assert set(CONCEPT_PAIRS) == {"drawer", "stove", "bowl"}
    for pair, (pos, neg) in CONCEPT_PAIRS.items():
        assert TASKS[pos].pair == TASKS[neg].pair == pair
        assert (TASKS[pos].polarity, TASKS[neg].polarity) == (1, -1)
    assert isinstance(get_task("turn_off_stove"), Task)
    with pytest.raises(KeyError, match="unknown toy-kitchen task"):
        get_task("make coffee")


def test_reset_is_deterministic_and_task_independent(env):
    o1 = env.reset(5, task="turn on the stove")
    env.step([1, 1, 1, 0, 0, 0, 1])
    o2 = env.reset(5, task="turn off the stove")
    for k in o1: np.testing.assert_array_equal(o1[k], o2[k])
    with ToyKitchenEnv("put the bowl at the front of the table") as fresh:
        o3 = fresh.reset(5)
        for k in o1: np.testing.assert_array_equal(o1[k], o3[k])
    assert not np.array_equal(env.reset(6)["agentview_image"], o1["agentview_image"])


@pytest.mark.parametrize("pair", list(CONCEPT_PAIRS))
def test_pair_ambiguity(fast_env, pair):
    pos, neg = CONCEPT_PAIRS[pair]
    for seed in range(5):
        fast_env.reset(seed, task=pos); s_pos, ok_pos = fast_env.get_state(), fast_env.check_success()
        fast_env.reset(seed, task=neg); s_neg, ok_neg = fast_env.get_state(), fast_env.check_success()
        np.testing.assert_array_equal(s_pos, s_neg)
        assert not ok_pos and not ok_neg


def test_initial_state_ranges():
    for s in range(100):
        init = initial_state(s)
        assert 0.4 * DRAWER_RANGE <= init.drawer <= 0.6 * DRAWER_RANGE
        assert init.knob < KNOB_ON and abs(init.bowl_xy[1]) < BOWL_GOAL


def test_state_round_trip_is_exact(fast_env):
    task = "put the bowl at the back of the table"
    expert = scripted_expert(task, seed=1)
    obs = fast_env.reset(1, task=task)
    for _ in range(8): obs = fast_env.step(expert.act(obs, fast_env))[0]
    saved, acts, traj = fast_env.get_state(), [], []
    for _ in range(8):
        acts.append(expert.act(obs, fast_env))
        obs = fast_env.step(acts[-1])[0]; traj.append(fast_env.get_state())
    fast_env.set_state(saved)
    assert fast_env.steps == 8
    for a, s in zip(acts, traj):
        fast_env.step(a)
        np.testing.assert_array_equal(fast_env.get_state(), s)
    with pytest.raises(ValueError, match="toy-kitchen state has"):
        fast_env.set_state(saved[:5])


def test_action_validation_and_scale(fast_env):
    obs = fast_env.reset(0)
    new = fast_env.step(np.array([0, -1, 0.5, 0.3, 0.3, 0.3, -1]))[0]
    np.testing.assert_allclose(new["robot0_eef_pos"] - obs["robot0_eef_pos"], [0, -MAX_DELTA, MAX_DELTA / 2], atol=1e-9)
    np.testing.assert_array_equal(new["robot0_eef_quat"], [0, 0, 0, 1])  # rotation deltas are ignored
    with pytest.raises(ValueError, match="expected 7"): fast_env.step(np.zeros(8))
    with pytest.raises(ValueError, match="not finite"): fast_env.step([0, 0, np.inf, 0, 0, 0, 0])


def test_images_upright_and_typed(env):
    obs = env.reset(0)
    for k in ("agentview_image", "robot0_eye_in_hand_image"):
        assert obs[k].shape == (64, 64, 3) and obs[k].dtype == np.uint8
    img = obs["agentview_image"].astype(int)
    table = (img[..., 0] > 150) & (img[..., 1] > 120) & (img[..., 2] < 150) & (img[..., 0] - img[..., 2] > 40)
    rows = np.nonzero(table)[0]
    assert rows.mean() > 32, "the table top should fill the lower half"
    drawer = (img[..., 2] > 150) & (img[..., 0] < 80)
    assert np.nonzero(drawer)[0].mean() < 32, "the drawer should be in the upper half"
    with ToyKitchenEnv(image_size=32) as small:
        assert small.reset(0)["agentview_image"].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="image_size"): ToyKitchenEnv(image_size=2)


def test_policy_obs(env):
    obs = env.reset(3)
    po = to_policy_obs(obs, "turn on the stove")
    assert set(po) == {"image", "state", "prompt"}
    assert set(po["image"]) == {"base_0_rgb", "left_wrist_0_rgb"}
    assert po["state"].dtype == np.float32 and po["state"].shape == (8,)
    np.testing.assert_array_equal(po["state"], policy_state(obs))
    b = batch_policy_obs([po, po, po])
    assert b["image"]["base_0_rgb"].shape == (3, 64, 64, 3) and b["state"].shape == (3, 8) and len(b["prompt"]) == 3


@pytest.mark.parametrize("task", list(TASKS))
def test_expert_quick(fast_env, task):
    results = [run_expert(task, s, env=fast_env) for s in range(8)]
    assert all(ok for ok, _ in results), results
    assert max(n for _, n in results) <= 60


def test_success_flips_progress(fast_env):
    for pair, (pos, neg) in CONCEPT_PAIRS.items():
        tp, tn = expert_rollout(pos, 2, env=fast_env, record_frames=False), expert_rollout(neg, 2, env=fast_env, record_frames=False)
        assert tp.success and tn.success
        m = TASKS[pos].measure
        assert tp.progress[m][0] == tn.progress[m][0]
        assert tp.progress[m][-1] > tp.progress[m][0] > tn.progress[m][-1]
        # the positive demonstration does not solve the negative task, and vice versa
        fast_env.reset(0, task=neg); fast_env.set_state(tp.sim_states[-1]); assert not fast_env.check_success()


def test_rollout_replays_expert(env):
    task = "turn on the stove"
    demo = expert_rollout(task, seed=4)
    tr = rollout(Replay(demo.actions), env, task, seed=4)
    assert tr.success and tr.steps == demo.steps and tr.success_step == demo.steps
    np.testing.assert_array_equal(tr.sim_states, demo.sim_states)
    np.testing.assert_array_equal(tr.frames, demo.frames)
    assert tr.progress["burner_on"][-1] == 1.0 and tr.progress["burner_on"][0] == 0.0
    assert tr.states.shape == (tr.steps + 1, 8) and tr.wrist_frames.shape == (tr.steps + 1, 64, 64, 3)


def test_rollout_intervention_and_prompt(env):
    log = []

    @contextlib.contextmanager
    def probe(policy):
        log.append(("enter", type(policy).__name__)); yield; log.append(("exit",))

    tr = rollout(Linear(), env, "close the top drawer of the cabinet", seed=0, steps=7, intervention=probe,
                 record_frames=False, prompt="open the top drawer of the cabinet")
    assert log == [("enter", "Linear"), ("exit",)]
    assert tr.instruction == "open the top drawer of the cabinet" and tr.frames is None and tr.steps == 7
    with pytest.raises(ValueError, match="replan_steps"): rollout(Linear(), env, replan_steps=0)


def test_rollout_batch_matches_rollout(env):
    tasks = ["open the top drawer of the cabinet", "turn off the stove", "put the bowl at the back of the table", "turn on the stove"]
    seeds = [0, 1, 2, 3]
    pol = Linear()
    batch = rollout_batch(pol, tasks, seeds, RolloutOptions(steps=11, replan_steps=4))
    assert pol.calls == [4, 4, 4]
    for t, s, b in zip(tasks, seeds, batch):
        one = rollout(Linear(), env, t, s, steps=11, replan_steps=4)
        np.testing.assert_array_equal(one.actions, b.actions)
        np.testing.assert_array_equal(one.sim_states, b.sim_states)
        np.testing.assert_array_equal(one.frames, b.frames)
        assert one.instruction == b.instruction == t
    with pytest.raises(ValueError, match="one task per seed"): rollout_batch(pol, tasks, [0])


def test_rollout_batch_drops_finished_episodes():
    tasks = ["turn on the stove", "turn on the stove"]
    demos = [expert_rollout(t, s, record_frames=False) for t, s in zip(tasks, (0, 1))]

    class BatchReplay:
        def __init__(self): self.t, self.sizes = 0, []
        def infer(self, obs):
            self.sizes.append(len(obs["prompt"]))
            idx = [0, 1][:len(obs["prompt"])] if len(obs["prompt"]) == 2 else [int(np.argmax([d.steps for d in demos]))]
            out = []
            for i in idx:
                a = demos[i].actions[self.t:self.t + 5]
                out.append(np.concatenate([a, np.zeros((5 - len(a), 7))]))
            self.t += 5
            return {"actions": np.stack(out)}

    pol = BatchReplay()
    res = rollout_batch(pol, tasks, [0, 1], RolloutOptions(record_frames=False))
    assert all(r.success for r in res)
    assert [r.steps for r in res] == [d.steps for d in demos]
    if demos[0].steps // 5 != demos[1].steps // 5: assert 1 in pol.sizes


def test_shared_renderer_keeps_each_envs_burner_colour():
    def red(img): return int(((img[..., 0] > 180) & (img[..., 1] < 60)).sum())
    with ToyKitchenEnv("turn on the stove") as on, ToyKitchenEnv("turn on the stove") as off:
        on_traj = expert_rollout("turn on the stove", seed=0, env=on)
        assert on_traj.success and red(on_traj.frames[-1]) > 3
        off_obs = off.reset(0)
        assert red(off_obs["agentview_image"]) == 0
        assert red(on.set_state(on_traj.sim_states[-1])["agentview_image"]) > 3   # rendered after `off`: still red
        assert red(off.step(np.zeros(7))[0]["agentview_image"]) == 0
