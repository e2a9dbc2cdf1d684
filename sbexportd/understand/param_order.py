"""Names for parameters that old SB2 releases saved as a bare list.

SB2 loads such a list positionally: `zip(model.get_parameter_list(), params)`, i.e.
in the order TensorFlow created the variables. Given a candidate architecture, the
generators below reproduce that order (names only); `name_parameters` tries the
candidates (the one the saved policy class and policy_kwargs describe first) and
keeps the first whose shapes the adapter accepts end to end. The adapters check
every shape, so a wrong guess fails loudly instead of computing something else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product

import numpy as np

from ..errors import InconsistentParameters, SbExportError, UnsupportedModel
from .context import Context
from .spec import Box, PolicySpec

MAX_LAYERS = 5


# --- creation-order name generators ---------------------------------------------------
def _wb(scope: str) -> list[str]:
    return [f"{scope}/w:0", f"{scope}/b:0"]


def _nature_cnn(prefix: str) -> list[str]:
    return [n for s in ("c1", "c2", "c3", "fc1") for n in _wb(prefix + s)]


def _ac_heads(prefix: str, box: bool) -> list[str]:
    # value_fn = linear(.., 'vf') is created before proba_distribution_from_latent:
    # pi (w, b), pi/logstd for a Gaussian, then q.
    return _wb(prefix + "vf") + _wb(prefix + "pi") + ([prefix + "pi/logstd:0"] if box else []) + _wb(prefix + "q")


def _lstm(prefix: str, ln: bool) -> list[str]:
    roles = ["wx", "wh", "b"] + (["gx", "bx", "gh", "bh", "gc", "bc"] if ln else [])
    return [f"{prefix}lstm1/{r}:0" for r in roles]


@dataclass(frozen=True)
class ACArch:
    cnn: bool = False
    shared: int = 0          # shared_fc before the split (or before the LSTM)
    pi: int = 2
    vf: int = 2
    lstm: str = ""           # "", "legacy", "net_arch"
    ln: bool = False
    after: int = 0           # net_arch LSTM: shared_fc after the LSTM

    def names(self, prefix: str, box: bool) -> list[str]:
        out: list[str] = []
        if not self.lstm:
            if self.cnn:
                out += _nature_cnn(prefix)
            else:
                out += [n for i in range(self.shared) for n in _wb(f"{prefix}shared_fc{i}")]
                for i in range(max(self.pi, self.vf)):  # mlp_extractor's zip_longest
                    if i < self.pi:
                        out += _wb(f"{prefix}pi_fc{i}")
                    if i < self.vf:
                        out += _wb(f"{prefix}vf_fc{i}")
        elif self.lstm == "legacy":
            out += _nature_cnn(prefix) if self.cnn else [n for i in range(self.pi) for n in _wb(f"{prefix}pi_fc{i}")]
            out += _lstm(prefix, self.ln)
        else:
            out += [n for i in range(self.shared) for n in _wb(f"{prefix}shared_fc{i}")]
            out += _lstm(prefix, self.ln)
            out += [n for i in range(self.shared + 1, self.shared + 1 + self.after)
                    for n in _wb(f"{prefix}shared_fc{i}")]
            out += [n for i in range(self.pi) for n in _wb(f"{prefix}pi_fc{i}")]
            out += [n for i in range(self.vf) for n in _wb(f"{prefix}vf_fc{i}")]
        return out + _ac_heads(prefix, box)


def _contrib_branch(scope: str, hidden: int, ln: bool) -> list[str]:
    """deepq: fully_connected[_i]/weights, biases, LayerNorm[_i]/beta, gamma; last = output."""
    out = []
    for i in range(hidden + 1):
        sfx = "" if i == 0 else f"_{i}"
        out += [f"{scope}fully_connected{sfx}/weights:0", f"{scope}fully_connected{sfx}/biases:0"]
        if ln and i < hidden:
            out += [f"{scope}LayerNorm{sfx}/beta:0", f"{scope}LayerNorm{sfx}/gamma:0"]
    return out


def dqn_names(cnn: bool, hidden: int, ln: bool, dueling: bool) -> list[str]:
    av, sv = "deepq/model/action_value/", "deepq/model/state_value/"
    out = ["deepq/eps:0"]
    # With a CNN the action branch is the CNN plus the output layer only.
    out += (_nature_cnn(av) + _contrib_branch(av, 0, False)) if cnn else _contrib_branch(av, hidden, ln)
    if dueling:
        out += _contrib_branch(sv, hidden, ln)
    return out


def _dense_mlp(scope: str, hidden: int, ln: bool) -> list[str]:
    """tf_layers.mlp / DDPG's loop: fc{i}/kernel, bias, then LayerNorm[_i]/beta, gamma."""
    out = []
    for i in range(hidden):
        out += [f"{scope}fc{i}/kernel:0", f"{scope}fc{i}/bias:0"]
        if ln:
            sfx = "" if i == 0 else f"_{i}"
            out += [f"{scope}LayerNorm{sfx}/beta:0", f"{scope}LayerNorm{sfx}/gamma:0"]
    return out


def _kb(scope: str) -> list[str]:
    return [f"{scope}kernel:0", f"{scope}bias:0"]


def sac_names(cnn: bool, hidden: int, ln: bool) -> list[str]:
    pi, vfs = "model/pi/", "model/values_fn/"
    out = (_nature_cnn(pi) if cnn else []) + _dense_mlp(pi, hidden, ln) + _kb(pi + "dense/") + _kb(pi + "dense_1/")
    out += (_nature_cnn(vfs) if cnn else []) + _dense_mlp(vfs + "vf/", hidden, ln) + _kb(vfs + "vf/vf/")
    return out


def td3_names(cnn: bool, hidden: int, ln: bool) -> list[str]:
    pi = "model/pi/"
    return (_nature_cnn(pi) if cnn else []) + _dense_mlp(pi, hidden, ln) + _kb(pi + "dense/")


def ddpg_names(cnn: bool, hidden: int, ln: bool, obs_rms: bool, ret_rms: bool, param_noise: bool,
               saved_twice: bool = False, critic_out: str = "qf_output") -> list[str]:
    """get_parameter_list: model/ (actor, critic), noise/ and noise_adapt/ actors (param
    noise), target/, then input/obs_rms/ and input/ret_rms/ (sum, sumsq, count each).

    Older releases saved other lists (tests/fixtures/v*_ddpg_*: one file per era):
    up to 2.3 every trainable variable once, no statistics, the critic's output layer
    named qf/qf; 2.4 every trainable variable twice (find_trainable_variables ignored
    its scope, so `params` and `target_params` were both all of them;
    stable-baselines#363), still no statistics; 2.5 the same, then the statistics.
    saved_twice names the second copy DUPLICATE + name, and name_parameters checks it
    equals the first."""
    def actor(root, scope="pi"):
        return (_nature_cnn(f"{root}{scope}/") if cnn else []) + _dense_mlp(f"{root}{scope}/", hidden, ln) + \
            _kb(f"{root}{scope}/{scope}/")

    def critic(root):
        return (_nature_cnn(root + "qf/") if cnn else []) + _dense_mlp(root + "qf/", hidden, ln) + \
            _kb(f"{root}qf/{critic_out}/")

    out = actor("model/") + critic("model/")
    if param_noise:
        out += actor("", "noise") + actor("", "noise_adapt")
    out += actor("target/") + critic("target/")
    if saved_twice:
        out += [DUPLICATE + name for name in out]
    for used, scope in ((obs_rms, "obs_rms"), (ret_rms, "ret_rms")):
        if used:
            out += [f"input/{scope}/runningsum:0", f"input/{scope}/runningsumsq:0", f"input/{scope}/count:0"]
    return out


DUPLICATE = "saved-twice:"


# --- candidates ------------------------------------------------------------------------
def _kw_layers(ctx: Context, default: int = 2) -> int | None:
    layers = ctx.policy_kwargs.get("layers")
    return len(layers) if isinstance(layers, (list, tuple)) else None


def _ac_candidates(ctx: Context) -> Iterator[ACArch]:
    name, kw = ctx.policy.name, ctx.policy_kwargs
    cnn_known = name.startswith("Cnn")
    ln_known = "LnLstm" in name
    lstm_known = "Lstm" in name
    net_arch = kw.get("net_arch")
    layers = kw.get("layers")
    if isinstance(net_arch, (list, tuple)):
        ints = [x for x in net_arch if isinstance(x, int) or x == "lstm"]
        tail = next((x for x in net_arch if isinstance(x, dict)), {}) or {}
        pi, vf = len(tail.get("pi", []) or []), len(tail.get("vf", []) or [])
        if "lstm" in ints:
            at = ints.index("lstm")
            yield ACArch(shared=at, after=len(ints) - at - 1, pi=pi, vf=vf, lstm="net_arch", ln=ln_known)
        else:
            yield ACArch(shared=len(ints), pi=pi, vf=vf)
    elif ctx.policy.known:
        n = len(layers) if isinstance(layers, (list, tuple)) else 2
        if lstm_known:
            yield ACArch(cnn=cnn_known, pi=n, vf=0, lstm="legacy", ln=ln_known)
        else:
            yield ACArch(cnn=cnn_known, pi=n, vf=n)
    # Then everything a custom class could be, smallest first.
    yield ACArch(cnn=True, pi=0, vf=0)
    for ln in (False, True):
        yield ACArch(cnn=True, pi=0, vf=0, lstm="legacy", ln=ln)
    for total in range(3 * MAX_LAYERS):
        for shared, pi, vf in product(range(MAX_LAYERS), repeat=3):
            if shared + pi + vf == total:
                yield ACArch(shared=shared, pi=pi, vf=vf)
    for ln in (False, True):
        for pi in range(MAX_LAYERS):
            yield ACArch(pi=pi, vf=0, lstm="legacy", ln=ln)
        for shared, after, pi, vf in product(range(3), repeat=4):
            yield ACArch(shared=shared, after=after, pi=pi, vf=vf, lstm="net_arch", ln=ln)


def _off_policy_candidates(ctx: Context) -> Iterator[tuple[bool, int, bool]]:
    """(cnn, hidden layers, layer_norm) for DQN/SAC/TD3/DDPG policies."""
    name, kw = ctx.policy.name, ctx.policy_kwargs
    n = _kw_layers(ctx)
    if ctx.policy.known or n is not None or "layer_norm" in kw:
        yield name.endswith("CnnPolicy"), 2 if n is None else n, bool(kw.get("layer_norm", name.startswith("Ln")))
    for cnn, ln, hidden in product((False, True), (False, True), range(MAX_LAYERS + 1)):
        yield cnn, hidden, ln


def candidate_names(ctx: Context) -> Iterator[list[str]]:
    algo, box = ctx.algo, isinstance(ctx.action_space, Box)
    if algo in ("a2c", "acer", "acktr", "ppo1", "ppo2", "trpo", "gail"):
        for arch in _ac_candidates(ctx):
            yield arch.names("model/", box)
    elif algo == "dqn":
        dueling_first = bool(ctx.policy_kwargs.get("dueling", True))
        for cnn, hidden, ln in _off_policy_candidates(ctx):
            for dueling in (dueling_first, not dueling_first):
                yield dqn_names(cnn, hidden, ln, dueling)
    elif algo == "sac":
        for cnn, hidden, ln in _off_policy_candidates(ctx):
            if hidden:
                yield sac_names(cnn, hidden, ln)
    elif algo == "td3":
        for cnn, hidden, ln in _off_policy_candidates(ctx):
            if hidden:
                yield td3_names(cnn, hidden, ln)
    elif algo == "ddpg":
        data = ctx.archive.data
        obs_rms, ret_rms = bool(data.get("normalize_observations")), bool(data.get("normalize_returns"))
        noise = data.get("param_noise") is not None
        for cnn, hidden, ln in _off_policy_candidates(ctx):
            if hidden:
                for out in ("qf_output", "qf"):
                    # as 2.6+ would list them; 2.5 (twice, then the statistics); 2.4 (twice); <= 2.3 (once)
                    yield ddpg_names(cnn, hidden, ln, obs_rms, ret_rms, noise, critic_out=out)
                    yield ddpg_names(cnn, hidden, ln, obs_rms, ret_rms, noise, True, out)
                    yield ddpg_names(cnn, hidden, ln, False, False, noise, True, out)
                    yield ddpg_names(cnn, hidden, ln, False, False, noise, critic_out=out)


def build_with(ctx: Context, build: Callable[[Context], PolicySpec]) -> PolicySpec:
    """Run an adapter and check the spec it makes (every op's parameter shapes
    against its inputs); for unnamed parameters, through `name_parameters`."""
    def checked(c: Context) -> PolicySpec:
        spec = build(c)
        if c.frame_stack:
            if spec.recurrent:
                raise UnsupportedModel("frame stacking in front of a recurrent (LSTM) policy is not supported; "
                                       "feed the stacked observation with frame_stack=0", c.source)
            spec.observation_space, spec.frame_stack = c.input_space, c.frame_stack
            assert c.stack_state is not None  # preprocess() stacked the frames
            spec.outputs["state"] = c.stack_state
            spec.notes.append(f"frames stacked in front of the policy (VecFrameStack n_stack={c.frame_stack}): "
                              f"obs is one observation, state carries the previous {c.frame_stack - 1}")
        spec.validate(c.source)
        return spec
    if ctx.archive.data.get("_params_unnamed") and ctx.algo != "her":
        return name_parameters(ctx, checked)
    return checked(ctx)


def _duplicates_agree(named: dict[str, np.ndarray]) -> bool:
    return all((o := named.get(k[len(DUPLICATE):])) is not None and np.array_equal(v, o)
               for k, v in named.items() if k.startswith(DUPLICATE))


def name_parameters(ctx: Context, build: Callable[[Context], PolicySpec]) -> PolicySpec:
    """Build the spec of a file whose parameters are an unnamed list.

    SB2 assigned such a list positionally and ignored any surplus, so a naming may
    cover only a prefix of it; but a naming that accounts for every saved tensor is
    tried first, and a shorter one only when none does."""
    values = list(ctx.archive.params.values())
    tried, seen = 0, set()
    first_error: SbExportError | None = None
    for whole in (True, False):
        for names in candidate_names(ctx):
            key = tuple(names)
            if key in seen or len(names) > len(values) or (len(names) == len(values)) != whole:
                continue
            seen.add(key)
            tried += 1
            named = dict(zip(names, values, strict=False))
            if not _duplicates_agree(named):
                continue
            named.update({f"#{i}": v for i, v in enumerate(values) if i >= len(names)})
            ctx.archive.params = named
            notes = list(ctx.notes)
            try:
                spec = build(ctx)
            except SbExportError as exc:
                first_error = first_error or exc
                ctx.notes[:] = notes
                continue
            twice = sum(1 for n in names if n.startswith(DUPLICATE))
            ctx.notes.append(
                f"parameters were saved without names (an old SB2 release); named by SB2's creation "
                f"order for this architecture ({len(names)} of {len(values)} tensors named"
                + (f"; {twice} are the second copy SB2 < 2.6 saved of every variable, identical to the "
                   f"first" if twice else "")
                + (f"; the other {len(values) - len(names)} are not read by predict, as in SB2's "
                   f"positional load" if len(names) < len(values) else "") + ")")
            return spec
    ctx.archive.params = {f"#{i}": v for i, v in enumerate(values)}
    shapes = [list(np.shape(v)) for v in values[:12]]
    raise InconsistentParameters(
        f"the file stores its {len(values)} parameters without names, and none of {tried} "
        f"architectures SB2's {ctx.algo.upper()} policies could have matches their shapes "
        f"{shapes}{' ...' if len(values) > 12 else ''}"
        + (f" (closest: {first_error})" if first_error else ""), ctx.source)
