//! Group commit for handlers: the work of every message of one key (a tenant, say) waiting on
//! this replica is done together — one transaction, one commit and one statement per table —
//! instead of one transaction and a few round trips each.
//!
//! A handler turns its message into a job and calls [`Batcher::submit`], which puts the job on
//! its key's queue and answers with that job's outcome. Whoever holds the queue's runner lock
//! takes every job waiting (up to the batcher's limit) and hands them to the [`Batch`] at once;
//! every submitter takes the runner lock after queueing, so no job is left waiting. While one
//! batch commits, the next one gathers: the busier the consumer, the bigger its batches, and an
//! idle consumer still handles a lone message at once.
//!
//! When a batch fails, nothing of it is committed (the [`Batch`] works in one transaction), and
//! each of its jobs is done again on its own, so a message the database refuses fails alone —
//! and is retried and dead-lettered as any other — never its batch-mates.
//!
//! The work runs in a spawned task, so a submitter that goes away (a cancelled gRPC call, a
//! consumer shutting down) does not cut a batch short.
use crate::ServiceContext;
use crate::consumer::{Handled, HandlerError, Pending};
use async_trait::async_trait;
use eh_store::Together;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tracing::Instrument;

/// Work done for many jobs at once.
#[async_trait]
pub trait Batch: Clone + Send + Sync + 'static {
    type Job: Send + 'static;
    type Output: Send + 'static;
    type Error: std::fmt::Display + From<Interrupted> + Send + 'static;

    /// Does `jobs` (all of `key`) in one transaction; one output per job, in order. On an error
    /// nothing may be committed.
    async fn run(&self, key: &str, jobs: &[Self::Job]) -> Result<Vec<Self::Output>, Self::Error>;
}

/// The batch a job was in ended without answering for it (the runtime is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("stopped before the work was done")]
pub struct Interrupted;

type Waiting<B> = (
    <B as Batch>::Job,
    oneshot::Sender<Result<<B as Batch>::Output, <B as Batch>::Error>>,
);

struct Queue<B: Batch> {
    waiting: Mutex<Vec<Waiting<B>>>,
    runner: tokio::sync::Mutex<()>,
}

/// Queues of jobs by key, each run in batches of at most `max`.
pub struct Batcher<B: Batch> {
    queues: Arc<Mutex<HashMap<String, Arc<Queue<B>>>>>,
    max: usize,
}

impl<B: Batch> Clone for Batcher<B> {
    fn clone(&self) -> Self {
        Self {
            queues: self.queues.clone(),
            max: self.max,
        }
    }
}

impl<B: Batch> Batcher<B> {
    /// Batches of at most `max` jobs.
    pub fn new(max: usize) -> Self {
        Self {
            queues: Arc::default(),
            max: max.max(1),
        }
    }

    fn queue(&self, key: &str) -> Arc<Queue<B>> {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Queue {
                    waiting: Mutex::new(Vec::new()),
                    runner: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Does `job` with `work` in the next batch of `key`; returns what became of it.
    pub async fn submit(&self, work: B, key: &str, job: B::Job) -> Result<B::Output, B::Error> {
        self.enqueue(work, key, job).await
    }

    /// Queues `job` now — jobs are batched in the order they are queued — and returns what will
    /// answer for it.
    pub fn enqueue(
        &self,
        work: B,
        key: &str,
        job: B::Job,
    ) -> impl Future<Output = Result<B::Output, B::Error>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queue = self.queue(key);
        queue
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((job, tx));
        let (max, key) = (self.max, key.to_string());
        tokio::spawn(
            async move {
                let _running = queue.runner.lock().await;
                let jobs: Vec<Waiting<B>> = {
                    let mut waiting = queue.waiting.lock().unwrap_or_else(|e| e.into_inner());
                    let n = waiting.len().min(max);
                    waiting.drain(..n).collect()
                };
                if !jobs.is_empty() {
                    run(&work, &key, jobs).await;
                }
            }
            .in_current_span(),
        );
        async move { rx.await.map_err(|_| Interrupted)? }
    }
}

impl<B: Batch<Output = Result<Handled, HandlerError>, Error = HandlerError>> Batcher<B> {
    /// [`Batcher::enqueue`] for a bus handler whose work answers each message itself: the
    /// message's answer to come.
    pub fn admit(&self, work: B, key: &str, job: B::Job) -> Pending {
        let answer = self.enqueue(work, key, job);
        Box::pin(async move { answer.await? })
    }
}

/// Handling done in savepoints of one transaction per batch ([`eh_store::together`]): a message
/// that fails is rolled back and answered alone, its batch-mates commit; a lone message is
/// handled in a transaction of its own. Batch it as [`InSavepoints`].
pub trait SavepointWork:
    Together<Self::Job, Output = Result<Handled, HandlerError>> + Clone + Send + Sync + 'static
{
    type Job: Send + Sync + 'static;

    /// The service: its database, and the outbox to wake once a batch committed.
    fn context(&self) -> &ServiceContext;
}

/// A [`SavepointWork`] as a [`Batch`].
#[derive(Clone)]
pub struct InSavepoints<W>(pub W);

#[async_trait]
impl<W: SavepointWork> Batch for InSavepoints<W> {
    type Job = W::Job;
    type Output = Result<Handled, HandlerError>;
    type Error = HandlerError;

    async fn run(
        &self,
        _key: &str,
        jobs: &[W::Job],
    ) -> Result<Vec<Result<Handled, HandlerError>>, HandlerError> {
        let ctx = self.0.context();
        let outputs = eh_store::together(&ctx.db, jobs, &self.0)
            .await
            .map_err(|e| HandlerError::db(&e))?;
        ctx.outbox.committed();
        Ok(outputs)
    }
}

/// Runs `jobs` as one batch, and one by one if the batch fails.
async fn run<B: Batch>(work: &B, key: &str, jobs: Vec<Waiting<B>>) {
    let (jobs, replies): (Vec<B::Job>, Vec<_>) = jobs.into_iter().unzip();
    match work.run(key, &jobs).await {
        Ok(outputs) if outputs.len() == jobs.len() => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output));
            }
        }
        Ok(outputs) => {
            // A broken `Batch`: say so rather than leave jobs unanswered (they are retried).
            tracing::error!(
                key,
                jobs = jobs.len(),
                outputs = outputs.len(),
                "batch answered for the wrong number of jobs"
            );
        }
        Err(e) if jobs.len() == 1 => {
            let _ = replies.into_iter().next().map(|r| r.send(Err(e)));
        }
        Err(e) => {
            tracing::warn!(key, jobs = jobs.len(), error = %e, "batch failed; doing its jobs one by one");
            for (job, reply) in jobs.into_iter().zip(replies) {
                let result = work
                    .run(key, std::slice::from_ref(&job))
                    .await
                    .and_then(|mut o| o.pop().ok_or_else(|| Interrupted.into()));
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles numbers; a batch holding `poison` fails as a whole, and so does the poison alone.
    #[derive(Clone)]
    struct Double {
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        /// Batches wait here for a permit, so a test can hold one open.
        gate: Arc<tokio::sync::Semaphore>,
        calls: Arc<AtomicUsize>,
    }

    impl Double {
        fn new(permits: usize) -> Self {
            Self {
                batches: Arc::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(permits)),
                calls: Arc::default(),
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Refused(String);

    impl From<Interrupted> for Refused {
        fn from(e: Interrupted) -> Self {
            Refused(e.to_string())
        }
    }

    const POISON: u32 = 13;

    #[async_trait]
    impl Batch for Double {
        type Job = u32;
        type Output = u32;
        type Error = Refused;

        async fn run(&self, _key: &str, jobs: &[u32]) -> Result<Vec<u32>, Refused> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _open = self.gate.acquire().await.expect("gate open");
            self.batches.lock().unwrap().push(jobs.to_vec());
            if jobs.contains(&POISON) {
                return Err(Refused(format!("{POISON} refused")));
            }
            Ok(jobs.iter().map(|j| j * 2).collect())
        }
    }

    #[tokio::test]
    async fn jobs_waiting_while_a_batch_runs_go_together_in_the_next() {
        let work = Double::new(0);
        let batcher = Batcher::new(64);
        let first = tokio::spawn({
            let (b, w) = (batcher.clone(), work.clone());
            async move { b.submit(w, "t", 1).await }
        });
        // The first job's batch is running (held at the gate); the next ten queue behind it.
        while work.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=11)
            .map(|j| {
                let (b, w) = (batcher.clone(), work.clone());
                tokio::spawn(async move { b.submit(w, "t", j).await })
            })
            .collect();
        while batcher.queue("t").waiting.lock().unwrap().len() < 10 {
            tokio::task::yield_now().await;
        }
        work.gate.add_permits(100);
        assert_eq!(first.await.unwrap().unwrap(), 2);
        for (j, h) in (2..=11).zip(rest) {
            assert_eq!(h.await.unwrap().unwrap(), j * 2);
        }
        let batches = work.batches.lock().unwrap().clone();
        assert_eq!(batches, vec![vec![1], (2..=11).collect::<Vec<_>>()]);
    }

    #[tokio::test]
    async fn a_failed_batch_is_done_again_one_by_one_and_only_the_bad_job_fails() {
        let work = Double::new(0);
        let batcher = Batcher::new(64);
        let blocker = tokio::spawn({
            let (b, w) = (batcher.clone(), work.clone());
            async move { b.submit(w, "t", 100).await }
        });
        while work.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let jobs = [5, POISON, 7];
        let handles: Vec<_> = jobs
            .iter()
            .map(|&j| {
                let (b, w) = (batcher.clone(), work.clone());
                tokio::spawn(async move { b.submit(w, "t", j).await })
            })
            .collect();
        while batcher.queue("t").waiting.lock().unwrap().len() < 3 {
            tokio::task::yield_now().await;
        }
        work.gate.add_permits(100);
        assert_eq!(blocker.await.unwrap().unwrap(), 200);
        let results: Vec<Result<u32, String>> = futures::future::join_all(handles)
            .await
            .into_iter()
            .map(|h| h.unwrap().map_err(|e| e.to_string()))
            .collect();
        assert_eq!(results, vec![Ok(10), Err("13 refused".into()), Ok(14)]);
        let batches = work.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                vec![100],
                vec![5, POISON, 7],
                vec![5],
                vec![POISON],
                vec![7]
            ]
        );
    }

    #[tokio::test]
    async fn keys_are_batched_apart_and_batches_never_exceed_the_limit() {
        let work = Double::new(1000);
        let batcher = Batcher::new(4);
        let jobs: Vec<u32> = (0..41u32).filter(|&j| j != POISON).collect();
        let handles: Vec<_> = jobs
            .iter()
            .map(|&j| {
                let (b, w) = (batcher.clone(), work.clone());
                let key = if j % 2 == 0 { "even" } else { "odd" };
                tokio::spawn(async move { (j, b.submit(w, key, j).await) })
            })
            .collect();
        for h in handles {
            let (j, r) = h.await.unwrap();
            assert_eq!(r.unwrap(), j * 2);
        }
        let batches = work.batches.lock().unwrap().clone();
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4));
        assert!(
            batches.iter().all(|b| b.iter().all(|j| j % 2 == b[0] % 2)),
            "a batch mixed keys: {batches:?}"
        );
        let mut done: Vec<u32> = batches.concat();
        done.sort();
        assert_eq!(done, jobs);
    }
}
