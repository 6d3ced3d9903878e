"""Train an RL agent on SplitExit, evaluate it against every baseline and oracle, write a report.

The checkout's form of ``splitexit train`` (``splitexit/agents/train.py``, which says more):

    python train_agent.py                                  # PPO on SplitExit-v1, shipped settings
    python train_agent.py --algo dqn --total-timesteps 500000
    python train_agent.py --name ppo-SplitExit-v1-seed0 --resume  # continue an interrupted run
"""

from splitexit.agents.train import main, parse_run  # noqa: F401  (the tests call both)

if __name__ == "__main__":
    raise SystemExit(main())
