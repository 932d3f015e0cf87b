//! The ROS 2 managed-node state machine (design.ros2.org "Managed nodes"; the ids and labels of
//! `lifecycle_msgs/msg/State` and `Transition`), ROS-free: trc_node serves the standard
//! `lifecycle_msgs` services over it (r2r has no lifecycle API). Primary states: unconfigured
//! (no model), inactive (model loaded and warmed up, no commands published), active (answering),
//! finalized (shutting down). A transition's work (load the model, warm it up, ...) is the
//! node's; its outcome decides the goal state: success moves on, failure goes back to the start
//! state (configure: unconfigured), and shutdown always finalizes.

use thiserror::Error;

/// A primary state (`lifecycle_msgs/msg/State` ids and labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleState {
    /// 1, `unconfigured`: no model loaded; states are not answered.
    Unconfigured,
    /// 2, `inactive`: model loaded and warmed up; states are not answered, nothing is published.
    Inactive,
    /// 3, `active`: the controller answers every state.
    Active,
    /// 4, `finalized`: the node is shutting down.
    Finalized,
}

/// A transition (`lifecycle_msgs/msg/Transition` ids and labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// 1, `configure`: unconfigured -> inactive (loads the model).
    Configure,
    /// 2, `cleanup`: inactive -> unconfigured (drops the model).
    Cleanup,
    /// 3, `activate`: inactive -> active (warm-up, then answering).
    Activate,
    /// 4, `deactivate`: active -> inactive (stops publishing).
    Deactivate,
    /// 5, `shutdown` from unconfigured.
    UnconfiguredShutdown,
    /// 6, `shutdown` from inactive.
    InactiveShutdown,
    /// 7, `shutdown` from active.
    ActiveShutdown,
}

/// A transition that cannot be taken.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LifecycleError {
    /// Not a transition of the standard machine.
    #[error("unknown transition id {id} / label `{label}` (ids 1-7: configure, cleanup, activate, deactivate, shutdown)")]
    Unknown {
        /// Requested id.
        id: u8,
        /// Requested label.
        label: String,
    },
    /// A transition not available in the current state.
    #[error("transition `{transition}` is not available in state `{state}` (available: {available})")]
    NotAvailable {
        /// Requested transition's label.
        transition: &'static str,
        /// Current state's label.
        state: &'static str,
        /// Labels of the available transitions.
        available: String,
    },
}

impl LifecycleState {
    /// All primary states.
    pub const ALL: [Self; 4] = [Self::Unconfigured, Self::Inactive, Self::Active, Self::Finalized];

    /// The `lifecycle_msgs/msg/State` id.
    pub fn id(self) -> u8 {
        match self {
            Self::Unconfigured => 1,
            Self::Inactive => 2,
            Self::Active => 3,
            Self::Finalized => 4,
        }
    }

    /// The standard label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unconfigured => "unconfigured",
            Self::Inactive => "inactive",
            Self::Active => "active",
            Self::Finalized => "finalized",
        }
    }

    /// The transitions available from this state.
    pub fn available(self) -> Vec<Transition> {
        match self {
            Self::Unconfigured => vec![Transition::Configure, Transition::UnconfiguredShutdown],
            Self::Inactive => vec![Transition::Cleanup, Transition::Activate, Transition::InactiveShutdown],
            Self::Active => vec![Transition::Deactivate, Transition::ActiveShutdown],
            Self::Finalized => vec![],
        }
    }

    /// The transition named by `id` (1-7) or, when `id` is 0, by `label` (`shutdown` picks the
    /// one of this state), if it is available here.
    ///
    /// # Errors
    /// [`LifecycleError::Unknown`] or [`LifecycleError::NotAvailable`].
    pub fn resolve(self, id: u8, label: &str) -> Result<Transition, LifecycleError> {
        let t = if id != 0 {
            Transition::from_id(id)
        } else if label == "shutdown" {
            self.available().into_iter().find(|t| t.is_shutdown())
        } else {
            Transition::ALL.into_iter().find(|t| t.label() == label)
        };
        let t = t.ok_or_else(|| LifecycleError::Unknown { id, label: label.to_string() })?;
        if self.available().contains(&t) {
            Ok(t)
        } else {
            Err(LifecycleError::NotAvailable {
                transition: t.label(),
                state: self.label(),
                available: self.available().iter().map(|t| t.label()).collect::<Vec<_>>().join(", "),
            })
        }
    }
}

impl Transition {
    /// All transitions.
    pub const ALL: [Self; 7] =
        [Self::Configure, Self::Cleanup, Self::Activate, Self::Deactivate, Self::UnconfiguredShutdown, Self::InactiveShutdown, Self::ActiveShutdown];

    /// The `lifecycle_msgs/msg/Transition` id.
    pub fn id(self) -> u8 {
        match self {
            Self::Configure => 1,
            Self::Cleanup => 2,
            Self::Activate => 3,
            Self::Deactivate => 4,
            Self::UnconfiguredShutdown => 5,
            Self::InactiveShutdown => 6,
            Self::ActiveShutdown => 7,
        }
    }

    /// The transition with id `id`.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The standard label (`unconfigured_shutdown` etc. are all labelled `shutdown`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Configure => "configure",
            Self::Cleanup => "cleanup",
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::UnconfiguredShutdown | Self::InactiveShutdown | Self::ActiveShutdown => "shutdown",
        }
    }

    /// One of the three shutdowns.
    pub fn is_shutdown(self) -> bool {
        matches!(self, Self::UnconfiguredShutdown | Self::InactiveShutdown | Self::ActiveShutdown)
    }

    /// The state it starts from.
    pub fn start(self) -> LifecycleState {
        match self {
            Self::Configure | Self::UnconfiguredShutdown => LifecycleState::Unconfigured,
            Self::Cleanup | Self::Activate | Self::InactiveShutdown => LifecycleState::Inactive,
            Self::Deactivate | Self::ActiveShutdown => LifecycleState::Active,
        }
    }

    /// The state it ends in when its work succeeded.
    pub fn goal(self) -> LifecycleState {
        match self {
            Self::Configure | Self::Deactivate => LifecycleState::Inactive,
            Self::Cleanup => LifecycleState::Unconfigured,
            Self::Activate => LifecycleState::Active,
            Self::UnconfiguredShutdown | Self::InactiveShutdown | Self::ActiveShutdown => LifecycleState::Finalized,
        }
    }

    /// The state it ends in: [`Transition::goal`] on success, else the start state (a shutdown
    /// always finalizes).
    pub fn outcome(self, succeeded: bool) -> LifecycleState {
        if succeeded || self.is_shutdown() {
            self.goal()
        } else {
            self.start()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_machine() {
        use LifecycleState::*;
        assert_eq!(Unconfigured.resolve(1, "").unwrap().outcome(true), Inactive);
        assert_eq!(Inactive.resolve(0, "activate").unwrap().outcome(true), Active);
        assert_eq!(Active.resolve(4, "").unwrap().outcome(true), Inactive);
        assert_eq!(Inactive.resolve(0, "cleanup").unwrap().outcome(true), Unconfigured);
        assert_eq!(Active.resolve(0, "shutdown").unwrap(), Transition::ActiveShutdown);
        assert_eq!(Active.resolve(0, "shutdown").unwrap().outcome(false), Finalized, "shutdown always finalizes");
        assert_eq!(Unconfigured.resolve(1, "").unwrap().outcome(false), Unconfigured, "a failed configure stays unconfigured");
        let e = Unconfigured.resolve(3, "").unwrap_err();
        assert_eq!(e.to_string(), "transition `activate` is not available in state `unconfigured` (available: configure, shutdown)");
        assert!(matches!(Active.resolve(9, ""), Err(LifecycleError::Unknown { .. })));
        assert!(Finalized.available().is_empty());
        for t in Transition::ALL {
            assert_eq!(Transition::from_id(t.id()), Some(t));
            assert!(t.start().available().contains(&t));
        }
    }
}
