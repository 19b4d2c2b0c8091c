//! The supervisor and its stages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// What a task is called in the shutdown log.
pub type TaskName = Cow<'static, str>;

/// The stages of one node, in shutdown order.
pub struct Supervisor {
    stages: Vec<Stage>,
    /// Dropping the supervisor without [`Supervisor::shutdown`] (a node that failed to start)
    /// tells every task to stop.
    _stop_all: DropGuard,
    root: CancellationToken,
}

impl Default for Supervisor {
    fn default() -> Self {
        let root = CancellationToken::new();
        Self {
            stages: Vec::new(),
            _stop_all: root.clone().drop_guard(),
            root,
        }
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next stage: it stops after every stage added before it, and its tasks get
    /// `deadline` from the moment it is told to stop.
    pub fn stage(&mut self, name: &'static str, deadline: Duration) -> Stage {
        let stage = Stage {
            inner: Arc::new(StageInner {
                name,
                deadline,
                token: self.root.child_token(),
                tasks: Mutex::default(),
            }),
        };
        self.stages.push(stage.clone());
        stage
    }

    /// Stops the stages in the order they were added, each within its deadline, and says
    /// how each went (also logged, one line per stage).
    pub async fn shutdown(mut self) -> Vec<StageReport> {
        let mut reports = Vec::with_capacity(self.stages.len());
        for stage in std::mem::take(&mut self.stages) {
            reports.push(stage.stop().await);
        }
        reports
    }
}

/// One shutdown stage; cheap to clone, so subsystems can start their tasks in it.
#[derive(Clone)]
pub struct Stage {
    inner: Arc<StageInner>,
}

struct StageInner {
    name: &'static str,
    deadline: Duration,
    token: CancellationToken,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, TaskName>,
    /// Set when the stage stops: tasks started later would never be awaited.
    stopped: bool,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Cancelled when this stage's turn to stop comes.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Runs `task` until it ends or the stage stops: it should return soon after
    /// [`Stage::token`] is cancelled, and is aborted at the stage's deadline otherwise.
    pub fn spawn(
        &self,
        name: impl Into<TaskName>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let name = name.into();
        let mut tasks = self.inner.tasks.lock().expect("stage tasks");
        if tasks.stopped {
            tracing::warn!(
                stage = self.inner.name,
                "task {name} not started: its stage has already stopped"
            );
            return;
        }
        let id = tasks.set.spawn(task).id();
        tasks.names.insert(id, name);
    }

    /// Runs `step` once this stage stops, as a task bounded by the stage's deadline: the
    /// shutdown steps that are not loops (leave the cluster, flush telemetry).
    pub fn on_stop(
        &self,
        name: impl Into<TaskName>,
        step: impl Future<Output = ()> + Send + 'static,
    ) {
        let token = self.token();
        self.spawn(name, async move {
            token.cancelled().await;
            step.await;
        });
    }

    /// Runs a subsystem's own set of tasks as one named task: it ends when they all have,
    /// aborting it aborts them, and a panic in one of them is raised again in it.
    pub fn spawn_set(&self, name: impl Into<TaskName>, mut set: JoinSet<()>) {
        self.spawn(name, async move {
            while let Some(done) = set.join_next().await {
                if let Err(e) = done
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        });
    }

    async fn stop(&self) -> StageReport {
        let started = Instant::now();
        self.inner.token.cancel();
        let (mut set, mut names) = {
            let mut tasks = self.inner.tasks.lock().expect("stage tasks");
            tasks.stopped = true;
            (
                std::mem::take(&mut tasks.set),
                std::mem::take(&mut tasks.names),
            )
        };
        let mut panicked = Vec::new();
        let mut ended = |done: Result<Id, tokio::task::JoinError>| match done {
            Ok(id) => {
                names.remove(&id);
            }
            Err(e) => {
                let name = names.remove(&e.id()).unwrap_or_default();
                if e.is_panic() {
                    panicked.push(name);
                }
            }
        };
        let deadline = started + self.inner.deadline;
        let all_ended = loop {
            match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                Ok(None) => break true,
                Ok(Some(done)) => ended(done.map(|(id, ())| id)),
                Err(_) => break false,
            }
        };
        if !all_ended {
            // Tasks that ended in the same instant are not reported as aborted.
            while let Some(done) = set.try_join_next_with_id() {
                ended(done.map(|(id, ())| id));
            }
            set.abort_all();
        }
        let mut aborted: Vec<TaskName> = names.into_values().collect();
        aborted.sort();
        panicked.sort();
        let report = StageReport {
            stage: self.inner.name,
            took: started.elapsed(),
            aborted,
            panicked,
        };
        report.log();
        report
    }
}

/// How one stage stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    pub stage: &'static str,
    pub took: Duration,
    /// Tasks still running at the deadline, aborted; sorted.
    pub aborted: Vec<TaskName>,
    /// Tasks found panicked (in a node the panic hook exits the process first); sorted.
    pub panicked: Vec<TaskName>,
}

impl StageReport {
    fn log(&self) {
        let stage = self.stage;
        let ms = self.took.as_millis();
        let mut line = if self.aborted.is_empty() {
            format!("shutdown: stage {stage} done in {ms} ms")
        } else {
            format!(
                "shutdown: stage {stage} aborted tasks [{}] after {ms} ms",
                self.aborted.join(", ")
            )
        };
        if !self.panicked.is_empty() {
            line.push_str(&format!("; tasks [{}] panicked", self.panicked.join(", ")));
            tracing::error!(stage, elapsed_ms = ms, "{line}");
        } else if !self.aborted.is_empty() {
            tracing::warn!(stage, elapsed_ms = ms, "{line}");
        } else {
            tracing::info!(stage, elapsed_ms = ms, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_the_order_they_were_declared() {
        let mut supervisor = Supervisor::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let stages: Vec<Stage> = ["first", "second", "third"]
            .into_iter()
            .map(|name| supervisor.stage(name, SECOND))
            .collect();
        for (i, stage) in stages.iter().enumerate() {
            let order = order.clone();
            let later: Vec<CancellationToken> = stages[i + 1..].iter().map(Stage::token).collect();
            let name = stage.name();
            stage.on_stop("step", async move {
                assert!(
                    later.iter().all(|t| !t.is_cancelled()),
                    "a later stage was told to stop before {name}"
                );
                order.lock().unwrap().push(name);
            });
        }
        let reports = supervisor.shutdown().await;
        assert_eq!(*order.lock().unwrap(), ["first", "second", "third"]);
        let stopped: Vec<&str> = reports.iter().map(|r| r.stage).collect();
        assert_eq!(stopped, ["first", "second", "third"]);
        assert!(
            reports
                .iter()
                .all(|r| r.aborted.is_empty() && r.took.is_zero())
        );
    }

    /// Dropped when the task holding it is dropped (aborted or ended).
    struct Alive(Arc<AtomicBool>);

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_cancellation_is_aborted_at_the_deadline_and_named() {
        let mut supervisor = Supervisor::new();
        let slow = supervisor.stage("drain", 5 * SECOND);
        let next = supervisor.stage("leave", SECOND);
        let alive = Arc::new(AtomicBool::new(true));
        let guard = Alive(alive.clone());
        slow.spawn("stuck", async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let token = slow.token();
        slow.spawn("polite", async move { token.cancelled().await });
        let left = Arc::new(AtomicBool::new(false));
        next.on_stop("leave", {
            let left = left.clone();
            async move { left.store(true, Ordering::SeqCst) }
        });

        let reports = supervisor.shutdown().await;
        assert_eq!(reports[0].stage, "drain");
        assert_eq!(reports[0].aborted, ["stuck"]);
        assert_eq!(reports[0].took, 5 * SECOND);
        assert!(reports[0].panicked.is_empty());
        assert!(left.load(Ordering::SeqCst), "the next stage still ran");
        assert_eq!(reports[1].took, Duration::ZERO);
        for _ in 0..10 {
            if !alive.load(Ordering::SeqCst) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            !alive.load(Ordering::SeqCst),
            "the aborted task was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_end_early_or_within_the_deadline_are_not_aborted() {
        let mut supervisor = Supervisor::new();
        let stage = supervisor.stage("background", 5 * SECOND);
        stage.spawn("once", async {});
        let token = stage.token();
        stage.spawn("tidy", async move {
            token.cancelled().await;
            tokio::time::sleep(2 * SECOND).await;
        });
        tokio::time::sleep(10 * SECOND).await;

        let reports = supervisor.shutdown().await;
        assert!(reports[0].aborted.is_empty());
        assert_eq!(reports[0].took, 2 * SECOND, "done when the last task is");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicked_task_is_reported_and_the_other_stages_still_stop() {
        let mut supervisor = Supervisor::new();
        let first = supervisor.stage("background", SECOND);
        let second = supervisor.stage("audit", SECOND);
        first.spawn("boom", async { panic!("a bug") });
        let mut set = JoinSet::new();
        set.spawn(async { panic!("a bug in a subsystem's own task") });
        first.spawn_set("subsystem", set);
        let flushed = Arc::new(AtomicBool::new(false));
        second.on_stop("flush", {
            let flushed = flushed.clone();
            async move { flushed.store(true, Ordering::SeqCst) }
        });

        let reports = supervisor.shutdown().await;
        assert_eq!(reports[0].panicked, ["boom", "subsystem"]);
        assert!(reports[0].aborted.is_empty());
        assert!(flushed.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_started_after_its_stage_stopped_never_runs() {
        let mut supervisor = Supervisor::new();
        let stage = supervisor.stage("background", SECOND);
        let keep = stage.clone();
        supervisor.shutdown().await;
        let ran = Arc::new(AtomicBool::new(false));
        keep.spawn("late", {
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        });
        tokio::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_supervisor_tells_every_stage_to_stop() {
        let mut supervisor = Supervisor::new();
        let stage = supervisor.stage("background", SECOND);
        drop(supervisor);
        assert!(stage.token().is_cancelled());
    }
}
