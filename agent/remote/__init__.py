"""Remote control of a rig from the cloud, off unless ``[remote]`` turns it on.

- ``shadow = true``: the desired state of the named device shadow is a *layer* over the local config file; the
  operator's ``allow`` list says which sections or keys it may set. A change is validated like ``config check``,
  applied through the reload path, kept only if the pipeline stays healthy for ``confirm_s`` and reported.
- ``jobs = true``: IoT Jobs deliver signed model updates (verified against pinned Ed25519 keys, staged, canaried,
  swapped atomically with the previous model kept) and diagnostics requests.

This package must stay importable from ``agent.config`` (which imports ``agent.remote.config``): nothing here
imports the agent's config module at package level.
"""
