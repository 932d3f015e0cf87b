"""rclpy client driving a managed trc_node (node.autostart false) through its lifecycle with the
standard lifecycle_msgs services, feeding it descent states, and counting what it publishes in
each state. Prints one JSON object.

usage: rclpy_lifecycle.py MODE   (MODE: full | bad_model)
"""
import json
import sys
import time

import rclpy
from geometry_msgs.msg import WrenchStamped
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from trc_control.msg import ControlSequence, Goal, State

X0 = [150.0, 50.0, 600.0, -10.0, 0.0, -45.0, 1750.0]


def main() -> int:
    mode = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("trc_lifecycle_client")
    out = {"mode": mode, "steps": []}
    counts = {"command": 0, "sequence": 0}
    events, logs = [], []
    node.create_subscription(WrenchStamped, "/command", lambda m: counts.__setitem__("command", counts["command"] + 1), 10)
    node.create_subscription(ControlSequence, "/control_sequence", lambda m: counts.__setitem__("sequence", counts["sequence"] + 1), 10)
    node.create_subscription(TransitionEvent, "/trc_node/transition_event", lambda m: events.append((m.transition.label, m.start_state.label, m.goal_state.label)), 10)
    node.create_subscription(Log, "/rosout", lambda m: logs.append(m.msg), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    goal_pub = node.create_publisher(Goal, "/goal", latched)
    state_pub = node.create_publisher(State, "/state", 10)
    change = node.create_client(ChangeState, "/trc_node/change_state")
    get = node.create_client(GetState, "/trc_node/get_state")
    avail = node.create_client(GetAvailableTransitions, "/trc_node/get_available_transitions")
    for c in (change, get, avail):
        if not c.wait_for_service(timeout_sec=60.0):
            print(json.dumps({"error": f"no service {c.srv_name}"}))
            return 2

    def call(client, req, timeout=90.0):
        f = client.call_async(req)
        rclpy.spin_until_future_complete(node, f, timeout_sec=timeout)
        return f.result()

    def state():
        return call(get, GetState.Request()).current_state.label

    def feed(seconds):
        """Publish the goal once and states at 10 Hz for `seconds`; returns (commands, sequences) received."""
        before = dict(counts)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            now = node.get_clock().now().to_msg()
            s = State()
            s.header.stamp, s.header.frame_id, s.x = now, "landing_site", X0
            state_pub.publish(s)
            t_spin = time.monotonic() + 0.1
            while time.monotonic() < t_spin:
                rclpy.spin_once(node, timeout_sec=0.02)
        return counts["command"] - before["command"], counts["sequence"] - before["sequence"]

    def transition(label):
        r = ChangeState.Request()
        r.transition = Transition(id=0, label=label)
        ok = call(change, r).success
        for _ in range(20):
            rclpy.spin_once(node, timeout_sec=0.02)
        return ok

    g = Goal()
    g.header.stamp, g.header.frame_id = node.get_clock().now().to_msg(), "landing_site"
    g.x_target, g.t_go = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1505.0], 20.0
    goal_pub.publish(g)
    out["steps"].append(["start", state(), *feed(1.0)])
    out["activate_unconfigured"] = transition("activate")
    ok = transition("configure")
    out["steps"].append(["configure", ok, state(), *feed(1.0)])
    if mode == "bad_model":
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.05)
        out["logs"] = [m for m in logs if "lifecycle" in m]
    else:
        out["available_inactive"] = sorted(d.transition.label for d in call(avail, GetAvailableTransitions.Request()).available_transitions)
        ok = transition("activate")
        out["steps"].append(["activate", ok, state(), *feed(3.0)])
        ok = transition("deactivate")
        feed(0.3)  # what was on its way when it deactivated
        out["steps"].append(["deactivate", ok, state(), *feed(1.5)])
        ok = transition("cleanup")
        out["steps"].append(["cleanup", ok, state(), *feed(0.5)])
        out["shutdown"] = transition("shutdown")
        out["events"] = events
    print(json.dumps(out), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
