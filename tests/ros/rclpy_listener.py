"""An independent ROS 2 client (rclpy) for the interop tests: subscribes to a
trc_control/msg/ControlSequence topic, prints the first message received as JSON, exits.

usage: rclpy_listener.py TOPIC TIMEOUT_S
"""
import json
import sys
import time

import rclpy
from trc_control.msg import ControlSequence


def main() -> int:
    topic, timeout = sys.argv[1], float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("trc_rclpy_listener")
    got = []
    node.create_subscription(ControlSequence, topic, got.append, 10)
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not got:
        print(f"rclpy_listener: nothing received on {topic} within {timeout} s", file=sys.stderr)
        return 2
    m = got[0]
    print(json.dumps({
        "stamp_sec": m.header.stamp.sec,
        "stamp_nanosec": m.header.stamp.nanosec,
        "frame_id": m.header.frame_id,
        "dt": m.dt,
        "state_dim": m.state_dim,
        "control_dim": m.control_dim,
        "u": list(m.u),
        "x": list(m.x),
        "cost": m.cost,
        "status": m.status,
        "iterations": m.iterations,
        "solve_time_ms": m.solve_time_ms,
        "FALLBACK_SHIFTED": ControlSequence.FALLBACK_SHIFTED,
        "ANYTIME": ControlSequence.ANYTIME,
        "TERMINAL": ControlSequence.TERMINAL,
    }), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
