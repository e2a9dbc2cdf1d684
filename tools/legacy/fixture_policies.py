"""Custom policy classes for the SB2 fixtures that are pickled BY REFERENCE.

make_fixtures.py imports this file as the top-level module `fixture_policies`,
so the saved models reference `fixture_policies.CustomDQNPolicy` /
`fixture_policies.CustomSACPolicy` by name, exactly like rl-baselines-zoo
agents reference `utils.utils.CustomDQNPolicy`. A reader of those files has no
such module: it must recognise the class from what the file records.

Runs only inside the legacy environment (Python 3.7, TensorFlow 1.15, SB2 2.10.2).
"""
from stable_baselines.deepq.policies import FeedForwardPolicy as DQNFeedForwardPolicy
from stable_baselines.sac.policies import FeedForwardPolicy as SACFeedForwardPolicy


class CustomDQNPolicy(DQNFeedForwardPolicy):
    """DQN MLP with one 16-unit layer and layer normalisation (zoo style)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, layers=[16], layer_norm=True,
                                              feature_extraction="mlp")


class CustomSACPolicy(SACFeedForwardPolicy):
    """SAC MLP with two 16-unit layers (zoo style)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, layers=[16, 16],
                                              feature_extraction="mlp")
