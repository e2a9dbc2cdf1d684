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
import json
import os
import platform
import random
import shutil
import sys
import time
import traceback
import warnings
import zlib

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KMP_WARNINGS", "0")

if sys.version_info[:2] != (3, 7):
    sys.exit("make_fixtures.py runs only in the legacy env (Python 3.7, TF 1.15, SB2 2.10.2): "
             "sh tools/legacy/setup_env.sh /tmp/sb2legacy && /tmp/sb2legacy/bin/python %s OUT_DIR"
             % sys.argv[0])

import numpy as np  # noqa: E402
import gym  # noqa: E402
from gym import spaces  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import cloudpickle  # noqa: E402
import stable_baselines as sb  # noqa: E402
from stable_baselines import A2C, ACER, ACKTR, DQN, HER, PPO2, SAC, TD3  # noqa: E402
from stable_baselines.common.policies import FeedForwardPolicy  # noqa: E402
from stable_baselines.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402
from stable_baselines.common.bit_flipping_env import BitFlippingEnv  # noqa: E402

try:  # these four need mpi4py
    from stable_baselines import DDPG, TRPO, PPO1, GAIL  # noqa: E402
    from stable_baselines.gail import ExpertDataset  # noqa: E402
except ImportError:
    DDPG = TRPO = PPO1 = GAIL = ExpertDataset = None

# Imported as the top-level module `fixture_policies`: its classes are pickled
# BY REFERENCE (module + name), like the zoo's utils.utils.CustomDQNPolicy.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_policies  # noqa: E402

gym.logger.set_level(40)

N_OBS = 32          # observations per non-recurrent golden
T_STEPS = 5         # time steps per recurrent golden
OBS_SEED = 12345    # np.random.RandomState seed for the golden observations

ALGOS = {"a2c": A2C, "acer": ACER, "acktr": ACKTR, "dqn": DQN, "her": HER, "ppo2": PPO2,
         "sac": SAC, "td3": TD3, "ddpg": DDPG, "trpo": TRPO, "ppo1": PPO1, "gail": GAIL}


# ---------------------------------------------------------------------------
# Custom policy defined in __main__: cloudpickle stores this class BY VALUE
# (its code travels inside the saved file; a reader will not have it).
class CustomPolicy(FeedForwardPolicy):
    def __init__(self, *args, **kwargs):
        super(CustomPolicy, self).__init__(*args, **kwargs,
                                           net_arch=[dict(pi=[16, 16], vf=[16])],
                                           feature_extraction="mlp", act_fun=tf.nn.relu)


# ---------------------------------------------------------------------------
# Spaces. Factories, so that every case gets fresh space objects (own RNG state).
def f32(*xs):
    return np.array(xs, dtype=np.float32)


SPACES = {
    # observations
    "vec": lambda: spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32),
    "bounded": lambda: spaces.Box(low=f32(-3, 0, -1, 2), high=f32(5, 1, 1, 8), dtype=np.float32),
    "offset": lambda: spaces.Box(low=f32(0, -10, 5, -1), high=f32(4, -6, 9, 1), dtype=np.float32),
    "dobs": lambda: spaces.Discrete(5),
    "mdobs": lambda: spaces.MultiDiscrete([3, 4, 2]),
    "mbobs": lambda: spaces.MultiBinary(5),
    "img": lambda: spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8),      # smallest nature_cnn input
    # non-square, 3 channels, and conv3 output 2x1 so the flatten order into fc1 matters
    "img_wide": lambda: spaces.Box(0, 255, shape=(44, 40, 3), dtype=np.uint8),
    "img_float": lambda: spaces.Box(-1.0, 1.0, shape=(36, 36, 1), dtype=np.float32),  # (x-low)/(high-low)
    # actions
    "discrete": lambda: spaces.Discrete(3),
    "box": lambda: spaces.Box(low=f32(-2, 0), high=f32(1, 3), dtype=np.float32),  # asymmetric bounds
    "box_sym": lambda: spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    "multidiscrete": lambda: spaces.MultiDiscrete([3, 2]),
    "multibinary": lambda: spaces.MultiBinary(3),
}


class SpaceEnv(gym.Env):
    """Tiny episodic env with given spaces: observations sampled from the space,
    a reward that depends a little on observation and action."""

    def __init__(self, observation_space, action_space, seed, ep_len=16):
        self.observation_space, self.action_space = observation_space, action_space
        self.observation_space.seed(seed)
        self.action_space.seed(seed + 1)
        self.rng = np.random.RandomState(seed + 2)
        self.ep_len, self.t, self._obs = ep_len, 0, None

    def reset(self):
        self.t = 0
        self._obs = self.observation_space.sample()
        return self._obs

    def step(self, action):
        self.t += 1
        o = np.asarray(self._obs, dtype=np.float64).ravel()
        a = np.asarray(action, dtype=np.float64).ravel()
        reward = float(np.tanh(0.1 * o.mean()) - 0.1 * np.mean(np.square(a - 0.5))
                       + 0.05 * self.rng.randn())
        self._obs = self.observation_space.sample()
        return self._obs, reward, self.t >= self.ep_len, {}

    def render(self, mode="human"):
        pass


def make_env(case, seed, idx=0):
    return SpaceEnv(SPACES[case["obs"]](), SPACES[case["act"]](), seed + 1000 * idx)


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
def sample_obs(space, rng, n):
    """Same sampler as ../shared/tools/oracle.py, except integer-dtype Box
    (images): uniform integers over the whole inclusive [low, high] range."""
    if isinstance(space, spaces.Box):
        if np.issubdtype(space.dtype, np.integer):
            return rng.randint(space.low.astype(np.int64), space.high.astype(np.int64) + 1,
                               size=(n,) + space.shape).astype(space.dtype)
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        finite = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6)
        normal = rng.normal(0.0, 1.0, size=(n,) + space.shape)
        uni = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), size=(n,) + space.shape)
        return np.where(finite, uni, normal).astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        return rng.randint(0, space.n, size=(n,))
    if isinstance(space, spaces.MultiDiscrete):
        return np.stack([rng.randint(0, k, size=(n,)) for k in space.nvec], axis=1)
    if isinstance(space, spaces.MultiBinary):
        return rng.randint(0, 2, size=(n, space.n))
    raise TypeError("unsupported observation space %r" % (space,))


def _num(x):
    x = float(x)
    if np.isfinite(x):
        return x
    return "inf" if x > 0 else "-inf"


def space_info(space):
    info = {"type": type(space).__name__, "repr": repr(space)}
    if isinstance(space, spaces.Box):
        info.update(shape=list(space.shape), dtype=str(space.dtype))
        if space.low.size <= 16:
            info.update(low=[_num(v) for v in space.low.ravel()], high=[_num(v) for v in space.high.ravel()])
        else:
            info.update(low_unique=sorted({_num(v) for v in np.unique(space.low)}, key=str),
                        high_unique=sorted({_num(v) for v in np.unique(space.high)}, key=str))
    elif isinstance(space, spaces.Discrete):
        info.update(n=int(space.n), shape=[])
    elif isinstance(space, spaces.MultiDiscrete):
        info.update(nvec=[int(v) for v in space.nvec], shape=list(space.shape))
    elif isinstance(space, spaces.MultiBinary):
        info.update(n=int(space.n), shape=[int(space.n)])
    elif isinstance(space, spaces.Dict):
        info["spaces"] = {k: space_info(v) for k, v in space.spaces.items()}
    return info


def kw_repr(value):
    """repr without memory addresses (functions as module.name)."""
    if callable(value) and hasattr(value, "__name__"):
        return "%s.%s" % (getattr(value, "__module__", "?"), value.__name__)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%r: %s" % (k, kw_repr(v)) for k, v in value.items())
    if isinstance(value, list):
        return "[%s]" % ", ".join(kw_repr(v) for v in value)
    return repr(value)


def case_seed(name):
    return zlib.crc32(name.encode()) % 100000


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)


def close(model):
    if model is None:
        return
    inner = getattr(model, "model", None) if isinstance(model, HER) else model
    sess = getattr(inner, "sess", None)
    if sess is not None:
        sess.close()


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


def algo_name(model):
    return type(model).__name__.lower()


def is_recurrent(model):
    return bool(getattr(model.policy, "recurrent", False))


def actor_critic_policy(inner):
    for attr in ("act_model", "step_model", "policy_pi"):
        p = getattr(inner, attr, None)
        if p is not None and hasattr(p, "value"):
            return p
    return None


def record_probs(rec, model, action_space, obs, state=None, mask=None, suffix=""):
    probs = model.action_probability(obs, state, mask)
    if probs is None:
        return
    if isinstance(action_space, spaces.Box):
        rec["mean" + suffix], rec["std" + suffix] = np.asarray(probs[0]), np.asarray(probs[1])
    elif isinstance(probs, list):
        for i, p in enumerate(probs):
            rec["probs_%d%s" % (i, suffix)] = np.asarray(p)
    else:
        rec["probs" + suffix] = np.asarray(probs)


def record_flat(rec, model, inner, obs):
    """The algorithm-specific extras for a batch of (flat) observations."""
    name = algo_name(inner)
    if name in ("a2c", "acer", "acktr", "ppo2", "trpo", "ppo1", "gail"):
        record_probs(rec, model, inner.action_space, obs)
        rec["values"] = np.asarray(actor_critic_policy(inner).value(obs))
    elif name == "dqn":
        with inner.sess.as_default():
            _, q_values, _ = inner.step_model.step(obs)
        rec["q_values"] = np.asarray(q_values)
        record_probs(rec, model, inner.action_space, obs)
    elif name == "sac":
        p = inner.policy_tf
        mean, std = p.proba_step(obs)
        rec["mean"], rec["std"] = np.asarray(mean), np.asarray(std)
        rec["values"] = inner.sess.run(p.value_fn, {p.obs_ph: obs}).reshape(-1)
    elif name == "ddpg":
        rec["values"] = inner.sess.run(inner.critic_with_actor_tf, {inner.obs_train: obs}).reshape(-1)
    # td3: actions only


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


def decision_margins(rec, action_space):
    """How far SB2's deterministic choices are from a tie: a test tolerance hint."""
    out = {}
    for k, v in rec.items():
        if k.startswith("probs") and not k.endswith("_error"):
            p = np.asarray(v, np.float64).reshape(-1, v.shape[-1])
            if isinstance(action_space, spaces.MultiBinary):
                out[k + "_min_abs_p_minus_half"] = float(np.abs(p - 0.5).min())
            else:
                s = np.sort(p, axis=1)
                out[k + "_min_top2_gap"] = float((s[:, -1] - s[:, -2]).min())
        if k == "q_values":
            s = np.sort(np.asarray(v, np.float64), axis=1)
            out["q_values_min_top2_gap"] = float((s[:, -1] - s[:, -2]).min())
    if isinstance(action_space, spaces.Box) and "mean" in rec and "state" not in rec:
        # on-policy Gaussian: predict returns clip(mean, low, high)
        if rec["mean"].shape == rec["actions"].shape:
            out["n_actions_clipped"] = int((np.abs(rec["actions"] - rec["mean"]) > 0).sum())
    return out


def first_answer(c, model, rec):
    """What the pkl-loaded model must reproduce: deterministic actions (+ state)."""
    if "mask" in rec:
        a, s = model.predict(rec["obs"][0], state=rec["state"][0], mask=rec["mask"][0], deterministic=True)
        return np.concatenate([np.asarray(a, np.float64).ravel(), np.asarray(s, np.float64).ravel()])
    return np.asarray(model.predict(rec["obs"], deterministic=True)[0], np.float64).ravel()


def expected_first(rec):
    if "mask" in rec:
        return np.concatenate([rec["actions"][0].astype(np.float64).ravel(), rec["state_out"][0].ravel()])
    return rec["actions"].astype(np.float64).ravel()


def versions():
    import mpi4py  # noqa
    return {"stable_baselines": sb.__version__, "tensorflow": tf.__version__, "gym": gym.__version__,
            "numpy": np.__version__, "cloudpickle": cloudpickle.__version__,
            "python": platform.python_version()}


def policy_name(cls):
    return "%s.%s" % (cls.__module__, cls.__name__)


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
        "algo_kwargs": {k: kw_repr(v) for k, v in dict(ALGO_KW.get(c.get("inner", c["algo"]), {}),
                                                       **c["kw"]).items()},
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
        got, want = first_answer(c, model, rec), expected_first(rec)
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        meta["pkl_check"] = {"answers_like_zip": bool(got.shape == want.shape and diff <= 1e-6),
                             "max_abs_diff": diff}
        close(model)
        del model
        if not meta["pkl_check"]["answers_like_zip"]:
            raise RuntimeError("model.pkl answers differ from model.zip (max diff %g)" % diff)

    np.savez_compressed(os.path.join(case_dir, "golden.npz"), **rec)
    with open(os.path.join(case_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
    return meta


def type_name(space_meta):
    return space_meta["type"]


def write_index(out_dir):
    entries = []
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name, "meta.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            m = json.load(f)
        obs = m.get("inner_observation_space", m["observation_space"])
        entries.append({"case": m["case"], "algo": m["algo"], "inner_algo": m.get("inner_algo"),
                        "policy": m["policy"], "obs": type_name(m["observation_space"]),
                        "obs_shape": obs.get("shape"), "obs_dtype": obs.get("dtype"),
                        "action": type_name(m["action_space"]), "recurrent": m["recurrent"],
                        "formats": m["formats"], "what_it_covers": m["what_it_covers"]})
    index = {"generator": "tools/legacy/make_fixtures.py", "versions": versions(), "n_cases": len(entries),
             "cases": entries}
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return entries


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
    if args.only is None:  # a full run drops fixtures of cases that no longer exist
        known = {c["name"] for c in CASES}
        for name in os.listdir(args.out_dir):
            if name not in known and os.path.isfile(os.path.join(args.out_dir, name, "meta.json")):
                shutil.rmtree(os.path.join(args.out_dir, name))
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
        except Exception as exc:  # one case failing must not stop the others
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
