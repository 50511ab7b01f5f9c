"""The process's open-file limit, raised to what the system allows.

Every open chat stream holds descriptors in the API process: the client's connection and, while
its reply is generated, the provider's. Many systems start processes with a soft limit of 1,024
(a login shell; containers under recent Docker/containerd) though the hard limit is far higher,
which would cap an API process at a few hundred live streams, failing further connections with
EMFILE. Raising the soft limit up to the hard one needs no privilege (as the Go runtime does for
every program).
"""

from __future__ import annotations

import resource

# Far beyond what one event loop serves; keeps a hard limit of "unlimited" from meaning 2**63.
CEILING = 1_048_576


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (at most ``CEILING``); never lower
    it. Returns (before, after); a system that refuses leaves it as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return soft, soft
        return soft, wanted
    return soft, soft
