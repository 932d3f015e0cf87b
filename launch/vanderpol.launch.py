"""Van der Pol oscillator: trc_node with config/vanderpol.yaml; `sim:=true` also starts trc_sim.

    ros2 launch trc_control vanderpol.launch.py                       # the controller alone
    ros2 launch trc_control vanderpol.launch.py sim:=true episodes:=5 # closed loop against trc_sim

The project's own launcher (`trc launch vanderpol ...`, used by `make demo`) reads the same
arguments and starts the same executables with the same parameter file; tests/launch.rs keeps
the two in agreement.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    config = PathJoinSubstitution([FindPackageShare('trc_control'), 'config', 'vanderpol.yaml'])
    arguments = [
        DeclareLaunchArgument('sim', default_value='false', description='Also start the plant simulator trc_sim'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='Follow /clock (published by trc_sim)'),
        DeclareLaunchArgument('time_scale', default_value='1.0', description='trc_sim: sim time per wall time (needs use_sim_time)'),
        DeclareLaunchArgument('episodes', default_value='5', description='trc_sim: episodes to fly'),
        DeclareLaunchArgument('seed', default_value='0', description='trc_sim: seed of the episodes'),
        DeclareLaunchArgument('results_file', default_value='', description='trc_sim: append episode results (YAML) here'),
        DeclareLaunchArgument('model', default_value='', description='trc_node: checkpoint stem (empty: models/vanderpol)'),
        DeclareLaunchArgument('device', default_value='auto', description='trc_node: auto, cpu or cuda'),
        DeclareLaunchArgument('namespace', default_value='', description='Namespace of both nodes (one vehicle each: vehicle_1 -> /vehicle_1/state, ...)'),
    ]
    trc_node = Node(
        package='trc_control',
        executable='trc_node',
        name='trc_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        parameters=[config, {
            'use_sim_time': LaunchConfiguration('use_sim_time'),
            'node.model': LaunchConfiguration('model'),
            'node.device': LaunchConfiguration('device'),
        }],
    )
    trc_sim = Node(
        package='trc_control',
        executable='trc_sim',
        name='trc_sim',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        condition=IfCondition(LaunchConfiguration('sim')),
        parameters=[config, {
            'use_sim_time': LaunchConfiguration('use_sim_time'),
            'sim.time_scale': LaunchConfiguration('time_scale'),
            'sim.episodes': LaunchConfiguration('episodes'),
            'sim.seed': LaunchConfiguration('seed'),
            'sim.results_file': LaunchConfiguration('results_file'),
        }],
    )
    return LaunchDescription(arguments + [trc_node, trc_sim])
