"""The real LIBERO simulator behind vlasteer.sim.LiberoEnv, on LIBERO-90's KITCHEN_SCENE2/3 tasks (shared assets)."""
import importlib.metadata, importlib.util, os, re
from pathlib import Path

import numpy as np
import pytest

from vlasteer.sim import LiberoEnv, _import_libero, policy_state

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VLASTEER_LIBERO_ASSETS") or REPO.parent / "shared" / "libero-assets")
ABSENT = [n for n in ("libero", "robosuite") if not importlib.util.find_spec(n)] + [str(ASSETS)] * (not ASSETS.is_dir())
if ABSENT and not os.environ.get("CI"): pytest.skip(f"no LIBERO stack: {', '.join(ABSENT)}", allow_module_level=True)

SIZE = 64
DRAWER, STOVE = "open the top drawer of the cabinet", "turn on the stove"  # KITCHEN_SCENE2, KITCHEN_SCENE3
GOALS = {DRAWER: ("wooden_cabinet_1_top_level", -0.10, -0.15),  # task -> (joint, a value short of the goal, one at it)
         STOVE: ("flat_stove_1_button", 0.3, 0.8)}


def make_env(task, **kw):
    return LiberoEnv("libero_90", task, image_size=SIZE, assets=ASSETS, **kw)


@pytest.fixture(scope="module")
def drawer_envs():
    envs = [make_env(DRAWER, max_steps=6) for _ in range(2)]
    yield envs
    for e in envs: e.close()


@pytest.fixture(scope="module")
def stove_env():
    with make_env(STOVE, max_steps=6) as e:
        yield e


@pytest.fixture(scope="module")
def policy():
    from vlasteer.checkpoints import load_default_policy
    return load_default_policy()


@pytest.fixture(scope="module")
def batch(policy, drawer_envs):
    "One lockstep batch of the default policy on two drawer envs (episode 0 unsteered, 1 steered), and episode 0 alone."
    import torch
    from vlasteer.sim import RolloutOptions
    from vlasteer.steering import Edit, SteeringSpec, steered_rollouts
    vec = torch.randn(policy.config.vlm.width, generator=torch.Generator().manual_seed(1)).tolist()
    push = SteeringSpec("push", [Edit("add", layers=[0], tokens="instruction", vector=vec, unit_norm=10.0, alpha=1.0)])
    kw = dict(opts=RolloutOptions(replan_steps=2, max_steps=6, record_frames=True))
    trajs, failed = steered_rollouts(policy, [DRAWER] * 2, [0, 0], [None, push], envs=drawer_envs, **kw)
    alone, _ = steered_rollouts(policy, [DRAWER], [0], [None], envs=drawer_envs[:1], **kw)
    return trajs, failed, alone[0]


def pins() -> dict:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "constraints.txt").read_text(), re.M))


def test_stack_installed_as_pinned():
    assert not ABSENT, f"LIBERO stack incomplete: {ABSENT} missing; run `make libero` and put the assets at {ASSETS}"
    want = pins()
    for pkg in ("libero", "robosuite", "bddl", "mujoco"):
        got = importlib.metadata.version(pkg)
        assert got == want[pkg], f"{pkg} {got} is not the pinned {want[pkg]}"


def test_scene2_and_scene3_tasks_reset_from_their_init_states():
    _import_libero(ASSETS)  # before any `libero.libero` import: it asks questions without a config
    from libero.libero import benchmark
    suite = benchmark.get_benchmark_dict()["libero_90"]()
    ids = [i for i in range(suite.n_tasks) if suite.get_task(i).name.startswith(("KITCHEN_SCENE2_", "KITCHEN_SCENE3_"))]
    assert len(ids) == 7 + 4
    for i in ids:
        with make_env(i, num_steps_wait=0) as env:
            assert env.init_states.shape == (50, len(env.get_state()))
            obs = env.reset(3)
            np.testing.assert_array_equal(env.get_state(), env.init_states[3])
            assert not env.check_success(), env.name
            assert obs["agentview_image"].shape == obs["robot0_eye_in_hand_image"].shape == (SIZE, SIZE, 3)
            assert obs["agentview_image"].dtype == np.uint8 and obs["agentview_image"].std() > 10
    with make_env(DRAWER, num_steps_wait=0) as env:
        env.reset(53)
        np.testing.assert_array_equal(env.get_state(), env.init_states[3])  # seeds wrap around the 50 init states
    with pytest.raises(KeyError, match="no task"): make_env("make coffee")
    with pytest.raises(KeyError, match="unknown LIBERO task suite"): LiberoEnv("libero_1000", 0, assets=ASSETS)


def test_reset_is_the_same_scene_in_every_env(drawer_envs):
    a, b = drawer_envs
    rng = np.random.get_state()[1].copy()
    oa, ob = a.reset(2), b.reset(2)
    np.testing.assert_array_equal(np.random.get_state()[1], rng)  # the caller's numpy random state is left alone
    for k in oa: np.testing.assert_array_equal(oa[k], ob[k])
    np.testing.assert_array_equal(a.env.sim.model.body_pos, b.env.sim.model.body_pos)  # fixtures placed alike
    assert a.steps == 0 and np.abs(a.get_state() - a.init_states[2]).max() > 0  # settled for num_steps_wait steps
    assert np.abs(a.reset(0)["agentview_image"].astype(int) - oa["agentview_image"]).mean() > 1


@pytest.mark.parametrize("which", ["drawer", "stove"])
def test_cameras_upright_as_openpi(which, drawer_envs, stove_env):
    import mujoco
    env = drawer_envs[0] if which == "drawer" else stove_env
    obs = env.reset(1)
    sim = env.env.sim
    r = mujoco.Renderer(sim.model._model, SIZE, SIZE)
    try:
        for cam, key in zip(("agentview", "robot0_eye_in_hand"), ("agentview_image", "robot0_eye_in_hand_image")):
            raw = sim.render(width=SIZE, height=SIZE, camera_name=cam)  # robosuite's own frame: OpenGL rows, bottom up
            assert np.abs(obs[key].astype(int) - raw[::-1, ::-1]).mean() < 0.5, cam  # rotated 180°, as openpi does
            r.update_scene(sim.data._data, camera=cam, scene_option=sim._render_context_offscreen.vopt)
            ref = r.render().astype(int)  # MuJoCo's renderer: upright, unmirrored
            img = obs[key].astype(int)
            def diff(x): return np.abs(x - ref).mean()
            assert diff(img[:, ::-1]) < 0.5, (cam, diff(img[:, ::-1]))  # rows upright; left-right mirrored as openpi's
            assert min(diff(img), diff(img[::-1]), diff(img[::-1, ::-1])) > 5, cam
    finally:
        r.close()


@pytest.mark.parametrize("task", [DRAWER, STOVE])
def test_step_and_success(task, drawer_envs, stove_env):
    env = drawer_envs[0] if task == DRAWER else stove_env
    obs = env.reset(0)
    assert not env.check_success()
    z = obs["robot0_eef_pos"][2]
    for _ in range(3): obs, r, done, info = env.step([0, 0, 1, 0, 0, 0, -1])  # OSC delta: up
    assert obs["robot0_eef_pos"][2] - z > 0.01
    assert (r, done, info["success"], info["steps"], env.steps) == (0.0, False, False, 3, 3)
    with pytest.raises(ValueError, match="expected 7"): env.step(np.zeros(6))
    joint, short, goal = GOALS[task]
    addr = env.env.sim.model.get_joint_qpos_addr(joint)
    state = env.get_state()
    for value, success in ((short, False), (goal, True)):
        s = state.copy(); s[1 + addr] = value  # flat state: time, qpos, qvel
        env.set_state(s)
        assert env.check_success() == success, (task, value)
        assert env.progress()[joint] == pytest.approx(value)
    obs, r, done, info = env.step([0] * 6 + [-1])
    assert (r, done, info["success"]) == (1.0, True, True)
    key = "drawer_opening" if task == DRAWER else "knob_angle"
    assert env.progress()[key] == pytest.approx(1.0 if task == DRAWER else goal, abs=0.05)


def test_default_policy_unsteered_and_steered_in_one_rollout_batch(batch):
    (plain, steered), failed, alone = batch
    assert failed == {}
    assert plain.instruction == steered.instruction == DRAWER and plain.steps == steered.steps == 6
    assert plain.frames.shape == plain.wrist_frames.shape == (7, SIZE, SIZE, 3)
    assert len(plain.progress["drawer_opening"]) == 7
    np.testing.assert_array_equal(plain.sim_states[0], steered.sim_states[0])  # the same start ...
    np.testing.assert_array_equal(plain.frames[0], steered.frames[0])
    assert np.abs(steered.actions - plain.actions).max() > 1e-2  # ... and steering changes what the policy does
    np.testing.assert_allclose(plain.actions, alone.actions, atol=1e-3)  # the unsteered row is as if it ran alone
    np.testing.assert_allclose(plain.sim_states, alone.sim_states, atol=1e-4)
    assert np.abs(plain.frames.astype(int) - alone.frames).mean() < 0.1  # each env renders in its own GL context
    assert np.abs(plain.sim_states[-1] - plain.sim_states[0]).max() > 1e-3  # the robot moved


def test_rollout_to_libero_hdf5_to_lerobot(batch, drawer_envs, tmp_path):
    from vlasteer.data import (convert_libero_to_lerobot, demo_from_trajectory, load_lerobot_dataset, read_libero_hdf5,
                               write_libero_hdf5)
    traj, env = batch[0][0], drawer_envs[0]
    demo, T = demo_from_trajectory(traj), traj.steps
    (tmp_path / "in").mkdir()
    path = write_libero_hdf5(tmp_path / "in" / f"{env.name}_demo.hdf5", [demo], env.instruction,
                             problem_name=env.env.problem_name, env_name=type(env.env.env).__name__,
                             domain_name=env.env.domain_name, bddl_file_name=env.bddl_file)
    f = read_libero_hdf5(path)
    assert f.instruction == DRAWER and len(f.demos) == 1
    d = f.demos[0]
    np.testing.assert_array_equal(d.obs["agentview_rgb"], traj.frames[:T, ::-1, ::-1])  # as robosuite renders: LIBERO
    np.testing.assert_array_equal(d.states, traj.sim_states[:T]); np.testing.assert_array_equal(d.actions, traj.actions)
    env.reset(traj.seed)  # the episode's scene, then a stored state replays its frame
    replay = env.set_state(d.states[3])["agentview_image"].astype(int)
    diffs = [np.abs(replay - traj.frames[k]).mean() for k in range(T + 1)]
    assert np.argmin(diffs) == 3 and diffs[3] < 0.5, diffs  # (robosuite renders a step's frame before its last forward)
    root = convert_libero_to_lerobot(tmp_path / "in", "vlasteer/libero_rollout", tmp_path / "lerobot")
    ds = load_lerobot_dataset(root, "vlasteer/libero_rollout")
    assert len(ds) == T and ds.meta.total_episodes == 1
    for t in (0, T - 1):
        row = ds[t]
        for key, frames in (("image", traj.frames), ("wrist_image", traj.wrist_frames)):
            np.testing.assert_array_equal((row[key].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), frames[t])
        state = policy_state({k: v[t] for k, v in traj.low_dim.items()})
        np.testing.assert_allclose(row["state"].numpy(), state, atol=1e-6)
        np.testing.assert_allclose(row["actions"].numpy(), traj.actions[t], atol=1e-6)
        assert row["task"] == DRAWER
