//! A fixed pool of OS threads for CPU-heavy work (decode, optical flow), fed by a
//! bounded queue so the async runtime's threads never block and memory stays bounded.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::PipelineError;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// A bounded pool of worker threads.
pub struct WorkerPool {
    sender: Option<SyncSender<Task>>,
    threads: Vec<JoinHandle<()>>,
    queued: Arc<AtomicUsize>,
}

impl WorkerPool {
    /// Starts `threads` workers sharing a queue of at most `capacity` waiting tasks.
    pub fn new(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel::<Task>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        let threads = (0..threads.max(1))
            .map(|i| {
                let receiver = Arc::clone(&receiver);
                let queued = Arc::clone(&queued);
                std::thread::Builder::new()
                    .name(format!("revstream-worker-{i}"))
                    .spawn(move || run_worker(&receiver, &queued))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
            queued,
        })
    }

    /// Queues `work`; its result arrives on the returned receiver. Fails at once with
    /// [`PipelineError::Overloaded`] when the queue is full.
    pub fn submit<T, F>(&self, work: F) -> Result<oneshot::Receiver<T>, PipelineError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            // The receiver may have gone (client disconnected); nothing to do then.
            let _ = tx.send(work());
        });
        let sender = self.sender.as_ref().ok_or(PipelineError::Stopped)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(task) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => Err(PipelineError::Overloaded("worker queue")),
                    TrySendError::Disconnected(_) => Err(PipelineError::Stopped),
                }
            }
        }
    }

    /// Tasks waiting for a free worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

fn run_worker(receiver: &Mutex<Receiver<Task>>, queued: &AtomicUsize) {
    loop {
        // Hold the lock only while taking a task, not while running it.
        let task = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match task {
            Ok(task) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                // A bug in one task must not shrink the pool: the task's result channel
                // is dropped (its request gets a 500) and the thread carries on.
                if std::panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                    tracing::error!("a worker task panicked");
                }
            }
            Err(_) => return,
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing the queue lets each worker finish its task and exit.
        self.sender.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn runs_work_and_refuses_when_full() {
        let pool = WorkerPool::new(1, 1).unwrap();
        let (release, blocked) = mpsc::channel::<()>();
        let first = pool.submit(move || blocked.recv().is_ok()).unwrap();
        // Wait until the worker holds the first task, so the queue is empty.
        while pool.queued() > 0 {
            tokio::task::yield_now().await;
        }
        let second = pool.submit(|| 2).unwrap();
        assert!(matches!(
            pool.submit(|| 3),
            Err(PipelineError::Overloaded(_))
        ));
        release.send(()).unwrap();
        assert!(first.await.unwrap());
        assert_eq!(second.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_panicking_task_does_not_kill_its_worker() {
        let pool = WorkerPool::new(1, 4).unwrap();
        let failed = pool.submit(|| -> u8 { panic!("a bug") }).unwrap();
        assert!(
            failed.await.is_err(),
            "the panicked task's result never arrives"
        );
        assert_eq!(pool.submit(|| 5).unwrap().await.unwrap(), 5);
    }
}
