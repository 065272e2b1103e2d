"""Deep RL placement: the MDP (env), the double-DQN agent and its training."""
