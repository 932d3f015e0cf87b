"""rclpy client of a running trc_node: waits for one CONVERGED ControlSequence on `control_sequence` and
one trc_node DiagnosticArray on `/diagnostics` reporting at least one answered cycle, prints both
as JSON, exits.

usage: rclpy_node_listener.py TIMEOUT_S
"""
import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from trc_control.msg import ControlSequence


def main() -> int:
    timeout = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("trc_rclpy_node_listener")
    seqs, diags = [], []
    node.create_subscription(ControlSequence, "control_sequence", lambda m: seqs.append(m) if m.status == ControlSequence.CONVERGED else None, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(s for s in m.status if s.name.startswith("trc_node")), 10)
    deadline = time.monotonic() + timeout
    def counted(d):
        # a report published after the node answered at least one state
        return any(kv.key == "cycles" and kv.value.isdigit() and int(kv.value) > 0 for kv in d.values)

    while (not seqs or not any(counted(d) for d in diags)) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    diags = [d for d in diags if counted(d)]
    if not seqs or not diags:
        print(f"rclpy_node_listener: sequences {len(seqs)}, diagnostics {len(diags)} within {timeout} s", file=sys.stderr)
        return 2
    m, d = seqs[-1], diags[-1]
    print(json.dumps({
        "status": m.status,
        "state_dim": m.state_dim,
        "control_dim": m.control_dim,
        "n_u": len(m.u),
        "u_finite": all(abs(v) < float("inf") for v in m.u),
        "diag_name": d.name,
        "diag_keys": [kv.key for kv in d.values],
        "diag": {kv.key: kv.value for kv in d.values},
    }), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
