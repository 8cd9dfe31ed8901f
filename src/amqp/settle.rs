//! Settles the deliveries of one consumer channel. Acknowledgements that
//! arrive together become one `basic.ack` with `multiple`, so a busy queue
//! costs a frame per batch instead of a frame per message. The consume loop
//! never waits for a frame to be written.
//!
//! Delivery tags count up from 1 on each channel. A multiple ack covers every
//! unsettled tag up to the one it names, so it is only sent for a run of tags
//! that are all settled here, and it names a tag no earlier frame settled
//! (RabbitMQ closes the channel otherwise). An ack beyond a tag still being
//! handled (with `concurrency` above 1) goes out on its own. Requeues and
//! rejects always go out on their own, before the acks of the same batch.

use std::collections::BTreeSet;

use lapin::{
    Channel,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};
use tokio::sync::mpsc;

/// The outcome of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    Reject,
}

/// Settlements taken from the channel per round of frames.
const BATCH: usize = 4096;

/// The sending side, one per consume loop.
pub type Settlements = mpsc::UnboundedSender<(u64, Settle)>;

/// Sends the settlements it receives until every sender is dropped, then
/// returns once the last of them was written.
///
/// # Errors
///
/// The channel's error when a frame cannot be sent. Later settlements are
/// not sent, so RabbitMQ requeues those deliveries when the channel closes.
pub async fn run(
    channel: Channel,
    mut received: mpsc::UnboundedReceiver<(u64, Settle)>,
) -> lapin::Result<()> {
    let mut tags = Tags::default();
    let mut batch = Vec::new();
    while received.recv_many(&mut batch, BATCH).await > 0 {
        let plan = tags.settle(batch.drain(..));
        for (tag, settle) in plan.single {
            match settle {
                Settle::Ack => channel.basic_ack(tag, BasicAckOptions::default()).await?,
                Settle::Requeue => {
                    let options = BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    };
                    channel.basic_nack(tag, options).await?;
                }
                Settle::Reject => {
                    let options = BasicRejectOptions { requeue: false };
                    channel.basic_reject(tag, options).await?;
                }
            }
        }
        if let Some(tag) = plan.ack_up_to {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
        }
    }
    Ok(())
}

/// The frames one batch of settlements needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Settled one tag at a time, in this order.
    single: Vec<(u64, Settle)>,
    /// A multiple ack up to and including this tag, sent last.
    ack_up_to: Option<u64>,
}

/// The settled delivery tags.
#[derive(Debug)]
struct Tags {
    /// Every tag below this one is settled.
    low: u64,
    /// Settled tags above a tag that is not settled yet.
    beyond_gap: BTreeSet<u64>,
}

impl Default for Tags {
    fn default() -> Self {
        Self {
            low: 1,
            beyond_gap: BTreeSet::new(),
        }
    }
}

impl Tags {
    fn settle(&mut self, batch: impl Iterator<Item = (u64, Settle)>) -> Plan {
        let mut plan = Plan::default();
        let mut acks = Vec::new();
        for (tag, settle) in batch {
            if tag < self.low || !self.beyond_gap.insert(tag) {
                // Settled already: sending it again would close the channel.
                continue;
            }
            match settle {
                Settle::Ack => acks.push(tag),
                other => plan.single.push((tag, other)),
            }
        }
        while self.beyond_gap.remove(&self.low) {
            self.low += 1;
        }
        for tag in acks {
            if tag < self.low {
                // RabbitMQ closes the channel when the tag of a multiple ack
                // is not outstanding, so it names the highest ack of this
                // batch, never a tag settled by an earlier frame.
                plan.ack_up_to = plan.ack_up_to.max(Some(tag));
            } else {
                plan.single.push((tag, Settle::Ack));
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(tags: &mut Tags, batch: &[(u64, Settle)]) -> Plan {
        tags.settle(batch.iter().copied())
    }

    #[test]
    fn acks_in_a_run_become_one_frame() {
        let mut tags = Tags::default();
        let plan = settle(
            &mut tags,
            &[(1, Settle::Ack), (2, Settle::Ack), (3, Settle::Ack)],
        );
        assert_eq!(
            plan,
            Plan {
                single: vec![],
                ack_up_to: Some(3)
            }
        );
        let plan = settle(&mut tags, &[(4, Settle::Ack)]);
        assert_eq!(plan.ack_up_to, Some(4));
    }

    #[test]
    fn requeue_goes_before_multiple_ack() {
        let mut tags = Tags::default();
        let plan = settle(
            &mut tags,
            &[(1, Settle::Ack), (2, Settle::Requeue), (3, Settle::Ack)],
        );
        assert_eq!(plan.single, vec![(2, Settle::Requeue)]);
        assert_eq!(plan.ack_up_to, Some(3));
    }

    #[test]
    fn ack_beyond_a_gap_goes_alone() {
        let mut tags = Tags::default();
        let plan = settle(&mut tags, &[(2, Settle::Ack), (3, Settle::Ack)]);
        assert_eq!(plan.single, vec![(2, Settle::Ack), (3, Settle::Ack)]);
        assert_eq!(plan.ack_up_to, None);
        // Tag 1 closes the gap. Tags 2 and 3 are acknowledged already, so
        // the multiple ack names 1: RabbitMQ rejects one naming a settled tag.
        let plan = settle(&mut tags, &[(1, Settle::Ack)]);
        assert_eq!(
            plan,
            Plan {
                single: vec![],
                ack_up_to: Some(1)
            }
        );
        assert_eq!(tags.low, 4);
        assert!(tags.beyond_gap.is_empty());
    }

    #[test]
    fn rejects_alone_send_no_ack() {
        let mut tags = Tags::default();
        let plan = settle(&mut tags, &[(1, Settle::Reject)]);
        assert_eq!(
            plan,
            Plan {
                single: vec![(1, Settle::Reject)],
                ack_up_to: None
            }
        );
    }

    #[test]
    fn tag_settled_twice_is_sent_once() {
        let mut tags = Tags::default();
        settle(&mut tags, &[(1, Settle::Ack)]);
        let plan = settle(
            &mut tags,
            &[(1, Settle::Requeue), (2, Settle::Ack), (2, Settle::Ack)],
        );
        assert_eq!(
            plan,
            Plan {
                single: vec![],
                ack_up_to: Some(2)
            }
        );
    }
}
