"""PPO: the maths as pure tensor functions (:mod:`~detoxrl.rl.core`), the KL controllers
(:mod:`~detoxrl.rl.kl`), the training loop (:mod:`~detoxrl.rl.trainer`) and exact-resume checkpoints
(:mod:`~detoxrl.rl.checkpoint`).

``rl`` builds only on ``config``, ``errors``, ``utils``, ``optim``, ``stats`` and ``models``; the PPO
stage (:mod:`detoxrl.stages.ppo`) wires it to data, rewards, curriculum and constitution
(``tests/test_architecture.py`` checks this).
"""
