//! Server-Sent Events streams: a job's windows as they finish, then how it ended.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event;
use futures_util::Stream;
use prometheus::IntGauge;
use serde::Serialize;
use tokio::sync::watch;

use super::jobs::{Ending, JobStore};
use super::metrics::Metrics;

/// What one job's stream has sent and still has to send.
struct JobStream {
    jobs: Arc<JobStore>,
    id: String,
    changes: watch::Receiver<u64>,
    sent: usize,
    pending: VecDeque<Event>,
    ended: bool,
    _client: Client,
}

/// Counts a connected client while it lives.
struct Client(IntGauge);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The events of job `id`: each finished window (`window`), then `done` with the job's
/// final state or `error`. `changes` wakes the stream when the job moves on.
pub fn job(
    jobs: Arc<JobStore>,
    id: String,
    changes: watch::Receiver<u64>,
    metrics: &Metrics,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    metrics.sse_clients.inc();
    let state = JobStream {
        jobs,
        id,
        changes,
        sent: 0,
        pending: VecDeque::new(),
        ended: false,
        _client: Client(metrics.sse_clients.clone()),
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            if s.ended {
                return None;
            }
            // Marked seen before reading, so a change after the read wakes the wait below.
            s.changes.borrow_and_update();
            match s.jobs.events_since(&s.id, s.sent) {
                None => {
                    s.pending.push_back(json_event("error", &gone(&s.id)));
                    s.ended = true;
                }
                Some(events) => {
                    s.sent += events.windows.len();
                    s.pending
                        .extend(events.windows.iter().map(|w| json_event("window", w)));
                    let last = match events.ending {
                        Some(Ending::Done(view)) => Some(json_event("done", &view)),
                        Some(Ending::Failed(body)) => Some(json_event("error", &body)),
                        None => None,
                    };
                    s.ended = last.is_some();
                    s.pending.extend(last);
                }
            }
            if s.pending.is_empty() && s.changes.changed().await.is_err() {
                // The job was dropped (expired): the next read says so.
                continue;
            }
        }
    })
}

fn gone(id: &str) -> super::error::ErrorBody {
    super::error::ErrorBody {
        error: format!("no job {id:?} (finished jobs expire)"),
        kind: "not_found".to_string(),
    }
}

/// An event named `name` whose data is `value` as JSON.
fn json_event(name: &str, value: &impl Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|e| {
        format!("{{\"error\":\"serialising the event failed: {e}\",\"kind\":\"internal\"}}")
    });
    Event::default().event(name).data(data)
}
