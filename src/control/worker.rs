//! The inference thread: owns the [`Policy`] (the model lives on one dedicated thread) and
//! reports every finished iterate of the current job, so the controller can publish on time
//! whatever the policy is doing.
//!
//! Jobs carry a deadline. The worker always takes the newest queued job (older ones are
//! answered as skipped), skips a job whose deadline has already passed, and stops refining at
//! the deadline between iterations.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use super::policy::{Iterate, PlanRequest, Policy, PolicyError};

/// A job for the worker.
#[derive(Debug)]
struct Job {
    id: u64,
    req: PlanRequest,
    deadline: Instant,
}

/// What the worker reports about a job.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A finished iterate.
    Iterate(Iterate),
    /// The job finished (all iterates, or stopped at the deadline).
    Done,
    /// The job was dropped: superseded by a newer one, or its deadline passed in the queue.
    Skipped,
    /// The policy failed.
    Failed(String),
}

/// Handle to the inference thread.
#[derive(Debug)]
pub struct InferenceWorker {
    jobs: Option<Sender<Job>>,
    events: Receiver<(u64, WorkerEvent)>,
    handle: Option<JoinHandle<()>>,
    next_id: u64,
    name: String,
    iterations: u32,
}

impl InferenceWorker {
    /// Starts the thread and builds the policy on it with `make` (tch models stay on the thread
    /// that made them). Returns once the policy is built.
    ///
    /// # Errors
    /// The error of `make` (e.g. a checkpoint that does not match the problem).
    pub fn spawn<P, F>(make: F) -> Result<Self, PolicyError>
    where
        P: Policy + 'static,
        F: FnOnce() -> Result<P, PolicyError> + Send + 'static,
    {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (ev_tx, ev_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(String, u32), PolicyError>>();
        let handle = std::thread::Builder::new()
            .name("trc-inference".into())
            .spawn(move || {
                let mut policy = match make() {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok((p.name(), p.iterations())));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(&mut policy, &job_rx, &ev_tx);
            })
            .map_err(|e| PolicyError::Inference(format!("cannot start the inference thread: {e}")))?;
        let (name, iterations) = ready_rx.recv().map_err(|_| PolicyError::Inference("the inference thread exited while loading the policy".into()))??;
        Ok(Self { jobs: Some(job_tx), events: ev_rx, handle: Some(handle), next_id: 0, name, iterations })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Iterates a full refinement produces (K).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Queues a job; returns its id.
    pub fn submit(&mut self, req: PlanRequest, deadline: Instant) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(tx) = &self.jobs {
            let _ = tx.send(Job { id, req, deadline });
        }
        id
    }

    /// Next event (any job) until `until`; `None` at the time limit or if the thread is gone.
    pub fn next_event(&self, until: Instant) -> Option<(u64, WorkerEvent)> {
        let wait = until.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for InferenceWorker {
    fn drop(&mut self) {
        self.jobs = None; // closes the queue; the thread exits after its current job
        if let Some(h) = self.handle.take() {
            // Wait (up to 2 s) for the current job to end, so libtorch is not torn down by the
            // process exit under a running forward pass; never block on a long injected delay.
            let t = std::time::Instant::now();
            while !h.is_finished() && t.elapsed() < std::time::Duration::from_secs(2) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

fn run(policy: &mut dyn Policy, jobs: &Receiver<Job>, events: &Sender<(u64, WorkerEvent)>) {
    while let Ok(mut job) = jobs.recv() {
        // newest job wins
        while let Ok(newer) = jobs.try_recv() {
            let _ = events.send((job.id, WorkerEvent::Skipped));
            job = newer;
        }
        if Instant::now() >= job.deadline {
            let _ = events.send((job.id, WorkerEvent::Skipped));
            continue;
        }
        let (id, deadline) = (job.id, job.deadline);
        // a panic inside the policy (e.g. a libtorch error surfacing through tch) is reported as
        // a failure of this job, not a dead thread
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            policy.refine(&job.req, &mut |it| {
                let _ = events.send((id, WorkerEvent::Iterate(it)));
                Instant::now() < deadline
            })
        }));
        let _ = events.send((
            id,
            match res {
                Ok(Ok(())) => WorkerEvent::Done,
                Ok(Err(e)) => WorkerEvent::Failed(e.to_string()),
                Err(p) => WorkerEvent::Failed(format!(
                    "the policy panicked: {}",
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
                )),
            },
        ));
    }
}
