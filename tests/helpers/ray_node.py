"""``ray start`` that keeps a joining node on the loopback interface (tests only).

Ray rewrites 127.0.0.1 in ``--address`` and ``--node-ip-address`` to the machine's
"remotely reachable" address when a node joins a cluster, and then listens on every
interface. Tests must stay on 127.0.0.1, so this runs Ray's own ``ray`` command line with
that rewrite turned off: ``python -m tests.helpers.ray_node start --address 127.0.0.1:PORT
--node-ip-address 127.0.0.1 ...``.
"""

from __future__ import annotations

import sys

from ray._private import services
from ray.scripts.scripts import main

services.resolve_ip_for_localhost = lambda host: host

if __name__ == "__main__":
    sys.exit(main())
