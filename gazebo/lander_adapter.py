#!/usr/bin/env python3
"""Glue between trc_node and Gazebo's lander (rclpy; needs ros_gz_interfaces, installed with ros_gz).

    in   command    geometry_msgs/WrenchStamped  trc_node's thrust [N], landing frame
    out  gz_wrench  ros_gz_interfaces/EntityWrench  the same force on lander::base_link, bridged to
                                                   /world/mars_landing/wrench/persistent
    out  mass       std_msgs/Float64            mass [kg]: the start mass less the propellant burned,
                                                   |F| / (isp g0) integrated over sim time
    out  goal       trc_control/Goal            once at start: the pad, t_go (0: the controller chooses)

Gazebo's ApplyLinkWrench applies the force in world coordinates at the link origin (the centre of
mass in mars_landing.sdf). Parameters: mass0_kg (1750), m_dry_kg (1505), isp_s (225), g0 (9.80665),
t_go_s (0.0), link (lander::base_link). docs/gazebo.md.
"""
import math

import rclpy
from geometry_msgs.msg import WrenchStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_gz_interfaces.msg import Entity, EntityWrench
from std_msgs.msg import Float64
from trc_control.msg import Goal


class LanderAdapter(Node):
    def __init__(self):
        super().__init__("lander_adapter")
        p = {k: self.declare_parameter(k, v).value for k, v in
             dict(mass0_kg=1750.0, m_dry_kg=1505.0, isp_s=225.0, g0=9.80665, t_go_s=0.0, link="lander::base_link").items()}
        self.p = p
        self.mass = p["mass0_kg"]
        self.force = (0.0, 0.0, 0.0)
        self.last_t = None
        self.wrench_pub = self.create_publisher(EntityWrench, "gz_wrench", 10)
        self.mass_pub = self.create_publisher(Float64, "mass", 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.goal_pub = self.create_publisher(Goal, "goal", latched)
        self.create_subscription(WrenchStamped, "command", self.on_command, 10)
        self.create_timer(0.1, self.tick)
        self.goal_sent = False

    def now_s(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def burn(self):
        t = self.now_s()
        if self.last_t is not None and t > self.last_t:
            f = math.sqrt(sum(c * c for c in self.force))
            self.mass = max(self.p["m_dry_kg"], self.mass - f / (self.p["isp_s"] * self.p["g0"]) * (t - self.last_t))
        self.last_t = t

    def on_command(self, msg):
        f = msg.wrench.force
        if not all(math.isfinite(v) for v in (f.x, f.y, f.z)):
            self.get_logger().warn("non-finite command ignored")
            return
        self.burn()
        self.force = (f.x, f.y, f.z)
        w = EntityWrench()
        w.header = msg.header
        w.entity = Entity(name=self.p["link"], type=Entity.LINK)
        w.wrench.force = msg.wrench.force
        self.wrench_pub.publish(w)

    def tick(self):
        self.burn()
        self.mass_pub.publish(Float64(data=float(self.mass)))
        if not self.goal_sent and self.now_s() > 0.0:
            g = Goal()
            g.header.stamp = self.get_clock().now().to_msg()
            g.header.frame_id = "landing_site"
            g.x_target = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, self.p["m_dry_kg"]]
            g.t_go = float(self.p["t_go_s"])
            self.goal_pub.publish(g)
            self.goal_sent = True


def main():
    rclpy.init()
    rclpy.spin(LanderAdapter())


if __name__ == "__main__":
    main()
