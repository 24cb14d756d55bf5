//! The one writer: redb allows a single write transaction at a time, so every write request
//! goes to this thread, which runs the writes waiting together in one transaction
//! (**group commit**), each in its own savepoint: a write that fails is taken back alone and
//! answered with its error; the others are answered once the commit is durable.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crmkit_core::id::UserId;
use crmkit_core::model::Role;
use crmkit_core::process::Engine;
use crmkit_core::store::{Durability, WriteTxn};
use crmkit_core::Installation;
use serde_json::Value;
use tokio::sync::oneshot;

use super::metrics::WriterMetrics;
use super::{ApiError, Code};

/// A write: runs in the writer's transaction, answers a JSON value.
type Work = Box<dyn FnOnce(&Engine, &mut WriteTxn<'_>) -> crmkit_core::Result<Value> + Send>;

struct Job {
    /// Who writes, in which role.
    actor: Option<(UserId, Role)>,
    work: Work,
    reply: oneshot::Sender<Result<Value, ApiError>>,
}

/// The most writes one commit takes.
const MAX_GROUP: usize = 256;

/// The handle requests send their writes through.
pub struct Writer {
    /// The queue, group sizes and commit times, for `/metrics`.
    pub(super) metrics: WriterMetrics,
    jobs: std::sync::Mutex<Option<Sender<Job>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `inst`; each group of writes runs on the engine `bound`
    /// has in force when the group starts.
    pub fn start(inst: Arc<Installation>, bound: Arc<crate::script::Bound>) -> Writer {
        let (jobs, queue) = mpsc::channel::<Job>();
        let metrics = WriterMetrics::default();
        let measured = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("crmkit-writer".into())
            .spawn(move || run(&inst, &bound, &queue, &measured))
            .expect("the writer thread starts");
        Writer { metrics, jobs: std::sync::Mutex::new(Some(jobs)), thread: std::sync::Mutex::new(Some(thread)) }
    }

    /// Runs `work` as `actor` (a user acting in one role) in the next group; answers once it
    /// is durable (or with its error, when it failed and was taken back).
    pub async fn write(
        &self,
        actor: Option<(UserId, Role)>,
        work: impl FnOnce(&Engine, &mut WriteTxn<'_>) -> crmkit_core::Result<Value> + Send + 'static,
    ) -> Result<Value, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { actor, work: Box::new(work), reply };
        let stopped =
            || ApiError::new(hyper::StatusCode::SERVICE_UNAVAILABLE, Code::Stopping, "the server is stopping");
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let jobs = jobs.ok_or_else(stopped)?;
        self.metrics.queued.inc();
        if jobs.send(job).is_err() {
            self.metrics.queued.dec();
            return Err(stopped());
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Lets the writer finish the writes it was given and waits for it; later writes are
    /// answered 503.
    pub fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(inst: &Installation, bound: &crate::script::Bound, queue: &Receiver<Job>, metrics: &WriterMetrics) {
    // Blocks for the first write of a group and takes the database's write turn, which may
    // wait behind an import's batch; then takes every write that is waiting, those that came
    // meanwhile included, so that they all go in the one turn.
    while let Ok(first) = queue.recv() {
        let tx = inst.store().write(None);
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        metrics.queued.dec_by(group.len() as i64);
        metrics.group_size.observe(group.len() as f64);
        write_group(tx, &bound.engine(), group, metrics);
    }
}

fn write_group(tx: crmkit_core::Result<WriteTxn<'_>>, engine: &Engine, group: Vec<Job>, metrics: &WriterMetrics) {
    let mut tx = match tx {
        Ok(tx) => tx,
        Err(e) => {
            let message = e.to_string();
            for job in group {
                let _ = job.reply.send(Err(ApiError::from(crmkit_core::Error::Storage(
                    crmkit_core::store::KvError::Backend(message.clone()),
                ))));
            }
            return;
        }
    };
    tx.set_durability(Durability::Immediate);
    let mut done = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    while let Some(job) = jobs.next() {
        tx.set_actor(job.actor.map(|(id, _)| id));
        tx.set_acting_role(job.actor.map(|(_, role)| role));
        let work = job.work;
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.attempt(|tx| work(engine, tx))));
        match attempt {
            Ok(Ok(value)) => done.push((job.reply, value)),
            Ok(Err(e)) => {
                let _ = job.reply.send(Err(ApiError::from(e)));
            }
            Err(_) => {
                // A write that panicked leaves its transaction in doubt: none of the group is
                // written, every request of it is told so, and the writer goes on.
                tracing::error!("a write panicked; its group is taken back");
                let failed = ApiError::internal("a write panicked", "its group was taken back");
                let _ = job.reply.send(Err(failed));
                for (reply, _) in done {
                    let _ = reply.send(Err(not_written()));
                }
                for job in jobs {
                    let _ = job.reply.send(Err(not_written()));
                }
                return;
            }
        }
    }
    let committing = std::time::Instant::now();
    let committed = tx.commit();
    metrics.commit_seconds.observe(committing.elapsed().as_secs_f64());
    match committed {
        Ok(()) => {
            for (reply, value) in done {
                let _ = reply.send(Ok(value));
            }
        }
        Err(e) => {
            tracing::error!("a group commit failed: {e}");
            for (reply, _) in done {
                let _ = reply.send(Err(not_written()));
            }
        }
    }
}

fn not_written() -> ApiError {
    ApiError::new(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        Code::NotWritten,
        "the write could not be made durable; nothing was written",
    )
}
