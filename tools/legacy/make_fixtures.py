"""Make the SB2 test fixtures: tiny models and Stable Baselines 2's OWN answers.

Runs only inside the legacy environment made by tools/legacy/setup_env.sh
(Python 3.7, TensorFlow 1.15.5, stable-baselines 2.10.2, gym 0.17.3, mpi4py).

    usage: make_fixtures.py OUT_DIR [--only PATTERN] [--list]

For every case (algorithm x policy x observation/action space family) it
  1. builds a tiny environment with those spaces and trains a tiny model for a
     few hundred steps (non-initial weights, not a good agent), with fixed seeds;
  2. saves it as OUT_DIR/<case>/model.zip (model.save(path)) and, unless the size
     budget says otherwise, OUT_DIR/<case>/model.pkl (model.save(path, cloudpickle=True));
  3. resets the TF graph, LOADS model.zip with SB2's own <Algo>.load and records
     what SB2 answers on seeded observations into OUT_DIR/<case>/golden.npz
     (the expected numbers come only from SB2 itself, never from our code);
  4. loads model.pkl the same way and checks that it answers like model.zip;
  5. writes OUT_DIR/<case>/meta.json, and at the end OUT_DIR/index.json.

PATTERN is an fnmatch pattern on case names (e.g. 'ppo2_*' or '*lstm*').
One failing case prints `FAIL <case> <reason>`; the others go on.
"""
import argparse
import fnmatch
import gc
import os
import shutil
import sys
import time
import traceback
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KMP_WARNINGS", "0")

if sys.version_info[:2] != (3, 7):
    sys.exit("make_fixtures.py runs only in the legacy env (Python 3.7, TF 1.15, SB2 2.10.2): "
             "sh tools/legacy/setup_env.sh /tmp/sb2legacy && /tmp/sb2legacy/bin/python %s OUT_DIR"
             % sys.argv[0])

import gym  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from gym import spaces  # noqa: E402

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import stable_baselines as sb  # noqa: E402
from stable_baselines import A2C, ACER, ACKTR, DQN, HER, PPO2, SAC, TD3  # noqa: E402
from stable_baselines.common.bit_flipping_env import BitFlippingEnv  # noqa: E402
from stable_baselines.common.policies import FeedForwardPolicy  # noqa: E402
from stable_baselines.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

try:  # these four need mpi4py
    from stable_baselines import DDPG, GAIL, PPO1, TRPO
    from stable_baselines.common.noise import AdaptiveParamNoiseSpec
    from stable_baselines.gail import ExpertDataset
except ImportError:
    DDPG = TRPO = PPO1 = GAIL = ExpertDataset = None

# Imported as the top-level module `fixture_policies`: its classes are pickled
# BY REFERENCE (module + name), like the zoo's utils.utils.CustomDQNPolicy.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_policies  # noqa: E402
from fixture_lib import (  # noqa: E402
    N_OBS,
    OBS_SEED,
    T_STEPS,
    actor_critic_policy,
    case_seed,
    close,
    decision_margins,
    drop_stale,
    expected_first,
    first_answer,
    is_recurrent,
    kw_repr,
    make_env,
    policy_name,
    record_flat,
    record_probs,
    sample_obs,
    seed_everything,
    space_info,
    versions,
    write_index,
    write_meta,
)

gym.logger.set_level(40)

ALGOS = {"a2c": A2C, "acer": ACER, "acktr": ACKTR, "dqn": DQN, "her": HER, "ppo2": PPO2,
         "sac": SAC, "td3": TD3, "ddpg": DDPG, "trpo": TRPO, "ppo1": PPO1, "gail": GAIL}


# ---------------------------------------------------------------------------
# Custom policy defined in __main__: cloudpickle stores this class BY VALUE
# (its code travels inside the saved file; a reader will not have it).
class CustomPolicy(FeedForwardPolicy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs,
                                           net_arch=[dict(pi=[16, 16], vf=[16])],
                                           feature_extraction="mlp", act_fun=tf.nn.relu)


# ---------------------------------------------------------------------------
# Per-algorithm training settings (small on purpose) and default step counts.
ALGO_KW = {
    # learning rates 10x the SB2 defaults: after so few updates the action heads (init_scale 0.01)
    # would otherwise stay near-uniform and deterministic argmax ties would be fragile in tests.
    "a2c": dict(n_steps=8, learning_rate=7e-3),
    "ppo2": dict(n_steps=16, nminibatches=1, noptepochs=2, learning_rate=2.5e-3),
    "acktr": dict(n_steps=8),
    "acer": dict(n_steps=8, buffer_size=400, replay_start=32, replay_ratio=1, learning_rate=7e-3),
    "trpo": dict(timesteps_per_batch=64, cg_iters=3, vf_iters=1),
    "ppo1": dict(timesteps_per_actorbatch=64, optim_batchsize=16, optim_epochs=2),
    "gail": dict(timesteps_per_batch=64, cg_iters=3, vf_iters=1, hidden_size_adversary=8, g_step=1, d_step=1),
    "dqn": dict(buffer_size=500, learning_starts=32, batch_size=16, target_network_update_freq=40,
                exploration_fraction=0.5),
    "sac": dict(buffer_size=500, learning_starts=32, batch_size=16),
    "td3": dict(buffer_size=500, learning_starts=32, batch_size=16, train_freq=16, gradient_steps=16),
    "ddpg": dict(buffer_size=500, nb_rollout_steps=20, nb_train_steps=10, batch_size=16),
}
STEPS = {"a2c": 256, "ppo2": 256, "acktr": 128, "acer": 160, "trpo": 128, "ppo1": 128, "gail": 128,
         "dqn": 200, "sac": 128, "td3": 128, "ddpg": 120}
VEC_ALGOS = {"a2c", "ppo2", "acktr", "acer"}   # trained on a DummyVecEnv with n_envs copies


CASES = []


def case(name, algo, policy, obs, act, covers, n_envs=1, pk=None, kw=None, steps=None,
         formats=("zip", "pkl"), kind="plain", **extra):
    c = dict(name=name, algo=algo, policy=policy, obs=obs, act=act, covers=covers, n_envs=n_envs,
             policy_kwargs=pk or {}, kw=kw or {}, steps=steps or STEPS.get(extra.get("inner", algo)),
             formats=tuple(formats), kind=kind)
    c.update(extra)
    CASES.append(c)


ZIP = ("zip",)  # CNN cases: zip only, for the 20 MB budget
SMALL = dict(net_arch=[dict(pi=[16], vf=[16])])
LSTM8 = dict(n_lstm=8, layers=[8])
CNN8 = dict(layers=[8])  # off-policy CNN cases: small MLP heads after nature_cnn (size budget)

# --- A2C / PPO2: every space family, feed-forward -------------------------
case("a2c_mlp_vec_discrete", "a2c", "MlpPolicy", "vec", "discrete",
     "A2C MlpPolicy with DEFAULT policy_kwargs (64-64 tanh, shared-nothing pi/vf); Box obs, Discrete act")
case("a2c_mlp_vec_box", "a2c", "MlpPolicy", "vec", "box",
     "A2C Box actions, asymmetric bounds: predict clips the Gaussian mean; mean/std from action_probability",
     pk=SMALL)
case("a2c_mlp_vec_multidiscrete", "a2c", "MlpPolicy", "vec", "multidiscrete",
     "A2C MultiDiscrete actions ([3,2]): per-dimension categoricals probs_0, probs_1", pk=SMALL)
case("a2c_mlp_vec_multibinary", "a2c", "MlpPolicy", "vec", "multibinary",
     "A2C MultiBinary actions: Bernoulli, deterministic = sigmoid(logit) rounded", pk=SMALL)
case("a2c_mlp_dobs_discrete", "a2c", "MlpPolicy", "dobs", "discrete",
     "A2C Discrete(5) observation: one-hot input encoding", pk=SMALL)
case("a2c_mlp_mdobs_box", "a2c", "MlpPolicy", "mdobs", "box",
     "A2C MultiDiscrete([3,4,2]) observation: concatenated one-hots", pk=SMALL)
case("a2c_mlp_mbobs_multidiscrete", "a2c", "MlpPolicy", "mbobs", "multidiscrete",
     "A2C MultiBinary(5) observation: cast to float", pk=SMALL)
case("a2c_mlp_bounded_discrete", "a2c", "MlpPolicy", "bounded", "discrete",
     "A2C Box obs with finite non-[0,255] bounds: MLP policies do NOT rescale", pk=SMALL)
case("a2c_mlp_layers16", "a2c", "MlpPolicy", "vec", "discrete",
     "A2C deprecated layers=[16] (= net_arch [dict(vf=[16], pi=[16])])", pk=dict(layers=[16]))
case("a2c_mlp_elu", "a2c", "MlpPolicy", "vec", "box",
     "A2C act_fun=tf.nn.elu with shared+split net_arch", pk=dict(net_arch=[16, dict(pi=[8], vf=[8])],
                                                                 act_fun=tf.nn.elu))
case("ppo2_mlp_vec_discrete", "ppo2", "MlpPolicy", "vec", "discrete",
     "PPO2 MlpPolicy with DEFAULT policy_kwargs; Box obs, Discrete act", n_envs=2)
case("ppo2_mlp_vec_box", "ppo2", "MlpPolicy", "vec", "box",
     "PPO2 Box actions with asymmetric bounds (clip of the mean), state-independent logstd", pk=SMALL)
case("ppo2_mlp_vec_multidiscrete", "ppo2", "MlpPolicy", "vec", "multidiscrete",
     "PPO2 MultiDiscrete actions", pk=SMALL)
case("ppo2_mlp_vec_multibinary", "ppo2", "MlpPolicy", "vec", "multibinary",
     "PPO2 MultiBinary actions", pk=SMALL)
case("ppo2_mlp_dobs_box", "ppo2", "MlpPolicy", "dobs", "box",
     "PPO2 Discrete observation (one-hot) with Box actions", pk=SMALL)
case("ppo2_mlp_mdobs_discrete", "ppo2", "MlpPolicy", "mdobs", "discrete",
     "PPO2 MultiDiscrete observation (concatenated one-hots)", pk=SMALL)
case("ppo2_mlp_mbobs_multibinary", "ppo2", "MlpPolicy", "mbobs", "multibinary",
     "PPO2 MultiBinary observation and MultiBinary actions", pk=SMALL)
case("ppo2_mlp_bounded_box", "ppo2", "MlpPolicy", "bounded", "box",
     "PPO2 Box obs with finite non-[0,255] bounds (no rescale for MLP)", pk=SMALL)
case("ppo2_mlp_netarch_relu", "ppo2", "MlpPolicy", "vec", "discrete",
     "PPO2 net_arch=[16, dict(pi=[8], vf=[8, 8])] with act_fun=tf.nn.relu",
     pk=dict(net_arch=[16, dict(pi=[8], vf=[8, 8])], act_fun=tf.nn.relu))
case("ppo2_custom_main", "ppo2", "CustomPolicy", "vec", "discrete",
     "custom policy class defined in __main__ (pickled BY VALUE by cloudpickle): "
     "net_arch=[dict(pi=[16,16], vf=[16])], relu, mlp", policy_obj=CustomPolicy)
case("ppo2_mlp_vecnormalize", "ppo2", "MlpPolicy", "offset", "discrete",
     "PPO2 trained inside VecNormalize(norm_obs, norm_reward): vecnormalize.pkl (2.10 save) and "
     "zoo-style obs_rms.pkl/ret_rms.pkl; golden obs = normalize_obs(obs_raw)", pk=SMALL, kind="vecnormalize")

# --- CNN feed-forward (zip only) -----------------------------------------
case("a2c_cnn_img_discrete", "a2c", "CnnPolicy", "img_wide", "discrete",
     "A2C CnnPolicy (nature_cnn), uint8 non-square 44x40x3 image: /255 scaling; conv3 output 2x1 so "
     "the flatten order into fc1 matters", formats=ZIP)
# PPO2 CnnPolicy: covered by ppo2_cnn_floatimg_box (and uint8 + PPO2 by ppo2_cnnlstm_img_discrete);
# a separate uint8 PPO2 CnnPolicy case was dropped for the 20 MB budget.
case("ppo2_cnn_floatimg_box", "ppo2", "CnnPolicy", "img_float", "box",
     "PPO2 CnnPolicy on a float32 image Box in [-1,1]: scaling (x-low)/(high-low); Box actions",
     formats=ZIP)

# --- ACKTR / TRPO / PPO1 / GAIL ------------------------------------------
case("acktr_mlp_vec_discrete", "acktr", "MlpPolicy", "vec", "discrete",
     "ACKTR MlpPolicy, DEFAULT policy_kwargs, Discrete act")
case("acktr_mlp_vec_box", "acktr", "MlpPolicy", "vec", "box", "ACKTR MlpPolicy Box act (asymmetric)", pk=SMALL)
case("acktr_cnn_img_discrete", "acktr", "CnnPolicy", "img", "discrete", "ACKTR CnnPolicy, uint8 image",
     formats=ZIP)
case("trpo_mlp_vec_discrete", "trpo", "MlpPolicy", "vec", "discrete",
     "TRPO MlpPolicy DEFAULT policy_kwargs (params also hold the 'oldpi' copy)")
case("trpo_mlp_vec_box", "trpo", "MlpPolicy", "vec", "box", "TRPO MlpPolicy Box act (asymmetric)", pk=SMALL)
# TRPO CnnPolicy is left out for the 20 MB budget (model + oldpi = 2 nature_cnn towers): it is the
# same policy class and variable naming as ppo1_cnn_img_discrete, and 'oldpi' is covered by trpo_mlp_*.
case("ppo1_mlp_vec_discrete", "ppo1", "MlpPolicy", "vec", "discrete",
     "PPO1 MlpPolicy DEFAULT policy_kwargs (params also hold 'oldpi')")
case("ppo1_mlp_vec_box", "ppo1", "MlpPolicy", "vec", "box", "PPO1 MlpPolicy Box act (asymmetric)", pk=SMALL)
case("ppo1_cnn_img_discrete", "ppo1", "CnnPolicy", "img", "discrete", "PPO1 CnnPolicy, uint8 image",
     formats=ZIP)
case("gail_mlp_vec_discrete", "gail", "MlpPolicy", "vec", "discrete",
     "GAIL (TRPO + discriminator) MlpPolicy, Discrete act; file also carries the pickled ExpertDataset",
     pk=SMALL, kind="gail")
case("gail_mlp_vec_box", "gail", "MlpPolicy", "vec", "box",
     "GAIL MlpPolicy, Box act (asymmetric)", pk=SMALL, kind="gail")
# TRPO / PPO1 / GAIL build their policy with n_batch=None, which recurrent policies need
# fixed, so they support no LSTM policy (SB2 limitation): no such case.

# --- ACER (Discrete actions only, SB2 limitation) -------------------------
case("acer_mlp_vec_discrete", "acer", "MlpPolicy", "vec", "discrete",
     "ACER MlpPolicy DEFAULT policy_kwargs (probs are the softmax policy; q head in params)", n_envs=2)
case("acer_cnn_img_discrete", "acer", "CnnPolicy", "img", "discrete", "ACER CnnPolicy, uint8 image",
     n_envs=2, formats=ZIP)
case("acer_mlplstm_vec_discrete", "acer", "MlpLstmPolicy", "vec", "discrete",
     "ACER MlpLstmPolicy (n_lstm=8, layers=[8]), 2 envs", n_envs=2, pk=LSTM8)
case("acer_mlplnlstm_vec_discrete", "acer", "MlpLnLstmPolicy", "vec", "discrete",
     "ACER MlpLnLstmPolicy (layer-normalised LSTM)", n_envs=2, pk=LSTM8)
# ACER CnnLstmPolicy is left out for the size budget: the same policy class is covered by
# ppo2_cnnlstm_img_discrete, and ACER's recurrent handling by acer_mlplstm / acer_mlplnlstm.

# --- Recurrent A2C / PPO2 / ACKTR (n_envs=2) -----------------------------
case("a2c_mlplstm_vec_discrete", "a2c", "MlpLstmPolicy", "vec", "discrete",
     "A2C MlpLstmPolicy legacy layers=[8] + LSTM 8, 2 envs, masks reset env 0 at t=2", n_envs=2, pk=LSTM8)
case("a2c_mlplnlstm_vec_box", "a2c", "MlpLnLstmPolicy", "vec", "box",
     "A2C MlpLnLstmPolicy (layer-norm LSTM), Box act", n_envs=2, pk=LSTM8)
case("ppo2_mlplstm_vec_box", "ppo2", "MlpLstmPolicy", "vec", "box",
     "PPO2 MlpLstmPolicy, Box act, 2 envs", n_envs=2, pk=LSTM8, kw=dict(nminibatches=2))
case("ppo2_mlplnlstm_vec_multidiscrete", "ppo2", "MlpLnLstmPolicy", "vec", "multidiscrete",
     "PPO2 MlpLnLstmPolicy, MultiDiscrete act", n_envs=2, pk=LSTM8, kw=dict(nminibatches=2))
case("ppo2_cnnlstm_img_discrete", "ppo2", "CnnLstmPolicy", "img", "discrete",
     "PPO2 CnnLstmPolicy (nature_cnn + LSTM 8)", n_envs=2, pk=dict(n_lstm=8), kw=dict(nminibatches=2),
     formats=ZIP)
case("a2c_cnnlnlstm_img_discrete", "a2c", "CnnLnLstmPolicy", "img", "discrete",
     "A2C CnnLnLstmPolicy (nature_cnn + layer-norm LSTM 8)", n_envs=2, pk=dict(n_lstm=8), formats=ZIP)
case("ppo2_lstm_netarch_mid", "ppo2", "MlpLstmPolicy", "vec", "discrete",
     "PPO2 MlpLstmPolicy net_arch=[8, 'lstm', dict(pi=[8], vf=[8])] (new-style LSTM net_arch)",
     n_envs=2, pk=dict(n_lstm=8, net_arch=[8, "lstm", dict(pi=[8], vf=[8])]), kw=dict(nminibatches=2))
case("a2c_lstm_netarch_first", "a2c", "MlpLstmPolicy", "vec", "box",
     "A2C MlpLstmPolicy net_arch=['lstm', 8] (LSTM first, then a shared layer)",
     n_envs=2, pk=dict(n_lstm=8, net_arch=["lstm", 8]))
case("acktr_mlplstm_vec_discrete", "acktr", "MlpLstmPolicy", "vec", "discrete",
     "ACKTR MlpLstmPolicy (n_lstm=8, layers=[8]), 2 envs", n_envs=2, pk=LSTM8)

# --- DQN -------------------------------------------------------------------
case("dqn_mlp_vec_discrete", "dqn", "MlpPolicy", "vec", "discrete",
     "DQN MlpPolicy DEFAULT policy_kwargs (64-64 relu, dueling); q_values; params hold target net")
case("dqn_lnmlp_vec_discrete", "dqn", "LnMlpPolicy", "vec", "discrete", "DQN LnMlpPolicy (layer norm)")
case("dqn_cnn_img_discrete", "dqn", "CnnPolicy", "img", "discrete",
     "DQN CnnPolicy (dueling state_value MLP on the CNN features)", pk=CNN8, formats=ZIP)
case("dqn_lncnn_img_discrete", "dqn", "LnCnnPolicy", "img", "discrete", "DQN LnCnnPolicy", pk=CNN8, formats=ZIP)
case("dqn_mlp_nodueling", "dqn", "MlpPolicy", "bounded", "discrete",
     "DQN MlpPolicy dueling=False, bounded Box obs", pk=dict(dueling=False))
case("dqn_mlp_layers8_tanh", "dqn", "MlpPolicy", "vec", "discrete",
     "DQN MlpPolicy layers=[8], act_fun=tf.nn.tanh", pk=dict(layers=[8], act_fun=tf.nn.tanh))
case("dqn_custom_module", "dqn", "CustomDQNPolicy", "vec", "discrete",
     "zoo-style custom class fixture_policies.CustomDQNPolicy (layers=[16], layer_norm) pickled BY "
     "REFERENCE: the module is absent for a reader", policy_obj=fixture_policies.CustomDQNPolicy)

# --- SAC / TD3 / DDPG --------------------------------------------------------
case("sac_mlp_vec_box", "sac", "MlpPolicy", "vec", "box",
     "SAC MlpPolicy DEFAULT kwargs, asymmetric Box act: tanh squash then unscale; pre-tanh mean/std")
case("sac_lnmlp_vec_box", "sac", "LnMlpPolicy", "bounded", "box_sym", "SAC LnMlpPolicy (layer norm)")
case("sac_cnn_img_box", "sac", "CnnPolicy", "img", "box", "SAC CnnPolicy, uint8 image", pk=CNN8, formats=ZIP)
case("sac_lncnn_img_box", "sac", "LnCnnPolicy", "img", "box_sym", "SAC LnCnnPolicy", pk=CNN8, formats=ZIP)
case("sac_custom_module", "sac", "CustomSACPolicy", "vec", "box",
     "zoo-style custom class fixture_policies.CustomSACPolicy (layers=[16,16]) pickled BY REFERENCE",
     policy_obj=fixture_policies.CustomSACPolicy)
case("td3_mlp_vec_box", "td3", "MlpPolicy", "vec", "box",
     "TD3 MlpPolicy DEFAULT kwargs, asymmetric Box act (tanh actor then unscale)")
case("td3_lnmlp_vec_box", "td3", "LnMlpPolicy", "bounded", "box_sym", "TD3 LnMlpPolicy")
case("td3_cnn_img_box", "td3", "CnnPolicy", "img", "box", "TD3 CnnPolicy, uint8 image", pk=CNN8, formats=ZIP)
case("td3_lncnn_img_box", "td3", "LnCnnPolicy", "img", "box_sym", "TD3 LnCnnPolicy", pk=CNN8, formats=ZIP)
case("ddpg_mlp_vec_box", "ddpg", "MlpPolicy", "vec", "box",
     "DDPG MlpPolicy DEFAULT kwargs, asymmetric Box act; values = critic(obs, actor(obs))")
case("ddpg_lnmlp_vec_box", "ddpg", "LnMlpPolicy", "bounded", "box_sym", "DDPG LnMlpPolicy")
case("ddpg_cnn_img_box", "ddpg", "CnnPolicy", "img", "box", "DDPG CnnPolicy, uint8 image", pk=CNN8, formats=ZIP)
# DDPG LnCnnPolicy is left out for the 20 MB budget (4 nature_cnn towers, about 1.8 MB); layer norm
# in DDPG is covered by ddpg_lnmlp_vec_box and DDPG's CNN by ddpg_cnn_img_box.
case("ddpg_mlp_normobs", "ddpg", "MlpPolicy", "offset", "box",
     "DDPG normalize_observations=True: in-graph obs_rms (non-trivial after training), clipped to "
     "observation_range=(-5, 5)", pk=dict(layers=[16, 16]), kw=dict(normalize_observations=True))
case("ddpg_lnmlp_normobs_paramnoise", "ddpg", "LnMlpPolicy", "offset", "box_sym2",
     "DDPG LnMlpPolicy (layer_norm) + normalize_observations=True + AdaptiveParamNoiseSpec together: "
     "param-noise actor copies (noise/, noise_adapt/) among the parameters, obs_rms in float64; the same "
     "case as make_era_fixtures.py saves in every older release",
     pk=dict(layers=[16, 16]), kw=dict(normalize_observations=True, param_noise="adaptive"))

# --- HER (dict observations of BitFlippingEnv, flattened for the inner model) -----
case("her_sac_bitflip", "her", "MlpPolicy", "her_mb", "her_box",
     "HER + SAC on continuous BitFlippingEnv(4): dict obs flattened (observation, achieved, desired)",
     inner="sac", pk=dict(layers=[16, 16]), kind="her")
case("her_td3_bitflip", "her", "MlpPolicy", "her_mb", "her_box", "HER + TD3 on continuous BitFlippingEnv(4)",
     inner="td3", pk=dict(layers=[16, 16]), kind="her")
case("her_ddpg_bitflip", "her", "MlpPolicy", "her_mb", "her_box", "HER + DDPG on continuous BitFlippingEnv(4)",
     inner="ddpg", pk=dict(layers=[16, 16]), kind="her")
case("her_dqn_bitflip", "her", "MlpPolicy", "her_mb", "her_discrete",
     "HER + DQN on discrete BitFlippingEnv(4)", inner="dqn", pk=dict(layers=[16]), kind="her")

N_BITS = 4


# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
def her_env(c, seed):
    env = BitFlippingEnv(n_bits=N_BITS, continuous=(c["inner"] != "dqn"), max_steps=N_BITS)
    env.obs_space.seed(seed)  # BitFlippingEnv.reset samples from this unseeded space
    env.action_space.seed(seed)
    env.reset()
    return env


def expert_dataset(c, seed):
    """A tiny hand-made expert dataset (5 episodes x 16 steps) for GAIL."""
    env = make_env(c, seed + 7)
    rng = np.random.RandomState(seed)
    obs, acts, rews, starts, returns = [], [], [], [], []
    for _ in range(5):
        o, done, ret, first = env.reset(), False, 0.0, True
        while not done:
            if isinstance(env.action_space, spaces.Discrete):
                a = int(np.argmax(o[:3]))
            else:
                a = np.clip(np.array([o[0], o[1] + 1.5]) + 0.1 * rng.randn(2),
                            env.action_space.low, env.action_space.high).astype(np.float32)
            obs.append(o)
            acts.append(a)
            starts.append(first)
            o, r, done, _ = env.step(a)
            rews.append(r)
            ret += r
            first = False
        returns.append(ret)
    actions = np.array(acts)
    if actions.ndim == 1:
        actions = actions.reshape(-1, 1)
    traj = {"actions": actions, "obs": np.array(obs), "rewards": np.array(rews),
            "episode_returns": np.array(returns), "episode_starts": np.array(starts)}
    return ExpertDataset(traj_data=traj, batch_size=16, verbose=0, sequential_preprocessing=True)


def train_and_save(c, case_dir, seed):
    algo = c["algo"]
    policy = c.get("policy_obj", c["policy"])
    kw = dict(ALGO_KW.get(c.get("inner", algo), {}))
    kw.update(c["kw"])
    if kw.get("param_noise") == "adaptive":  # a fresh object per training: SB2 adapts it in place
        kw["param_noise"] = AdaptiveParamNoiseSpec(initial_stddev=0.1, desired_action_stddev=0.1)
    common = dict(policy_kwargs=c["policy_kwargs"] or None, seed=seed, n_cpu_tf_sess=1, verbose=0)
    extra_files = []
    venv = None
    if c["kind"] == "her":
        env = her_env(c, seed)
        model = HER(policy, env, ALGOS[c["inner"]], n_sampled_goal=4, goal_selection_strategy="future",
                    **kw, **common)
    elif c["kind"] == "gail":
        env = make_env(c, seed)
        model = GAIL(policy, env, expert_dataset=expert_dataset(c, seed), **kw, **common)
    else:
        if algo in VEC_ALGOS:
            env = DummyVecEnv([(lambda i=i: make_env(c, seed, i)) for i in range(c["n_envs"])])
            if c["kind"] == "vecnormalize":
                env = venv = VecNormalize(env, norm_obs=True, norm_reward=True)
        else:
            env = make_env(c, seed)
        model = ALGOS[algo](policy, env, **kw, **common)
    model.learn(total_timesteps=c["steps"])
    model.save(os.path.join(case_dir, "model.zip"))
    if "pkl" in c["formats"]:
        model.save(os.path.join(case_dir, "model.pkl"), cloudpickle=True)
    if venv is not None:
        venv.save(os.path.join(case_dir, "vecnormalize.pkl"))
        venv.save_running_average(case_dir)  # the old zoo files: obs_rms.pkl, ret_rms.pkl
        extra_files += ["vecnormalize.pkl", "obs_rms.pkl", "ret_rms.pkl"]
    train_info = {"total_timesteps": c["steps"], "num_timesteps_done": int(getattr(model, "num_timesteps", 0))}
    close(model)
    del model
    return extra_files, train_info


def load(c, path, seed):
    tf.reset_default_graph()
    if c["kind"] == "her":
        return HER.load(path, env=her_env(c, seed))
    return ALGOS[c["algo"]].load(path)


def record(c, model, case_dir, seed):
    """SB2's own answers from the loaded model. Returns the golden dict."""
    inner = model.model if c["kind"] == "her" else model
    rng = np.random.RandomState(OBS_SEED)
    space = inner.observation_space
    rec = {}
    if is_recurrent(inner):
        n = inner.n_envs
        obs = sample_obs(space, rng, T_STEPS * n)
        obs = obs.reshape((T_STEPS, n) + obs.shape[1:])
        mask = np.zeros((T_STEPS, n), dtype=np.float32)
        mask[2, 0] = 1.0  # env 0 starts a new episode at t=2: its state is zeroed first
        state = np.array(inner.initial_state, dtype=np.float32)
        pol = actor_critic_policy(inner)
        per = {}
        for t in range(T_STEPS):
            step = {"state": state.copy()}
            actions, state_out = model.predict(obs[t], state=state, mask=mask[t], deterministic=True)
            step["actions"], step["state_out"] = np.asarray(actions), np.asarray(state_out)
            record_probs(step, model, inner.action_space, obs[t], state, mask[t])
            step["values"] = np.asarray(pol.value(obs[t], state, mask[t]))
            for k, v in step.items():
                per.setdefault(k, []).append(v)
            state = np.asarray(state_out)
        rec.update(obs=obs, mask=mask)
        rec.update({k: np.stack(v) for k, v in per.items()})
        return rec

    obs = sample_obs(space, rng, N_OBS)
    if c["kind"] == "vecnormalize":
        vn = VecNormalize.load(os.path.join(case_dir, "vecnormalize.pkl"),
                               DummyVecEnv([lambda: make_env(c, seed)]))
        vn.training = False
        rec["obs_raw"] = obs
        obs = vn.normalize_obs(obs).astype(np.float32)
    rec["obs"] = obs
    if c["kind"] == "her":
        wrapper = model.env  # HERGoalEnvWrapper
        dicts = [wrapper.convert_obs_to_dict(o) for o in obs]
        for key in ("observation", "achieved_goal", "desired_goal"):
            rec["obs_" + key] = np.stack([d[key] for d in dicts])
        # HER.predict on a batched dict keeps only the first entry (SB2's _UnvecWrapper.unvec_obs),
        # so the dicts go one at a time.
        rec["actions"] = np.stack([np.asarray(model.predict(d, deterministic=True)[0]) for d in dicts])
        # Sanity check only (kept out of the golden): the flat batch gives the same actions.
        flat = np.asarray(model.predict(obs, deterministic=True)[0])
        c["_her_flat_vs_dict"] = float(np.max(np.abs(flat.astype(np.float64) - rec["actions"])))
    else:
        rec["actions"] = np.asarray(model.predict(obs, deterministic=True)[0])
    rec["actions_obs_single"] = np.asarray(model.predict(obs[0], deterministic=True)[0])
    record_flat(rec, model, inner, obs)
    return rec


def run_case(c, out_dir):
    case_dir = os.path.join(out_dir, c["name"])
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    seed = case_seed(c["name"])
    seed_everything(seed)
    tf.reset_default_graph()
    extra_files, train_info = train_and_save(c, case_dir, seed)
    gc.collect()

    model = load(c, os.path.join(case_dir, "model.zip"), seed)
    inner = model.model if c["kind"] == "her" else model
    rec = record(c, model, case_dir, seed)
    params = {k: list(v.shape) for k, v in inner.get_parameters().items()}  # HER: the inner model's
    recurrent = is_recurrent(inner)
    meta = {
        "case": c["name"],
        "what_it_covers": c["covers"],
        "algo": c["algo"],
        "inner_algo": c.get("inner"),
        "policy": inner.policy.__name__,
        "policy_class": policy_name(inner.policy),
        "policy_kwargs": {k: kw_repr(v) for k, v in (inner.policy_kwargs or {}).items()},
        "algo_kwargs": {k: kw_repr(getattr(inner, k) if k == "param_noise" else v)
                        for k, v in dict(ALGO_KW.get(c.get("inner", c["algo"]), {}), **c["kw"]).items()},
        "observation_space": space_info(model.observation_space),
        "action_space": space_info(model.action_space),
        "n_envs": int(getattr(inner, "n_envs", 1)),
        "recurrent": recurrent,
        "formats": list(c["formats"]),
        "files": ["model.%s" % f for f in c["formats"]] + extra_files + ["golden.npz", "meta.json"],
        "versions": versions(),
        "params": params,
        "seeds": {"train": seed, "golden_obs": OBS_SEED},
        "training": train_info,
        "golden": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(rec.items())},
        "decision_margins": decision_margins(rec, inner.action_space),
    }
    if c["kind"] == "her":
        meta["inner_observation_space"] = space_info(inner.observation_space)
        meta["her"] = {"n_bits": N_BITS, "key_order": ["observation", "achieved_goal", "desired_goal"],
                       "note": "obs = flattened concat in key_order (what the inner model sees); "
                               "actions = HER.predict on each dict (one at a time)",
                       "max_abs_diff_predict_flat_batch_vs_dicts": c.pop("_her_flat_vs_dict")}
    if recurrent:
        meta["recurrent_info"] = {"n_lstm": int(np.asarray(inner.initial_state).shape[-1] // 2),
                                  "state_shape": list(np.asarray(inner.initial_state).shape),
                                  "T": T_STEPS, "mask": "mask[2, 0] = 1 (env 0 episode start at t=2)"}
    close(model)
    del model
    gc.collect()

    if "pkl" in c["formats"]:
        model = load(c, os.path.join(case_dir, "model.pkl"), seed)
        got, want = first_answer(model, rec), expected_first(rec)
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        meta["pkl_check"] = {"answers_like_zip": bool(got.shape == want.shape and diff <= 1e-6),
                             "max_abs_diff": diff}
        close(model)
        del model
        if not meta["pkl_check"]["answers_like_zip"]:
            raise RuntimeError("model.pkl answers differ from model.zip (max diff %g)" % diff)

    np.savez_compressed(os.path.join(case_dir, "golden.npz"), **rec)
    write_meta(case_dir, meta)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--only", default=None, help="fnmatch pattern on case names")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    cases = [c for c in CASES if args.only is None or fnmatch.fnmatch(c["name"], args.only)]
    if args.list:
        for c in cases:
            print(c["name"], c["algo"], c["policy"], c["obs"], c["act"], ",".join(c["formats"]))
        return
    os.makedirs(args.out_dir, exist_ok=True)
    if args.only is None:  # a full run drops this release's fixtures of cases that no longer exist
        drop_stale(args.out_dir, {c["name"] for c in CASES}, sb.__version__)
    ok, failed, t_all = 0, [], time.time()
    for c in cases:
        t0 = time.time()
        if ALGOS.get(c["algo"]) is None or ALGOS.get(c.get("inner", c["algo"])) is None:
            failed.append(c["name"])
            print("FAIL %s %s unavailable (mpi4py missing?)" % (c["name"], c["algo"]), flush=True)
            continue
        try:
            run_case(c, args.out_dir)
            ok += 1
            print("ok   %-34s %5.1fs" % (c["name"], time.time() - t0), flush=True)
        except Exception as exc:  # noqa: BLE001 - one case failing must not stop the others
            failed.append(c["name"])
            print("FAIL %s %s: %s" % (c["name"], type(exc).__name__, str(exc)[:300]), flush=True)
            if os.environ.get("FIXTURES_TRACEBACK"):
                traceback.print_exc()
            shutil.rmtree(os.path.join(args.out_dir, c["name"]), ignore_errors=True)
        gc.collect()
    write_index(args.out_dir)
    print("%d ok, %d failed%s, %.0fs" % (ok, len(failed), (": " + " ".join(failed)) if failed else "",
                                         time.time() - t_all))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
