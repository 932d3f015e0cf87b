#!/usr/bin/env python3
"""An independent plant for trc_node: the lander as a 6-DoF rigid body in MuJoCo (rclpy node).

Speaks exactly what a Gazebo bridge gives the node (gazebo/bridge.yaml, README "Gazebo"):

    out  odom   nav_msgs/Odometry       pose of the navigation point (the centre of mass, its height
                                        counted from where it stands on the pad) in `landing_site`,
                                        twist in the body frame `base_link` (REP 105, as Gazebo's
                                        OdometryPublisher), best effort
    out  mass   std_msgs/Float64        vehicle mass [kg]
    out  goal   trc_control/Goal        the landing site and t_go (transient local), once per episode
    out  /clock rosgraph_msgs/Clock     sim time (remap it per vehicle)
    in   command geometry_msgs/WrenchStamped  force = commanded thrust vector [N] in `landing_site`

Dynamics nobody in this project wrote for guidance: MuJoCo integrates a rigid body (RK4, 2 ms) with
Mars gravity at its centre of mass 1.5 m above the base. The engine pushes along the body axis
only: its magnitude follows the command through a first-order lag (`engine_tau_s`), and the body
axis is turned toward the commanded direction by an attitude loop (PD on the tilt error, natural
frequency `att_wn`, damping `att_zeta`, torque limited to the engine gimbal's authority
`gimbal_deg` at the current thrust over the 1.5 m arm, plus `rcs_torque_nm`). The commanded
direction is therefore flown late, and the thrust lags the command: the guidance's point-mass
model is not this plant. Touchdown is the base (landing-leg plane) crossing the ground. Mass falls as |T| / (Isp g0).

Usage (`trc bench mujoco` writes the episodes file and starts this; see docs/mujoco.md):

    python mujoco/lander_plant.py --episodes EPISODES.yaml --results RESULTS.yaml [--time-scale 2]
        [--ros-args -r __ns:=/vehicle_1 -r /clock:=/vehicle_1/clock]

EPISODES.yaml: {vehicle: {...}, episodes: [{index, x0, x_target, t_go}, ...]} (vehicle keys:
gravity, g0, isp, m_dry, rho1, rho2, glide_slope_deg, position_tol, speed_tol, rate_hz).
RESULTS.yaml: one YAML document per episode (touchdown error and speed, tilt, propellant, success).
"""
import argparse
import math
import sys
import time

import mujoco
import numpy as np
import yaml

# Lander geometry and loop settings (SI). The inertia is a solid cylinder of the wet mass.
RADIUS_M = 1.2
HEIGHT_M = 3.0
COM_HEIGHT_M = 1.5
TIMESTEP_S = 0.002
SETTINGS = dict(engine_tau_s=0.1, att_wn=6.0, att_zeta=0.8, gimbal_deg=15.0, rcs_torque_nm=1000.0,
                max_tilt_touchdown_deg=10.0, cone_tol_m=0.27, timeout_after_t_go_s=30.0)


def model_xml(m_wet, gravity):
    ixx = m_wet * (3 * RADIUS_M ** 2 + HEIGHT_M ** 2) / 12.0
    izz = m_wet * RADIUS_M ** 2 / 2.0
    g = " ".join(str(v) for v in gravity)
    return f"""
<mujoco model="mars_lander">
  <option timestep="{TIMESTEP_S}" integrator="RK4" gravity="{g}"/>
  <worldbody>
    <geom name="ground" type="plane" size="200 200 0.1" contype="0" conaffinity="0"/>
    <body name="lander" pos="0 0 100">
      <freejoint name="free"/>
      <inertial pos="0 0 {COM_HEIGHT_M}" mass="{m_wet}" diaginertia="{ixx} {ixx} {izz}"/>
      <geom type="cylinder" pos="0 0 {COM_HEIGHT_M}" size="{RADIUS_M} {HEIGHT_M / 2}" contype="0" conaffinity="0" mass="0"/>
      <site name="base" pos="0 0 0"/>
    </body>
  </worldbody>
</mujoco>"""


def quat_from_z(d):
    """Unit quaternion (w, x, y, z) turning the body z axis onto the unit vector d."""
    z = np.array([0.0, 0.0, 1.0])
    c = float(np.clip(z @ d, -1.0, 1.0))
    axis = np.cross(z, d)
    s = np.linalg.norm(axis)
    if s < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0]) if c > 0 else np.array([0.0, 1.0, 0.0, 0.0])
    axis /= s
    a = math.acos(c)
    return np.concatenate([[math.cos(a / 2)], math.sin(a / 2) * axis])


class Lander:
    """The MuJoCo lander: state, engine lag, attitude loop, mass flow (no ROS here)."""

    def __init__(self, vehicle, settings=SETTINGS):
        self.v = vehicle
        self.s = settings
        self.m_wet = float(vehicle["m_wet"])
        self.model = mujoco.MjModel.from_xml_string(model_xml(self.m_wet, vehicle["gravity"]))
        self.data = mujoco.MjData(self.model)
        self.bid = self.model.body("lander").id
        self.inertia0 = self.model.body_inertia[self.bid].copy()
        self.mdot_per_n = 1.0 / (float(vehicle["isp"]) * float(vehicle["g0"]))

    def reset(self, x0, thrust_dir):
        d = self.data
        mujoco.mj_resetData(self.model, d)
        q = quat_from_z(thrust_dir / max(np.linalg.norm(thrust_dir), 1e-9))
        zb = np.zeros(3)
        mujoco.mju_rotVecQuat(zb, np.array([0.0, 0.0, 1.0]), q)
        # the navigation point (centre of mass less the leg height) at x0's position
        d.qpos[0:3] = np.asarray(x0[0:3]) + np.array([0.0, 0.0, COM_HEIGHT_M]) - COM_HEIGHT_M * zb
        d.qpos[3:7] = q
        d.qvel[0:3] = x0[3:6]
        self.set_mass(float(x0[6]))
        self.thrust = 0.0
        mujoco.mj_forward(self.model, d)

    def set_mass(self, m):
        self.m = m
        self.model.body_mass[self.bid] = m
        self.model.body_inertia[self.bid] = self.inertia0 * (m / self.m_wet)

    def rotation(self):
        return self.data.xmat[self.bid].reshape(3, 3)

    def step(self, cmd):
        """One MuJoCo step with the commanded thrust vector `cmd` [N] (landing frame)."""
        d, s = self.data, self.s
        mag = float(np.linalg.norm(cmd))
        self.thrust += (mag - self.thrust) * TIMESTEP_S / s["engine_tau_s"]
        self.thrust = max(self.thrust, 0.0)
        R = self.rotation()
        zb = R[:, 2]
        force = self.thrust * zb
        # attitude loop: PD toward the commanded direction, torque limited by the gimbal
        w_b = d.qvel[3:6].copy()
        if mag > 1e-6:
            zd = cmd / mag
            axis = np.cross(zb, zd)
            sa = np.linalg.norm(axis)
            angle = math.atan2(sa, float(zb @ zd))
            e_w = axis / sa * angle if sa > 1e-12 else np.zeros(3)
        else:
            e_w = np.zeros(3)
        e_b = R.T @ e_w
        wn, zeta = s["att_wn"], s["att_zeta"]
        inertia = self.model.body_inertia[self.bid]
        tau_b = inertia * (wn * wn * e_b - 2 * zeta * wn * w_b)
        tau_max = self.thrust * math.sin(math.radians(s["gimbal_deg"])) * COM_HEIGHT_M + s["rcs_torque_nm"]
        n = np.linalg.norm(tau_b)
        if n > tau_max:
            tau_b *= tau_max / n
        d.xfrc_applied[self.bid, 0:3] = force
        d.xfrc_applied[self.bid, 3:6] = R @ tau_b
        mujoco.mj_step(self.model, d)
        self.set_mass(max(self.m - self.thrust * self.mdot_per_n * TIMESTEP_S, 0.0))

    def base(self):
        """Position and velocity of the base (the landing-leg plane's centre), landing frame."""
        return self.data.qpos[0:3].copy(), self.data.qvel[0:3].copy()

    def nav_point(self):
        """The navigation point guidance is given: the centre of mass, its height counted from
        where it stands when the vehicle is upright on the pad (an altimeter less the leg
        height), and its velocity (no attitude motion in it, unlike the base's)."""
        p = self.data.xipos[self.bid].copy()
        p[2] -= COM_HEIGHT_M
        v = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, self.bid, v, 0)
        return p, v[3:6].copy()

    def tilt_deg(self):
        return math.degrees(math.acos(float(np.clip(self.rotation()[2, 2], -1.0, 1.0))))


def run(args):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy, HistoryPolicy
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Float64
    from geometry_msgs.msg import WrenchStamped
    from rosgraph_msgs.msg import Clock
    from trc_control.msg import Goal

    spec = yaml.safe_load(open(args.episodes))
    vehicle, episodes = spec["vehicle"], spec["episodes"]
    lander = Lander(vehicle)
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("mujoco_lander")
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    odom_pub = node.create_publisher(Odometry, "odom", best_effort)
    mass_pub = node.create_publisher(Float64, "mass", 10)
    goal_pub = node.create_publisher(Goal, "goal", latched)
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    latest = {"cmd": None, "n": 0}

    def on_command(msg):
        f = msg.wrench.force
        c = np.array([f.x, f.y, f.z])
        if np.all(np.isfinite(c)):
            latest["cmd"], latest["n"] = c, latest["n"] + 1

    node.create_subscription(WrenchStamped, "command", on_command, 10)

    def stamp(t):
        ns = int(round(t * 1e9))  # whole nanoseconds first: a fraction rounding up carries into sec
        return ns // 1_000_000_000, ns % 1_000_000_000

    def publish_clock(t):
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = stamp(t)
        clock_pub.publish(msg)

    def publish_state(t):
        p, v = lander.nav_point()
        R = lander.rotation()
        q = lander.data.xquat[lander.bid]
        o = Odometry()
        o.header.stamp.sec, o.header.stamp.nanosec = stamp(t)
        o.header.frame_id = "landing_site"
        o.child_frame_id = "base_link"
        o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z = map(float, p)
        o.pose.pose.orientation.w, o.pose.pose.orientation.x, o.pose.pose.orientation.y, o.pose.pose.orientation.z = map(float, q)
        vb = R.T @ v  # REP 105: the twist in the child frame
        o.twist.twist.linear.x, o.twist.twist.linear.y, o.twist.twist.linear.z = map(float, vb)
        wb = lander.data.qvel[3:6]
        o.twist.twist.angular.x, o.twist.twist.angular.y, o.twist.twist.angular.z = map(float, wb)
        odom_pub.publish(o)
        mass_pub.publish(Float64(data=float(lander.m)))

    def spin(timeout=0.0):
        rclpy.spin_once(node, timeout_sec=timeout)

    tan_gs = math.tan(math.radians(float(vehicle["glide_slope_deg"])))
    period = 1.0 / float(vehicle["rate_hz"])
    substeps = max(1, int(round(period / TIMESTEP_S)))
    t = 1000.0
    all_ok = True
    out = open(args.results, "a") if args.results else None
    # discovery: let trc_node see us before the first goal
    t_wait = time.monotonic()
    while node.count_subscribers("goal") == 0 and time.monotonic() - t_wait < 30.0:
        publish_clock(t)
        spin(0.05)
    for ep in episodes:
        x0 = np.array(ep["x0"], dtype=float)
        lander.reset(x0, -np.array(vehicle["gravity"], dtype=float))
        latest["cmd"], latest["n"] = None, 0
        t += 5.0
        g = Goal()
        g.header.stamp.sec, g.header.stamp.nanosec = stamp(t)
        g.header.frame_id = "landing_site"
        g.x_target = [float(v) for v in ep["x_target"]]
        g.t_go = float(ep["t_go"])
        # the clock moves first: a goal stamped ahead of the node's clock is refused
        for _ in range(4):
            publish_clock(t)
            spin(0.05)
        goal_pub.publish(g)
        # handshake: the vehicle waits, frozen, for the controller's first command
        t_wait = time.monotonic()
        while latest["cmd"] is None and time.monotonic() - t_wait < 60.0:
            publish_clock(t)
            publish_state(t)
            spin(0.1)
        if latest["cmd"] is None:
            node.get_logger().error(f"episode {ep['index']}: no command from the controller within 60 s")
            return 2
        lander.reset(x0, latest["cmd"])
        t_start, wall0 = t, time.monotonic()
        publish_state(t)
        min_cone, result = float("inf"), None
        while result is None:
            for k in range(substeps):
                spin(0.0)
                lander.step(latest["cmd"])
                t += TIMESTEP_S
                if k % 5 == 4:
                    publish_clock(t)
                p, v = lander.base()
                min_cone = min(min_cone, p[2] - tan_gs * math.hypot(p[0], p[1]))
                if p[2] <= 0.0:
                    result = "touchdown"
                    break
                if t - t_start > float(ep["t_go"]) + SETTINGS["timeout_after_t_go_s"] or np.linalg.norm(v) > 300.0:
                    result = "timeout" if np.linalg.norm(v) <= 300.0 else "diverged"
                    break
            # real time scaled: never ahead of the wall clock
            ahead = (t - t_start) / args.time_scale - (time.monotonic() - wall0)
            if ahead > 0:
                time.sleep(ahead)
            if result is None:
                publish_state(t)
            if args.trace and int(round((t - t_start) / period)) % 5 == 0:
                p, v = lander.base()
                c = latest["cmd"]
                ctilt = math.degrees(math.acos(max(-1.0, min(1.0, c[2] / max(np.linalg.norm(c), 1e-9)))))
                node.get_logger().info(f"t {t - t_start:6.2f} r {np.round(p, 2)} v {np.round(v, 2)} tilt {lander.tilt_deg():5.1f} cmd |T| {np.linalg.norm(c):7.0f} tilt {ctilt:5.1f} T {lander.thrust:7.0f}")
        p, v = lander.base()
        err, speed, tilt = float(math.hypot(p[0], p[1])), float(np.linalg.norm(v)), lander.tilt_deg()
        ok = (result == "touchdown" and err <= float(vehicle["position_tol"]) and speed <= float(vehicle["speed_tol"])
              and tilt <= SETTINGS["max_tilt_touchdown_deg"] and min_cone >= -SETTINGS["cone_tol_m"])
        all_ok &= ok
        doc = dict(index=int(ep["index"]), end=result, success=bool(ok), touchdown_error_m=err, touchdown_speed_mps=speed,
                   tilt_deg=tilt, propellant_kg=float(x0[6] - lander.m), cone_margin_min_m=float(min_cone),
                   flight_time_s=float(t - t_start), commands=int(latest["n"]))
        node.get_logger().info(f"episode {ep['index']}: {doc}")
        if out:
            out.write("---\n" + yaml.safe_dump(doc, sort_keys=False))
            out.flush()
    node.destroy_node()
    rclpy.shutdown()
    return 0 if all_ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", required=True)
    ap.add_argument("--results", default="")
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--trace", action="store_true", help="log the flight every 0.5 s")
    args, _ = ap.parse_known_args()
    sys.exit(run(args))


if __name__ == "__main__":
    main()
