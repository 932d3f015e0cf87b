#!/usr/bin/env python3
"""Reads a rosbag2 MCAP bag with an independent reader (Foxglove's `mcap` + `mcap-ros2-support`,
which decode CDR from the ros2msg schemas stored in the file) and prints, as JSON: the message
count and schema name per topic, and the first trc_control/msg/ControlSequence decoded.

    python scripts/bag_check.py tests/data/landing
"""
import json
import pathlib
import sys

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory


def main(path: str) -> None:
    p = pathlib.Path(path)
    if p.is_dir():
        p = sorted(p.glob("*.mcap"))[0]
    topics = {}
    first_seq = None
    with open(p, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, msg in reader.iter_decoded_messages():
            t = topics.setdefault(channel.topic, {"type": schema.name, "count": 0, "encoding": channel.message_encoding})
            t["count"] += 1
            if first_seq is None and schema.name == "trc_control/msg/ControlSequence":
                first_seq = {
                    "log_time_ns": message.log_time,
                    "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
                    "frame_id": msg.header.frame_id,
                    "dt": msg.dt,
                    "state_dim": msg.state_dim,
                    "control_dim": msg.control_dim,
                    "u": list(msg.u),
                    "x": list(msg.x),
                    "cost": msg.cost,
                    "status": msg.status,
                    "iterations": msg.iterations,
                    "solve_time_ms": msg.solve_time_ms,
                }
    json.dump({"file": str(p), "topics": topics, "first_control_sequence": first_seq}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
