//! The JetStream resources `nats/` declares — streams, durable consumers, the presence
//! bucket — exist on the server, and no consumer is stalled (messages waiting, nobody
//! pulling, no progress).

use super::Check;
use super::verdict::Blocker;
use async_nats::jetstream::{self, consumer};
use std::time::Duration;
use switchyard_contracts::subjects;

/// The streams, as `nats/streams/` names them.
const STREAMS: [&str; 2] = ["RUN_COMMANDS", "RUN_EVENTS"];
/// `(stream, durable)`, as `nats/consumers/` names them.
const CONSUMERS: [(&str, &str); 2] = [
    ("RUN_COMMANDS", "executor-manager"),
    ("RUN_EVENTS", "control-plane-projector"),
];
/// How long a consumer that looks stalled is watched before it is called stalled: its
/// workers renew their pull requests continuously, so a moment without one is normal,
/// a second without one and without progress is not.
const STALL_CONFIRMATION: Duration = Duration::from_secs(1);

/// What decides whether a consumer is stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// Messages not yet delivered.
    pending: u64,
    /// Pull requests waiting (someone is asking for messages).
    waiting: usize,
    /// Last stream sequence delivered.
    delivered: u64,
}

impl Sample {
    fn of(info: &consumer::Info) -> Self {
        Self {
            pending: info.num_pending,
            waiting: info.num_waiting,
            delivered: info.delivered.stream_sequence,
        }
    }

    /// Work waits and nobody asks for it.
    fn looks_stalled(&self) -> bool {
        self.pending > 0 && self.waiting == 0
    }
}

/// Stalled: it looked stalled twice, and nothing was delivered in between.
fn stalled(first: Sample, second: Sample) -> bool {
    first.looks_stalled() && second.looks_stalled() && second.delivered == first.delivered
}

/// The names of the checks [`check`] makes, in its order.
pub(super) fn check_names() -> impl Iterator<Item = String> {
    STREAMS
        .into_iter()
        .map(|name| format!("nats.stream.{name}"))
        .chain(
            CONSUMERS
                .into_iter()
                .map(|(stream, durable)| format!("nats.consumer.{stream}.{durable}")),
        )
        .chain(std::iter::once(format!(
            "nats.kv.{}",
            subjects::EXECUTORS_BUCKET
        )))
}

/// Pushes each check as soon as it is made, so that a report whose budget runs out
/// keeps the ones done (see [`check_names`]).
pub(super) async fn check(js: &jetstream::Context, checks: &mut Vec<Check>) {
    for name in STREAMS {
        checks.push(stream(js, name).await);
    }
    for (stream, durable) in CONSUMERS {
        checks.push(consumer(js, stream, durable).await);
    }
    checks.push(bucket(js, subjects::EXECUTORS_BUCKET).await);
}

async fn stream(js: &jetstream::Context, name: &str) -> Check {
    let check = format!("nats.stream.{name}");
    match js.get_stream(name).await {
        Ok(stream) => {
            let state = &stream.cached_info().state;
            Check::ok(
                check,
                format!("{} message(s), {} byte(s)", state.messages, state.bytes),
            )
        }
        Err(e) => Check::failed(
            check,
            format!("stream {name} cannot be read: {e} (nats/streams/{name}.json)"),
            Blocker::NatsResourceMissing(name.to_owned()),
        ),
    }
}

async fn consumer(js: &jetstream::Context, stream: &str, durable: &str) -> Check {
    let check = format!("nats.consumer.{stream}.{durable}");
    let resource = format!("{stream}/{durable}");
    let missing = |e: &dyn std::fmt::Display| {
        Check::failed(
            check.clone(),
            format!(
                "consumer {durable} of {stream} cannot be read: {e} (nats/consumers/{stream}.{durable}.json)"
            ),
            Blocker::NatsResourceMissing(resource.clone()),
        )
    };
    let info = match consumer_info(js, stream, durable).await {
        Ok(info) => info,
        Err(e) => return missing(&e),
    };
    let first = Sample::of(&info);
    let mut last = first;
    if first.looks_stalled() {
        tokio::time::sleep(STALL_CONFIRMATION).await;
        match consumer_info(js, stream, durable).await {
            Ok(info) => last = Sample::of(&info),
            Err(e) => return missing(&e),
        }
        if stalled(first, last) {
            return Check::failed(
                check,
                format!(
                    "{} message(s) waiting and nobody pulling them (is its service running?)",
                    last.pending
                ),
                Blocker::ConsumerStalled(resource),
            );
        }
    }
    Check::ok(
        check,
        format!(
            "{} pending, {} awaiting ack, {} pull request(s) waiting",
            last.pending, info.num_ack_pending, last.waiting
        ),
    )
}

async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<consumer::Info, async_nats::Error> {
    // One CONSUMER.INFO request (no STREAM.INFO first: the stream check made that one).
    let consumer: consumer::PullConsumer = js.get_consumer_from_stream(durable, stream).await?;
    Ok(consumer.cached_info().clone())
}

async fn bucket(js: &jetstream::Context, bucket: &str) -> Check {
    let check = format!("nats.kv.{bucket}");
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(stream) => Check::ok(
            check,
            format!("{} key(s) live", stream.cached_info().state.messages),
        ),
        Err(e) => Check::failed(
            check,
            format!("KV bucket {bucket} cannot be read: {e} (nats/kv/{bucket}.json)"),
            Blocker::NatsResourceMissing(bucket.to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pending: u64, waiting: usize, delivered: u64) -> Sample {
        Sample {
            pending,
            waiting,
            delivered,
        }
    }

    #[test]
    fn a_consumer_is_stalled_only_when_work_waits_unpulled_and_nothing_moves() {
        assert!(stalled(sample(3, 0, 10), sample(3, 0, 10)));
        // Someone asked for messages in between.
        assert!(!stalled(sample(3, 0, 10), sample(3, 1, 10)));
        // Something was delivered in between.
        assert!(!stalled(sample(3, 0, 10), sample(2, 0, 11)));
        // Nothing waits: an idle consumer is fine, with or without pullers.
        assert!(!stalled(sample(0, 0, 10), sample(0, 0, 10)));
        assert!(!stalled(sample(5, 2, 10), sample(5, 2, 10)));
    }
}
