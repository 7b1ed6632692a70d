//! `ServedModel`: one model's placement on the workers and its batching queue.
//!
//! Requests are split into texts. The waiting texts of all requests, sorted by length, are cut
//! into batches under the batch size and the token budget, and the batch holding the oldest text
//! runs next, so batches carry little padding and old requests are served first. Results are
//! routed back to each request in its own order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, oneshot};

use super::{LoadBalancing, WorkerPermit, WorkerPool};
use crate::engine::metrics::Metrics;
use crate::store::local::ModelFiles;
use crate::types::ModelKey;
use crate::types::error::{FreeMemory, HostError};

/// Vectors in request order, and the workers that computed them.
pub type Served = (Vec<Vec<f32>>, Vec<String>);

/// Where a model may run and where it is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Workers that match the requirements' devices.
    pub matching: Vec<usize>,
    /// Workers that hold (or are loading) the weights.
    pub holders: Vec<usize>,
    /// Set when no worker matched and any worker is used instead.
    pub fallback: Option<String>,
    /// Matching workers that failed to load the model: not picked again while another matching
    /// worker has not failed too.
    failed: Vec<usize>,
    cursor: usize,
}

/// One waiting text.
struct Item {
    request: Arc<Request>,
    index: usize,
    tokens: Vec<u32>,
}

/// A request's progress.
struct Request {
    enqueued: Instant,
    batch_size: usize,
    progress: Mutex<Progress>,
}

struct Progress {
    results: Vec<Option<Vec<f32>>>,
    remaining: usize,
    queued: usize,
    started: bool,
    workers: Vec<String>,
    reply: Option<oneshot::Sender<Result<Served, HostError>>>,
}

impl Request {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nobody waits for the result any more (finished, failed or abandoned).
    fn is_abandoned(&self) -> bool {
        self.progress().reply.as_ref().is_none_or(|r| r.is_closed())
    }

    fn fail(&self, error: HostError) {
        if let Some(reply) = self.progress().reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    requests: usize,
}

/// A model as the workers serve it.
pub struct ServedModel {
    pub(super) key: ModelKey,
    pub(super) files: ModelFiles,
    pub(super) pool: Arc<WorkerPool>,
    metrics: Arc<Metrics>,
    /// Working memory per token in flight, accounted while batches run.
    pub(super) working_per_token: u64,
    queue: Mutex<Queue>,
    placement: Mutex<Placement>,
    wake: Notify,
    closed: AtomicBool,
}

impl ServedModel {
    /// Starts serving `key` on `pool`, with its scheduler running as a task; batch sizes go to
    /// `metrics`; `working_per_token` bytes per token in flight are accounted while work runs.
    pub fn start(
        key: ModelKey,
        files: ModelFiles,
        pool: Arc<WorkerPool>,
        metrics: Arc<Metrics>,
        working_per_token: u64,
    ) -> Arc<Self> {
        let served = Arc::new(Self {
            key,
            files,
            pool,
            metrics,
            working_per_token,
            queue: Mutex::new(Queue::default()),
            placement: Mutex::new(Placement::default()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(schedule(served.clone()));
        served
    }

    /// Adds the workers matching a requirement's device to those the model may run on.
    pub fn allow(&self, matching: &[usize], fallback: Option<String>) {
        let mut placement = self.placement();
        for &i in matching {
            if !placement.matching.contains(&i) {
                placement.matching.push(i);
            }
        }
        if fallback.is_some() {
            placement.fallback = fallback;
        }
    }

    /// Loads the model on up to `count` more matching workers (the least busy first) and returns
    /// how many hold it afterwards. Failures are logged and leave the model to load on first use,
    /// on another matching worker first.
    pub async fn preload(&self, count: usize) -> usize {
        let chosen: Vec<usize> = {
            let mut placement = self.placement();
            let mut free: Vec<usize> = placement
                .matching
                .iter()
                .copied()
                .filter(|i| !placement.holders.contains(i))
                .collect();
            free.sort_by_key(|&i| (self.pool.workers[i].busy(), i));
            let wanted = count.saturating_sub(placement.holders.len());
            free.truncate(wanted);
            placement.holders.extend(&free);
            free
        };
        for index in chosen {
            let worker = &self.pool.workers[index];
            if let Err(error) = worker.load(&self.key, &self.files).await {
                tracing::warn!(worker = %worker.id, model = %self.key.name, %error,
                    "preload failed; the model loads on first use");
                self.load_failed(index);
            }
        }
        self.placement().holders.len()
    }

    /// Where the model may run and is loaded.
    pub fn placement_snapshot(&self) -> Placement {
        self.placement().clone()
    }

    /// Requests waiting in the queue.
    pub fn waiting_requests(&self) -> usize {
        self.queue().requests
    }

    /// Runs token sequences (one vector each), merged into batches with other requests for this
    /// model.
    /// `timeout` bounds the wait before the first batch of the request starts.
    pub async fn run(
        &self,
        tokens: Vec<Vec<u32>>,
        batch_size: usize,
        timeout: std::time::Duration,
    ) -> Result<Served, HostError> {
        let count = tokens.len();
        if count == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let (reply, mut result) = oneshot::channel();
        let request = Arc::new(Request {
            enqueued: Instant::now(),
            batch_size: batch_size.max(1),
            progress: Mutex::new(Progress {
                results: vec![None; count],
                remaining: count,
                queued: count,
                started: false,
                workers: Vec::new(),
                reply: Some(reply),
            }),
        });
        {
            let mut queue = self.queue();
            let limit = self.pool.settings.max_queue_length;
            if queue.requests >= limit {
                return Err(HostError::Overloaded(format!(
                    "{limit} requests already wait for model '{}'; retry later",
                    self.key.name
                )));
            }
            queue.requests += 1;
            queue
                .items
                .extend(tokens.into_iter().enumerate().map(|(index, tokens)| Item {
                    request: request.clone(),
                    index,
                    tokens,
                }));
        }
        self.wake.notify_one();
        tokio::select! {
            outcome = &mut result => return outcome.unwrap_or_else(|_| Err(self.dropped())),
            _ = tokio::time::sleep(timeout) => {}
        }
        if self.withdraw_if_not_started(&request) {
            return Err(HostError::Timeout(format!(
                "the request waited more than {timeout:?} for model '{}'",
                self.key.name
            )));
        }
        result.await.unwrap_or_else(|_| Err(self.dropped()))
    }

    /// Stops the scheduler and unloads the model from every worker.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.release_memory(&self.key);
        self.wake.notify_one();
        self.pool.freed.notify_waiters();
        let holders = std::mem::take(&mut self.placement().holders);
        for index in holders {
            self.pool.workers[index].unload(&self.key);
        }
        for item in std::mem::take(&mut self.queue().items) {
            item.request.fail(self.dropped());
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The holder that runs the next batch, if one is free. A model with no holder yet gets the
    /// least busy matching worker that has not failed to load it.
    pub(super) fn pick_worker(&self, pool: &WorkerPool) -> Option<usize> {
        let mut placement = self.placement();
        if placement.holders.is_empty() {
            let untried = placement.matching.iter().copied();
            let untried = untried.filter(|i| !placement.failed.contains(i));
            let first = pool.least_busy(untried)?;
            placement.holders.push(first);
        }
        let free = |i: usize| pool.workers[i].busy() == 0;
        match pool.settings.load_balancing {
            LoadBalancing::LeastBusy => {
                let best = pool.least_busy(placement.holders.iter().copied())?;
                free(best).then_some(best)
            }
            LoadBalancing::RoundRobin => {
                let next = placement.holders[placement.cursor % placement.holders.len()];
                free(next).then(|| {
                    placement.cursor += 1;
                    next
                })
            }
        }
    }

    /// Takes the next batch. The waiting texts, sorted by length, are cut into batches within the
    /// batch size and the token budget, and the batch holding the oldest waiting text goes first:
    /// one large request is batched exactly as if sorted as a whole, and no request waits behind
    /// younger ones for long. Abandoned and expired requests are dropped first.
    fn take_batch(&self) -> Vec<Item> {
        let mut queue = self.queue();
        let timeout = self.pool.settings.queue_timeout;
        let now = Instant::now();
        let mut dropped = Vec::new();
        queue.items.retain(|item| {
            let expired = now.duration_since(item.request.enqueued) > timeout
                && !item.request.progress().started;
            let keep = !expired && !item.request.is_abandoned();
            if !keep {
                dropped.push(item.request.clone());
            }
            keep
        });
        for request in dropped {
            if leave_queue(&request, &mut queue) {
                request.fail(HostError::Timeout(format!(
                    "the request waited more than {timeout:?} for model '{}'",
                    self.key.name
                )));
            }
        }
        let Some(anchor) = queue.items.first() else {
            return Vec::new();
        };
        let limit = anchor.request.batch_size;
        let merge = self.pool.settings.enabled;
        let mut order: Vec<usize> = (0..queue.items.len())
            .filter(|&i| merge || Arc::ptr_eq(&queue.items[i].request, &anchor.request))
            .collect();
        order.sort_by_key(|&i| (queue.items[i].tokens.len(), i));
        let budget = self.pool.settings.max_batch_tokens;
        let mut start = 0;
        let mut chosen = loop {
            // Lengths ascend, so each text is the longest of its batch so far.
            let mut end = start + 1;
            while end < order.len()
                && end - start < limit
                && queue.items[order[end]].tokens.len() * (end - start + 1) <= budget
            {
                end += 1;
            }
            let batch = &order[start..end];
            if batch.contains(&0) {
                break batch.to_vec();
            }
            start = end;
        };
        chosen.sort_unstable_by(|a, b| b.cmp(a));
        let mut batch: Vec<Item> = chosen.into_iter().map(|i| queue.items.remove(i)).collect();
        batch.reverse();
        for item in &batch {
            item.request.progress().started = true;
            leave_queue(&item.request, &mut queue);
        }
        batch
    }

    /// Takes a request that has not started out of the queue. Returns false when it has started.
    /// The scheduler may have expired it already (its texts are gone and it was counted out);
    /// it is counted out of the queue once either way.
    fn withdraw_if_not_started(&self, request: &Arc<Request>) -> bool {
        withdraw(&mut self.queue(), request)
    }

    /// Makes sure the permit's worker holds the model, loading it there if needed.
    pub(super) async fn load_on(&self, permit: &WorkerPermit) -> Result<(), HostError> {
        let worker = permit.worker();
        if !worker.holds(&self.key) {
            worker.load(&self.key, &self.files).await?;
            self.placement().failed.retain(|&i| i != permit.index);
        }
        Ok(())
    }

    /// Records that worker `index` could not load the model: it stops holding it and is not picked
    /// again while another matching worker has not failed too. Returns whether one has not (the
    /// work may try there). When every matching worker has failed, the record is cleared, so a
    /// later request tries them all again, and the caller reports the failure.
    pub(super) fn load_failed(&self, index: usize) -> bool {
        let mut placement = self.placement();
        placement.holders.retain(|&i| i != index);
        if !placement.failed.contains(&index) {
            placement.failed.push(index);
        }
        let untried = placement
            .matching
            .iter()
            .any(|i| !placement.failed.contains(i));
        if !untried {
            placement.failed.clear();
        }
        untried
    }

    /// Puts the texts of a batch that did not run back at the head of the queue (they are the
    /// oldest waiting), for another worker to take.
    fn requeue(&self, batch: Vec<Item>) {
        let mut queue = self.queue();
        for item in &batch {
            let mut progress = item.request.progress();
            if progress.queued == 0 {
                queue.requests += 1;
            }
            progress.queued += 1;
        }
        queue.items.splice(0..0, batch);
        drop(queue);
        self.wake.notify_one();
    }

    pub(super) fn dropped(&self) -> HostError {
        HostError::Internal(format!(
            "a request for model '{}' was dropped",
            self.key.name
        ))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn placement(&self) -> MutexGuard<'_, Placement> {
        self.placement.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Takes `request` out of `queue` unless it has started; see
/// [`ServedModel::withdraw_if_not_started`].
fn withdraw(queue: &mut Queue, request: &Arc<Request>) -> bool {
    let mut progress = request.progress();
    if progress.started {
        return false;
    }
    queue
        .items
        .retain(|item| !Arc::ptr_eq(&item.request, request));
    if std::mem::take(&mut progress.queued) > 0 {
        queue.requests = queue.requests.saturating_sub(1);
    }
    progress.reply = None;
    true
}

/// Counts one of `request`'s texts out of the queue; returns true when it was its last (the
/// request then leaves the queue's count, exactly once).
fn leave_queue(request: &Request, queue: &mut Queue) -> bool {
    let mut progress = request.progress();
    if progress.queued == 0 {
        return false;
    }
    progress.queued -= 1;
    let last = progress.queued == 0;
    if last {
        queue.requests = queue.requests.saturating_sub(1);
    }
    last
}

/// Runs batches for `served` until it is closed.
async fn schedule(served: Arc<ServedModel>) {
    loop {
        while served.queue().items.is_empty() {
            if served.is_closed() {
                return;
            }
            served.wake.notified().await;
        }
        let Some(permit) = served.pool.acquire(&served).await else {
            return;
        };
        let batch = served.take_batch();
        if !batch.is_empty() {
            tokio::spawn(run_batch(served.clone(), permit, batch));
        }
    }
}

/// Runs one batch on the reserved worker and hands each result to its request. A worker that
/// cannot load the model hands the batch back to the queue for another matching worker; when
/// every one has failed, the batch fails with the load error.
async fn run_batch(served: Arc<ServedModel>, permit: WorkerPermit, mut batch: Vec<Item>) {
    if let Err(error) = served.load_on(&permit).await {
        tracing::warn!(worker = %permit.worker().id, model = %served.key.name, %error,
            "cannot load the model on this worker");
        if served.load_failed(permit.index) {
            drop(permit);
            served.requeue(batch);
        } else {
            for item in batch {
                item.request.fail(error.clone());
            }
        }
        return;
    }
    let worker = permit.worker();
    let tokens: Vec<Vec<u32>> = batch
        .iter_mut()
        .map(|i| std::mem::take(&mut i.tokens))
        .collect();
    served.metrics.record_batch(&served.key.name, tokens.len());
    let padded = tokens.len() * tokens.iter().map(Vec::len).max().unwrap_or(0);
    let outcome =
        match served
            .pool
            .try_hold_working(worker.device, padded, served.working_per_token)
        {
            Ok(working) => {
                let outcome = worker.run(&served.key, &served.files, tokens).await;
                drop(working);
                outcome
            }
            Err(budget) => Err(HostError::OutOfMemory {
                name: served.key.name.clone(),
                needed: Some((padded as u64).saturating_mul(served.working_per_token)),
                free: FreeMemory::Budget {
                    device: worker.device.to_string(),
                    budget,
                    work: "one batch",
                },
            }),
        };
    // The model was unloaded between the check above and the run, and reloading it failed.
    if matches!(outcome, Err(HostError::LoadFailed { .. })) {
        served.load_failed(permit.index);
    }
    match outcome {
        Ok(vectors) => {
            for (item, vector) in batch.into_iter().zip(vectors) {
                let mut progress = item.request.progress();
                progress.results[item.index] = Some(vector);
                progress.remaining -= 1;
                if !progress.workers.contains(&worker.id) {
                    progress.workers.push(worker.id.clone());
                }
                if progress.remaining == 0 {
                    let results = progress
                        .results
                        .drain(..)
                        .map(Option::unwrap_or_default)
                        .collect();
                    let workers = std::mem::take(&mut progress.workers);
                    if let Some(reply) = progress.reply.take() {
                        let _ = reply.send(Ok((results, workers)));
                    }
                }
            }
        }
        Err(error) => {
            for item in batch {
                item.request.fail(error.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue holding one request of `texts` texts, as `run` enqueues it, and counting one more
    /// request waiting (so a count taken twice shows, instead of stopping at zero).
    fn queued(
        texts: usize,
    ) -> (
        Queue,
        Arc<Request>,
        oneshot::Receiver<Result<Served, HostError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let request = Arc::new(Request {
            enqueued: Instant::now(),
            batch_size: 8,
            progress: Mutex::new(Progress {
                results: vec![None; texts],
                remaining: texts,
                queued: texts,
                started: false,
                workers: Vec::new(),
                reply: Some(reply),
            }),
        });
        let items = (0..texts)
            .map(|index| Item {
                request: request.clone(),
                index,
                tokens: vec![1],
            })
            .collect();
        (Queue { items, requests: 2 }, request, answer)
    }

    #[test]
    fn a_request_expired_by_the_scheduler_and_withdrawn_by_its_caller_leaves_once() {
        let (mut queue, request, _answer) = queued(3);
        // The scheduler expires it: its texts leave, the last one counts the request out.
        queue.items.clear();
        let last: Vec<bool> = (0..3).map(|_| leave_queue(&request, &mut queue)).collect();
        assert_eq!(last, [false, false, true]);
        assert_eq!(queue.requests, 1);
        // Its caller's own timeout fires too: nothing is counted out twice.
        assert!(withdraw(&mut queue, &request));
        assert_eq!(queue.requests, 1);
        assert!(!leave_queue(&request, &mut queue));
        assert_eq!(queue.requests, 1);
    }

    #[test]
    fn a_withdrawn_request_leaves_the_queue_and_its_count() {
        let (mut queue, request, _answer) = queued(2);
        assert!(withdraw(&mut queue, &request));
        assert!(queue.items.is_empty());
        assert_eq!(queue.requests, 1);
        let (mut queue, request, _answer) = queued(2);
        request.progress().started = true;
        assert!(!withdraw(&mut queue, &request));
        assert_eq!(queue.requests, 2);
    }
}
