"""Powered descent in Gazebo Harmonic: the Mars world, ros_gz_bridge, the lander adapter and trc_node.

    ros2 launch trc_control descent_gazebo.launch.py                 # with the Gazebo GUI
    ros2 launch trc_control descent_gazebo.launch.py headless:=true  # server only

Needs Gazebo Harmonic with ros_gz (ros_gz_sim, ros_gz_bridge, ros_gz_interfaces) on a system ROS 2
Jazzy; not run in CI (Gazebo is not installable on the CI machines; tests/gazebo_assets.rs checks
the world, the bridge and this file). docs/gazebo.md.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('trc_control')
    world = PathJoinSubstitution([share, 'gazebo', 'worlds', 'mars_landing.sdf'])
    bridge = PathJoinSubstitution([share, 'gazebo', 'bridge.yaml'])
    config = PathJoinSubstitution([share, 'config', 'descent.yaml'])
    adapter = PathJoinSubstitution([share, 'gazebo', 'lander_adapter.py'])
    arguments = [
        DeclareLaunchArgument('headless', default_value='false', description='Run the Gazebo server only'),
        DeclareLaunchArgument('model', default_value='', description='trc_node: checkpoint stem (empty: models/descent)'),
        DeclareLaunchArgument('device', default_value='auto', description='trc_node: auto, cpu or cuda'),
    ]
    gazebo = IncludeLaunchDescription(
        PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py']),
        launch_arguments={
            'gz_args': [PythonExpression(["'-s ' if '", LaunchConfiguration('headless'), "' == 'true' else ''"]), '-r ', world],
        }.items(),
    )
    bridge_node = Node(
        package='ros_gz_bridge',
        executable='parameter_bridge',
        name='bridge',
        output='screen',
        parameters=[{'config_file': bridge, 'use_sim_time': True}],
    )
    adapter_proc = ExecuteProcess(
        cmd=['python3', adapter, '--ros-args', '-p', 'use_sim_time:=true'],
        name='lander_adapter',
        output='screen',
    )
    trc_node = Node(
        package='trc_control',
        executable='trc_node',
        name='trc_node',
        output='screen',
        parameters=[config, {
            'use_sim_time': True,
            'node.model': LaunchConfiguration('model'),
            'node.device': LaunchConfiguration('device'),
        }],
    )
    return LaunchDescription(arguments + [gazebo, bridge_node, adapter_proc, trc_node])
